#!/usr/bin/env bash
# Text mode measured: trains the shipped text config (or the one given), then writes three
# greedy and three sampled (temperature 0.8, top-k 40) continuations, and cross-checks the
# Hugging Face export with transformers (scripts/check_hf_export.sh). Results in
# bench/text-<stamp>/: report.md, the run's metrics.csv and summary.json.
#
#   scripts/text.sh [CONFIG] [OVERRIDES...]     # default configs/text/gpt_kjv_10min.toml (~11 min)
#   scripts/text.sh --report RUN_DIR            # only the samples and the check, for a run
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
runner=./target/release/runner
if [ "${1:-}" = "--report" ]; then
    run="${2:?usage: scripts/text.sh --report RUN_DIR}"
    out="bench/text-report-$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$out"
    config="$run/resolved.toml"
    set --
else
    config="${1:-configs/text/gpt_kjv_10min.toml}"
    shift || true
    out="bench/text-$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$out"
    "$runner" run "$config" experiment.out_dir="\"$out/runs\"" "$@" | tee "$out/run.txt"
    run=$(sed -n 's/^run directory: //p' "$out/run.txt")
fi
cp "$run/metrics.csv" "$run/summary.json" "$out/"
"$runner" compare "$run" --plot "$out/curves.png" > /dev/null
"$runner" compare "$run" --x step --plot "$out/curves_by_step.png" > /dev/null
prompts=("And God said" "Ge2:1" "Moses")
{
    echo "# Text mode: $config"
    echo
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "command: scripts/text.sh $config $*"
    echo
    if [ -f "$out/run.txt" ]; then
        echo '```'
        cat "$out/run.txt"
        echo '```'
    fi
    echo
    echo "## metrics.csv"
    echo
    echo '```'
    cat "$run/metrics.csv"
    echo '```'
    echo
    echo "## Greedy (temperature 0), 60 new tokens"
    for p in "${prompts[@]}"; do
        echo
        echo '```'
        "$runner" generate "$run" --prompt "$p" --max-new-tokens 60
        echo '```'
    done
    echo
    echo "## Temperature 0.8, top-k 40, seed 1, 60 new tokens"
    for p in "${prompts[@]}"; do
        echo
        echo '```'
        "$runner" generate "$run" --prompt "$p" --max-new-tokens 60 --temperature 0.8 --top-k 40 --seed 1
        echo '```'
    done
    echo
    echo "## Hugging Face export, checked with transformers"
    echo
    scripts/check_hf_export.sh "$run"
} > "$out/report.md"
echo "wrote $out/report.md"
