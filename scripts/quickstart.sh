#!/usr/bin/env bash
# Quick start: build upkeep, make development certificates, start an agent on a
# fake kubelet, and query it with curl as a reader. Everything lives in a
# temporary directory that is removed at the end.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build --quiet --bins
bin="$repo/target/debug"

work=$(mktemp -d)
agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== development certificates in $work/tls"
"$bin/upkeep" certs ca --dir "$work/tls" >/dev/null
"$bin/upkeep" certs server --dir "$work/tls" --name worker-1 --san 127.0.0.1 --san localhost >/dev/null
"$bin/upkeep" certs client --dir "$work/tls" --name reader --role reader >/dev/null

echo "== a fake kubelet that reports v1.30.2"
cat > "$work/kubelet" <<'SCRIPT'
#!/bin/sh
[ "$1" = "--version" ] && echo "Kubernetes v1.30.2"
exit 0
SCRIPT
chmod 0755 "$work/kubelet"

port=${UPKEEP_PORT:-10265}
cat > "$work/agent.toml" <<CONFIG
node_name = "worker-1"
role = "worker"
listen = "127.0.0.1:$port"
state_dir = "$work/state"

[tls]
cert = "$work/tls/worker-1.crt"
key = "$work/tls/worker-1.key"
client_ca = "$work/tls/ca.crt"

[[components]]
name = "kubelet"
binary = "$work/kubelet"
kubernetes_skew = true
node_reports_version = true
CONFIG
"$bin/upkeep-agent" --check-config --config "$work/agent.toml"

echo "== starting upkeep-agent on 127.0.0.1:$port"
"$bin/upkeep-agent" --config "$work/agent.toml" 2>"$work/agent.log" &
agent_pid=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/agent.log" && break
  sleep 0.1
done
grep -q "listening on" "$work/agent.log" || { cat "$work/agent.log"; exit 1; }

curl_as_reader() {
  curl --silent --show-error --cacert "$work/tls/ca.crt" \
    --cert "$work/tls/reader.crt" --key "$work/tls/reader.key" "$@"
}

echo "== GET /v1/node as upkeep:reader"
curl_as_reader "https://127.0.0.1:$port/v1/node"
echo
echo "== POST /v1/upgrades as upkeep:reader (refused: writes need upkeep:operator)"
curl_as_reader -X POST -H 'content-type: application/json' -d '{}' "https://127.0.0.1:$port/v1/upgrades"
echo
echo "== without a client certificate (refused at the TLS handshake)"
curl --silent --show-error --cacert "$work/tls/ca.crt" "https://127.0.0.1:$port/healthz" || true
