#!/usr/bin/env bash
# What a run learns from (docs/techniques.md, part two), step-based so that what a run
# learns does not depend on how busy the machine is:
#   rules:     gru_1min's settings at 300, 1000 and 20000 training examples, with and
#              without configs/techniques/rules_gru_300.toml's rules in the loss;
#   reinforce: REINFORCE as a fine-tune of each seed's 20000-example run (500 steps,
#              lr 1e-4), and from scratch with partial credit (2000 steps);
# each scored on 1000 fresh examples and by `runner eval --suite` (longer, deeper).
#
#   scripts/objectives.sh [SEEDS]          # default 3; writes bench/objectives-<stamp>/
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-3}
ONLY=${ONLY:-rules reinforce}
OUT=${OUT:-bench/objectives-$(date +%Y%m%d-%H%M%S)}
cargo build --release --quiet
RUNNER=$PWD/target/release/runner
mkdir -p "$OUT"
{
  echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "command:  scripts/objectives.sh $SEEDS (ONLY=$ONLY)"
  echo "commit:   $(git rev-parse --short HEAD)"
  echo "cpu:      $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
} > "$OUT/machine.txt"
STEPS="train.max_steps=1500 train.eval_every=50 train.budget=20min"

# run NAME CONFIG [OVERRIDES...]: one run into $OUT/NAME, scored fresh and by the suite.
run() {
  local name=$1 config=$2
  shift 2
  echo "$(date +%H:%M:%S) $name" >&2
  "$RUNNER" run "$config" experiment.name="$name" experiment.out_dir="$OUT" "$@" \
    > "$OUT/$name.out" 2>> "$OUT/log.txt"
  local dir
  dir=$(sed -n 's/^run directory: //p' "$OUT/$name.out")
  "$RUNNER" eval "$dir" --samples 1000 --json > "$dir/fresh.json" 2>> "$OUT/log.txt"
  "$RUNNER" eval "$dir" --suite --samples 500 > /dev/null 2>> "$OUT/log.txt"
}

has() { [[ " $ONLY " == *" $1 "* ]]; }

for seed in $(seq 1 "$SEEDS"); do
  for n in 300 1000 20000; do
    if has rules || { has reinforce && [[ $n == 20000 ]]; }; then
      run "plain-n$n-s$seed" configs/gru_1min.toml experiment.seed="$seed" data.train_samples=$n $STEPS
    fi
    if has rules; then
      run "rules-n$n-s$seed" configs/techniques/rules_gru_300.toml experiment.seed="$seed" data.train_samples=$n $STEPS
    fi
  done
  if has reinforce; then
    run "reinforce-finetune-s$seed" configs/techniques/reinforce_gru.toml experiment.seed="$seed" \
      model.init_from="\"$OUT/plain-n20000-s$seed\"" train.max_steps=500 train.eval_every=50 train.budget=20min
    run "reinforce-scratch-s$seed" configs/techniques/reinforce_gru.toml experiment.seed="$seed" \
      model.init_from='""' train.partial_credit=true train.lr=3e-3 train.warmup_steps=100 \
      train.max_steps=2000 train.eval_every=50 train.budget=20min
  fi
done
python3 scripts/techniques/report.py "$OUT" | tee "$OUT/report.md"
echo "wrote $OUT/report.md"
