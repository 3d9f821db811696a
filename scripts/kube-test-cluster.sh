#!/usr/bin/env bash
# kube-test-cluster.sh — start/stop a throw-away control plane (etcd +
# kube-apiserver, no kubelet, no controller-manager) on 127.0.0.1 for tests.
#
#   scripts/kube-test-cluster.sh start [STATE_DIR]
#       Starts etcd and kube-apiserver on random free loopback ports and waits
#       until /readyz is ok. Prints KEY=VALUE lines on stdout:
#           KUBE_TEST_URL=https://127.0.0.1:PORT
#           KUBE_TEST_TOKEN=<bearer token of user "admin", group system:masters>
#           KUBECONFIG=<STATE_DIR>/kubeconfig
#           KUBE_TEST_CA=<STATE_DIR>/certs/apiserver.crt
#           KUBE_TEST_STATE_DIR=<STATE_DIR>
#       STATE_DIR (default: a new mktemp dir) holds data, certs, logs and pids.
#   scripts/kube-test-cluster.sh stop STATE_DIR [--keep]
#       Stops both processes (by the pids recorded in STATE_DIR) and removes
#       STATE_DIR unless --keep is given.
#   scripts/kube-test-cluster.sh selftest
#       start; check /readyz, /api/v1/namespaces and `helm version`; stop.
#
# Binaries come from $KUBEBUILDER_ASSETS (a directory with kube-apiserver and
# etcd, the envtest convention) or, if that is unset, from
# `scripts/kube-assets.sh --check` (which never builds; run
# scripts/kube-assets.sh once first).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
log() { echo "kube-test-cluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

assets_dir() {
  if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then echo "$KUBEBUILDER_ASSETS"; return; fi
  "$HERE/kube-assets.sh" --check || die "no assets: set KUBEBUILDER_ASSETS or run scripts/kube-assets.sh"
}

free_ports() {  # free_ports N — N distinct free TCP ports on 127.0.0.1
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

stop_pid() {  # stop_pid PIDFILE NAME
  local pidfile="$1" name="$2" pid i
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) did not stop after 10s; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

cmd_stop() {
  local state="${1:-}" keep="${2:-}"
  [ -n "$state" ] || die "usage: $0 stop STATE_DIR [--keep]"
  [ -d "$state" ] || { log "$state does not exist; nothing to stop"; return 0; }
  stop_pid "$state/kube-apiserver.pid" kube-apiserver
  stop_pid "$state/etcd.pid" etcd
  if [ "$keep" != --keep ] && [ -f "$state/.kube-test-cluster" ]; then rm -rf "$state"; fi
}

cmd_start() {
  local assets state etcd_port peer_port api_port token url i fsync_flag
  assets="$(assets_dir)"
  [ -x "$assets/kube-apiserver" ] || die "$assets/kube-apiserver not found"
  [ -x "$assets/etcd" ] || die "$assets/etcd not found"
  if [ -n "${1:-}" ]; then state="$1"; mkdir -p "$state"; else state="$(mktemp -d "${TMPDIR:-/tmp}/kube-test-cluster.XXXXXX")"; fi
  state="$(cd "$state" && pwd)"
  touch "$state/.kube-test-cluster"   # marks the dir as ours, so stop may delete it
  mkdir -p "$state/etcd-data" "$state/certs"
  chmod 700 "$state/etcd-data"

  read -r etcd_port peer_port api_port <<<"$(free_ports 3)"
  token="$(openssl rand -hex 24)"
  url="https://127.0.0.1:$api_port"

  # ---- etcd ----
  fsync_flag=""
  if "$assets/etcd" --help 2>&1 | grep -q -- '--unsafe-no-fsync'; then fsync_flag="--unsafe-no-fsync"; fi
  setsid "$assets/etcd" \
    --name=test --data-dir="$state/etcd-data" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="test=http://127.0.0.1:$peer_port" \
    --log-level=warn $fsync_flag \
    </dev/null >"$state/etcd.log" 2>&1 &
  echo $! >"$state/etcd.pid"
  for i in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$etcd_port/health" 2>/dev/null | grep -q '"health":"true"'; then break; fi
    kill -0 "$(cat "$state/etcd.pid")" 2>/dev/null || { tail -20 "$state/etcd.log" >&2; cmd_stop "$state" --keep; die "etcd exited (log: $state/etcd.log)"; }
    [ "$i" -lt 300 ] || { cmd_stop "$state" --keep; die "etcd not healthy after 30s (log: $state/etcd.log)"; }
    sleep 0.1
  done

  # ---- kube-apiserver ----
  openssl genrsa -out "$state/sa.key" 2048 2>/dev/null
  openssl rsa -in "$state/sa.key" -pubout -out "$state/sa.pub" 2>/dev/null
  # token,user,uid,"group1,group2"
  printf '%s,admin,admin-uid,"system:masters"\n' "$token" >"$state/tokens.csv"
  chmod 600 "$state/tokens.csv" "$state/sa.key"

  # ConfigMaps are served from etcd, not the watch cache, so that a watch from a
  # compacted resourceVersion gets a real 410 Gone (tests/kube/test_watch_cache.py).
  # ServiceAccount admission is disabled (as envtest does): there is no
  # controller-manager to create the "default" ServiceAccount, so the plugin
  # would reject every Pod.
  setsid "$assets/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --cert-dir="$state/certs" \
    --token-auth-file="$state/tokens.csv" \
    --authorization-mode=RBAC \
    --service-cluster-ip-range=10.0.0.0/24 \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$state/sa.pub" \
    --service-account-signing-key-file="$state/sa.key" \
    --disable-admission-plugins=ServiceAccount \
    --allow-privileged=true \
    --watch-cache-sizes=configmaps#0 \
    </dev/null >"$state/kube-apiserver.log" 2>&1 &
  echo $! >"$state/kube-apiserver.pid"
  for i in $(seq 1 600); do
    if [ "$(curl -ksS -H "Authorization: Bearer $token" "$url/readyz" 2>/dev/null)" = ok ]; then break; fi
    kill -0 "$(cat "$state/kube-apiserver.pid")" 2>/dev/null || { tail -30 "$state/kube-apiserver.log" >&2; cmd_stop "$state" --keep; die "kube-apiserver exited (log: $state/kube-apiserver.log)"; }
    [ "$i" -lt 600 ] || { cmd_stop "$state" --keep; die "kube-apiserver not ready after 60s (log: $state/kube-apiserver.log)"; }
    sleep 0.1
  done

  # The self-signed serving cert (cert-dir) is written as cert + its CA; it has
  # 127.0.0.1 and localhost as SANs, so clients can verify with it.
  cat >"$state/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: $url
    certificate-authority: $state/certs/apiserver.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: test
  context:
    cluster: test
    user: admin
current-context: test
EOF
  chmod 600 "$state/kubeconfig"
  echo "KUBE_TEST_URL=$url"
  echo "KUBE_TEST_TOKEN=$token"
  echo "KUBECONFIG=$state/kubeconfig"
  echo "KUBE_TEST_CA=$state/certs/apiserver.crt"
  echo "KUBE_TEST_STATE_DIR=$state"
}

cmd_selftest() {
  local out url token state assets rc=0 ready ns
  assets="$(assets_dir)"
  export KUBEBUILDER_ASSETS="$assets"
  out="$(cmd_start)"
  url="$(sed -n 's/^KUBE_TEST_URL=//p' <<<"$out")"
  token="$(sed -n 's/^KUBE_TEST_TOKEN=//p' <<<"$out")"
  state="$(sed -n 's/^KUBE_TEST_STATE_DIR=//p' <<<"$out")"
  echo "$out" | grep -v '^KUBE_TEST_TOKEN='
  ready="$(curl -sS --cacert "$state/certs/apiserver.crt" -H "Authorization: Bearer $token" "$url/readyz")" || rc=1
  echo "readyz (cert verified): $ready"; [ "$ready" = ok ] || rc=1
  echo "version: $(curl -ksS -H "Authorization: Bearer $token" "$url/version" | tr -d '\n ')"
  ns="$(curl -ksS -H "Authorization: Bearer $token" "$url/api/v1/namespaces" \
        | python3 -c 'import json,sys; print(" ".join(i["metadata"]["name"] for i in json.load(sys.stdin)["items"]))')" || rc=1
  echo "namespaces: $ns"; grep -qw default <<<"$ns" || rc=1
  echo "anonymous /api/v1/namespaces -> HTTP $(curl -ksS -o /dev/null -w '%{http_code}' "$url/api/v1/namespaces")"
  if [ -x "$assets/helm" ]; then
    local hv hl
    hv="$("$assets/helm" version --short 2>&1)" || rc=1
    echo "helm version: $hv"
    hl="$(KUBECONFIG="$state/kubeconfig" "$assets/helm" list -A 2>&1)" || rc=1
    echo "helm list -A: $(head -1 <<<"$hl")"
  else
    echo "helm: not found in $assets"; rc=1
  fi
  cmd_stop "$state"
  if [ "$rc" = 0 ]; then echo "selftest: PASS"; else echo "selftest: FAIL"; fi
  return "$rc"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  selftest) cmd_selftest ;;
  *) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
