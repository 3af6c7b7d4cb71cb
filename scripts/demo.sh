#!/usr/bin/env bash
# A real migration on local defaults: starts a Redis 7.0 source and a
# Valkey 8.0 target on free loopback ports, seeds sample data of every type
# (binary names and values, TTLs, big keys), analyzes and migrates it with
# kvmigrate run and prints the result. `make demo` installs the engines and builds first.
#
#   SOURCE_ENGINE=redis-8.0 TARGET_ENGINE=valkey-8.1 scripts/demo.sh
#   KEEP=1 scripts/demo.sh     # leave both servers running afterwards
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
engines=${KVMIGRATE_ENGINES:-$root/.engines}
src_engine=${SOURCE_ENGINE:-redis-7.0}
dst_engine=${TARGET_ENGINE:-valkey-8.0}
kvmigrate=$root/bin/kvmigrate

[ -x "$kvmigrate" ] || (cd "$root" && go build -o bin/kvmigrate ./cmd/kvmigrate)
for e in "$src_engine" "$dst_engine"; do
	[ -x "$engines/$e/bin/${e%-*}-server" ] || "$root/scripts/engines.sh" >/dev/null
done

work=$(mktemp -d -t kvmigrate-demo.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
start() { # engine port
	local kind=${1%-*} dir=$work/$2
	mkdir -p "$dir"
	"$engines/$1/bin/$kind-server" --port "$2" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$dir" --logfile "$dir/server.log" --daemonize no &
	pids+=($!)
	for _ in $(seq 100); do
		"$engines/$1/bin/$kind-cli" -p "$2" ping >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "demo: $1 did not start on port $2; see $dir/server.log" >&2
	exit 1
}
cleanup() {
	if [ "${KEEP:-0}" != 1 ]; then
		for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
		wait 2>/dev/null || true
		rm -rf "$work"
	fi
}
trap cleanup EXIT

sport=$(free_port)
tport=$(free_port)
start "$src_engine" "$sport"
start "$dst_engine" "$tport"
source_url=${src_engine%-*}://127.0.0.1:$sport
target_url=${dst_engine%-*}://127.0.0.1:$tport

echo "== source $src_engine at $source_url, target $dst_engine at $target_url"
"$kvmigrate" sample --target "$source_url" --per-type 50 --big --big-scale 10 --strings 50000
for db in 1 2; do
	"$kvmigrate" sample --target "$source_url/$db" --prefix "db$db:" --per-type 10 >/dev/null
done
echo "== kvmigrate run --source $source_url --target $target_url (analyze, gate, migrate)"
"$kvmigrate" run --source "$source_url" --target "$target_url" "$@"

echo "== key counts (DBSIZE per database), source vs target"
for db in 0 1 2; do
	s=$("$engines/$src_engine/bin/${src_engine%-*}-cli" -p "$sport" -n "$db" dbsize)
	t=$("$engines/$dst_engine/bin/${dst_engine%-*}-cli" -p "$tport" -n "$db" dbsize)
	echo "   db$db: $s → $t"
	[ "$s" = "$t" ] || { echo "demo: key counts differ in db$db" >&2; exit 1; }
done
if [ "${KEEP:-0}" = 1 ]; then
	echo "== servers left running: $source_url $target_url (data in $work)"
fi
