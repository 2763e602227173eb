#!/usr/bin/env bash
# A large simulated fleet over several `upkeep-sim serve` shards, run as the
# README shows: reads it with `upkeep status`, rolls it with `upkeep rollout`,
# and prints each command's wall time and peak resident memory, and the shards'.
#
#   scripts/sharded-fleet.sh [NODES] [SHARDS] [WORK_DIR]
#
# Defaults: 100000 nodes over 10 shards in a new temporary directory. Uses the
# release binaries in target/release (`cargo build --release --bins`).
set -euo pipefail

nodes=${1:-100000}
shards=${2:-10}
work=${3:-$(mktemp -d)}
bin=$(cd "$(dirname "$0")/.." && pwd)/target/release
mkdir -p "$work"
cd "$work"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT

for ((i = 0; i < shards; i++)); do
    "$bin/upkeep-sim" serve --nodes "$nodes" --shard "$i/$shards" --dir fleet >"shard-$i.log" 2>&1 &
    pids+=($!)
done
for ((i = 0; i < shards; i++)); do
    until [ -s "fleet/inventory-$i.toml" ] && [ -s fleet/artifacts.toml ]; do
        kill -0 "${pids[$i]}" 2>/dev/null || { cat "shard-$i.log"; exit 1; }
        sleep 0.5
    done
done
# An inventory appears once its shard serves; give the last one a moment to write it all.
sleep 1

inventories=()
for ((i = 0; i < shards; i++)); do inventories+=(--inventory "fleet/inventory-$i.toml"); done

measure() {
    local name=$1
    shift
    /usr/bin/time -f "$name: %e s wall, peak RSS %M KiB" -o "$name.time" "$@" >"$name.out" 2>"$name.err" || {
        echo "$name failed:"
        tail -5 "$name.err"
    }
    cat "$name.time"
}

measure status "$bin/upkeep" status "${inventories[@]}" --output json
measure rollout "$bin/upkeep" rollout "${inventories[@]}" --to v1.30.3 --artifacts fleet/artifacts.toml \
    --max-unavailable 2% --output json

shard_peak=0
for pid in "${pids[@]}"; do
    kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
    shard_peak=$((shard_peak + kib))
done
echo "shards: peak RSS $shard_peak KiB in all, $((shard_peak / nodes)) KiB per node"
grep -o '"patched":[0-9]*' rollout.out | tail -1 || true
echo "work directory: $work"
