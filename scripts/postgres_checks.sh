#!/usr/bin/env bash
# The multi-machine checks of PostgreSQL studies that need more than a test can set up:
# a second "host" in its own network namespace (a veth pair to the server, its own host
# name), and the claim throughput with 8 workers. Needs root (ip netns, unshare) and
# Debian's postgresql; CI runs the rest in `cargo test` (tests/it/postgres.rs).
#
#   scripts/postgres_checks.sh [OUT_DIR]      # default bench/postgres-<date>
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/postgres-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
export RUNNER_PG_DIR=/tmp/runner-checks-postgres
NS=runner-host-b
cleanup() {
  ip netns del "$NS" 2> /dev/null || true
  scripts/postgres.sh stop || true
}
trap cleanup EXIT

# The second host: a namespace with a veth pair, 10.200.0.1 (server side) - 10.200.0.2.
ip netns del "$NS" 2> /dev/null || true
ip netns add "$NS"
ip link add veth-runner-a type veth peer name veth-runner-b
ip link set veth-runner-b netns "$NS"
ip addr add 10.200.0.1/24 dev veth-runner-a
ip link set veth-runner-a up
ip netns exec "$NS" ip addr add 10.200.0.2/24 dev veth-runner-b
ip netns exec "$NS" ip link set veth-runner-b up
ip netns exec "$NS" ip link set lo up

eval "$(RUNNER_PG_LISTEN=10.200.0.1 scripts/postgres.sh start)"
cargo build --quiet
RUNNER=$(realpath target/debug/runner)
URL_A=$RUNNER_TEST_POSTGRES
URL_B=${URL_A/127.0.0.1/10.200.0.1}
# The namespace reaches the server only through the veth (a TCP check, no ping needed).
ip netns exec "$NS" timeout 5 bash -c "</dev/tcp/10.200.0.1/$(cat "$RUNNER_PG_DIR/port")"

# One grid study of 60 tiny trials: two workers here, one on host B.
WORK=$(mktemp -d)
mkdir -p "$WORK/a" "$WORK/b"
cat > "$WORK/a/s.toml" << 'SPEC'
[experiment]
name = "netns_grid"
[data]
train_samples = 400
val_samples = 60
test_samples = 60
[model]
d_embed = 8
d_hidden = 16
[train]
max_steps = 12
eval_every = 4
batch_size = 16
budget = "2min"
[sweep]
trials = 60
sampler = "grid"
pruner = "none"
[sweep.space]
"train.lr" = { float = [1e-3, 3e-2], log = true, steps = 10 }
"model.d_hidden" = { choice = [8, 12, 16] }
"train.batch_size" = { choice = [8, 16] }
SPEC
cp "$WORK/a/s.toml" "$WORK/b/s.toml"
start=$(date +%s.%N)
(cd "$WORK/a" && "$RUNNER" sweep s.toml --storage "$URL_A" --jobs 2 > /dev/null 2> "$WORK/host_a.log") &
A=$!
(cd "$WORK/b" && ip netns exec "$NS" unshare --uts sh -c \
  "hostname host-b && exec '$RUNNER' sweep s.toml --storage '$URL_B'" > /dev/null 2> "$WORK/host_b.log") &
B=$!
wait $A
wait $B
end=$(date +%s.%N)
(cd "$WORK/a" && "$RUNNER" study report experiments/netns_grid --storage "$URL_A" > /dev/null)
python3 - "$WORK/a/experiments/netns_grid/trials.csv" "$start" "$end" << 'PY' | tee "$OUT/netns.md"
import csv, sys, collections
rows = list(csv.DictReader(open(sys.argv[1])))
hosts = collections.Counter(r["host"] for r in rows)
points = {(r["model.d_hidden"], r["train.batch_size"], r["train.lr"]) for r in rows}
numbers = sorted(int(r["number"]) for r in rows)
states = collections.Counter(r["state"] for r in rows)
print(f"trials {len(rows)}, numbers 0..{numbers[-1]} distinct {len(set(numbers))}, "
      f"grid points distinct {len(points)}, states {dict(states)}, by host {dict(hosts)}, "
      f"wall {float(sys.argv[3]) - float(sys.argv[2]):.1f} s")
ok = len(rows) == 60 and len(set(numbers)) == 60 and len(points) == 60 \
    and states["complete"] == 60 and len(hosts) == 2
sys.exit(0 if ok else 1)
PY
grep -il "locked" "$WORK"/host_*.log "$WORK"/a/experiments/netns_grid/worker-*.log && { echo "a worker saw a lock error"; exit 1; } || true

# Claim throughput: 8 workers (threads, one connection each), empty trials.
RUNNER_CLAIM_BENCH_OUT="$OUT/throughput.md" cargo test --quiet --lib claim_throughput -- --ignored --nocapture 2>&1 | grep -v "^$" | tail -5
cat "$OUT/throughput.md"
rm -rf "$WORK"
