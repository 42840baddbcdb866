#!/usr/bin/env bash
# The full benchmark: training and decoding throughput of the runner side by side with a
# PyTorch reference of the same five models (scripts/reference/), and time to 99% validation
# for every *_1min config, runner and PyTorch, over three seeds. Writes
# bench/sidebyside-<stamp>.md (raw figures under bench/raw-<stamp>/).
#
#   scripts/bench.sh                    # throughput (3 rounds, 1 and 2 threads) + accuracy (~45 min)
#   scripts/bench.sh throughput [N]     # N alternating rounds of runner / PyTorch (default 3)
#   scripts/bench.sh levers [N]         # bucketing, padding, batch size, ndarray, ReLU (1 thread, ~15 min)
#   scripts/bench.sh accuracy [SEEDS]   # time to 99%: runner, then PyTorch on the same runs' data
#                                       # (SET="experiment.threads=2" overrides every config)
#   scripts/bench.sh score BUDGET [SEEDS]   # runner only: every BUDGET config on 1000 fresh examples
#   scripts/bench.sh kernels [N]        # gru, lstm: fused kernels and composed ops beside PyTorch, 1 and 2 threads
#   scripts/bench.sh ceiling            # single-thread matrix-product rates at a step's shapes: gemm, flex, PyTorch;
#                                       # which kernels PyTorch's LSTM and GRU steps run (torch.profiler)
#
# The PyTorch side installs itself into scripts/reference/.venv on first use (torch from PyPI,
# several GB); the runner's tests and CI never need it. Runs are sequential: timings of runs
# sharing the 2 cores would not mean anything.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
# ARCHS="gru lstm" scripts/bench.sh accuracy 3: only those architectures.
read -ra archs <<< "${ARCHS:-gru lstm tra gpt ber}"
venv=scripts/reference/.venv
torch_version="2.15.0"
stamp=$(date +%Y%m%d-%H%M%S)
raw="bench/raw-$stamp"

cargo build --release --quiet
runner=./target/release/runner

python_env() {
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
        echo "installing torch $torch_version into $venv (once)..." >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "torch==$torch_version"
    fi
}

machine() {
    mkdir -p "$raw"
    {
        echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "command:  ${SET:+SET=\"$SET\" }${ARCHS:+ARCHS=\"$ARCHS\" }scripts/bench.sh $*"
        echo "cpu:      $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores)"
        echo "memory:   $(free -g | awk '/Mem:/ {print $2}') GiB"
        echo "os:       $(uname -sr)"
        echo "runner:   $(git describe --always --dirty), $(rustc --version), burn 0.22.1 (flex)"
        echo "pytorch:  $("$venv/bin/python" -c 'import torch, sys; print(torch.__version__, "python", sys.version.split()[0])')"
        echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) at the start"
    } > "$raw/machine.txt"
}

# One round of one setting: runner bench (every arch, each in its own process), then the
# reference (every arch, one process each). $1 setting name, $2 round, $3 threads, $4
# batching, $5 pad-to, $6 batch size, $7 runner binary ("" = no PyTorch side), $8 device.
round() {
    local name="$1" n="$2" threads="$3" batching="$4" pad="$5" batch="$6" bin="${7:-$runner}" device="${8:-cpu}"
    local pytorch=$([ -z "${7:-}" ] && echo yes || echo no)
    run_runner() {
        "$bin" bench --threads "$threads" --batching "$batching" --pad-to "$pad" \
            --batch-size "$batch" --device "$device" --out "$raw/runner-$name-$n" \
            $(printf -- '--arch %s ' "${archs[@]}") >/dev/null
    }
    run_torch() {
        [ "$pytorch" = yes ] || return 0
        for arch in "${archs[@]}"; do
            "$venv/bin/python" scripts/reference/reference.py bench --arch "$arch" \
                --threads "$threads" --batching "$batching" --pad-to "$pad" \
                --batch-size "$batch" --pool "$raw/pool/train.jsonl"
        done >> "$raw/torch-$name-$n.jsonl"
    }
    # Alternate which side goes first, so a drift in machine speed hits both.
    if (( n % 2 )); then run_runner; run_torch; else run_torch; run_runner; fi
    echo "  $name round $n done" >&2
}

pool() {
    "$runner" data configs/gru_1min.toml data.train_samples=8192 --out "$raw/pool" >/dev/null
}

throughput() {
    local rounds="${1:-3}"
    for n in $(seq 1 "$rounds"); do
        for t in 1 2; do
            round "t$t-bucketed-b64" "$n" "$t" bucketed 0 64
        done
    done
}

levers() {
    local rounds="${1:-2}"
    cargo build --release --quiet --features ndarray
    cp ./target/release/runner "$raw/runner-with-ndarray"
    cargo build --release --quiet
    for n in $(seq 1 "$rounds"); do
        round "t1-bucketed-b64" "$n" 1 bucketed 0 64
        round "t1-shuffled-b64" "$n" 1 shuffled 0 64
        round "t1-shuffled-pad48-b64" "$n" 1 shuffled 48 64
        for b in 32 128; do
            round "t1-bucketed-b$b" "$n" 1 bucketed 0 "$b"
        done
        round "t1-bucketed-b64-ndarray" "$n" 1 bucketed 0 64 "$raw/runner-with-ndarray" ndarray
        # ReLU instead of GELU in the attention models' feed-forward blocks (runner only).
        "$runner" bench --arch tra --arch gpt --arch ber --set model.activation=relu \
            --out "$raw/runner-t1-bucketed-b64-relu-$n" >/dev/null
    done
}

# The fused recurrent kernels (experiment.kernels = fused, the default) against burn's
# composed operations, each round beside PyTorch.
kernels() {
    local rounds="${1:-3}"
    archs=(gru lstm)
    for n in $(seq 1 "$rounds"); do
        for t in 1 2; do
            round "t$t-bucketed-b64" "$n" "$t" bucketed 0 64
            "$runner" bench --arch gru --arch lstm --threads "$t" --set experiment.kernels=composed \
                --out "$raw/runner-t$t-bucketed-b64-composed-$n" >/dev/null
        done
    done
}

accuracy() {
    local seeds="${1:-3}" configs=() threads
    for arch in "${archs[@]}"; do configs+=("configs/${arch}_1min.toml"); done
    local sets=()
    for kv in ${SET:-}; do sets+=(--set "$kv"); done
    "$runner" score "${configs[@]}" "${sets[@]}" --fresh 1000 --seeds "$seeds" --out "$raw/score.md" |
        sed -n 's/ -> .*//p' > "$raw/runs.txt"
    # PyTorch at its faster thread count on this machine (the throughput rounds decide).
    threads="${TORCH_THREADS:-2}"
    # A run whose settings the reference does not implement is refused (one line naming the
    # key); the other runs still get their comparison, and the report lists the refused.
    while read -r run; do
        "$venv/bin/python" scripts/reference/reference.py train --run "$run" \
            --threads "$threads" --out "$raw/torch-train-$(basename "$(dirname "$run")")-$(basename "$run").csv" ||
            echo "$run" >> "$raw/torch-refused.txt"
    done < "$raw/runs.txt" >> "$raw/torch-train.jsonl"
}

ceiling() {
    local out="bench/ceiling-$stamp.md"
    {
        echo "# Single-thread f32 matrix products at a training step's shapes"
        echo
        echo '```'; cat "$raw/machine.txt"; echo '```'
        echo
        cargo run --release --quiet -p bracket-kernels --example gemm_rate
        echo
        "$venv/bin/python" scripts/reference/gemm_rate.py 2>/dev/null
        for arch in lstm gru; do
            echo
            echo "PyTorch's kernels in a $arch training step (torch.profiler, operators by own CPU time):"
            echo '```'
            "$venv/bin/python" scripts/reference/reference.py profile --arch "$arch" \
                --pool "$raw/pool/train.jsonl" 2>/dev/null
            echo '```'
        done
    } > "$out"
    echo "wrote $out" >&2
}

report() {
    rm -rf "$raw/pool" "$raw/runner-with-ndarray"
    python3 scripts/reference/report.py "$raw" > "bench/sidebyside-$stamp.md"
    echo "wrote bench/sidebyside-$stamp.md" >&2
}

case "$mode" in
    all) python_env; machine "$@"; pool; throughput 3; accuracy 3; report ;;
    throughput) python_env; machine "$@"; pool; throughput "${2:-3}"; report ;;
    levers) python_env; machine "$@"; pool; levers "${2:-2}"; report ;;
    accuracy) python_env; machine "$@"; accuracy "${2:-3}"; report ;;
    kernels) python_env; machine "$@"; pool; kernels "${2:-3}"; report ;;
    ceiling) python_env; machine "$@"; pool; ceiling ;;
    score)
        budget="${2:?usage: scripts/bench.sh score BUDGET [SEEDS]}"; seeds="${3:-1}"
        configs=()
        for arch in "${archs[@]}"; do configs+=("configs/${arch}_$budget.toml"); done
        suffix=$([ "$seeds" = 1 ] && echo "" || echo "-${seeds}seeds")
        "$runner" score "${configs[@]}" --fresh 1000 --seeds "$seeds" --out "bench/score-$budget$suffix.md" ;;
    *) echo "unknown mode '$mode'; allowed: all, throughput, levers, kernels, ceiling, accuracy, score" >&2; exit 2 ;;
esac
