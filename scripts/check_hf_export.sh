#!/usr/bin/env bash
# Exports a text run with `runner export --format hf` and checks it with Hugging Face's
# transformers (scripts/check_hf_export.py): same prompt ids, next-token logits within 1e-4,
# identical greedy generations.
#
#   scripts/check_hf_export.sh RUN_DIR [PROMPT ...]
#
# transformers and torch install themselves into scripts/hf_check/.venv on first use (from
# PyPI, several GB); the runner's tests and CI never need them.
set -euo pipefail
cd "$(dirname "$0")/.."
run="${1:?usage: scripts/check_hf_export.sh RUN_DIR [PROMPT ...]}"
shift
prompts=("$@")
if [ ${#prompts[@]} -eq 0 ]; then
    prompts=("And God said" "Ge1:1 In the beginning" "Moses" "")
fi
venv=scripts/hf_check/.venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import transformers, torch" 2>/dev/null; then
    echo "installing transformers and torch into $venv (once)..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "torch==2.15.0" transformers safetensors
fi
cargo build --release --quiet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
./target/release/runner export "$run" --format hf --out "$out/hf_model" > /dev/null
echo "transformers $("$venv/bin/python" -c 'import transformers; print(transformers.__version__)')"
"$venv/bin/python" scripts/check_hf_export.py --run "$run" --export "$out/hf_model" "${prompts[@]}"
