"""The sampler benchmark's table (docs/sweeps.md), from the studies scripts/sweeps.sh ran.

Usage: report.py DIR   (DIR holds <sampler>-s<seed>/trials.csv for each study)

Best-so-far is the best val_exact among the complete trials up to each trial number, as
`runner study` ranks them. Prints, per sampler and trial number, the median and range over
seeds; then the trials each sampler needed to reach random search's final best.
"""

import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def best_so_far(path):
    rows = sorted(csv.DictReader(open(path, newline="")), key=lambda r: int(r["number"]))
    best, curve = None, []
    for r in rows:
        if r["state"] == "complete" and r["val_exact"] != "":
            v = float(r["val_exact"])
            best = v if best is None else max(best, v)
        curve.append(best)
    states = defaultdict(int)
    for r in rows:
        states[r["state"]] += 1
    return curve, dict(states)


def main():
    root = Path(sys.argv[1])
    curves = defaultdict(dict)
    states = defaultdict(lambda: defaultdict(int))
    for study in sorted(root.iterdir()):
        trials = study / "trials.csv"
        if not trials.is_file():
            continue
        sampler, seed = study.name.rsplit("-s", 1)
        curve, counts = best_so_far(trials)
        curves[sampler][int(seed)] = curve
        for k, v in counts.items():
            states[sampler][k] += v
    samplers = sorted(curves)
    n = max(len(c) for s in samplers for c in curves[s].values())
    fmt = lambda v: "-" if v is None else f"{v:.4f}"
    print("| trial | " + " | ".join(f"{s} median (min-max)" for s in samplers) + " |")
    print("|---|" + "---|" * len(samplers))
    for i in range(n):
        cells = []
        for s in samplers:
            vals = [c[i] for c in curves[s].values() if i < len(c) and c[i] is not None]
            if vals:
                cells.append(f"{statistics.median(vals):.4f} ({min(vals):.4f}-{max(vals):.4f})")
            else:
                cells.append("-")
        print(f"| {i + 1} | " + " | ".join(cells) + " |")
    print()
    print("| sampler | studies | final best per seed | trials to reach random's final median best, per seed | states |")
    print("|---|---|---|---|---|")
    random_finals = [c[-1] for c in curves.get("random", {}).values() if c and c[-1] is not None]
    target = statistics.median(random_finals) if random_finals else None
    for s in samplers:
        seeds = sorted(curves[s])
        finals = ", ".join(fmt(curves[s][k][-1]) for k in seeds)
        reach = []
        for k in seeds:
            hit = next((i + 1 for i, v in enumerate(curves[s][k]) if v is not None and target is not None and v >= target), None)
            reach.append("-" if hit is None else str(hit))
        counts = ", ".join(f"{k} {v}" for k, v in sorted(states[s].items()))
        print(f"| {s} | {len(seeds)} | {finals} | {', '.join(reach)} | {counts} |")
    if target is not None:
        print(f"\nrandom search's final best, median over seeds: {target:.4f}")


if __name__ == "__main__":
    main()
