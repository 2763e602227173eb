#!/usr/bin/env bash
# Fuzz a real upkeep-agent from its OpenAPI document with schemathesis: mutual
# TLS as an admin client, the [kubernetes] table set against the simulator's
# fake API server, a fake kubelet as the component. Everything runs in a network
# namespace of its own that has only loopback (when unshare allows it), so no
# request, and no artifact source the fuzzer makes up, leaves the machine.
#
# Prints the requests sent, the failures by check, and whether the agent is
# still alive and still runs a new operation (a POST /v1/cordon to a terminal
# phase) afterwards. Logs and reports stay in the output directory.
#
# Usage: scripts/fuzz-agent.sh [--agent-bin PATH] [--schema OPENAPI.json]
#          [--max-examples N] [--max-time SECONDS] [--seed N] [--out DIR]
# The agent and the document default to this checkout's; give both to fuzz an
# agent built from another commit against the document it shipped with.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
bin="$target/debug"
schemathesis_version=${SCHEMATHESIS_VERSION:-4.32.5}

agent_bin=""
schema=""
max_examples=200
max_time=900
seed=1
out=""
inner=false
while [ $# -gt 0 ]; do
  case "$1" in
    --agent-bin) agent_bin=$2; shift 2 ;;
    --schema) schema=$2; shift 2 ;;
    --max-examples) max_examples=$2; shift 2 ;;
    --max-time) max_time=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --inner) inner=true; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "fuzz-agent: unknown argument $1" >&2; exit 2 ;;
  esac
done
agent_bin=${agent_bin:-$bin/upkeep-agent}
schema=${schema:-$repo/agent/openapi.json}
out=${out:-$target/fuzz-agent/$(date -u +%Y%m%dT%H%M%SZ)}
venv="$target/fuzz-venv"

if ! $inner; then
  cd "$repo"
  echo "== cargo build --bins (target dir $target)"
  cargo build --quiet --bins
  if [ ! -x "$venv/bin/st" ]; then
    echo "== installing schemathesis $schemathesis_version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==$schemathesis_version"
  fi
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  args=(--inner --agent-bin "$agent_bin" --schema "$schema" --max-examples "$max_examples" --max-time "$max_time" --seed "$seed" --out "$out")
  if unshare --net --map-root-user true 2>/dev/null; then
    echo "== fuzzing in a network namespace with loopback only"
    exec unshare --net --map-root-user bash -c 'ip link set lo up && exec "$@"' fuzz-agent "$repo/scripts/fuzz-agent.sh" "${args[@]}"
  fi
  echo "fuzz-agent: cannot make a network namespace; running on the host's loopback" >&2
  exec "$repo/scripts/fuzz-agent.sh" "${args[@]}"
fi

# From here on: inside the namespace (or on the host's loopback), with $out existing.
for proxy in http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY; do unset "$proxy"; done
export NO_PROXY=127.0.0.1,localhost

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits up to 30 s for a line matching $2 in file $1, then prints it.
wait_for_line() {
  for _ in $(seq 1 300); do
    if grep -q "$2" "$1" 2>/dev/null; then
      grep -m1 "$2" "$1"
      return 0
    fi
    sleep 0.1
  done
  echo "fuzz-agent: no '$2' in $1 within 30 s:" >&2
  cat "$1" >&2
  return 1
}

echo "== certificates in $out/tls"
rm -rf "$out/tls"
"$bin/upkeep" certs ca --dir "$out/tls" >/dev/null
"$bin/upkeep" certs server --dir "$out/tls" --name worker-1 --san 127.0.0.1 >/dev/null
"$bin/upkeep" certs client --dir "$out/tls" --name fuzz-admin --role admin >/dev/null

echo "== fake API server"
"$bin/upkeep-sim" fake-apiserver --listen 127.0.0.1:0 --dir "$out/api" --version v1.30.9 --node worker-1 \
  >"$out/fake-apiserver.log" 2>&1 &
pids+=($!)
wait_for_line "$out/fake-apiserver.log" "kubeconfig: "

cat >"$out/kubelet" <<'SCRIPT'
#!/bin/sh
[ "$1" = "--version" ] && echo "Kubernetes v1.30.2"
exit 0
SCRIPT
chmod 0755 "$out/kubelet"

# Writes the agent's config; $1 is extra keys for the kubelet component.
write_config() {
  cat >"$out/agent.toml" <<CONFIG
node_name = "worker-1"
role = "worker"
listen = "127.0.0.1:0"
state_dir = "$out/state"

[tls]
cert = "$out/tls/worker-1.crt"
key = "$out/tls/worker-1.key"
client_ca = "$out/tls/ca.crt"

[[components]]
name = "kubelet"
binary = "$out/kubelet"
restart_command = ["/bin/sh", "-c", "echo restart >> '$out/restarts.log'"]
$1

[kubernetes]
kubeconfig = "$out/api/kubeconfig"
request_timeout_secs = 2
CONFIG
}

rm -rf "$out/state"
write_config "kubernetes_skew = true"
if ! "$agent_bin" --check-config --config "$out/agent.toml" >"$out/check-config.log" 2>&1; then
  # An agent from before the kubernetes_skew key applies the skew rule to the kubelet by name.
  grep -q "kubernetes_skew" "$out/check-config.log" || { cat "$out/check-config.log" >&2; exit 1; }
  write_config ""
  "$agent_bin" --check-config --config "$out/agent.toml"
fi

echo "== upkeep-agent $agent_bin"
"$agent_bin" --config "$out/agent.toml" >"$out/agent.log" 2>&1 &
agent_pid=$!
pids+=("$agent_pid")
address=$(wait_for_line "$out/agent.log" "listening on" | grep -oE '127\.0\.0\.1:[0-9]+' | head -n1)
url="https://$address"
echo "   listening on $url"

echo "== schemathesis $("$venv/bin/st" --version | awk '{print $NF}'): at most $max_examples cases per operation, $max_time s, seed $seed"
rm -rf "$out/report" "$out/.schemathesis"
# Bounded in count by --max-examples and in time by timeout(1), whose SIGINT
# makes schemathesis stop and still write its reports. SIGINT is reset to its
# default first: a shell started in the background leaves it ignored.
# schemathesis runs in $out, where it keeps its cache of earlier failures.
(
  cd "$out"
  exec timeout --signal=INT --kill-after=30 "$max_time" \
    "$venv/bin/python" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
    "$venv/bin/st" run "$schema" \
    --url "$url" \
    --request-cert "$out/tls/fuzz-admin.crt" --request-cert-key "$out/tls/fuzz-admin.key" \
    --tls-verify "$out/tls/ca.crt" \
    --checks all \
    --max-examples "$max_examples" --seed "$seed" \
    --workers 1 --request-timeout 10 --continue-on-failure \
    --generation-database none --no-color \
    --report json,ndjson --report-dir "$out/report" \
    >"$out/schemathesis.log" 2>&1
) &
st_pid=$!
pids+=("$st_pid")
st_status=0
wait "$st_pid" || st_status=$?
case $st_status in
  124) echo "   schemathesis stopped at the $max_time s limit; its output: $out/schemathesis.log" ;;
  *) echo "   schemathesis exited $st_status; its output: $out/schemathesis.log" ;;
esac

curl_admin() {
  curl --silent --show-error --max-time 10 --cacert "$out/tls/ca.crt" \
    --cert "$out/tls/fuzz-admin.crt" --key "$out/tls/fuzz-admin.key" "$@"
}

echo "== the agent afterwards"
alive=no
if kill -0 "$agent_pid" 2>/dev/null && [ "$(curl_admin -o /dev/null -w '%{http_code}' "$url/healthz" || true)" = 200 ]; then
  alive=yes
fi
echo "   alive and answering /healthz: $alive"
[ "$alive" = yes ] && curl_admin "$url/metrics" >"$out/metrics.txt" || true

# Operations the fuzzer left running are cancelled, then a cordon must be taken and end.
cordon="not tried (agent not alive)"
if [ "$alive" = yes ]; then
  for id in $(curl_admin "$url/v1/operations" | python3 -c '
import json, sys
for op in json.load(sys.stdin).get("operations", []):
    if op.get("phase") in ("Pending", "Running"):
        print(op["id"])' 2>/dev/null || true); do
    echo "   cancelling $id, left running by the fuzzer"
    curl_admin -X POST -H 'content-type: application/json' -d '{}' "$url/v1/operations/$id/cancel" >/dev/null || true
  done
  cordon="refused"
  deadline=$((SECONDS + 90))
  while [ $SECONDS -lt $deadline ]; do
    reply=$(curl_admin -w '\n%{http_code}' -X POST -H 'content-type: application/json' -d '{}' "$url/v1/cordon" || true)
    code=${reply##*$'\n'}
    if [ "$code" = 202 ]; then
      id=$(printf '%s' "${reply%$'\n'*}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
      cordon="accepted ($id), never ended"
      while [ $SECONDS -lt $deadline ]; do
        phase=$(curl_admin "$url/v1/operations/$id" | python3 -c 'import json, sys; print(json.load(sys.stdin)["phase"])' || true)
        if [ -n "$phase" ] && [ "$phase" != Pending ] && [ "$phase" != Running ]; then
          cordon="accepted ($id), ended $phase"
          break
        fi
        sleep 0.2
      done
      break
    fi
    cordon="refused with $code: ${reply%$'\n'*}"
    [ "$code" = 409 ] || break
    sleep 0.5
  done
fi
echo "   POST /v1/cordon: $cordon"

echo "== summary"
python3 "$repo/scripts/fuzz-summary.py" "$out/report" "$out/agent.log"
echo "agent alive afterwards: $alive; new operation: $cordon"
echo "outputs: $out"
