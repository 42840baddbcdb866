"""Turns the raw results of scripts/bench.sh into one Markdown report (standard library only).

    python3 report.py RAW_DIR > bench/sidebyside-<stamp>.md

RAW_DIR holds, from each alternating round: runner-<setting>-<round>/*.csv (`runner bench`),
torch-<setting>-<round>.jsonl (`reference.py bench`); and, for time to accuracy,
score.md (`runner score`) and torch-train.jsonl (`reference.py train`), plus machine.txt.
"""

import csv
import glob
import json
import os
import re
import statistics
import sys
from collections import defaultdict


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def throughput(raw):
    """{(setting, arch): {"runner": [(round, row)], "torch": [(round, row)]}}"""
    groups = defaultdict(lambda: {"runner": [], "torch": []})
    for path in glob.glob(f"{raw}/runner-*/*.csv"):
        setting, rnd = re.match(r"runner-(.+)-(\d+)$", os.path.basename(os.path.dirname(path))).groups()
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                groups[(setting, row["arch"])]["runner"].append((int(rnd), row))
    for path in glob.glob(f"{raw}/torch-*.jsonl"):
        m = re.match(r"torch-(.+)-(\d+)\.jsonl$", os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                groups[(m.group(1), row["arch"])]["torch"].append((int(m.group(2)), row))
    return groups


def fmt(x, digits=0):
    return "-" if x != x else f"{x:.{digits}f}"


def throughput_tables(groups, key, title, unit):
    settings = sorted({s for s, _ in groups}, key=setting_order)
    out = [f"## {title}", "",
           f"Medians over rounds of each side's own median ({unit}); the ratio is runner / PyTorch "
           "within one round (the two ran back to back), then min / median / max over rounds.", "",
           "| setting | arch | runner | PyTorch | ratio min | ratio median | ratio max | rounds |",
           "|---|---|---|---|---|---|---|---|"]
    for setting in settings:
        for arch in ("gru", "lstm", "tra", "gpt", "ber"):
            g = groups.get((setting, arch))
            if not g:
                continue
            r = {n: float(row[key]) for n, row in g["runner"]}
            t = {n: float(row[key]) for n, row in g["torch"]}
            ratios = [r[n] / t[n] for n in sorted(r) if n in t and t[n] > 0]
            out.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
                setting, arch, fmt(median(list(r.values()))), fmt(median(list(t.values()))),
                fmt(min(ratios), 2) if ratios else "-", fmt(median(ratios), 2),
                fmt(max(ratios), 2) if ratios else "-", len(ratios) or len(r)))
    return out + [""]


def lever_table(groups, base="t1-bucketed-b64"):
    """Each setting's training samples/s against `base`, per side (median over rounds)."""
    settings = sorted({s for s, _ in groups if s != base}, key=setting_order)
    if not settings or not any(s == base for s, _ in groups):
        return []
    out = [f"## Levers: training samples/s against `{base}`", "",
           "Each side's median over rounds divided by its own median at the base setting.", "",
           "| setting | " + " | ".join(f"{a} runner | {a} PyTorch" for a in ARCHS) + " |",
           "|---|" + "---|" * (2 * len(ARCHS))]
    def med(setting, arch, side):
        rows = groups.get((setting, arch), {}).get(side, [])
        return median([float(r["train_samples_per_s"]) for _, r in rows])
    for setting in settings:
        cells = []
        for arch in ARCHS:
            for side in ("runner", "torch"):
                cells.append(fmt(med(setting, arch, side) / med(base, arch, side), 2))
        out.append(f"| {setting} | " + " | ".join(cells) + " |")
    return out + [""]


ARCHS = ("gru", "lstm", "tra", "gpt", "ber")


def setting_order(s):
    return (not s.startswith("t1-"), not s.startswith("t2-"), s)


def accuracy(raw):
    rows = []
    score = f"{raw}/score.md"
    if not os.path.exists(score):
        return []
    runner = defaultdict(list)
    with open(score) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 9 and cells[0].endswith("_1min"):
                arch = cells[0].split("_")[0]
                runner[arch].append((cells[5], cells[3].split(" ")[0]))
    torch_rows = defaultdict(list)
    if os.path.exists(f"{raw}/torch-train.jsonl"):
        with open(f"{raw}/torch-train.jsonl") as f:
            for line in f:
                row = json.loads(line)
                to99 = "-" if row["s_to_99"] is None else f"{row['s_to_99']:.1f}"
                torch_rows[row["arch"]].append((to99, f"{row['fresh_exact']:.4f}"))
    out = ["## Time to 99% validation exact match (`*_1min` configs)", "",
           "Wall seconds until the first evaluation at or above 99% (evaluations every "
           "`train.eval_every`; `-`: never within the minute) and exact match of the best checkpoint on the "
           "run's 1000 fresh examples. PyTorch trains on each runner run's own data, settings "
           "and seed.", "",
           "| arch | runner s to 99% | runner fresh exact | PyTorch s to 99% | PyTorch fresh exact |",
           "|---|---|---|---|---|"]
    for arch in ("gru", "lstm", "tra", "gpt", "ber"):
        if arch in runner or arch in torch_rows:
            r, t = runner.get(arch, []), torch_rows.get(arch, [])
            out.append("| {} | {} | {} | {} | {} |".format(
                arch, " / ".join(x for x, _ in r), " / ".join(y for _, y in r),
                " / ".join(x for x, _ in t), " / ".join(y for _, y in t)))
    refused = f"{raw}/torch-refused.txt"
    if os.path.exists(refused):
        with open(refused) as f:
            runs = [line.strip() for line in f if line.strip()]
        out += ["", "PyTorch did not train on " + ", ".join(f"`{r}`" for r in runs)
                + ": the reference stopped with an error (a setting it does not implement is named in"
                " its message, in the log)."]
    return out + [""]


def main():
    raw = sys.argv[1]
    out = ["# Side by side: runner and PyTorch", ""]
    if os.path.exists(f"{raw}/machine.txt"):
        with open(f"{raw}/machine.txt") as f:
            out += ["```", f.read().rstrip(), "```", ""]
    groups = throughput(raw)
    if groups:
        out += ["Settings: `t<threads>-<batching>-b<batch size>[-<device>]`; `bucketed` batches hold "
                "records of similar length, each trimmed to its longest; `pad48` pads every "
                "batch to 48 positions (the origin project's fixed length).", ""]
        out += throughput_tables(groups, "train_samples_per_s", "Training throughput",
                                 "samples/s")
        out += throughput_tables(groups, "eval_examples_per_s",
                                 "Greedy decoding of 1000 examples", "examples/s")
        out += lever_table(groups)
    out += accuracy(raw)
    print("\n".join(out))


if __name__ == "__main__":
    main()
