#!/usr/bin/env bash
# Runs every shipped config of one budget (default: 1min), scores each best checkpoint on
# 1000 fresh examples of its own distribution, and writes bench/score-<budget>.md.
#   scripts/bench.sh            # the five *_1min configs, one after another (~6 min)
#   scripts/bench.sh 1min 3     # each with 3 seeds (~15 min): time to 99% and its spread
#   scripts/bench.sh 10min      # the five *_10min configs (up to ~50 min)
# Runs are sequential: timings of runs sharing the 2 cores would not mean anything.
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-1min}"
seeds="${2:-1}"
cargo build --release --quiet
configs=(configs/gru_"$budget".toml configs/lstm_"$budget".toml configs/tra_"$budget".toml
         configs/gpt_"$budget".toml configs/ber_"$budget".toml)
mkdir -p bench
suffix=$([ "$seeds" = 1 ] && echo "" || echo "-${seeds}seeds")
./target/release/runner score "${configs[@]}" --fresh 1000 --seeds "$seeds" --out "bench/score-$budget$suffix.md"
