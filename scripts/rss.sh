#!/usr/bin/env bash
# Memory over a long run: peak RSS of a small GRU run stopped at 2k steps against the same
# run stopped at 20k steps (evaluating and checkpointing every 200 steps throughout).
# Target: the 20k-step peak within 10% of the 2k-step peak.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
peak() {
  /usr/bin/time -v ./target/release/runner run configs/gru_1min.toml \
    experiment.out_dir="\"$work\"" train.budget='"1h"' data.max_len=40 data.max_depth=12 \
    data.train_samples=2000 data.val_samples=2000 model.d_hidden=64 train.eval_every=200 "train.max_steps=$1" \
    2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/ {print $2}'
}
small=$(peak 2000)
large=$(peak 20000)
ratio=$(awk -v a="$large" -v b="$small" 'BEGIN { printf "%.3f", a / b }')
echo "peak RSS: 2k steps ${small} KiB, 20k steps ${large} KiB, ratio ${ratio}"
awk -v r="$ratio" 'BEGIN { exit !(r <= 1.10) }' && echo "rss: ok (within 10%)"
