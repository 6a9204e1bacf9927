#!/usr/bin/env bash
# Everything `npm test` needs beyond node_modules, installed the way the local stack installs
# its servers: Debian packages with apt when we are root (otherwise the exact command to run),
# and the Go-built tools (helm, kustomize) into the git-ignored .tools/bin. Idempotent and quick
# when everything is there. Used by `npm test`; `.ci/run` needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

# --- Debian packages: the servers the tests start privately, the browser of web/test, and
# promtool (Debian's prometheus package) for the rules of deploy/monitoring ----------------------
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v etcd >/dev/null || missing+=(etcd-server)
command -v setpriv >/dev/null || missing+=(util-linux)
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=(chromium)
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    say "missing: ${missing[*]}; install them with:"
    say "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
    exit 1
  fi
  say "installing ${missing[*]} with apt"
  apt-get update -qq
  # The packages' own services are not needed: the tests start private servers.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # prometheus enables a server of its own on :9090, the services' default metrics port. RUNLEVEL=1
  # (and a container's policy-rc.d) keep it from starting; under systemd, stop what we installed.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

# --- Go-built tools into .tools/bin ---------------------------------------------------------------
# Built from source with `go install`: the only way to get them from the registries this project
# reaches. Each is stamped with its version so a bump rebuilds it.
mkdir -p .tools/bin
go_bin=$(command -v go || true)
[ -n "$go_bin" ] || [ ! -x /usr/local/go/bin/go ] || go_bin=/usr/local/go/bin/go
go_tool() { # name module version
  if [ -x ".tools/bin/$1" ] && [ "$(cat ".tools/bin/.$1-version" 2>/dev/null)" = "$3" ]; then return; fi
  if [ -z "$go_bin" ]; then
    say "$1 $3 is needed by npm test and Go is not installed to build it. Install Go, then run:"
    say "  GOBIN=$PWD/.tools/bin go install $2@$3"
    exit 1
  fi
  say "building $1 $3 with go install into .tools/bin (a few minutes the first time)"
  GOBIN="$PWD/.tools/bin" GOFLAGS=-mod=mod "$go_bin" install "$2@$3"
  echo "$3" >".tools/bin/.$1-version"
}
go_tool helm helm.sh/helm/v3/cmd/helm v3.22.0
# grpcurl: the reflection tests call the services as a gRPC user would, without .proto files.
go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl v1.9.3
# connectconformance: `npm run conformance` runs the Connect conformance suite against the edge
# (conformance/run.ts reads this version from here and fetches the suite's .proto files with it).
go_tool connectconformance connectrpc.com/conformance/cmd/connectconformance v1.0.7
# kustomize builds k8s/; `kubectl kustomize` does the same where kubectl is installed.
if ! command -v kustomize >/dev/null && ! command -v kubectl >/dev/null; then
  go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 v5.7.1
fi
