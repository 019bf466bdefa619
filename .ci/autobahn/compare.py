#!/usr/bin/env python3
"""Compare an Autobahn report with the committed expectation.

usage: compare.py [--subset] INDEX_JSON [INDEX_JSON...] EXPECTED_JSON [--write]

The reports of several runs (the same agent, different cases) count as one.
Fails (exit 1) on any case whose behavior is not OK or INFORMATIONAL (so
NON-STRICT and UNIMPLEMENTED fail too) and on any case whose behavior differs
from EXPECTED_JSON, naming the case. A differing close behavior (how the TCP
connection ended) is reported as a warning: it depends on timing (the suite
gives up after 1 s), so a loaded machine can turn OK into UNCLEAN without any
change in pushloop. --write records the report as the new expectation.
--subset: only a sample of the permessage-deflate cases (12.*, 13.*) was
run; those of them absent from the reports are not missing.
"""
import json
import sys

ACCEPTED = {"OK", "INFORMATIONAL"}


def load_cases(index_path):
    with open(index_path) as f:
        index = json.load(f)
    (agent,) = index.keys()
    return {cid: {"behavior": c["behavior"], "behaviorClose": c["behaviorClose"]}
            for cid, c in index[agent].items()}


def key(cid):
    return [int(p) if p.isdigit() else p for p in cid.split(".")]


def main():
    args = [a for a in sys.argv[1:] if a not in ("--write", "--subset")]
    subset = "--subset" in sys.argv
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    *indexes, expected_path = args
    cases = {}
    for index in indexes:
        cases.update(load_cases(index))
    if "--write" in sys.argv:
        with open(expected_path, "w") as f:
            json.dump(dict(sorted(cases.items(), key=lambda kv: key(kv[0]))), f, indent=1)
            f.write("\n")
        print("autobahn: wrote %d expected cases" % len(cases))
        return 0
    with open(expected_path) as f:
        expected = json.load(f)
    problems, warnings = [], []
    for cid in sorted(set(cases) | set(expected), key=key):
        got, want = cases.get(cid), expected.get(cid)
        if got is None and subset and cid.split(".")[0] in ("12", "13"):
            continue
        if got is None:
            problems.append("%s: missing from the report" % cid)
        elif got["behavior"] not in ACCEPTED:
            problems.append("%s: %s" % (cid, got["behavior"]))
        elif want is None:
            problems.append("%s: not in expected.json (new case?)" % cid)
        elif got["behavior"] != want["behavior"]:
            problems.append("%s: %s, expected %s" % (cid, got["behavior"], want["behavior"]))
        elif got["behaviorClose"] != want["behaviorClose"]:
            warnings.append("%s: close %s, expected %s" % (cid, got["behaviorClose"], want["behaviorClose"]))
    for w in warnings:
        print("autobahn warning: " + w)
    for p in problems:
        print("autobahn regression: " + p)
    print("autobahn vs expected: %d cases, %d problems, %d close warnings"
          % (len(cases), len(problems), len(warnings)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
