#!/usr/bin/env bash
# The dashboard in a real browser: trains two tiny runs and a two-trial study in a
# throwaway experiments directory, starts `runner serve` on a free loopback port, opens
# each view in headless Chromium (Debian's `chromium`, installed if missing) and saves a
# screenshot of each into docs/serve/. Not part of `cargo test` (it needs the browser).
#
#   scripts/screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium > /dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
fi
cargo build --release --quiet
runner="$PWD/target/release/runner"
work=$(mktemp -d)
profile=$(mktemp -d)
out="$PWD/docs/serve"
mkdir -p "$out"
trap 'kill "$server" 2> /dev/null || true; rm -rf "$work" "$profile"' EXIT
cat > "$work/tiny.toml" << 'EOF'
[data]
train_samples = 2000
val_samples = 200
test_samples = 200
[model]
d_embed = 16
d_hidden = 32
d_model = 32
n_heads = 2
d_ff = 64
[train]
max_steps = 300
eval_every = 25
batch_size = 32
budget = "2min"
EOF
cat "$work/tiny.toml" > "$work/study.toml"
cat >> "$work/study.toml" << 'EOF'
[sweep]
trials = 4
sampler = "random"
[sweep.space]
"train.lr" = { float = [1e-3, 3e-2], log = true }
EOF
(
    cd "$work"
    "$runner" run tiny.toml experiment.name=gru > /dev/null 2>&1
    "$runner" run tiny.toml experiment.name=gpt model.arch=gpt > /dev/null 2>&1
    gpt=$(ls -d experiments/gpt/*/)
    "$runner" explain "$gpt" '{(()' --samples 40 > /dev/null 2>&1
    "$runner" eval "$gpt" --suite --samples 100 > /dev/null 2>&1
    "$runner" sweep study.toml > /dev/null 2>&1
)
gru=$(cd "$work/experiments" && ls -d gru/*/ | sed 's#/$##')
gpt=$(cd "$work/experiments" && ls -d gpt/*/ | sed 's#/$##')
"$runner" serve --dir "$work/experiments" --port 0 > "$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 50); do
    grep -q "serving" "$work/serve.log" && break
    sleep 0.1
done
base=$(grep -o 'http://[0-9.:]*' "$work/serve.log" | head -1)
shoot() {
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --hide-scrollbars --window-size=1280,1400 \
        --virtual-time-budget=4000 --screenshot="$out/$1.png" "$base$2" 2> /dev/null
    echo "$1: $base$2 -> docs/serve/$1.png ($(stat -c %s "$out/$1.png") bytes)"
}
shoot runs "/"
shoot run "/run/$gpt"
shoot compare "/compare?run=${gru/\//%2F}&run=${gpt/\//%2F}"
shoot study "/study/study"
