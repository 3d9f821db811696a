#!/usr/bin/env bash
# kube-assets.sh — build/install a real kube-apiserver, etcd and helm (and, for
# the realistic test cluster, kube-controller-manager, kube-scheduler and kwok;
# and kubectl, for the tests of the documented kubectl commands; and Jaeger v2,
# the trace store the router's tracing test exports to) into a cache
# directory OUTSIDE the repository, then print that directory.
#
# The directory follows controller-runtime's envtest convention (a directory
# holding `kube-apiserver` and `etcd`), so tests can do:
#
#     export KUBEBUILDER_ASSETS="$(scripts/kube-assets.sh)"
#
# Everything comes from registries this project may use: every binary is built
# from its Go module (Go module proxy). No Docker,
# kind, minikube, GitHub release or dl.k8s.io download is involved.
#
# Idempotent and cached: when $DIR/VERSIONS already records the wanted
# versions and the binaries exist, it prints the directory and exits 0 without
# touching Go or the network. A change of version (or of RECIPE below) rebuilds
# only the component that changed.
#
# Usage:
#   scripts/kube-assets.sh            build what is missing, print the dir
#   scripts/kube-assets.sh --check    print the dir and exit 0 if everything is
#                                     already cached, else exit 1 (never builds)
#   scripts/kube-assets.sh --force    rebuild everything
#   scripts/kube-assets.sh --check-cluster
#                                     like --check, and also require the
#                                     cluster components (controller-manager,
#                                     scheduler, kwok + its stage configs)
#   scripts/kube-assets.sh --check-kubectl
#                                     like --check, and also require kubectl
#   scripts/kube-assets.sh --check-jaeger
#                                     exit 0 if jaeger alone is cached
#
# The cluster components are built by default too; set BAKEOFF_KUBE_CLUSTER=0 to
# build only kube-apiserver, etcd and helm. --check keeps asking only for those
# three, so tests that need no real controllers run while the rest builds.
#
# Environment (all optional):
#   BAKEOFF_KUBE_ASSETS        cache dir (default ~/.cache/bakeoff/kube-assets)
#   BAKEOFF_KUBE_VERSION       Kubernetes version (default v1.32.13)
#   BAKEOFF_ETCD_VERSION       etcd version       (default v3.5.16, the one
#                              Kubernetes v1.32 is built and tested against)
#   BAKEOFF_ETCD_SOURCE        go (default: build go.etcd.io/etcd/server/v3)
#                              | deb (Debian's etcd-server package; bookworm
#                              ships 3.4.23 — BAKEOFF_ETCD_VERSION is ignored)
#   BAKEOFF_HELM_VERSION       helm version (default v3.19.5)
#   BAKEOFF_KWOK_VERSION       kwok version (default v0.8.0)
#   BAKEOFF_KUBE_CLUSTER       1 (default) also build kube-controller-manager,
#                              kube-scheduler and kwok; 0 skips them
#   BAKEOFF_H2SPEC_VERSION     h2spec version (default v2.2.1+incompatible), the
#                              HTTP/2 conformance suite tests/router/test_http2.py
#                              runs against the router
#   BAKEOFF_H2SPEC             1 (default) also build h2spec; 0 skips it
#   BAKEOFF_KUBECTL            1 (default) also build kubectl (k8s.io/kubernetes/
#                              cmd/kubectl at BAKEOFF_KUBE_VERSION); 0 skips it
#   BAKEOFF_JAEGER_VERSION     the Go module version of github.com/jaegertracing/
#                              jaeger whose cmd/jaeger (Jaeger v2) is built
#                              (default v1.76.0, the module tag of Jaeger v2.13.0)
#   BAKEOFF_JAEGER             1 (default) also build jaeger; 0 skips it
#   BAKEOFF_KUBE_STAGING_PINS  space-separated module@version overriding the
#                              staging version of a module missing on the proxy
#                              (default for v1.32.13: k8s.io/endpointslice@v0.32.12,
#                              because v0.32.13 was never published)
#   BAKEOFF_KUBE_ASSETS_JOBS   parallel compile jobs (default 1: at most one
#                              core, at nice 19, so builds do not disturb
#                              timing-sensitive work on a 2-core machine)
#   GO                         go binary (default: go on PATH, else
#                              /usr/local/go/bin/go)
set -euo pipefail

RECIPE=1   # bump when the way a binary is built changes, to force a rebuild

KUBE_VERSION="${BAKEOFF_KUBE_VERSION:-v1.32.13}"
ETCD_SOURCE="${BAKEOFF_ETCD_SOURCE:-go}"
ETCD_VERSION="${BAKEOFF_ETCD_VERSION:-v3.5.16}"
HELM_VERSION="${BAKEOFF_HELM_VERSION:-v3.19.5}"
KWOK_VERSION="${BAKEOFF_KWOK_VERSION:-v0.8.0}"
H2SPEC_VERSION="${BAKEOFF_H2SPEC_VERSION:-v2.2.1+incompatible}"
H2SPEC="${BAKEOFF_H2SPEC:-1}"
CLUSTER="${BAKEOFF_KUBE_CLUSTER:-1}"
KUBECTL="${BAKEOFF_KUBECTL:-1}"
JAEGER_VERSION="${BAKEOFF_JAEGER_VERSION:-v1.76.0}"
JAEGER="${BAKEOFF_JAEGER:-1}"
if [ "$KUBE_VERSION" = v1.32.13 ]; then DEFAULT_PINS="k8s.io/endpointslice@v0.32.12"; else DEFAULT_PINS=""; fi
STAGING_PINS="${BAKEOFF_KUBE_STAGING_PINS-$DEFAULT_PINS}"
DIR="${BAKEOFF_KUBE_ASSETS:-$HOME/.cache/bakeoff/kube-assets}"
JOBS="${BAKEOFF_KUBE_ASSETS_JOBS:-1}"

MODE=build
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  --force) MODE=force ;;
  --check-cluster) MODE=check; CLUSTER=1; CHECK_CLUSTER=1 ;;
  --check-kubectl) MODE=check; KUBECTL=1; CHECK_KUBECTL=1 ;;
  --check-jaeger) MODE=check-jaeger ;;
  -h|--help) sed -n '2,60p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "kube-assets: unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac

log() { echo "kube-assets: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The line each component gets in $DIR/VERSIONS.
want_line() {
  case "$1" in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl) echo "$1 $KUBE_VERSION recipe=$RECIPE" ;;
    kwok) echo "kwok $KWOK_VERSION recipe=$RECIPE" ;;
    h2spec) echo "h2spec $H2SPEC_VERSION recipe=$RECIPE" ;;
    etcd)
      if [ "$ETCD_SOURCE" = deb ]; then echo "etcd debian:etcd-server recipe=$RECIPE"
      else echo "etcd $ETCD_VERSION recipe=$RECIPE"; fi ;;
    helm) echo "helm $HELM_VERSION recipe=$RECIPE" ;;
    jaeger) echo "jaeger $JAEGER_VERSION recipe=$RECIPE" ;;
    # A line of its own (not a new helm recipe), so that an older copy of this
    # script still accepts the cache once helm has been rebuilt with the stamp.
    helm-kube-default) echo "helm-kube-default $HELM_VERSION stamped=1" ;;
  esac
}

is_cached() {  # is_cached NAME
  [ -x "$DIR/${1%-kube-default}" ] && [ -f "$DIR/VERSIONS" ] && grep -qxF "$(want_line "$1")" "$DIR/VERSIONS"
}

base_cached() { is_cached kube-apiserver && is_cached etcd && is_cached helm && is_cached helm-kube-default; }
cluster_cached() {
  is_cached kube-controller-manager && is_cached kube-scheduler && is_cached kwok \
    && [ -d "$DIR/kwok-stages" ]
}
all_cached() {
  base_cached || return 1
  if [ "$CLUSTER" = 1 ] && [ "$MODE" != check -o -n "${CHECK_CLUSTER:-}" ]; then cluster_cached || return 1; fi
  if [ "$H2SPEC" = 1 ] && [ "$MODE" != check ]; then is_cached h2spec || return 1; fi
  if [ "$KUBECTL" = 1 ] && [ "$MODE" != check -o -n "${CHECK_KUBECTL:-}" ]; then is_cached kubectl || return 1; fi
  if [ "$JAEGER" = 1 ] && [ "$MODE" != check ]; then is_cached jaeger || return 1; fi
}

# ---- jaeger alone: cached or not (never builds) -----------------------------------
if [ "$MODE" = check-jaeger ]; then
  if is_cached jaeger; then echo "$DIR"; exit 0; fi
  log "jaeger $JAEGER_VERSION is not in $DIR; run scripts/kube-assets.sh"
  exit 1
fi

# ---- fast path: nothing to do -------------------------------------------------
if [ "$MODE" != force ] && all_cached; then
  echo "$DIR"
  exit 0
fi
if [ "$MODE" = check ]; then
  log "assets in $DIR are missing or not the wanted versions; run scripts/kube-assets.sh"
  exit 1
fi

# ---- slow path ------------------------------------------------------------------
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
case "$DIR/" in "$REPO_ROOT"/*) die "cache dir $DIR must be outside the repository ($REPO_ROOT)" ;; esac
mkdir -p "$DIR"

# One build at a time per cache dir.
exec 9>"$DIR/.lock"
if ! flock -n 9; then
  log "another kube-assets.sh is building into $DIR; waiting for it"
  flock 9
fi
if [ "$MODE" != force ] && all_cached; then echo "$DIR"; exit 0; fi

if [ -z "${GO:-}" ]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"
  elif [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go
  else die "no Go toolchain found (set GO=/path/to/go)"; fi
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kube-assets.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# Low priority, one core: GOMAXPROCS limits each Go process, -p the number of
# packages compiled at once. GOTOOLCHAIN=local: never fetch another toolchain.
gocmd() {
  nice -n 19 env GOMAXPROCS="$JOBS" GOFLAGS="-p=$JOBS -buildvcs=false" \
    GOTOOLCHAIN=local CGO_ENABLED=0 "$GO" "$@"
}

record() {  # record NAME — replace NAME's line in VERSIONS
  local tmp="$DIR/.VERSIONS.tmp"
  { if [ -f "$DIR/VERSIONS" ]; then grep -v "^$1 " "$DIR/VERSIONS" || true; fi; want_line "$1"; } > "$tmp"
  sort -o "$tmp" "$tmp"
  mv -f "$tmp" "$DIR/VERSIONS"
}

elapsed() { echo $(( $(date +%s) - $1 )); }

# ---- kube-apiserver, kube-controller-manager, kube-scheduler --------------------
# k8s.io/kubernetes requires its staging modules (k8s.io/api, apimachinery,
# client-go, apiserver, component-base, kms, …) at v0.0.0 and replaces them with
# ./staging/src/k8s.io/X — replaces that only apply inside that repository. A
# wrapper module re-states each of those replaces as the published v0.N.P (or a
# pin from STAGING_PINS for a module the proxy lacks at that version). The three
# commands share one wrapper module and one Go build cache, so the second and
# third compile only their own packages.
KUBE_WRAPPER=""
KUBE_LDFLAGS=""
prepare_kube_wrapper() {
  [ -n "$KUBE_WRAPPER" ] && return 0
  local minor staging_version kdir gomod build_date p pin mod ver
  minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  staging_version="v0.${KUBE_VERSION#v1.}"
  log "k8s.io/kubernetes $KUBE_VERSION: downloading (staging modules at $staging_version)"
  kdir="$(gocmd mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" \
    || die "go mod download k8s.io/kubernetes@$KUBE_VERSION failed (is that version on the module proxy? try: go list -m -versions k8s.io/kubernetes)"
  if [ -z "$kdir" ] || [ ! -f "$kdir/go.mod" ]; then die "could not download k8s.io/kubernetes@$KUBE_VERSION"; fi
  gomod="$kdir/go.mod"

  mkdir -p "$WORK/kube" && cd "$WORK/kube"
  {
    printf 'module bakeoff.local/kube-build\n\ngo 1.23.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBE_VERSION"
    sed -n "s#^[[:space:]]*\(k8s.io/[A-Za-z0-9._-]*\) => ./staging/src/k8s.io/.*#\t\1 => \1 $staging_version#p" "$gomod"
    printf ')\n'
  } > go.mod
  local n; n=$(grep -c '=> k8s.io/' go.mod || true)
  [ "$n" -gt 0 ] || die "found no './staging/src/k8s.io' replace lines in $gomod"
  for pin in $STAGING_PINS; do
    mod="${pin%@*}"; ver="${pin#*@}"
    sed -i "s#^\t$mod => $mod .*#\t$mod => $mod $ver#" go.mod
    log "kube: pinned $mod at $ver (not on the module proxy at $staging_version)"
  done
  log "kube: wrapper go.mod replaces $n staging modules with $staging_version"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    printf '\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n'
    if [ "$CLUSTER" = 1 ]; then
      printf '\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n\t_ "k8s.io/kubernetes/cmd/kube-scheduler"\n'
    fi
    if [ "$KUBECTL" = 1 ]; then printf '\t_ "k8s.io/kubernetes/cmd/kubectl"\n'; fi
    printf ')\n'
  } > tools.go
  # -e: tidy also resolves modules that only tests of dependencies import; some
  # of those (e.g. k8s.io/cri-client) may be missing from a registry mirror and
  # are not needed to build the binaries.
  gocmd mod tidy -e >tidy.log 2>&1 || { cat tidy.log >&2; die "go mod tidy failed for k8s.io/kubernetes"; }

  # Version stamps, as Kubernetes' hack/lib/version.sh sets them (without them
  # /version reports v0.0.0-master and e.g. helm's kubeVersion checks fail).
  build_date="$(gocmd list -m -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"Time": "\(.*\)",\{0,1\}$/\1/p')"
  build_date="${build_date:-1970-01-01T00:00:00Z}"
  KUBE_LDFLAGS="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    KUBE_LDFLAGS="$KUBE_LDFLAGS -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    KUBE_LDFLAGS="$KUBE_LDFLAGS -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
  done
  KUBE_WRAPPER="$WORK/kube"
}

build_kube_cmd() {  # build_kube_cmd kube-apiserver|kube-controller-manager|kube-scheduler|kubectl
  local name="$1" t0; t0=$(date +%s)
  prepare_kube_wrapper
  cd "$KUBE_WRAPPER"
  log "$name: go build (one core at nice 19: kube-apiserver about 5-6 minutes with a cold Go build cache, the others less once it is warm)"
  gocmd build -trimpath -ldflags "$KUBE_LDFLAGS" -o "$DIR/.$name.tmp" "k8s.io/kubernetes/cmd/$name" \
    || die "go build of $name $KUBE_VERSION failed (see above)"
  mv -f "$DIR/.$name.tmp" "$DIR/$name"
  record "$name"
  log "$name $KUBE_VERSION built in $(elapsed "$t0")s"
}

# ---- kwok -----------------------------------------------------------------------
# kwok fakes kubelets: nodes that exist only as API objects, and pods on them
# that go Running/Ready through "stages" (YAML rules). Its stage configs live in
# the module (kustomize/stage/...), not in the binary, so they are copied next to
# it as $DIR/kwok-stages.
build_kwok() {
  local t0 kmod; t0=$(date +%s)
  log "kwok $KWOK_VERSION: go install sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION (about 4-5 minutes on one core)"
  mkdir -p "$WORK/kwok" && cd "$WORK/kwok"
  GOBIN="$WORK/kwok/bin" gocmd install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" \
    || die "go install of kwok $KWOK_VERSION failed (see above)"
  kmod="$(gocmd mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$kmod/kustomize/stage" ] || die "no kustomize/stage directory in sigs.k8s.io/kwok@$KWOK_VERSION ($kmod)"
  rm -rf "$DIR/.kwok-stages.tmp" "$DIR/kwok-stages"
  cp -r "$kmod/kustomize/stage" "$DIR/.kwok-stages.tmp"
  chmod -R u+w "$DIR/.kwok-stages.tmp"
  mv "$DIR/.kwok-stages.tmp" "$DIR/kwok-stages"
  install -m 0755 "$WORK/kwok/bin/kwok" "$DIR/.kwok.tmp"
  mv -f "$DIR/.kwok.tmp" "$DIR/kwok"
  record kwok
  log "kwok $KWOK_VERSION built in $(elapsed "$t0")s"
}

# ---- jaeger (v2) ----------------------------------------------------------------
# Jaeger v2 is github.com/jaegertracing/jaeger/cmd/jaeger (an OpenTelemetry
# Collector distribution: OTLP receiver, in-memory store, query API); the Go
# module keeps v1.x tags (v1.76.0 is Jaeger v2.13.0). A wrapper module rather
# than `go install …@v`: jaeger's go.mod has a replace directive, which
# `go install pkg@version` rejects; the wrapper re-states it.
build_jaeger() {
  local t0 jmod; t0=$(date +%s)
  log "jaeger $JAEGER_VERSION: building github.com/jaegertracing/jaeger/cmd/jaeger (a large build: tens of minutes on one busy core)"
  mkdir -p "$WORK/jaeger" && cd "$WORK/jaeger"
  jmod="$(gocmd mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [ -f "$jmod" ] || die "could not download github.com/jaegertracing/jaeger@$JAEGER_VERSION"
  {
    printf 'module bakeoff.local/jaeger-build\n\ngo 1.24.6\n\nrequire github.com/jaegertracing/jaeger %s\n\n' "$JAEGER_VERSION"
    grep '^replace ' "$jmod" || true
  } > go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/jaegertracing/jaeger/cmd/jaeger"\n' > tools.go
  gocmd mod tidy -e >tidy.log 2>&1 || { cat tidy.log >&2; die "go mod tidy failed for jaeger"; }
  gocmd build -trimpath -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_VERSION" \
    -o "$DIR/.jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger \
    || die "go build of jaeger $JAEGER_VERSION failed (see above)"
  mv -f "$DIR/.jaeger.tmp" "$DIR/jaeger"
  record jaeger
  log "jaeger $JAEGER_VERSION built in $(elapsed "$t0")s"
}

# ---- etcd -----------------------------------------------------------------------
build_etcd_go() {
  local t0; t0=$(date +%s)
  log "etcd $ETCD_VERSION: building go.etcd.io/etcd/server/v3 from the Go module proxy"
  # A wrapper module rather than `go install …@v`: etcd's own go.mod has
  # replace directives (../api, ../pkg, …), which `go install pkg@version` rejects.
  mkdir -p "$WORK/etcd" && cd "$WORK/etcd"
  printf 'module bakeoff.local/etcd-build\n\ngo 1.23.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  gocmd mod tidy -e >tidy.log 2>&1 || { cat tidy.log >&2; die "go mod tidy failed for etcd"; }
  gocmd build -trimpath -ldflags "-s -w" -o "$DIR/.etcd.tmp" go.etcd.io/etcd/server/v3 \
    || die "go build of etcd $ETCD_VERSION failed (see above)"
  mv -f "$DIR/.etcd.tmp" "$DIR/etcd"
  record etcd
  log "etcd $ETCD_VERSION built in $(elapsed "$t0")s"
}

install_etcd_deb() {
  # Debian's etcd-server, unpacked without installing (so no daemon starts).
  command -v apt-get >/dev/null || die "BAKEOFF_ETCD_SOURCE=deb needs apt-get"
  log "etcd: fetching Debian's etcd-server package"
  mkdir -p "$WORK/deb" && cd "$WORK/deb"
  apt-get -o APT::Sandbox::User=root download etcd-server >&2 || die "apt-get download etcd-server failed (run apt-get update as root first?)"
  dpkg-deb -x etcd-server_*.deb root
  install -m 0755 root/usr/bin/etcd "$DIR/.etcd.tmp"
  mv -f "$DIR/.etcd.tmp" "$DIR/etcd"
  record etcd
  log "etcd: installed $("$DIR/etcd" --version | head -1)"
}

# ---- h2spec ---------------------------------------------------------------------
# The HTTP/2 conformance suite (github.com/summerwind/h2spec, a module without a
# go.mod: its dependencies resolve to their newest versions on the proxy).
build_h2spec() {
  local t0; t0=$(date +%s)
  log "h2spec $H2SPEC_VERSION: go install github.com/summerwind/h2spec/cmd/h2spec@$H2SPEC_VERSION (about a minute)"
  mkdir -p "$WORK/h2spec" && cd "$WORK/h2spec"
  GOBIN="$WORK/h2spec/bin" gocmd install -trimpath -ldflags "-s -w" \
    "github.com/summerwind/h2spec/cmd/h2spec@$H2SPEC_VERSION" || die "go install of h2spec $H2SPEC_VERSION failed (see above)"
  install -m 0755 "$WORK/h2spec/bin/h2spec" "$DIR/.h2spec.tmp"
  mv -f "$DIR/.h2spec.tmp" "$DIR/h2spec"
  record h2spec
  log "h2spec $H2SPEC_VERSION built in $(elapsed "$t0")s"
}

# ---- helm -----------------------------------------------------------------------
build_helm() {
  local t0 ld; t0=$(date +%s)
  log "helm $HELM_VERSION: go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  # helm's Makefile stamps the Kubernetes version of its client-go (v0.N.P -> 1.N)
  # as the default for `helm template`/`lint` without --kube-version; unstamped,
  # helm assumes v1.20 and refuses any chart whose kubeVersion needs more.
  local hmod cg major minor p
  hmod="$(gocmd mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  cg="$(sed -n 's#^[[:space:]]*k8s.io/client-go v\([0-9.]*\).*#\1#p' "$hmod" | head -1)"
  [ -n "$cg" ] || die "could not find k8s.io/client-go in helm $HELM_VERSION's go.mod ($hmod)"
  major=$(( ${cg%%.*} + 1 )); minor="${cg#*.}"; minor="${minor%%.*}"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ld="$ld -X $p.k8sVersionMajor=$major -X $p.k8sVersionMinor=$minor"
  done
  log "helm: default Kubernetes version v$major.$minor (from its client-go v$cg)"
  mkdir -p "$WORK/helm" && cd "$WORK/helm"
  GOBIN="$WORK/helm/bin" gocmd install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    || die "go install of helm $HELM_VERSION failed (see above)"
  install -m 0755 "$WORK/helm/bin/helm" "$DIR/.helm.tmp"
  mv -f "$DIR/.helm.tmp" "$DIR/helm"
  record helm
  record helm-kube-default
  log "helm $HELM_VERSION built in $(elapsed "$t0")s"
}

log "building into $DIR with $("$GO" version)"
if [ "$MODE" = force ] || ! is_cached etcd; then
  if [ "$ETCD_SOURCE" = deb ]; then install_etcd_deb; else build_etcd_go; fi
fi
if [ "$MODE" = force ] || ! is_cached helm || ! is_cached helm-kube-default; then build_helm; fi
if [ "$MODE" = force ] || ! is_cached kube-apiserver; then build_kube_cmd kube-apiserver; fi
if [ "$CLUSTER" = 1 ]; then
  for c in kube-controller-manager kube-scheduler; do
    if [ "$MODE" = force ] || ! is_cached "$c"; then build_kube_cmd "$c"; fi
  done
  if [ "$MODE" = force ] || ! is_cached kwok || [ ! -d "$DIR/kwok-stages" ]; then build_kwok; fi
fi
if [ "$H2SPEC" = 1 ] && { [ "$MODE" = force ] || ! is_cached h2spec; }; then build_h2spec; fi
# kubectl: its own VERSIONS line, so adding it rebuilds nothing else.
if [ "$KUBECTL" = 1 ] && { [ "$MODE" = force ] || ! is_cached kubectl; }; then build_kube_cmd kubectl; fi
# jaeger: its own VERSIONS line too.
if [ "$JAEGER" = 1 ] && { [ "$MODE" = force ] || ! is_cached jaeger; }; then build_jaeger; fi

all_cached || die "internal error: assets still incomplete in $DIR"
echo "$DIR"
