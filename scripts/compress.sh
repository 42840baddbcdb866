#!/usr/bin/env bash
# The compression and augmentation benchmark (docs/techniques.md, part two), step-based so
# that what a run learns does not depend on how busy the machine is:
#   quantize: each architecture's 1min config trained for a fixed number of steps, then
#             `runner quantize --scheme int8` and `int4` (file size, exact match, agreement,
#             decoding speed on 1000 fresh examples);
#   prune:    gru and gpt at sparsities 0.3-0.95, straight after pruning and after 200
#             fine-tuning steps with the pruned weights held at zero;
#   augment:  tra_1min against augment_tra and against label smoothing 0.1, scored on fresh
#             examples and by `runner eval --suite` (longer, deeper prefixes);
#   mix:      gru_1min (which reads prefixes of any length) plain, with mix_lengths and
#             with permute_pairs, 2000 steps, scored the same way.
#
#   scripts/compress.sh [SEEDS]            # default 3; writes bench/compress-<stamp>/
#   ONLY="quantize prune" scripts/compress.sh 1
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-3}
ONLY=${ONLY:-quantize prune augment mix}
OUT=${OUT:-bench/compress-$(date +%Y%m%d-%H%M%S)}
cargo build --release --quiet
RUNNER=$PWD/target/release/runner
mkdir -p "$OUT"
{
  echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "command:  scripts/compress.sh $SEEDS (ONLY=$ONLY)"
  echo "commit:   $(git rev-parse --short HEAD)"
  echo "cpu:      $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
} >> "$OUT/machine.txt"   # one block per invocation into the same OUT

# Steps per architecture: about what each 1min config reaches in a minute here.
steps() {
  case $1 in
    gru | lstm) echo 2000 ;;
    tra) echo 1500 ;;
    gpt | ber) echo 1200 ;;
  esac
}

# run NAME CONFIG [OVERRIDES...]: one run into $OUT/NAME; prints its run directory.
run() {
  local name=$1 config=$2
  shift 2
  echo "$(date +%H:%M:%S) $name" >&2
  "$RUNNER" run "$config" experiment.name="$name" experiment.out_dir="$OUT" \
    train.eval_every=50 train.budget=20min train.decay_over= "$@" \
    > "$OUT/$name.out" 2>> "$OUT/log.txt"
  sed -n 's/^run directory: //p' "$OUT/$name.out"
}

has() { [[ " $ONLY " == *" $1 "* ]]; }

for seed in $(seq 1 "$SEEDS"); do
  for arch in gru lstm tra gpt ber; do
    if has quantize || { has prune && [[ $arch == gru || $arch == gpt ]]; }; then
      dir=$(run "$arch-s$seed" "configs/${arch}_1min.toml" experiment.seed="$seed" train.max_steps="$(steps $arch)")
      if has quantize; then
        for scheme in int8 int4; do
          "$RUNNER" quantize "$dir" --scheme $scheme --samples 1000 --json > "$dir/quantize-$scheme.json" 2>> "$OUT/log.txt"
        done
      fi
      if has prune && [[ $arch == gru || $arch == gpt ]]; then
        "$RUNNER" prune "$dir" --sparsity 0.3,0.5,0.7,0.8,0.9,0.95 --finetune-steps 200 --samples 1000 \
          > /dev/null 2>> "$OUT/log.txt"
      fi
    fi
  done
  if has mix; then
    for variant in plain mix_lengths permute_pairs; do
      if [[ $variant == plain ]]; then augment='train.augment=[]'; else augment="train.augment=[\"$variant\"]"; fi
      dir=$(run "gru-$variant-s$seed" configs/gru_1min.toml experiment.seed="$seed" train.max_steps=2000 "$augment")
      "$RUNNER" eval "$dir" --samples 1000 --json > "$dir/fresh.json" 2>> "$OUT/log.txt"
      "$RUNNER" eval "$dir" --suite --samples 500 > /dev/null 2>> "$OUT/log.txt"
    done
  fi
  if has augment; then
    for variant in plain augment smoothing; do
      case $variant in
        plain) dir=$(run "tra-plain-s$seed" configs/tra_1min.toml experiment.seed="$seed" train.max_steps=1500) ;;
        augment) dir=$(run "tra-augment-s$seed" configs/techniques/augment_tra.toml experiment.seed="$seed" train.max_steps=1500) ;;
        smoothing) dir=$(run "tra-smoothing-s$seed" configs/tra_1min.toml experiment.seed="$seed" train.max_steps=1500 train.label_smoothing=0.1) ;;
      esac
      "$RUNNER" eval "$dir" --samples 1000 --json > "$dir/fresh.json" 2>> "$OUT/log.txt"
      "$RUNNER" eval "$dir" --suite --samples 500 > /dev/null 2>> "$OUT/log.txt"
    done
  fi
done
python3 scripts/compress/report.py "$OUT" | tee "$OUT/report.md"
echo "wrote $OUT/report.md"
