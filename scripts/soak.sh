#!/usr/bin/env bash
# Soak: a 200-trial study of tiny trials run by `--jobs 2` and, at the same time, a second
# `runner sweep` process on the same study. Checks: exactly 200 trials, numbers 0..199 once
# each, no "database is locked" anywhere. Prints the figures for docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
runner="$PWD/target/release/runner"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/soak.toml" <<'SPEC'
[data]
train_samples = 200
val_samples = 30
test_samples = 30
[model]
d_embed = 8
d_hidden = 8
[train]
max_steps = 6
eval_every = 3
batch_size = 16
budget = "1min"
[sweep]
trials = 200
sampler = "random"
pruner = "none"
[sweep.space]
"train.lr" = { float = [1e-3, 1e-1], log = true }
"model.d_hidden" = { int = [4, 16] }
SPEC
cd "$work"
start=$(date +%s)
"$runner" sweep soak.toml --jobs 2 > a.out 2> a.err &
a=$!
"$runner" sweep soak.toml > b.out 2> b.err &
b=$!
wait $a; ra=$?
wait $b; rb=$?
end=$(date +%s)
rows=$(tail -n +2 experiments/soak/trials.csv | wc -l)
distinct=$(tail -n +2 experiments/soak/trials.csv | cut -d, -f1 | sort -un | wc -l)
complete=$(tail -n +2 experiments/soak/trials.csv | cut -d, -f2 | grep -c '^complete$' || true)
locked=$(cat ./*.err experiments/soak/worker-*.log 2>/dev/null | grep -ci 'locked' || true)
echo "exit codes: $ra $rb; wall: $((end - start)) s"
echo "trials.csv rows: $rows; distinct numbers: $distinct; complete: $complete; lock errors: $locked"
[ "$ra" = 0 ] && [ "$rb" = 0 ] && [ "$rows" = 200 ] && [ "$distinct" = 200 ] && [ "$locked" = 0 ]
echo "soak: ok"
