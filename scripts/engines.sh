#!/usr/bin/env bash
# Installs the Redis and Valkey engines kvmigrate's tests and demo use, as
# plain binaries on this machine (no Docker):
#
#   redis-7.0   Debian bookworm            (apt, system-wide)
#   valkey-8.0  Debian bookworm-backports  (apt, system-wide)
#   redis-8.0   Debian trixie, extracted into $KVMIGRATE_ENGINES/redis-8.0
#   valkey-8.1  Debian trixie, extracted into $KVMIGRATE_ENGINES/valkey-8.1
#   modules/redisearch.so  RediSearch 1.2 (Debian bookworm's redis-redisearch),
#               extracted, not installed: a real module for the analysis tests
#
# The trixie packages are fetched with a private apt configuration (its own
# source list and state folder under the cache) and unpacked with dpkg -x:
# nothing from trixie is ever installed, so the system libc is untouched.
# Each extracted engine runs through its own loader; the script writes a
# wrapper per binary (bin/redis-server, bin/redis-cli, ...) that does so.
#
# Re-running is cheap: finished engines are detected and skipped.
# Prints the engine directory on the last line. Usage: scripts/engines.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${KVMIGRATE_ENGINES:-$root/.engines}
mkdir -p "$dest"

log() { printf 'engines: %s\n' "$*" >&2; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- bookworm: redis 7.0 and valkey 8.0 (backports) -------------------------
install_bookworm() {
	local need=0
	command -v redis-server >/dev/null || need=1
	command -v valkey-server >/dev/null || need=1
	command -v redis-benchmark >/dev/null || need=1
	[ "$need" -eq 1 ] || return 0
	local src=/etc/apt/sources.list.d/bookworm-backports.sources
	if [ ! -f "$src" ] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		log "adding bookworm-backports source"
		as_root tee "$src" >/dev/null <<-EOF
			Types: deb
			URIs: http://deb.debian.org/debian
			Suites: bookworm-backports
			Components: main
			Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		EOF
	fi
	log "apt-get install redis 7.0 (bookworm) and valkey 8.0 (bookworm-backports)"
	as_root apt-get update -qq
	DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
		redis-server redis-tools >/dev/null
	DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
		-t bookworm-backports valkey-server valkey-tools >/dev/null
	# The Debian packages start system services on the default ports; the
	# tests start their own servers, so stop those to free the ports and CPU.
	for svc in redis-server valkey-server; do
		if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
			as_root systemctl stop "$svc" || true
		fi
		as_root pkill -f "/usr/bin/$svc 127.0.0.1:6379" 2>/dev/null || true
	done
}

# --- trixie: redis 8.0 and valkey 8.1, extracted --------------------------
trixie_libs="libc6 libstdc++6 libgcc-s1 libatomic1 libssl3t64 libjemalloc2 liblzf1 liblua5.1-0 libhiredis1.1.0 libsystemd0 libcap2 libgcrypt20 liblzma5 libzstd1 liblz4-1 libgpg-error0"

apt_trixie() {
	local state=$dest/.apt-trixie
	mkdir -p "$state/lists/partial" "$state/archives/partial" "$state/etc"
	[ -f "$state/etc/trixie.sources" ] || cat >"$state/etc/trixie.sources" <<-EOF
		Types: deb
		URIs: http://deb.debian.org/debian
		Suites: trixie
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	apt-get -qq \
		-o Dir::Etc::SourceList=/dev/null \
		-o Dir::Etc::SourceParts="$state/etc" \
		-o Dir::State::Lists="$state/lists" \
		-o Dir::Cache::Archives="$state/archives" \
		-o Dir::State::Status=/dev/null \
		-o APT::Sandbox::User=root \
		-o Debug::NoLocking=1 \
		"$@"
}

extract_trixie() {
	local name=$1 server=$2 tools=$3
	local dir=$dest/$name
	if [ -x "$dir/bin/$server" ] && [ -f "$dir/.done" ]; then
		return 0
	fi
	log "fetching $name from Debian trixie (download + dpkg -x, not installed)"
	if [ ! -f "$dest/.apt-trixie/.updated" ]; then
		apt_trixie update
		touch "$dest/.apt-trixie/.updated"
	fi
	local debs=$dest/.debs-$name
	rm -rf "$debs" "$dir"
	mkdir -p "$debs" "$dir/root" "$dir/bin"
	(cd "$debs" && apt_trixie download "$server" "$tools" $trixie_libs)
	for deb in "$debs"/*.deb; do dpkg -x "$deb" "$dir/root"; done
	rm -rf "$debs"
	local r=$dir/root
	local lib=$r/usr/lib/x86_64-linux-gnu:$r/lib/x86_64-linux-gnu
	local ld=$r/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
	[ -e "$ld" ] || ld=$r/lib64/ld-linux-x86-64.so.2
	local base=${server%-server}
	for b in "$r"/usr/bin/"$base"-*; do
		local n
		n=$(basename "$b")
		# redis-check-* etc. are symlinks to the server; resolve to a file.
		local target
		target=$(readlink -f "$b")
		case "$target" in "$r"/*) ;; *) target=$r/usr/bin/$(basename "$(readlink "$b")") ;; esac
		cat >"$dir/bin/$n" <<-EOF
			#!/bin/sh
			# $name from Debian trixie, run through its own loader.
			exec "$ld" --argv0 "$n" --library-path "$lib" "$target" "\$@"
		EOF
		chmod +x "$dir/bin/$n"
	done
	"$dir/bin/$server" --version >&2
	touch "$dir/.done"
}

# The bookworm engines are linked as wrappers too, so that every engine is
# found the same way: $dest/<name>/bin/<binary>.
link_system() {
	local name=$1 base=$2
	local dir=$dest/$name/bin
	mkdir -p "$dir"
	for b in server cli benchmark; do
		[ -x "/usr/bin/$base-$b" ] && ln -sf "/usr/bin/$base-$b" "$dir/$base-$b"
	done
	touch "$dest/$name/.done"
}

# --- a real module for the analysis tests: RediSearch from bookworm --------
# Downloaded and extracted (dpkg -x), not installed; Redis 7.0 loads it.
fetch_modules() {
	local dir=$dest/modules
	[ -f "$dir/redisearch.so" ] && return 0
	log "fetching redis-redisearch (bookworm) for the module tests (download + dpkg -x, not installed)"
	local tmp
	tmp=$(mktemp -d)
	if ! (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root redis-redisearch) 2>/dev/null; then
		as_root apt-get update -qq
		(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root redis-redisearch)
	fi
	dpkg -x "$tmp"/redis-redisearch_*.deb "$tmp/root"
	mkdir -p "$dir"
	cp "$tmp/root/usr/lib/redis/modules/redisearch.so" "$dir/redisearch.so"
	rm -rf "$tmp"
}

install_bookworm
fetch_modules
link_system redis-7.0 redis
link_system valkey-8.0 valkey
extract_trixie redis-8.0 redis-server redis-tools
extract_trixie valkey-8.1 valkey-server valkey-tools

for e in redis-7.0 valkey-8.0 redis-8.0 valkey-8.1; do
	base=${e%-*}
	printf 'engines: %-11s %s\n' "$e" "$("$dest/$e/bin/$base-server" --version | head -1 | cut -c1-60)" >&2
done
echo "$dest"
