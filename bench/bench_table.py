#!/usr/bin/env python3
"""Markdown tables from moecheck_routing_bench JSON files (Google Benchmark output).

    bench/bench_table.py AFTER.json [--before BEFORE.json] [--public public.csv]
                         [--shapes dtype:E:k,..] [--tokens 1,64,..] [--variants v1,v2,..]

Per (dtype, E, k, T): the median time per launch (µs) of each variant in AFTER (default
columns: thread_single, warp_per_row, block_per_row, thread_per_row, auto), `auto` of BEFORE
(same names; e.g. a build of the previous kernels run on the same machine), a public router's
time from a CSV file (dtype,E,k,T,us), the floor (AFTER's floor_us counter: effective bytes over
AFTER's copy ceiling) and auto / floor. A missing measurement prints "-". The copy ceilings of
both files are printed first.
"""
import argparse
import csv
import json
import re
import sys

NAME = re.compile(r"BM_Route/variant:([^/]+)/dtype:([^/]+)/E:(\d+)/k:(\d+)/T:(\d+)/")


def load(path):
    """{(variant, dtype, E, k, T): (median us, floor us)} and the context of one JSON file."""
    with open(path) as f:
        j = json.load(f)
    runs = {}
    singles = {}
    for b in j.get("benchmarks", []):
        m = NAME.match(b.get("run_name", b.get("name", "")))
        if not m or b.get("error_occurred"):
            continue
        key = (m.group(1), m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5)))
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                runs[key] = (b["real_time"], b.get("floor_us"))
        else:
            singles.setdefault(key, []).append((b["real_time"], b.get("floor_us")))
    for key, vals in singles.items():  # files without aggregates: the median of the runs
        if key not in runs:
            vals.sort()
            runs[key] = vals[len(vals) // 2]
    return runs, j.get("context", {})


def fmt(x):
    return "-" if x is None else f"{x:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("after")
    ap.add_argument("--before")
    ap.add_argument("--public")
    ap.add_argument("--shapes", default="bf16:128:8,bf16:256:8,bf16:64:4,f32:128:8,f32:256:8,f32:64:4,"
                    "f16:128:8,f16:256:8,f16:64:4,bf16:512:8,f32:512:8,f16:512:8,bf16:2048:8,f32:2048:8,f16:2048:8")
    ap.add_argument("--tokens", default="1,16,64,1024,2048,16384,250000")
    ap.add_argument("--variants", default="thread_single,warp_per_row,block_per_row,thread_per_row,auto")
    a = ap.parse_args()
    after, actx = load(a.after)
    before, bctx = load(a.before) if a.before else ({}, {})
    public = {}
    if a.public:
        with open(a.public) as f:
            for r in csv.DictReader(f):
                public[(r["dtype"], int(r["E"]), int(r["k"]), int(r["T"]))] = float(r["us"])
    print(f"copy ceiling: after {actx.get('moecheck_copy_ceiling_gbs', '?')} GB/s"
          + (f", before {bctx.get('moecheck_copy_ceiling_gbs', '?')} GB/s" if a.before else ""))
    print()
    variants = a.variants.split(",")
    head = ["dtype", "E", "k", "T"]
    if a.before:
        head.append("before auto µs")
    head += [f"{v} µs" for v in variants]
    if a.public:
        head.append("public µs")
    head += ["floor µs", "auto / floor"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for shape in a.shapes.split(","):
        dt, e, k = shape.split(":")
        e, k = int(e), int(k)
        for t in (int(x) for x in a.tokens.split(",")):
            cells = [dt, str(e), str(k), str(t)]
            if a.before:
                cells.append(fmt(before.get(("auto", dt, e, k, t), (None,))[0]))
            floor = None
            for v in variants:
                r = after.get((v, dt, e, k, t))
                cells.append(fmt(r[0] if r else None))
                if r and r[1]:
                    floor = r[1]
            if a.public:
                cells.append(fmt(public.get((dt, e, k, t))))
            auto = after.get(("auto", dt, e, k, t))
            cells.append(fmt(floor))
            cells.append(f"{auto[0] / floor:.2f}" if auto and floor and t >= 1024 else "-")
            if any(c != "-" for c in cells[4:]):
                print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
