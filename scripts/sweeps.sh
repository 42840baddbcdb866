#!/usr/bin/env bash
# The sampler benchmark (docs/sweeps.md): the same search space and trial budget under
# runner TPE, runner random search, and Optuna's own TPE driving `runner run`, over several
# study seeds. Trials are step-based (train.max_steps), so their results do not depend on
# how busy the machine is; two studies run at a time, one per core.
#
#   scripts/sweeps.sh [SEEDS] [TRIALS]      # default 3 seeds, 20 trials
#   SAMPLERS="tpe-multivariate" OUT=bench/sweeps-X scripts/sweeps.sh 10 30   # some, into X
#
# Samplers: tpe (runner, univariate: sweep.multivariate = false), tpe-multivariate (runner's
# default), random, optuna-tpe.
# Optuna is installed into scripts/sweeps/.venv on first use (never needed by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-3}
TRIALS=${2:-20}
SPEC=scripts/sweeps/search_gru_short.toml
SAMPLERS=${SAMPLERS:-tpe tpe-multivariate random optuna-tpe}
OUT=${OUT:-bench/sweeps-$(date +%Y%m%d-%H%M%S)}
# The spec holds the space, the step-based trial budget and the pruner settings; Optuna's
# script reads the same space and gets the same pruner settings (median, 5 start-up trials,
# judged from the third evaluation on).

cargo build --release
RUNNER=$PWD/target/release/runner
VENV=scripts/sweeps/.venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q optuna==5.0.0
fi
mkdir -p "$OUT"

jobs=()
for seed in $(seq 1 "$SEEDS"); do
  for sampler in $SAMPLERS; do
    study="sweep.seed=$seed sweep.trials=$TRIALS experiment.name=$sampler-s$seed experiment.out_dir=$OUT"
    case $sampler in
      tpe) jobs+=("$RUNNER sweep $SPEC sweep.sampler=tpe sweep.multivariate=false $study") ;;
      random) jobs+=("$RUNNER sweep $SPEC sweep.sampler=random $study") ;;
      tpe-multivariate) jobs+=("$RUNNER sweep $SPEC sweep.sampler=tpe sweep.multivariate=true $study") ;;
      optuna-tpe) jobs+=("$VENV/bin/python scripts/sweeps/optuna_search.py --runner $RUNNER --spec $SPEC --trials $TRIALS --seed $seed --startup 5 --warmup-evals 2 --out $OUT/optuna-tpe-s$seed") ;;
      *) echo "unknown sampler '$sampler' (tpe, tpe-multivariate, random, optuna-tpe)" >&2; exit 2 ;;
    esac
  done
done
printf '%s\n' "${jobs[@]}" | xargs -P 2 -I{} sh -c '{} > /dev/null 2>>'"$OUT"'/log.txt'
"$VENV/bin/python" scripts/sweeps/report.py "$OUT" | tee "$OUT/report.md"
echo "wrote $OUT/report.md"
