"""The techniques benchmark's tables (docs/techniques.md), from what scripts/techniques.sh ran.

Usage: report.py DIR   (DIR holds <condition>-s<seed>/<run-id>/ run directories)

Per condition, the median and range over seeds of: steps and seconds to 99% validation
exact match (on the data the run ends with), test exact match (the run's own test split),
exact match on 1000 fresh examples, `eval --suite` on longer and deeper prefixes, trained
and total parameters, and the best checkpoint's model file size.
"""

import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

COLUMNS = [
    ("steps to 99%", "steps99", 0),
    ("s to 99%", "secs99", 1),
    ("test exact", "test", 4),
    ("fresh exact (1000)", "fresh", 4),
    ("longer", "longer", 4),
    ("deeper", "deeper", 4),
    ("trained params", "trained", 0),
    ("params", "params", 0),
    ("model.bpk KiB", "kib", 0),
    ("final val_loss", "val_loss", 4),
]


def first_99(run):
    rows = list(csv.DictReader(open(run / "metrics.csv", newline="")))
    if not rows:
        return None, None
    final = max(int(r.get("stage") or 0) for r in rows)
    for r in rows:
        if int(r.get("stage") or 0) == final and r["val_exact"] and float(r["val_exact"]) >= 0.99:
            return int(r["step"]), float(r["elapsed_s"])
    return None, None


def suite(run):
    found = {}
    path = run / "eval_suite.csv"
    if not path.exists():
        return found
    for r in csv.DictReader(open(path, newline="")):
        if r["breakdown"] != "all" or r["exact"] in ("", "n/a"):
            continue
        for key in ("longer", "deeper"):
            if r["set"].startswith(key):
                found[key] = float(r["exact"])
    return found


def measure(run):
    summary = json.load(open(run / "summary.json"))
    steps99, secs99 = first_99(run)
    m = {
        "steps99": steps99,
        "secs99": secs99,
        "test": summary.get("test_exact"),
        "trained": summary.get("trained_params"),
        "params": summary.get("params"),
        "kib": (run / "checkpoints/best/model.bpk").stat().st_size / 1024,
    }
    fresh = run / "fresh.json"
    if fresh.exists():
        m["fresh"] = json.load(open(fresh))["exact"]
    m.update(suite(run))
    rows = list(csv.DictReader(open(run / "metrics.csv", newline="")))
    if rows:
        m["val_loss"] = float(rows[-1]["val_loss"])
    return m


def cell(values, digits):
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    fmt = lambda v: f"{v:.{digits}f}"
    text = fmt(statistics.median(known))
    if len(known) > 1:
        text += f" ({fmt(min(known))}-{fmt(max(known))})"
    missing = len(values) - len(known)
    if missing:
        text += f", {missing} never"
    return text


def main():
    root = Path(sys.argv[1])
    by_condition = defaultdict(list)
    for cond_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        condition, _, seed = cond_dir.name.rpartition("-s")
        for run in sorted(cond_dir.iterdir()):
            if (run / "summary.json").exists():
                by_condition[condition].append((int(seed), measure(run)))
    print("| condition | seeds | " + " | ".join(c[0] for c in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for condition, runs in by_condition.items():
        cells = [cell([m.get(key) for _, m in runs], digits) for _, key, digits in COLUMNS]
        print(f"| {condition} | {len(runs)} | " + " | ".join(cells) + " |")
    print("\nPer seed (steps to 99%, fresh exact):\n")
    for condition, runs in by_condition.items():
        per = ", ".join(
            f"s{seed}: {m.get('steps99') or 'never'} / {m.get('fresh', float('nan')):.3f}"
            for seed, m in sorted(runs, key=lambda x: x[0])
        )
        print(f"- {condition}: {per}")


if __name__ == "__main__":
    main()
