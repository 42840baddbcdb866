#!/usr/bin/env bash
# The generalisation benchmark (docs/generalisation.md): did a model learn the rule, or the
# training set? Each run trains on its config's data, then is scored on 1000 fresh examples
# of that data and by `runner eval --suite` (1000 each: same distribution, prefixes twice
# as long, deeper prefixes). Runs go JOBS at a time, one thread each (default 2 on this
# 2-core machine: seconds to 99% are then those of a machine with a neighbour).
#
#   scripts/generalise.sh [SEEDS]                 # default 3; writes bench/generalise-<stamp>/
#   FIRST_SEED=2 scripts/generalise.sh 3          # seeds 2-3 only (seed 1 ran before)
#   ONLY="best dyck4" scripts/generalise.sh 3   # some groups
#   OUT=bench/generalise-x scripts/generalise.sh  # add to (or finish) an earlier directory
#   scripts/generalise.sh --report DIR            # only the tables, from what DIR holds
#   ADD=bench/x.csv scripts/generalise.sh ...     # the tables also count an earlier CSV's runs
#
# Groups: schemes (each *_1min config, the attention ones under every position scheme, and the
# stack model with a GRU controller; step-based, STEPS_<arch> steps, so that the table does
# not depend on the machine's speed or on the neighbouring run),
# best (configs/generalise/*.toml but Dyck-4's), dyck4 (configs/generalise/dyck4_*.toml and
# configs/dyck4_10min.toml, scored on 1000 fresh Dyck-4 examples; no suite, whose deeper
# set would reach depth 60), dyck4_schemes (the schemes group's runs on Dyck-4 data: its
# column of the scheme table).
set -euo pipefail
cd "$(dirname "$0")/.."
# The run directories (checkpoints, datasets: ~1.6 GB for 3 seeds) stay out of git; the
# tables and one row per run go to bench/<dir>.md and bench/<dir>.csv.
report() {
  local add=()
  for csv in ${ADD:-}; do add+=(--add "$csv"); done
  python3 scripts/generalise/report.py "$1" "${add[@]}" | tee "$1/report.md" > "$1.md"
  python3 scripts/generalise/report.py "$1" --csv > "$1.csv"
  cat "$1.md"
}
if [[ ${1:-} == --report ]]; then
  report "${2%/}"
  exit 0
fi
SEEDS=${1:-3}
FIRST_SEED=${FIRST_SEED:-1}
ONLY=${ONLY:-schemes best dyck4 dyck4_schemes}
JOBS=${JOBS:-2}
OUT=${OUT:-bench/generalise-$(date +%Y%m%d-%H%M%S)}
cargo build --release --quiet
RUNNER=$PWD/target/release/runner
mkdir -p "$OUT"
{
  echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "command:  scripts/generalise.sh $SEEDS (FIRST_SEED=$FIRST_SEED, ONLY=$ONLY, JOBS=$JOBS)"
  echo "commit:   $(git rev-parse --short HEAD)"
  echo "cpu:      $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
} >> "$OUT/machine.txt"

# run NAME SUITE CONFIG [OVERRIDES...]: one run into $OUT/NAME (skipped when it finished
# before), its 1000 fresh examples, and the suite when SUITE is "suite".
run() {
  set -euo pipefail
  local name=${1:?a run name} suite=${2:?suite or fresh} config=${3:?a config}
  shift 3
  if compgen -G "$OUT/$name/*/fresh.json" > /dev/null; then
    return 0
  fi
  rm -rf "${OUT:?}/${name:?}"
  echo "$(date +%H:%M:%S) $name" >&2
  "$RUNNER" run "$config" experiment.name="$name" experiment.out_dir="$OUT" experiment.threads=1 "$@" \
    > "$OUT/$name.out" 2>> "$OUT/log.txt"
  local dir
  dir=$(sed -n 's/^run directory: //p' "$OUT/$name.out")
  if [[ $suite == suite ]]; then
    "$RUNNER" eval "$dir" --suite --samples 1000 > /dev/null 2>> "$OUT/log.txt"
  fi
  "$RUNNER" eval "$dir" --samples 1000 --json > "$dir/fresh.json.part" 2>> "$OUT/log.txt"
  mv "$dir/fresh.json.part" "$dir/fresh.json"
}
export -f run
export OUT RUNNER

has() { [[ " $ONLY " == *" $1 "* ]]; }

# Steps per architecture in the schemes group: about what each *_1min config trains in its
# minute alone on this machine, and the same for every scheme of one architecture.
declare -A STEPS=([gru]=2000 [lstm]=1500 [stack]=2000 [gpt]=1200 [tra]=4000 [ber]=3000)
# tra_1min and ber_1min anneal over their first 30 s (train.decay_over): step-based, the decay
# runs over the steps instead.
steps() {
  local decay=""
  [[ $1 == tra || $1 == ber ]] && decay=" train.decay_over="
  echo "train.max_steps=${STEPS[$1]} train.eval_every=50 train.budget=10min$decay"
}

# The same runs on Dyck-4 (configs/dyck4_10min.toml's data), with the same steps: a run sees
# the same number of examples as on the default task, each about five times as long.
# (Quoted for xargs, which would strip the inner quotes.)
DYCK4="'data.pairs=[\"()\",\"[]\",\"{}\",\"<>\"]' data.max_len=100 data.max_depth=30 data.train_samples=100000 data.val_samples=1000"
dyck4_steps() {
  # Validation on 1000 long records costs a second or more: every 100 steps.
  echo "$DYCK4 $(steps "$1") train.eval_every=100"
}

# One line per run: NAME SUITE CONFIG OVERRIDES...
jobs_list() {
  for seed in $(seq "$FIRST_SEED" "$SEEDS"); do
    if has schemes; then
      for arch in gru lstm stack; do
        echo "$arch-s$seed suite configs/${arch}_1min.toml experiment.seed=$seed $(steps $arch)"
      done
      echo "stack-gru-s$seed suite configs/stack_1min.toml experiment.seed=$seed $(steps stack) model.stack_controller=gru"
      for arch in gpt ber tra; do
        for pos in learned sinusoidal rope alibi none; do
          echo "$arch-$pos-s$seed suite configs/${arch}_1min.toml experiment.seed=$seed $(steps $arch) model.pos_encoding=$pos"
        done
      done
    fi
    if has dyck4_schemes; then
      for arch in gru lstm stack; do
        echo "dyck4-$arch-s$seed fresh configs/${arch}_1min.toml experiment.seed=$seed $(dyck4_steps $arch)"
      done
      for arch in gpt ber tra; do
        for pos in learned sinusoidal rope alibi none; do
          echo "dyck4-$arch-$pos-s$seed fresh configs/${arch}_1min.toml experiment.seed=$seed $(dyck4_steps $arch) model.pos_encoding=$pos"
        done
      done
    fi
    if has best; then
      for config in configs/generalise/*.toml; do
        [[ $config == */dyck4_* ]] && continue
        echo "best-$(basename "$config" .toml)-s$seed suite $config experiment.seed=$seed"
      done
    fi
    if has dyck4; then
      for config in configs/generalise/dyck4_*.toml configs/dyck4_10min.toml; do
        echo "$(basename "$config" .toml)-s$seed fresh $config experiment.seed=$seed"
      done
    fi
  done
}

jobs_list | xargs -r -P "$JOBS" -L 1 bash -c 'run "$@"' _ || echo "some runs failed: see $OUT/log.txt" >&2
report "${OUT%/}"
echo "wrote ${OUT%/}.md and ${OUT%/}.csv"
