#!/usr/bin/env python3
"""Write a copy of a Google Benchmark JSON file with every time scaled by a factor.

Used to check the regression gate end to end: a copy scaled by 1.2 (20% slower) must be
flagged by `moecheck report --baseline ORIGINAL.json COPY.json`, while the original compared
with itself (or with a rerun that only differs by measurement noise) must not.

Same rule as moecheck::reports::scale_bench_times:
  * real_time and cpu_time of every repetition and of the mean/median/stddev aggregates
    are multiplied by FACTOR;
  * counters named *_per_second and copy_fraction are divided by FACTOR;
  * cv aggregates (unitless) are left as they are.

Usage: synthetic_slowdown.py INPUT.json OUTPUT.json [--factor 1.2] [--commit LABEL]
"""
import argparse
import json
import math
import sys

RESERVED = {
    "name", "family_index", "per_family_instance_index", "run_name", "run_type",
    "repetitions", "repetition_index", "threads", "iterations", "real_time", "cpu_time",
    "time_unit", "aggregate_name", "aggregate_unit", "error_occurred", "error_message",
    "skipped", "skip_message", "label", "big_o", "rms", "cpu_coefficient",
    "real_coefficient", "complexity_n",
}


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def aggregate_name(entry):
    run_type = entry.get("run_type")
    if isinstance(run_type, str):
        return entry.get("aggregate_name", "?") if run_type == "aggregate" else ""
    name = entry.get("name", "")
    for agg in ("mean", "median", "stddev", "cv"):
        if name.endswith("_" + agg):
            return agg
    return ""


def scale(doc, factor):
    for entry in doc.get("benchmarks", []):
        if not isinstance(entry, dict) or aggregate_name(entry) == "cv":
            continue
        for key in ("real_time", "cpu_time"):
            if is_number(entry.get(key)):
                entry[key] = entry[key] * factor
        for key, value in list(entry.items()):
            if key in RESERVED or not is_number(value):
                continue
            if key.endswith("_per_second") or key == "copy_fraction":
                entry[key] = value / factor
    return doc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--factor", type=float, default=1.2,
                    help="time multiplier (default 1.2: 20%% slower)")
    ap.add_argument("--commit", default=None,
                    help="value for context.moecheck_commit in the copy (default: keep)")
    args = ap.parse_args()
    if not math.isfinite(args.factor) or args.factor <= 0:
        sys.exit("synthetic_slowdown.py: --factor must be finite and positive")
    try:
        with open(args.input, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"synthetic_slowdown.py: cannot read {args.input}: {e}")
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        sys.exit(f"synthetic_slowdown.py: {args.input}: not a Google Benchmark JSON file")
    scale(doc, args.factor)
    if args.commit is not None:
        doc.setdefault("context", {})["moecheck_commit"] = args.commit
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
