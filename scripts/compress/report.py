"""The compression benchmark's tables (docs/techniques.md), from what scripts/compress.sh ran.

Usage: report.py DIR   (DIR holds <arch>-s<seed>/<run-id>/ and tra-<variant>-s<seed>/<run-id>/)

Quantisation, per architecture and scheme: model file size, exact match of the float and
the quantised model on the same 1000 fresh examples, their agreement, decoding speed.
Pruning, per architecture and sparsity: exact match straight after pruning and after the
fine-tune. Augmentation: fresh exact match and `eval --suite` on longer and deeper prefixes.
Each cell is the median over seeds, with the range in brackets.
"""

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "techniques"))
from report import cell, suite  # noqa: E402  (the techniques report's median-and-range cell)

ARCHS = ["gru", "lstm", "tra", "gpt", "ber"]


def runs(root, prefix):
    """(seed, run dir) of every <prefix>-s<seed>/<run-id>/."""
    found = []
    for cond in sorted(p for p in root.glob(f"{prefix}-s*") if p.is_dir()):
        seed = cond.name.rpartition("-s")[2]
        for run in sorted(cond.iterdir()):
            if (run / "summary.json").exists():
                found.append((int(seed), run))
    return found


def quantize_table(root):
    print("## Quantisation\n")
    print("| arch | scheme | file KiB (float -> quantised) | exact float | exact quantised | agreement | decodes/s float -> quantised |")
    print("|---|---|---|---|---|---|---|")
    for arch in ARCHS:
        for scheme in ["int8", "int4"]:
            reports = [json.load(open(p)) for _, run in runs(root, arch)
                       if (p := run / f"quantize-{scheme}.json").exists()]
            if not reports:
                continue
            col = lambda key: [r[key] for r in reports]
            kib = lambda key: [r[key] / 1024 for r in reports]
            print(f"| {arch} | {scheme} | {cell(kib('file_bytes_float'), 0)} -> {cell(kib('file_bytes_quantized'), 0)} "
                  f"| {cell(col('exact_float'), 4)} | {cell(col('exact_quantized'), 4)} | {cell(col('agreement'), 4)} "
                  f"| {cell(col('decode_per_s_float'), 0)} -> {cell(col('decode_per_s_quantized'), 0)} |")
    print()


def prune_table(root):
    print("## Pruning (global magnitude, unstructured; fine-tune: 200 steps, pruned weights held at zero)\n")
    print("| arch | sparsity | exact after pruning | exact after fine-tune | sparsity after fine-tune |")
    print("|---|---|---|---|---|")
    for arch in ["gru", "gpt"]:
        by_sparsity = defaultdict(list)
        for _, run in runs(root, arch):
            path = run / "prune" / "prune.csv"
            if not path.exists():
                continue
            for r in csv.DictReader(open(path, newline="")):
                by_sparsity[float(r["sparsity"])].append(r)
        for s, rows in sorted(by_sparsity.items()):
            num = lambda key: [float(r[key]) for r in rows if r[key]]
            print(f"| {arch} | {s} | {cell(num('exact'), 4)} | {cell(num('exact_finetuned'), 4)} | {cell(num('sparsity_finetuned'), 3)} |")
    print()


def augment_table(root):
    print("## Augmentation and label smoothing (tra_1min settings, 1500 steps)\n")
    print("| variant | seeds | fresh exact (1000) | longer (len 21-40) | deeper (depth > 6) | final val_loss |")
    print("|---|---|---|---|---|---|")
    for variant in ["plain", "augment", "smoothing"]:
        found = runs(root, f"tra-{variant}")
        if not found:
            continue
        fresh, longer, deeper, loss = [], [], [], []
        for _, run in found:
            f = run / "fresh.json"
            fresh.append(json.load(open(f))["exact"] if f.exists() else None)
            s = suite(run)
            longer.append(s.get("longer"))
            deeper.append(s.get("deeper"))
            rows = list(csv.DictReader(open(run / "metrics.csv", newline="")))
            loss.append(float(rows[-1]["val_loss"]) if rows else None)
        print(f"| {variant} | {len(found)} | {cell(fresh, 4)} | {cell(longer, 4)} | {cell(deeper, 4)} | {cell(loss, 4)} |")
    print()


def mix_table(root):
    print("## Augmentation on gru (gru_1min settings, 2000 steps)\n")
    print("| variant | seeds | fresh exact (1000) | longer (len 21-40) | deeper (depth > 6) |")
    print("|---|---|---|---|---|")
    for variant in ["plain", "mix_lengths", "permute_pairs"]:
        found = runs(root, f"gru-{variant}")
        if not found:
            continue
        fresh = [json.load(open(r / "fresh.json"))["exact"] if (r / "fresh.json").exists() else None
                 for _, r in found]
        suites = [suite(r) for _, r in found]
        print(f"| {variant} | {len(found)} | {cell(fresh, 4)} | {cell([s.get('longer') for s in suites], 4)} "
              f"| {cell([s.get('deeper') for s in suites], 4)} |")
    print()


def main():
    root = Path(sys.argv[1])
    quantize_table(root)
    prune_table(root)
    augment_table(root)
    mix_table(root)


if __name__ == "__main__":
    main()
