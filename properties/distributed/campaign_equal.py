#!/usr/bin/env python3
"""Checks that two moecheck campaign results describe the same campaign case for case.

    campaign_equal.py EXPECTED.json ACTUAL.json [--root-expected DIR] [--root-actual DIR]

Compares what a campaign found and ran - target, mutant, seed, generator, limits, shard, case
budget, cases, rows, skipped cases, the class histogram, the resume point, the duplicate count
and every failure (signature, check, message, seed, case index, original and shrunk shape,
shrink steps, corpus file name) - and, when a failure's corpus file exists on both sides, the
file itself minus its provenance lines (found, toolkit, commit). Timing, start time, device
name, tool build and merged_from are not compared. Relative corpus paths are resolved against
the --root-* folders (default: the current folder). Exit 0 when equal, 1 when not (every
difference listed), 2 on unreadable input. Standard library only.
"""
import argparse
import json
import os
import sys

TOP = ["schema", "target", "mutant", "seed", "generator", "limits", "shard", "cases", "rows",
       "skipped", "failures", "duplicate_failures", "interrupted", "next_index", "classes"]
FAILURE = ["signature", "target", "check", "message", "seed", "case_index", "original", "shrunk",
           "shrink_steps"]
PROVENANCE = ("found ", "toolkit ", "commit ")


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"campaign_equal: cannot read {path}: {e}", file=sys.stderr)
        sys.exit(2)


def corpus_body(path):
    with open(path, encoding="utf-8") as f:
        return [line for line in f.read().splitlines() if not line.startswith(PROVENANCE)]


def compare(expected, actual, root_e, root_a):
    diffs = []
    for key in TOP:
        if expected.get(key) != actual.get(key):
            diffs.append(f"{key}: expected {json.dumps(expected.get(key))[:300]}, got {json.dumps(actual.get(key))[:300]}")
    budget_e = (expected.get("budget") or {}).get("cases")
    budget_a = (actual.get("budget") or {}).get("cases")
    if budget_e != budget_a:
        diffs.append(f"budget.cases: expected {budget_e}, got {budget_a}")
    fe = expected.get("failure_list") or []
    fa = actual.get("failure_list") or []
    if len(fe) != len(fa):
        diffs.append(f"failure_list: expected {len(fe)} entries, got {len(fa)}")
    for i, (e, a) in enumerate(zip(fe, fa)):
        for key in FAILURE:
            if e.get(key) != a.get(key):
                diffs.append(f"failure_list[{i}].{key}: expected {json.dumps(e.get(key))[:300]}, got {json.dumps(a.get(key))[:300]}")
        ce, ca = e.get("corpus_file") or "", a.get("corpus_file") or ""
        if os.path.basename(ce) != os.path.basename(ca):
            diffs.append(f"failure_list[{i}].corpus_file: expected a file named {os.path.basename(ce)!r}, got {ca!r}")
            continue
        pe, pa = os.path.join(root_e, ce), os.path.join(root_a, ca)
        if ce and ca and os.path.isfile(pe) and os.path.isfile(pa) and corpus_body(pe) != corpus_body(pa):
            diffs.append(f"failure_list[{i}]: corpus files {pe} and {pa} hold different cases")
        elif ce and ca and os.path.isfile(pe) != os.path.isfile(pa):
            diffs.append(f"failure_list[{i}]: corpus file present on one side only ({pe}, {pa})")
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("expected")
    ap.add_argument("actual")
    ap.add_argument("--root-expected", default=".")
    ap.add_argument("--root-actual", default=".")
    args = ap.parse_args()
    expected, actual = load(args.expected), load(args.actual)
    diffs = compare(expected, actual, args.root_expected, args.root_actual)
    if diffs:
        print(f"campaign_equal: {args.actual} differs from {args.expected}:")
        for d in diffs:
            print("  " + d)
        return 1
    print(f"campaign_equal: {args.actual} equals {args.expected}: {actual.get('cases')} cases, "
          f"{actual.get('rows')} rows, {len(actual.get('failure_list') or [])} failures "
          f"(+{actual.get('duplicate_failures')} duplicates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
