#!/usr/bin/env bash
# Build the real peers used by the integration tests from Go modules:
#   kube-apiserver   k8s.io/kubernetes/cmd/kube-apiserver   (wrapper module hack/peers/kubernetes)
#   etcd             go.etcd.io/etcd/server/v3              (wrapper module hack/peers/etcd)
#   knative-mtping   knative.dev/eventing/cmd/mtping        (wrapper module hack/peers/knative)
#   event_display    knative.dev/eventing/cmd/event_display (wrapper module hack/peers/knative)
#
# Usage: hack/build-peers.sh [PEER...]     (default: all peers)
# Env:   BIN_DIR        output directory, relative to the repo root unless absolute (default .bin)
#        PEERS_BUILD_P  go build -p parallelism (default 2; keeps memory low on small machines)
#        GO             go command (default go); needs Go >= 1.26 and the Go module proxy.
#
# Each binary is rebuilt only when its stamp (a hash of the wrapper's go.mod/go.sum, the build
# flags and the Go version) differs or the binary is missing. Only the wrapper go.mod/go.sum/tools.go
# live in the repo; the sources come from the module cache. To move to another version, edit the
# wrapper's go.mod (for kubernetes also the staging replace block) and run `go mod tidy` there.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS_DIR="$ROOT/hack/peers"
BIN_DIR=${BIN_DIR:-.bin}
case "$BIN_DIR" in /*) ;; *) BIN_DIR="$ROOT/$BIN_DIR" ;; esac
GO=${GO:-go}
PARALLELISM=${PEERS_BUILD_P:-2}
ALL_PEERS=(kube-apiserver etcd knative-mtping event_display)

usage() {
  echo "usage: $0 [${ALL_PEERS[*]}]" >&2
  exit 2
}

# modver DIR MODULE: the version of MODULE required by the wrapper module in DIR.
modver() {
  awk -v m="$2" '($1 == "require" && $2 == m) { print $3; exit } ($1 == m && $2 ~ /^v/) { print $2; exit }' "$1/go.mod"
}

# peer_config NAME: sets MOD_DIR, MODULE, PKG, TAGS, LDFLAGS for a peer.
peer_config() {
  TAGS=""
  LDFLAGS="-s -w"
  case "$1" in
    kube-apiserver)
      MOD_DIR="$PEERS_DIR/kubernetes"
      MODULE=k8s.io/kubernetes
      PKG=k8s.io/kubernetes/cmd/kube-apiserver
      TAGS=grpcnotrace
      local v major minor rest pkg
      v=$(modver "$MOD_DIR" "$MODULE")
      major=${v#v}; major=${major%%.*}
      rest=${v#v*.}; minor=${rest%%.*}
      # Same variables as kubernetes' hack/lib/version.sh (buildDate is left at its default
      # so the binary is reproducible).
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        LDFLAGS+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        LDFLAGS+=" -X $pkg.gitTreeState=clean"
      done
      ;;
    etcd)
      MOD_DIR="$PEERS_DIR/etcd"
      MODULE=go.etcd.io/etcd/server/v3
      PKG=go.etcd.io/etcd/server/v3
      # The etcd version itself is a constant in go.etcd.io/etcd/api/v3/version.
      LDFLAGS+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=go-module-$(modver "$MOD_DIR" "$MODULE")"
      ;;
    knative-mtping)
      MOD_DIR="$PEERS_DIR/knative"
      MODULE=knative.dev/eventing
      PKG=knative.dev/eventing/cmd/mtping
      ;;
    event_display)
      MOD_DIR="$PEERS_DIR/knative"
      MODULE=knative.dev/eventing
      PKG=knative.dev/eventing/cmd/event_display
      ;;
    *)
      echo "unknown peer: $1" >&2
      usage
      ;;
  esac
}

build_peer() {
  local name=$1
  peer_config "$name"
  local out="$BIN_DIR/$name" stamp="$BIN_DIR/.$name.stamp" version want start
  version=$(modver "$MOD_DIR" "$MODULE")
  want=$(
    {
      cat "$MOD_DIR/go.mod" "$MOD_DIR/go.sum"
      printf '%s\n' "$GO_VERSION" "$PKG" "tags=$TAGS" "ldflags=$LDFLAGS" "cgo=0 trimpath"
    } | sha256sum | cut -d' ' -f1
  )
  if [[ -x "$out" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$name: up to date ($MODULE@$version)"
    return 0
  fi
  echo "$name: building $PKG from $MODULE@$version ..."
  start=$SECONDS
  rm -f "$stamp"
  (
    cd "$MOD_DIR"
    CGO_ENABLED=0 "$GO" build -p "$PARALLELISM" -trimpath -buildvcs=false \
      ${TAGS:+-tags "$TAGS"} -ldflags "$LDFLAGS" -o "$out.tmp" "$PKG"
  )
  mv -f "$out.tmp" "$out"
  echo "$want" > "$stamp"
  echo "$name: built $out in $((SECONDS - start))s"
}

peers=()
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage ;;
    kube-apiserver | etcd | knative-mtping | event_display) peers+=("$arg") ;;
    *) echo "unknown peer: $arg" >&2; usage ;;
  esac
done
[[ ${#peers[@]} -gt 0 ]] || peers=("${ALL_PEERS[@]}")

mkdir -p "$BIN_DIR"
# Serialize concurrent invocations (e.g. parallel make targets) on the same BIN_DIR.
if command -v flock > /dev/null; then
  exec 9> "$BIN_DIR/.build-peers.lock"
  flock 9
fi
GO_VERSION=$("$GO" env GOVERSION)

for peer in "${peers[@]}"; do
  build_peer "$peer"
done
