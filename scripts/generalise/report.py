"""The generalisation benchmark's tables (docs/generalisation.md), from scripts/generalise.sh.

Usage: report.py DIR [--add CSV]...  (DIR holds <condition>-s<seed>/<run-id>/ run directories)
       report.py DIR --csv            one row per run instead (what bench/generalise-*.csv keep)

--add CSV puts the rows of an earlier run's per-run CSV (its run directories gone) beside
DIR's in the tables: seeds run in two sessions (FIRST_SEED in scripts/generalise.sh).

Per condition (the run name without its seed), the median and range over seeds of: exact
match on 1000 fresh examples of the run's own data, the suite's longer and deeper sets,
seconds and steps to 99% validation exact match, and the steps and seconds trained.
"""

import argparse
import csv
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def first_99(run):
    with open(run / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["val_exact"] and float(row["val_exact"]) >= 0.99:
                return int(row["step"]), float(row["elapsed_s"])
    return None, None


def suite(run):
    """{set name prefix: exact} from eval_suite.csv's whole-set rows."""
    path = run / "eval_suite.csv"
    if not path.exists():
        return {}
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["breakdown"] != "all":
                continue
            name = row["set"].split(" ")[0]
            # "n/a": the model could not read any of the set (its positional table).
            out[name] = None if row["exact"] in ("", "n/a") else float(row["exact"])
    return out


def read_run(run):
    summary = json.loads((run / "summary.json").read_text())
    fresh = json.loads((run / "fresh.json").read_text())
    steps99, secs99 = first_99(run)
    sets = suite(run)
    return {
        "fresh": fresh["exact"],
        "longer": sets.get("longer"),
        "deeper": sets.get("deeper"),
        "secs99": secs99,
        "steps99": steps99,
        "steps": summary["steps"],
        "wall": summary["wall_s"],
        "params": summary["params"],
    }


def cell(values, digits):
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    missing = len(values) - len(present)
    fmt = f"{{:.{digits}f}}"
    med = fmt.format(statistics.median(present))
    text = med if len(present) == 1 else f"{med} ({fmt.format(min(present))}-{fmt.format(max(present))})"
    if missing:
        text += f" [{missing} of {len(values)} not reached]"
    return text


COLUMNS = [
    ("fresh exact (1000)", "fresh", 4),
    ("longer (2x)", "longer", 4),
    ("deeper", "deeper", 4),
    ("s to 99%", "secs99", 1),
    ("steps to 99%", "steps99", 0),
    ("steps", "steps", 0),
    ("params", "params", 0),
]


KEYS = ["fresh", "longer", "deeper", "secs99", "steps99", "steps", "wall", "params"]


def dir_rows(root):
    """(condition, seed, row) for each finished run under DIR, in name order."""
    for out in sorted(root.glob("*/*/fresh.json")):
        run = out.parent
        condition, seed = re.match(r"(.*)-s(\d+)$", run.parent.name).groups()
        yield condition, seed, read_run(run)


def per_run_csv(root):
    writer = csv.writer(sys.stdout)
    writer.writerow(["condition", "seed"] + KEYS)
    for condition, seed, row in dir_rows(root):
        writer.writerow([condition, seed] + ["" if row[k] is None else row[k] for k in KEYS])


def added_rows(path):
    """(condition, row) from a per-run CSV written by --csv; empty cells are None."""
    with open(path, newline="") as f:
        for line in csv.DictReader(f):
            yield line["condition"], {k: float(line[k]) if line[k] else None for k in KEYS}


def main(root, added):
    runs = defaultdict(list)
    for path in added:
        for condition, row in added_rows(path):
            runs[condition].append(row)
    for condition, _, row in dir_rows(root):
        runs[condition].append(row)
    print(f"# Generalisation benchmark: {root}\n")
    machine = root / "machine.txt"
    if machine.exists():
        print("```\n" + machine.read_text().strip() + "\n```\n")
    for path in added:
        print(f"With the runs of `{path}` added.\n")
    print("Median (min-max) over seeds; fresh = 1000 new examples of the run's own data.\n")
    print("| condition | seeds | " + " | ".join(c[0] for c in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for condition, rows in sorted(runs.items()):
        cells = [cell([r[key] for r in rows], digits) for _, key, digits in COLUMNS]
        print(f"| {condition} | {len(rows)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The generalisation benchmark's tables.")
    parser.add_argument("dir", type=Path, help="holds <condition>-s<seed>/<run-id>/ run directories")
    parser.add_argument("--csv", action="store_true", help="one row per run of DIR instead")
    parser.add_argument("--add", action="append", default=[], metavar="CSV", help="an earlier per-run CSV")
    args = parser.parse_args()
    if args.csv:
        per_run_csv(args.dir)
    else:
        main(args.dir, args.add)
