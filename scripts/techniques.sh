#!/usr/bin/env bash
# The techniques benchmark (docs/techniques.md): each technique's config against training
# from scratch, over several seeds, with step-based budgets so that what a run learns does
# not depend on how busy the machine is. For every run: steps and seconds to 99% validation
# exact match, exact match on 1000 fresh examples, and `runner eval --suite` (longer and
# deeper prefixes). Runs one at a time: their seconds mean something only alone.
#
#   scripts/techniques.sh [SEEDS]          # default 3; writes bench/techniques-<stamp>/
#   ONLY="lora curriculum" scripts/techniques.sh 3   # some groups (pretrain runs first when needed)
#
# Groups: transfer (LM pretraining, scored zero-shot on closing too -> finetune vs scratch
# at 300, 1000, 20000 examples),
# lora (ranks 1, 4, 16 on the pretrained base), freeze (finetune with the embedding frozen),
# curriculum (curriculum_gru vs gru_1min, scored on 2x longer prefixes).
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-3}
ONLY=${ONLY:-transfer lora freeze curriculum}
OUT=${OUT:-bench/techniques-$(date +%Y%m%d-%H%M%S)}
cargo build --release --quiet
RUNNER=$PWD/target/release/runner
mkdir -p "$OUT"
{
  echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "command:  scripts/techniques.sh $SEEDS (ONLY=$ONLY)"
  echo "commit:   $(git rev-parse --short HEAD)"
  echo "cpu:      $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
} > "$OUT/machine.txt"

# Step-based: gpt at 64 per batch needs ~700 steps to 99% from scratch on 20000 examples.
GPT_STEPS=${GPT_STEPS:-"train.max_steps=1200 train.eval_every=50 train.budget=10min"}
GRU_STEPS=${GRU_STEPS:-"train.max_steps=2000 train.eval_every=50 train.budget=10min"}

# run NAME CONFIG [OVERRIDES...]: one run into $OUT/NAME, then its fresh and suite scores.
run() {
  local name=$1 config=$2
  shift 2
  echo "$(date +%H:%M:%S) $name" >&2
  "$RUNNER" run "$config" experiment.name="$name" experiment.out_dir="$OUT" "$@" \
    > "$OUT/$name.out" 2>> "$OUT/log.txt"
  local dir
  dir=$(sed -n 's/^run directory: //p' "$OUT/$name.out")
  # A language model is scored zero-shot (it continues input + prefix); no suite for it.
  "$RUNNER" eval "$dir" --samples 1000 --json > "$dir/fresh.json" 2>> "$OUT/log.txt"
  if grep -q '"test_exact": [0-9]' "$dir/summary.json"; then
    "$RUNNER" eval "$dir" --suite --samples 500 > /dev/null 2>> "$OUT/log.txt"
  fi
}

has() { [[ " $ONLY " == *" $1 "* ]]; }

for seed in $(seq 1 "$SEEDS"); do
  if has transfer || has lora || has freeze; then
    run "lm-s$seed" configs/techniques/pretrain_gpt_lm.toml experiment.seed="$seed" $GPT_STEPS
  fi
  lm="model.init_from=\"$OUT/lm-s$seed\""
  if has transfer; then
    for n in 300 1000 20000; do
      run "scratch-n$n-s$seed" configs/gpt_1min.toml experiment.seed="$seed" data.train_samples=$n $GPT_STEPS
      run "finetune-n$n-s$seed" configs/techniques/finetune_gpt_from_lm.toml experiment.seed="$seed" data.train_samples=$n "$lm" $GPT_STEPS
    done
    # LoRA trains at 1e-2 (lora_gpt.toml): full training at that rate too, to tell the two apart.
    run "scratch-n1000-lr1e-2-s$seed" configs/gpt_1min.toml experiment.seed="$seed" data.train_samples=1000 train.lr=1e-2 $GPT_STEPS
    run "finetune-n1000-lr1e-2-s$seed" configs/techniques/finetune_gpt_from_lm.toml experiment.seed="$seed" "$lm" train.lr=1e-2 $GPT_STEPS
  fi
  if has lora; then
    for r in 1 4 16; do
      run "lora-r$r-s$seed" configs/techniques/lora_gpt.toml experiment.seed="$seed" "$lm" \
        "model.lora={ rank = $r, alpha = $((2 * r)), targets = [\"attn\", \"ff\"] }" $GPT_STEPS
    done
  fi
  if has freeze; then
    run "freeze-embed-n1000-s$seed" configs/techniques/finetune_gpt_from_lm.toml experiment.seed="$seed" "$lm" \
      'train.freeze=["embed"]' $GPT_STEPS
  fi
  if has curriculum; then
    run "gru-s$seed" configs/gru_1min.toml experiment.seed="$seed" $GRU_STEPS
    run "curriculum-s$seed" configs/techniques/curriculum_gru.toml experiment.seed="$seed" $GRU_STEPS
  fi
done
python3 scripts/techniques/report.py "$OUT" | tee "$OUT/report.md"
echo "wrote $OUT/report.md"
