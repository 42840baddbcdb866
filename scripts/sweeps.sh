#!/usr/bin/env bash
# The sampler benchmark (docs/sweeps.md): the same search space and trial budget under
# runner TPE, runner random search, and Optuna's own TPE driving `runner run`, over several
# study seeds. Trials are step-based (train.max_steps), so their results do not depend on
# how busy the machine is; two studies run at a time, one per core.
#
#   scripts/sweeps.sh [SEEDS] [TRIALS]      # default 3 seeds, 20 trials
#
# Optuna is installed into scripts/sweeps/.venv on first use (never needed by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-3}
TRIALS=${2:-20}
SPEC=configs/search_gru.toml
OUT=bench/sweeps-$(date +%Y%m%d-%H%M%S)
# Short, reproducible trials: 200 steps, an evaluation every 40 (5 in all); the pruner
# judges from the third evaluation on, as Optuna's MedianPruner with n_warmup_steps=2 does.
COMMON=(train.max_steps=200 train.eval_every=40 'train.budget="10min"')
PRUNE=(sweep.pruner=median sweep.startup_trials=5 sweep.prune_warmup_evals=2)

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
  for sampler in tpe random; do
    jobs+=("$RUNNER sweep $SPEC ${COMMON[*]} ${PRUNE[*]} sweep.sampler=$sampler sweep.seed=$seed sweep.trials=$TRIALS experiment.name=$sampler-s$seed experiment.out_dir=$OUT")
  done
  args=""
  for c in "${COMMON[@]}"; do args+=" --set $c"; done
  jobs+=("$VENV/bin/python scripts/sweeps/optuna_search.py --runner $RUNNER --spec $SPEC --trials $TRIALS --seed $seed --startup 5 --warmup-evals 2 --out $OUT/optuna-tpe-s$seed$args")
done
printf '%s\n' "${jobs[@]}" | xargs -P 2 -I{} sh -c '{} > /dev/null 2>>'"$OUT"'/log.txt'
"$VENV/bin/python" scripts/sweeps/report.py "$OUT" | tee "$OUT/report.md"
echo "wrote $OUT/report.md"
