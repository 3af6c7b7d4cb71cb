#!/usr/bin/env bash
# kvmigrate benchmark (`make bench`; results and method in BENCHMARKS.md).
#
# Starts its own source and target servers (default Redis 7.0 -> Valkey 8.0)
# on free loopback ports, without persistence, and in one run measures:
#   1. the target's ingest ceiling: redis-benchmark -t set -P 64 -d 32 (the
#      target engine's own, valkey-benchmark for Valkey) and `cli --pipe` of
#      SET for the same keys the source holds, into the idle target;
#   2. kvmigrate migrate on N small strings, every strategy, REPS times,
#      interleaved with the pipe ceiling so both see the same machine load;
#   3. a mixed dataset (every type, ~30 % with TTLs, big keys), every strategy;
#   4. kvmigrate's peak RSS while copying only the big keys, full and 1/4
#      size, every strategy (memory must not grow with the key size);
#   5. a CPU profile of one run on the small strings (pprof -top);
#   6. (part "cluster", not in the default parts; `make bench-cluster`) a
#      3-master source cluster -> 3-master target cluster of the same two
#      engines: N small strings over all slots, and a mixed dataset of the
#      same N keys, each copied with --parallel 1 (one master at a time),
#      with the default --parallel (every master at once), and standalone
#      -> standalone, the three interleaved, REPS times; ratios between
#      them, and a CPU profile of a cluster run and of a standalone run.
# For every run it records wall time and the CPU time of kvmigrate (or the
# client), source and target, and of everything else on the machine.
#
# Writes bench/out/results.json (+ rows.jsonl, profiles) and prints markdown
# tables. No pass/fail on timings: it fails only when a copy is wrong.
#
#   BENCH_SOURCE=redis-8.0 BENCH_TARGET=valkey-8.1 bench/run.sh
#   BENCH_KEYS=200000 BENCH_REPS=1 BENCH_PARTS="strings" bench/run.sh
#   BENCH_STRATEGIES="commands" BENCH_PARTS="strings" bench/run.sh
#   BENCH_PARTS="cluster" bench/run.sh          # make bench-cluster
#   BENCH_CLUSTER_KEYS=100000 BENCH_REPS=1 BENCH_PARTS="cluster" bench/run.sh
#
# Environment (defaults): BENCH_SOURCE (redis-7.0), BENCH_TARGET (valkey-8.0),
# BENCH_KEYS (1000000), BENCH_REPS (3), BENCH_STRATEGIES (auto dump commands),
# BENCH_PARTS (strings mixed rss profile), BENCH_MIXED_PER_TYPE (10000),
# BENCH_MIXED_REPS (1), BENCH_OUT (bench/out), KVMIGRATE (bin/kvmigrate),
# BENCH_KV_ARGS (extra flags for every migrate, e.g. "--concurrency 100"),
# BENCH_QUIET_WAIT (10: at most this many seconds to wait for an idle
# machine before each timed run), BENCH_RETRIES (2: a run during which
# other processes took > 10 % of the CPU is redone, this many times at
# most), BENCH_BUDGET (480: no more redos after this many seconds),
# KVMIGRATE_ENGINES (.engines).
# Part "cluster": BENCH_CLUSTER_KEYS (300000: keys of each dataset),
# BENCH_CLUSTER_STRATEGIES (auto), BENCH_CLUSTER_DATASETS (strings mixed);
# it uses BENCH_REPS and BENCH_MIXED_PER_TYPE (at most a 28th of the keys).
# BENCH_COMPARE="LABEL=/path/to/another/kvmigrate" also runs that binary on
# the small strings and the mixed dataset, interleaved with the current
# one: before/after of a change in one run, e.g.
# BENCH_COMPARE="before=/tmp/kvmigrate.old".
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
engines=${KVMIGRATE_ENGINES:-$root/.engines}
src_engine=${BENCH_SOURCE:-redis-7.0}
dst_engine=${BENCH_TARGET:-valkey-8.0}
nkeys=${BENCH_KEYS:-1000000}
reps=${BENCH_REPS:-3}
read -r -a strategies <<<"${BENCH_STRATEGIES:-auto dump commands}"
parts=" ${BENCH_PARTS:-strings mixed rss profile} "
cluster_keys=${BENCH_CLUSTER_KEYS:-300000}
read -r -a cluster_strategies <<<"${BENCH_CLUSTER_STRATEGIES:-auto}"
read -r -a cluster_datasets <<<"${BENCH_CLUSTER_DATASETS:-strings mixed}"
mixed_per_type=${BENCH_MIXED_PER_TYPE:-10000}
mixed_reps=${BENCH_MIXED_REPS:-1}
out=${BENCH_OUT:-$root/bench/out}
kv=${KVMIGRATE:-$root/bin/kvmigrate}
compare=${BENCH_COMPARE:-}
compare_label=${compare%%=*} compare_bin=${compare#*=}
read -r -a kv_args <<<"${BENCH_KV_ARGS:-}"
retries=${BENCH_RETRIES:-2}
budget=${BENCH_BUDGET:-480}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
has() { [[ $parts == *" $1 "* ]]; }
if [ -n "$compare" ]; then
	[[ $compare == *=* && -x $compare_bin ]] || die "BENCH_COMPARE=$compare: want LABEL=/path/to/kvmigrate"
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
need_pkg() { # binary package
	[ -x "$1" ] || command -v "$1" >/dev/null 2>&1 && return 0
	log "installing $2 (apt)"
	as_root apt-get install -y -qq --no-install-recommends "$2" >/dev/null ||
		{ as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }
}
need_pkg /usr/bin/time time
need_pkg jq jq

[ -x "$kv" ] || (cd "$root" && go build -o bin/kvmigrate ./cmd/kvmigrate)
tools() { # engine -> sets server, cli, benchmark
	local kind=${1%%-*} dir=$engines/$1/bin
	[ -x "$dir/$kind-server" ] || "$root/scripts/engines.sh" >/dev/null
	[ -x "$dir/$kind-server" ] || die "no $dir/$kind-server: run scripts/engines.sh"
	server=$dir/$kind-server cli=$dir/$kind-cli benchmark=$dir/$kind-benchmark
	[ -x "$benchmark" ] || benchmark=$(command -v redis-benchmark || command -v valkey-benchmark) ||
		die "no redis-benchmark or valkey-benchmark found"
}
tools "$src_engine"; src_server=$server src_cli=$cli
tools "$dst_engine"; dst_server=$server dst_cli=$cli dst_bench=$benchmark

work=$(mktemp -d -t kvmigrate-bench.XXXXXX)
mkdir -p "$out"
rows=$out/rows.jsonl
: >"$rows"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null && return
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 40000))
		ss -Htln "( sport = :$p )" 2>/dev/null | grep -q . || { echo "$p"; return; }
	done
	die "no free port"
}

# With cluster_node=1, the server is started in cluster mode, its bus on a
# second free port (cluster-port) rather than port + 10000.
start() { # name server cli -> sets <name>_port, <name>_pid
	local name=$1 bin=$2 cli=$3 dir=$work/$1 port pid cluster_args=()
	mkdir -p "$dir"
	for _ in 1 2 3; do
		port=$(free_port)
		[ "${cluster_node:-0}" = 1 ] && cluster_args=(--cluster-enabled yes --cluster-port "$(free_port)"
			--cluster-config-file nodes.conf --cluster-node-timeout 5000)
		"$bin" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
			--dir "$dir" --logfile "$dir/server.log" --daemonize no "${cluster_args[@]}" &
		pid=$!
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			if "$cli" -p "$port" ping 2>/dev/null | grep -q PONG; then
				pids+=("$pid")
				printf -v "${name}_port" %s "$port"
				printf -v "${name}_pid" %s "$pid"
				return 0
			fi
			sleep 0.1
		done
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	die "$bin did not start; see $dir/server.log"
}

start src "$src_server" "$src_cli"
start dst "$dst_server" "$dst_cli"
src_url=redis://127.0.0.1:$src_port
dst_url=redis://127.0.0.1:$dst_port
scli() { "$src_cli" -p "$src_port" "$@"; }
dcli() { "$dst_cli" -p "$dst_port" "$@"; }

# pair standalone|cluster: the source and target that migrate copies
# between and measure accounts for (URLs, PIDs and ports of every master).
pair() {
	case $1 in
	standalone)
		p_src_url=$src_url p_src_pids=$src_pid p_src_ports=$src_port
		p_dst_url=$dst_url p_dst_pids=$dst_pid p_dst_ports=$dst_port ;;
	cluster)
		p_src_url=$csrc_url p_src_pids=$csrc_pids p_src_ports=$csrc_ports
		p_dst_url=$cdst_url p_dst_pids=$cdst_pids p_dst_ports=$cdst_ports ;;
	*) die "pair $1" ;;
	esac
}
pair standalone
version() { "$1" -p "$2" info server | tr -d '\r' | awk -F: '$1=="valkey_version"{v=$2} $1=="redis_version"&&v==""{v=$2} END{print v}'; }
src_version=$(version "$src_cli" "$src_port")
dst_version=$(version "$dst_cli" "$dst_port")
log "source $src_engine $src_version on :$src_port, target $dst_engine $dst_version on :$dst_port, work dir $work"

# --- measurement -------------------------------------------------------------
# CPU ticks (user+sys) of a process, and busy ticks of the whole machine.
tck=$(getconf CLK_TCK)
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12+$13}'; }
# ticks_of PID...: the ticks of each, on one line.
ticks_of() { (cd /proc && sed 's/.*) //' "${@/%//stat}") | awk '{printf "%s%d", (NR > 1 ? " " : ""), $12 + $13}'; }
# cpu_delta "BEFORE" "AFTER": seconds between two ticks_of lines, as
# "total per-process,per-process,...".
cpu_delta() {
	awk -v a="$1" -v b="$2" -v hz="$tck" 'BEGIN {
		n = split(a, x, " "); split(b, y, " ")
		for (i = 1; i <= n; i++) { d = (y[i] - x[i]) / hz; s += d; l = l (i > 1 ? "," : "") sprintf("%.2f", d) }
		printf "%.2f %s", s, l }'
}
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
now_ns() { date +%s%N; }

# wait_quiet: other engineers' work shares these cores. Before a timed
# run, wait (at most $quiet_wait s) until the machine is nearly idle; the
# CPU that other processes still take during the run is recorded as "other".
quiet_wait=${BENCH_QUIET_WAIT:-10}
wait_quiet() {
	local a b i
	m_waited=0
	# Past the time budget, measure as the machine is.
	[ $((($(now_ns) - bench_started) / 1000000000)) -lt "$budget" ] || return 0
	for i in $(seq $((quiet_wait * 2))); do
		a=$(busy_ticks)
		sleep 0.5
		b=$(busy_ticks)
		[ $((b - a)) -le $((tck / 20)) ] && return 0 # < 10 % of one core
		m_waited=$i
	done
}

# commandstats CLI PORT: INFO commandstats as {"cmd":{"calls":n,"usec":n}}.
commandstats() {
	"$1" -p "$2" info commandstats | tr -d '\r' | awk -F'[:,=]' '
		/^cmdstat_/ { sub(/^cmdstat_/, "", $1); printf "%s\"%s\":{\"calls\":%s,\"usec\":%s}", sep, $1, $3, $5; sep = "," }
		BEGIN { printf "{" } END { printf "}" }'
}
# commandstats_sum CLI PORT...: commandstats of each server, summed.
commandstats_sum() {
	local cli=$1 p
	shift
	[ $# -eq 1 ] && { commandstats "$cli" "$1"; return; }
	for p; do commandstats "$cli" "$p"; echo; done |
		jq -cs 'reduce (.[] | to_entries[]) as $e ({}; .[$e.key].calls += $e.value.calls | .[$e.key].usec += $e.value.usec)'
}

# measure CMD... : runs CMD under /usr/bin/time -v (stdin from $stdin,
# stdout to $stdout) and sets m_wall_ms m_cpu_client m_cpu_src m_cpu_dst
# m_cpu_other (seconds) m_rss_kb m_rc m_cmdstats. With quiet=1 it first
# waits for an idle machine.
stdin=/dev/null stdout=/dev/null quiet=1
# Every FLUSHALL is SYNC: Valkey 8 frees flushed keys in a background
# thread by default (lazyfree-lazy-user-flush yes), which would eat into
# the next timed run.
#
# The source and target it accounts for are the current pair (see pair):
# one server each, or every master of a cluster (CPU summed, and per master
# in cpu.sourceNodes / cpu.targetNodes; commandstats summed).
measure() {
	local tv=$work/time.txt s0 d0 b0 t0 t1 s1 d1 b1 p r
	m_waited=0
	[ "$quiet" = 1 ] && wait_quiet
	for p in $p_src_ports; do "$src_cli" -p "$p" config resetstat >/dev/null; done
	for p in $p_dst_ports; do "$dst_cli" -p "$p" config resetstat >/dev/null; done
	# shellcheck disable=SC2086 # lists of PIDs
	s0=$(ticks_of $p_src_pids) d0=$(ticks_of $p_dst_pids) b0=$(busy_ticks) t0=$(now_ns)
	m_rc=0
	/usr/bin/time -v -o "$tv" "$@" <"$stdin" >"$stdout" 2>"$work/stderr.txt" || m_rc=$?
	# shellcheck disable=SC2086
	t1=$(now_ns) s1=$(ticks_of $p_src_pids) d1=$(ticks_of $p_dst_pids) b1=$(busy_ticks)
	m_wall_ms=$(((t1 - t0) / 1000000))
	m_cpu_client=$(awk -F': ' '/User time|System time/{s+=$2} END{printf "%.2f", s}' "$tv")
	m_rss_kb=$(awk -F': ' '/Maximum resident set size/{print $2}' "$tv")
	r=$(cpu_delta "$s0" "$s1") m_cpu_src=${r%% *} m_cpu_src_nodes=${r#* }
	r=$(cpu_delta "$d0" "$d1") m_cpu_dst=${r%% *} m_cpu_dst_nodes=${r#* }
	m_cpu_other=$(awk -v t=$((b1 - b0)) -v hz="$tck" -v u="$m_cpu_src $m_cpu_dst $m_cpu_client" \
		'BEGIN{split(u, a, " "); o = t/hz - a[1] - a[2] - a[3]; printf "%.2f", (o < 0 ? 0 : o)}')
	# shellcheck disable=SC2086
	m_cmdstats="{\"source\":$(commandstats_sum "$src_cli" $p_src_ports),\"target\":$(commandstats_sum "$dst_cli" $p_dst_ports)}"
}
cpu_json() {
	printf '"wallMs":%s,"cpu":{"client":%s,"source":%s,"target":%s,"other":%s,"sourceNodes":[%s],"targetNodes":[%s]},"contended":%s,"attempt":%s,"maxRssKB":%s,"quietWaitS":%s,"commandstats":%s' \
		"$m_wall_ms" "$m_cpu_client" "$m_cpu_src" "$m_cpu_dst" "$m_cpu_other" "$m_cpu_src_nodes" "$m_cpu_dst_nodes" \
		"${m_contended:-false}" "${m_attempt:-1}" "${m_rss_kb:-0}" \
		"$(awk -v w="$m_waited" 'BEGIN{print w/2}')" "$m_cmdstats"
}
row() { echo "$1" >>"$rows"; }

# accept ATTEMPT: keep a timed measurement unless other processes took more
# than 10 % of the machine during it; then it is redone (BENCH_RETRIES
# times at most, and only while the whole run is under BENCH_BUDGET s).
accept() {
	m_contended=$(awk -v o="$m_cpu_other" -v w="$m_wall_ms" 'BEGIN{print (o * 1000 > 0.2 * w && o > 0.1) ? "true" : "false"}')
	m_attempt=$1
	[ "$m_contended" = false ] && return 0
	[ "$quiet" = 1 ] && [ "$1" -le "$retries" ] &&
		[ $((($(now_ns) - bench_started) / 1000000000)) -lt "$budget" ] || return 0
	log "  (other processes took ${m_cpu_other} CPU s during that run: measuring again)"
	return 1
}
dbsize() { "$@" dbsize | tr -d '\r'; }
# counts CLI PORT...: DBSIZE of a server; of a cluster, DBSIZE of each
# master in the order of its first slot, e.g. "99844 100278 99878".
counts() {
	local cli=$1 p
	shift
	[ $# -eq 1 ] && { dbsize "$cli" -p "$1"; return; }
	for p; do
		printf '%s %s\n' "$("$cli" -p "$p" cluster nodes | awk '/myself/ {split($9, a, "-"); print a[1]}')" "$(dbsize "$cli" -p "$p")"
	done | sort -n | awk '{printf "%s%s", (NR > 1 ? " " : ""), $2}'
}
flush() { # CLI PORT...
	local cli=$1 p
	shift
	for p; do "$cli" -p "$p" flushall sync >/dev/null; done
}

# migrate KIND STRATEGY EXPECT [flags...]: one kvmigrate run into the flushed
# target; checks the exit code, failed == 0 and the target key count.
# EXPECT is the target's key count, or for a cluster the key count of
# each master ordered by slot (see counts); 0: not checked.
migrate() {
	local kind=$1 strategy=$2 expect=$3 extra
	shift 3
	extra=("$@")
	local attempt=1
	while :; do
		# shellcheck disable=SC2086
		flush "$dst_cli" $p_dst_ports
		stdout=$work/migrate.json
		measure "${kv_bin:-$kv}" migrate --source "$p_src_url" --target "$p_dst_url" --strategy "$strategy" \
			--json --no-progress --job-store "$work/jobs.db" "${kv_args[@]}" "${extra[@]}"
		stdout=/dev/null
		accept $attempt && break
		attempt=$((attempt + 1))
	done
	local copied failed elapsed tgt
	copied=$(jq '.job.counters.copied' "$work/migrate.json" 2>/dev/null || echo -1)
	failed=$(jq '.job.counters.failed' "$work/migrate.json" 2>/dev/null || echo -1)
	elapsed=$(jq '.elapsedMs' "$work/migrate.json" 2>/dev/null || echo 0)
	# shellcheck disable=SC2086
	tgt=$(counts "$dst_cli" $p_dst_ports)
	if [ "$m_rc" -ne 0 ] || [ "$failed" != 0 ] || { [ "$expect" != 0 ] && [ "$tgt" != "$expect" ]; }; then
		cat "$work/stderr.txt" >&2
		die "$kind/$strategy: exit $m_rc, $copied copied, $failed failed, target has $tgt keys (want $expect)"
	fi
	m_copied=$copied
	m_keys_per_sec=$((copied * 1000 / m_wall_ms))
	row "$(printf '{"kind":"%s","binary":"%s","strategy":"%s","copied":%s,"bytes":%s,"elapsedMs":%s,"keysPerSec":%s,"targetKeys":"%s","shards":%s,%s%s}' \
		"$kind" "${kv_label:-current}" "$strategy" "$copied" "$(jq '.job.counters.bytes' "$work/migrate.json")" "$elapsed" \
		"$m_keys_per_sec" "$tgt" "$(jq -c '[.shards[] | {node, db, copied: .counters.copied, updatedAt}]' "$work/migrate.json")" \
		"$(cpu_json)" "${row_extra:-}")"
	log "$kind ${kv_label:-current} $strategy: $copied keys in ${m_wall_ms} ms = $m_keys_per_sec keys/s; CPU s kvmigrate $m_cpu_client, source $m_cpu_src, target $m_cpu_dst, other $m_cpu_other; peak RSS $((m_rss_kb / 1024)) MiB"
}

# pipe_ceiling REP: redis-cli --pipe of the SETs into the flushed idle target.
pipe_ceiling() {
	local attempt=1
	while :; do
		dcli flushall sync >/dev/null
		stdin=$work/strings.resp
		measure "$dst_cli" -p "$dst_port" --pipe
		stdin=/dev/null
		accept $attempt && break
		attempt=$((attempt + 1))
	done
	local n
	n=$(dbsize dcli)
	[ "$n" = "$nkeys" ] || die "pipe ceiling: target has $n keys, want $nkeys"
	m_keys_per_sec=$((nkeys * 1000 / m_wall_ms))
	row "$(printf '{"kind":"ceiling-pipe","rep":%s,"keysPerSec":%s,%s}' "$1" "$m_keys_per_sec" "$(cpu_json)")"
	log "ceiling pipe: $nkeys SETs in $m_wall_ms ms = $m_keys_per_sec keys/s; CPU s cli $m_cpu_client, target $m_cpu_dst, other $m_cpu_other"
	dcli flushall sync >/dev/null
}

bench_ceiling() {
	local attempt=1
	while :; do
		dcli flushall sync >/dev/null
		stdout=$work/benchmark.txt
		measure "$dst_bench" -p "$dst_port" -t set -P 64 -d 32 -n "$nkeys" -r "$nkeys" -q
		stdout=/dev/null
		accept $attempt && break
		attempt=$((attempt + 1))
	done
	local rps
	rps=$(tr '\r' '\n' <"$work/benchmark.txt" | awk '/^SET: [0-9.]+ requests per second/{v=$2} END{printf "%d", v}')
	row "$(printf '{"kind":"ceiling-benchmark","rep":%s,"keysPerSec":%s,%s}' "$1" "$rps" "$(cpu_json)")"
	log "ceiling $(basename "$dst_bench") -t set -P 64 -d 32: $rps SET/s; CPU s benchmark $m_cpu_client, target $m_cpu_dst, other $m_cpu_other"
	dcli flushall sync >/dev/null
}

# RESP for SET sample:str:<i> <32 bytes> [PX ttl], i in [from, to).
resp_sets() { # from to ttl_ms(0: none)
	awk -v from="$1" -v to="$2" -v ttl="$3" 'BEGIN {
		v = "0123456789abcdef0123456789abcdef"
		for (i = from; i < to; i++) {
			k = "sample:str:" i
			if (ttl > 0) {
				t = ttl + i % 1000
				printf "*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$32\r\n%s\r\n$2\r\nPX\r\n$%d\r\n%d\r\n", length(k), k, v, length(t ""), t
			} else
				printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$32\r\n%s\r\n", length(k), k, v
		}
	}'
}

bench_started=$(now_ns)
machine_load=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 1 + 2: small strings ----------------------------------------------------
if has strings || has profile; then
	log "generating $nkeys SETs (RESP) and loading them into the source"
	resp_sets 0 "$nkeys" 0 >"$work/strings.resp"
	scli flushall sync >/dev/null
	scli --pipe <"$work/strings.resp" >/dev/null
	[ "$(dbsize scli)" = "$nkeys" ] || die "source has $(dbsize scli) keys, want $nkeys"
fi
if has strings; then
	for rep in $(seq "$reps"); do
		bench_ceiling "$rep"
		pipe_ceiling "$rep"
		# Rotate the strategy order so no strategy always runs first.
		n=${#strategies[@]}
		for i in $(seq 0 $((n - 1))); do
			s=${strategies[$(((i + rep - 1) % n))]}
			row_extra=",\"rep\":$rep" migrate strings "$s" "$nkeys"
			if [ -n "$compare" ]; then
				kv_bin=$compare_bin kv_label=$compare_label row_extra=",\"rep\":$rep" migrate strings "$s" "$nkeys"
			fi
		done
	done
fi

# --- 5: profile ----------------------------------------------------------------
if has profile; then
	prof_strategy=${strategies[0]}
	row_extra=',"profiled":true' migrate profile "$prof_strategy" "$nkeys" \
		--cpuprofile "$out/cpu-$prof_strategy.prof" --memprofile "$out/mem-$prof_strategy.prof"
	if command -v go >/dev/null; then
		go tool pprof -top -nodecount=25 "$kv" "$out/cpu-$prof_strategy.prof" >"$out/pprof-top-$prof_strategy.txt" 2>/dev/null || true
		go tool pprof -top -cum -nodecount=40 "$kv" "$out/cpu-$prof_strategy.prof" >"$out/pprof-cum-$prof_strategy.txt" 2>/dev/null || true
	fi
fi

# --- 3: mixed dataset ----------------------------------------------------------
if has mixed || has rss; then
	# sample --per-type N: 7 types x (N without TTL + N with TTL), binary
	# names/values; --big: a 200k-field hash, 500k list, 50k set and zset,
	# 20k-entry stream. Then small strings, some with TTL, to reach ~30 %.
	scli flushall sync >/dev/null
	log "seeding the mixed dataset (per-type $mixed_per_type, big keys)"
	"$kv" sample --target "$src_url" --per-type "$mixed_per_type" --big >/dev/null
	ttl_strings=$((3 * mixed_per_type))
	total=$(((7 * mixed_per_type + ttl_strings) * 10 / 3))
	plain_strings=$((total - 14 * mixed_per_type - 5 - ttl_strings))
	{ resp_sets 0 "$ttl_strings" 3600000; resp_sets "$ttl_strings" $((ttl_strings + plain_strings)) 0; } >"$work/mixed.resp"
	scli --pipe <"$work/mixed.resp" >/dev/null
	mixed_keys=$(dbsize scli)
	mixed_expires=$(scli info keyspace | tr -d '\r' | sed -n 's/^db0:.*expires=\([0-9]*\).*/\1/p')
	mixed_used=$(scli info memory | tr -d '\r' | awk -F: '$1=="used_memory"{print $2}')
	row "$(printf '{"kind":"mixed-dataset","keys":%s,"withTTL":%s,"usedMemory":%s,"perType":%s}' \
		"$mixed_keys" "$mixed_expires" "$mixed_used" "$mixed_per_type")"
	log "mixed dataset: $mixed_keys keys, $mixed_expires with TTL ($((100 * mixed_expires / mixed_keys)) %)"
fi
if has mixed; then
	for rep in $(seq "$mixed_reps"); do
		for s in "${strategies[@]}"; do
			row_extra=",\"rep\":$rep" migrate mixed "$s" "$mixed_keys" --cpuprofile "$out/cpu-mixed-$s.prof"
			if [ -n "$compare" ]; then
				kv_bin=$compare_bin kv_label=$compare_label row_extra=",\"rep\":$rep" migrate mixed "$s" "$mixed_keys"
			fi
		done
	done
fi

if has mixed && command -v go >/dev/null; then
	for s in "${strategies[@]}"; do
		go tool pprof -top -nodecount=25 "$kv" "$out/cpu-mixed-$s.prof" >"$out/pprof-top-mixed-$s.txt" 2>/dev/null || true
	done
fi

# --- 4: peak RSS on the big keys ------------------------------------------------
if has rss; then
	"$kv" sample --target "$src_url" --prefix quarter: --per-type 1 --big --big-scale 4 >/dev/null
	big_bytes() { # prefix: sum of MEMORY USAGE of its five big keys
		local k sum=0
		for k in hash list set zset stream; do
			sum=$((sum + $(scli memory usage "$1big:$k" samples 0 | tr -d '\r')))
		done
		echo "$sum"
	}
	full_bytes=$(big_bytes sample:)
	quarter_bytes=$(big_bytes quarter:)
	quiet=0 # peak RSS does not depend on the machine's load
	row_extra=',"size":"none","sourceBytes":0' migrate rss "${strategies[0]}" 0 --match 'nothing:matches:*'
	for s in "${strategies[@]}"; do
		row_extra=",\"size\":\"quarter\",\"sourceBytes\":$quarter_bytes" migrate rss "$s" 5 --match 'quarter:big:*'
		row_extra=",\"size\":\"full\",\"sourceBytes\":$full_bytes" migrate rss "$s" 5 --match 'sample:big:*'
	done
fi

# --- 6: cluster -> cluster -------------------------------------------------------
# start_cluster PREFIX SERVER CLI: three masters in cluster mode, made a
# cluster by the engine's CLI (--cluster create, no replicas: it gives them
# slots 0-5460, 5461-10922, 10923-16383); waits until every node reports
# cluster_state:ok with all slots; sets <PREFIX>_url, <PREFIX>_ports and
# <PREFIX>_pids (space-separated, in creation order).
start_cluster() {
	local prefix=$1 bin=$2 cli=$3 i v port ok=0 addrs=() ports=() procs=()
	for i in 1 2 3; do
		cluster_node=1 start "$prefix$i" "$bin" "$cli"
		v=${prefix}${i}_port && ports+=("${!v}") && addrs+=("127.0.0.1:${!v}")
		v=${prefix}${i}_pid && procs+=("${!v}")
	done
	"$cli" --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$work/$prefix-create.log" 2>&1 ||
		{ cat "$work/$prefix-create.log" >&2; die "$cli --cluster create ${addrs[*]} failed"; }
	for _ in $(seq 300); do
		ok=0
		for port in "${ports[@]}"; do
			"$cli" -p "$port" cluster info | tr -d '\r' | grep -cxE 'cluster_state:ok|cluster_slots_ok:16384' | grep -qx 2 &&
				ok=$((ok + 1))
		done
		[ "$ok" = 3 ] && break
		sleep 0.1
	done
	[ "$ok" = 3 ] || die "$prefix cluster (${addrs[*]}) not ready after 30 s; see $work/${prefix}1/server.log"
	printf -v "${prefix}_url" %s "redis://127.0.0.1:${ports[0]}?cluster=true"
	printf -v "${prefix}_ports" %s "${ports[*]}"
	printf -v "${prefix}_pids" %s "${procs[*]}"
}

# slots_with_keys CLI PORT...: how many of the 16384 slots hold a key.
slots_with_keys() {
	local cli=$1 p files=()
	shift
	for p; do
		seq 0 16383 | sed 's/^/CLUSTER COUNTKEYSINSLOT /' | "$cli" -p "$p" >"$work/slots.$p"
		files+=("$work/slots.$p")
	done
	awk '{ n[FNR] += $1 } END { for (s in n) if (n[s] > 0) k++; print k + 0 }' "${files[@]}"
}

# cluster_seed DATASET: the same keys into the flushed standalone source and
# source cluster, written by `kvmigrate sample` (through a cluster client
# for the cluster); checks the counts and sets c_expect (keys per source
# master). strings: N-14 32-byte strings + one key of each type with and
# without TTL; mixed: sample --per-type P --big (7 types x 2P, 5 big keys)
# + small strings up to N.
cluster_seed() {
	local ds=$1 args n ttl p
	case $ds in
	strings) args=(--per-type 1 --strings $((cluster_keys - 14))) ;;
	mixed) args=(--per-type "$cluster_per_type" --big --strings $((cluster_keys - 14 * cluster_per_type - 5))) ;;
	*) die "BENCH_CLUSTER_DATASETS: unknown dataset $ds (strings, mixed)" ;;
	esac
	log "cluster: seeding $ds ($cluster_keys keys: sample ${args[*]}) into the standalone source and the source cluster"
	scli flushall sync >/dev/null
	# shellcheck disable=SC2086
	flush "$src_cli" $csrc_ports
	"$kv" sample --target "$src_url" "${args[@]}" >/dev/null
	"$kv" sample --target "$csrc_url" "${args[@]}" >/dev/null
	n=$(dbsize scli)
	[ "$n" = "$cluster_keys" ] || die "standalone source has $n keys, want $cluster_keys"
	# shellcheck disable=SC2086
	c_expect=$(counts "$src_cli" $csrc_ports)
	n=$(awk '{ for (i = 1; i <= NF; i++) s += $i; print s }' <<<"$c_expect")
	[ "$n" = "$cluster_keys" ] || die "source cluster has $n keys ($c_expect per master), want $cluster_keys"
	ttl=0
	for p in $csrc_ports; do
		ttl=$((ttl + $("$src_cli" -p "$p" info keyspace | tr -d '\r' | sed -n 's/^db0:.*expires=\([0-9]*\).*/\1/p')))
	done
	# shellcheck disable=SC2086
	c_slots=$(slots_with_keys "$src_cli" $csrc_ports)
	row "$(printf '{"kind":"cluster-dataset","dataset":"%s","keys":%s,"withTTL":%s,"perMaster":[%s],"slotsWithKeys":%s,"sampleArgs":"%s"}' \
		"$ds" "$cluster_keys" "$ttl" "${c_expect// /,}" "$c_slots" "${args[*]}")"
	log "cluster: $ds: $cluster_keys keys ($ttl with TTL), $c_expect per source master, $c_slots of 16384 slots hold keys"
}

# cluster_run DATASET VARIANT STRATEGY REP [flags...]: one copy of the
# dataset; VARIANT cluster-parallel (default --parallel: every master at
# once), cluster-serial (--parallel 1) or standalone.
cluster_run() {
	local ds=$1 v=$2 s=$3 rep=$4 expect
	shift 4
	local flags=("$@")
	case $v in
	cluster-parallel) pair cluster && expect=$c_expect ;;
	cluster-serial) pair cluster && expect=$c_expect && flags+=(--parallel 1) ;;
	standalone) pair standalone && expect=$cluster_keys ;;
	esac
	row_extra=",\"dataset\":\"$ds\",\"variant\":\"$v\",\"rep\":$rep" migrate "${run_kind:-cluster}" "$s" "$expect" "${flags[@]}"
	pair standalone
}

if has cluster; then
	log "cluster: starting a 3-master $src_engine cluster and a 3-master $dst_engine cluster"
	start_cluster csrc "$src_server" "$src_cli"
	start_cluster cdst "$dst_server" "$dst_cli"
	rm -f "$out"/cpu-cluster-*.prof "$out"/pprof-top-cluster-*.txt
	[ "$cluster_keys" -ge 1000 ] || die "BENCH_CLUSTER_KEYS=$cluster_keys: at least 1000"
	cluster_per_type=$((mixed_per_type < cluster_keys / 28 ? mixed_per_type : cluster_keys / 28))
	variants=(cluster-parallel cluster-serial standalone)
	for ds in "${cluster_datasets[@]}"; do
		cluster_seed "$ds"
		for rep in $(seq "$reps"); do
			# Rotate the order so no variant always runs first.
			for i in 0 1 2; do
				for s in "${cluster_strategies[@]}"; do
					cluster_run "$ds" "${variants[$(((i + rep - 1) % 3))]}" "$s" "$rep"
				done
			done
		done
		# One profiled run of each (not in the figures: profiling costs CPU).
		for v in cluster-parallel standalone; do
			run_kind=cluster-profile cluster_run "$ds" "$v" "${cluster_strategies[0]}" 0 \
				--cpuprofile "$out/cpu-cluster-$ds-$v.prof"
			if command -v go >/dev/null; then
				go tool pprof -top -nodecount=30 "$kv" "$out/cpu-cluster-$ds-$v.prof" \
					>"$out/pprof-top-cluster-$ds-$v.txt" 2>/dev/null || true
			fi
		done
	done
fi

# --- results -----------------------------------------------------------------------
took=$((($(now_ns) - bench_started) / 1000000000))
jq -s \
	--arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	--arg cpu "$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)" \
	--argjson nproc "$(nproc)" --arg kernel "$(uname -r)" --arg load "$machine_load" \
	--arg src "$src_engine" --arg srcv "$src_version" --arg dst "$dst_engine" --arg dstv "$dst_version" \
	--arg bench "$(basename "$dst_bench")" \
	--arg commit "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo -dirty)" \
	--argjson keys "$nkeys" --argjson ckeys "$cluster_keys" --argjson took "$took" --arg kvbin "$kv" --arg kvargs "${BENCH_KV_ARGS:-}" --arg cmpbin "$compare_bin" --arg cmplabel "$compare_label" '
	def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
		else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	def stats: {median: median, min: min, max: max, n: length};
	def r2: if . == null then null else . * 100 | round / 100 end;
	def ceil(k): [.[] | select(.kind == k) | .keysPerSec] | stats;
	. as $rows
	| ceil("ceiling-pipe") as $pipe
	| ceil("ceiling-benchmark") as $bm
	| def runs(k; bin): [$rows[] | select(.kind == k and (.binary // "current") == bin)] | group_by(.strategy) | map({
			strategy: .[0].strategy,
			keysPerSec: ([.[].keysPerSec] | stats),
			ratioToPipe: (if $pipe.median then (([.[].keysPerSec] | median) / $pipe.median * 1000 | round / 1000) else null end),
			ratioBestToBestPipe: (if $pipe.max then (([.[].keysPerSec] | max) / $pipe.max * 1000 | round / 1000) else null end),
			ratioToBenchmark: (if $bm.median then (([.[].keysPerSec] | median) / $bm.median * 1000 | round / 1000) else null end),
			cpuSeconds: {kvmigrate: ([.[].cpu.client] | median | r2), source: ([.[].cpu.source] | median | r2),
				target: ([.[].cpu.target] | median | r2), other: ([.[].cpu.other] | median | r2)},
			ratioToPipeSameRep: ([.[] | .rep as $r | .keysPerSec as $v
				| ($rows[] | select(.kind == "ceiling-pipe" and .rep == $r) | $v / .keysPerSec)] | median
				| if . then (. * 1000 | round / 1000) else null end),
			serverMs: {source: ([.[] | [.commandstats.source[].usec] | add / 1000 | round] | median),
				target: ([.[] | [.commandstats.target[].usec] | add / 1000 | round] | median),
				targetScan: ([.[] | (.commandstats.target.scan.usec // 0) / 1000 | round] | median)},
			otherCpuSeconds: ([.[].cpu.other] | median | r2),
			contendedRuns: ([.[] | select(.contended == true)] | length),
			maxRssKB: ([.[].maxRssKB] | max)});
	{
		date: $date, tookSeconds: $took, commit: $commit, kvmigrate: $kvbin, kvmigrateArgs: $kvargs,
		machine: {nproc: $nproc, cpu: $cpu, kernel: $kernel, loadAtStart: $load},
		engines: {source: {name: $src, version: $srcv}, target: {name: $dst, version: $dstv}, benchmarkTool: $bench},
		keys: $keys,
		ceiling: {pipe: $pipe, benchmark: $bm,
			pipeCpuSeconds: ([$rows[] | select(.kind == "ceiling-pipe")] | if length > 0 then
				{cli: ([.[].cpu.client] | median), target: ([.[].cpu.target] | median), other: ([.[].cpu.other] | median)} else null end)},
		strings: runs("strings"; "current"),
		compare: (if $cmpbin != "" then {label: $cmplabel, binary: $cmpbin, strings: runs("strings"; $cmplabel), mixed: runs("mixed"; $cmplabel)} else null end),
		mixed: {dataset: ([$rows[] | select(.kind == "mixed-dataset")] | first), runs: runs("mixed"; "current")},
		rss: [$rows[] | select(.kind == "rss") | {strategy, size, sourceBytes, copied, maxRssKB, wallMs}],
		profile: ([$rows[] | select(.kind == "profile")] | first),
		cluster: ([$rows[] | select(.kind == "cluster")] as $c | if ($c | length) == 0 then null else
			def ratio(a; b): if a == null or b == null or b == 0 then null else a / b * 1000 | round / 1000 end;
			def nodes(f): [range(0; .[0] | f | length) as $i | [.[] | f | .[$i]] | median | r2];
			{
				keys: $ckeys, masters: 3,
				datasets: [$rows[] | select(.kind == "cluster-dataset")],
				runs: ($c | group_by([.dataset, .strategy, .variant]) | map({
					dataset: .[0].dataset, strategy: .[0].strategy, variant: .[0].variant,
					keysPerSec: ([.[].keysPerSec] | stats), wallMs: ([.[].wallMs] | stats),
					cpuSeconds: {kvmigrate: ([.[].cpu.client] | median | r2), source: ([.[].cpu.source] | median | r2),
						target: ([.[].cpu.target] | median | r2), other: ([.[].cpu.other] | median | r2)},
					cpuSecondsPerMaster: {source: nodes(.cpu.sourceNodes), target: nodes(.cpu.targetNodes)},
					contendedRuns: ([.[] | select(.contended == true)] | length),
					maxRssKB: ([.[].maxRssKB] | max)})),
				# Ratios of keys/s: of the medians, and the median (min, max)
				# of the same-repetition ratios.
				ratios: ($c | group_by([.dataset, .strategy]) | map(. as $g
					| def med(v): [$g[] | select(.variant == v) | .keysPerSec] | median;
					def same(a; b): [$g[] | select(.variant == a) | .rep as $r | .keysPerSec as $x
						| ($g[] | select(.variant == b and .rep == $r) | $x / .keysPerSec)]
						| {median: (median | ratio(.; 1)), min: (min | ratio(.; 1)), max: (max | ratio(.; 1)), n: length};
					def both(a; b): {ofMedians: ratio(med(a); med(b)), sameRep: same(a; b)};
					{dataset: .[0].dataset, strategy: .[0].strategy,
						parallelToSerial: both("cluster-parallel"; "cluster-serial"),
						parallelToStandalone: both("cluster-parallel"; "standalone"),
						serialToStandalone: both("cluster-serial"; "standalone")}))
			} end),
		rows: $rows
	}' "$rows" >"$out/results.json"

# Markdown on stdout.
jq -r '
	def n: if . == null then "–" else (. | tostring) end;
	def k: if . == null then "–" else (. / 1000 | round | tostring) + "k" end;
	def pct: if . == null then "–" else ((. * 1000 | round) / 10 | tostring) + " %" end;
	def mib: (. / 1024 * 10 | round) / 10 | tostring;
	"## kvmigrate benchmark \(.date) — \(.engines.source.name) \(.engines.source.version) → \(.engines.target.name) \(.engines.target.version)",
	"",
	"\(.machine.nproc) × \(.machine.cpu), kernel \(.machine.kernel), load at start \(.machine.loadAtStart); commit \(.commit) (kvmigrate: \(.kvmigrate)); \(.tookSeconds) s",
	"",
	(if (.strings | length) + (.mixed.runs | length) + (.ceiling.pipe.n) > 0 then
	"Target ingest ceiling (idle target, \(.keys) keys): `cli --pipe` \(.ceiling.pipe.median | k) keys/s (\(.ceiling.pipe.min | k)–\(.ceiling.pipe.max | k), n=\(.ceiling.pipe.n)); \(.engines.benchmarkTool) -t set -P 64 -d 32 \(.ceiling.benchmark.median | k) SET/s (\(.ceiling.benchmark.min | k)–\(.ceiling.benchmark.max | k))",
	"",
	"| dataset | strategy | keys/s median (min–max, n) | ratio to pipe ceiling, median (best/best) | ratio to benchmark | CPU s kvmigrate / source / target / other | peak RSS MiB |",
	"|---|---|---|---|---|---|---|",
	.keys as $n | (.strings[] | "| \($n | k) strings | \(.strategy) | \(.keysPerSec.median | k) (\(.keysPerSec.min | k)–\(.keysPerSec.max | k), \(.keysPerSec.n)) | \(.ratioToPipe | pct) (best \(.ratioBestToBestPipe | pct)) | \(.ratioToBenchmark | pct) | \(.cpuSeconds.kvmigrate) / \(.cpuSeconds.source) / \(.cpuSeconds.target) / \(.cpuSeconds.other) | \(.maxRssKB | mib) |"),
	(if .compare then .compare.label as $l | .compare.strings[] | "| \($n | k) strings, **\($l)** | \(.strategy) | \(.keysPerSec.median | k) (\(.keysPerSec.min | k)–\(.keysPerSec.max | k), \(.keysPerSec.n)) | \(.ratioToPipe | pct) (best \(.ratioBestToBestPipe | pct)) | \(.ratioToBenchmark | pct) | \(.cpuSeconds.kvmigrate) / \(.cpuSeconds.source) / \(.cpuSeconds.target) / \(.cpuSeconds.other) | \(.maxRssKB | mib) |" else empty end),
	(.mixed.dataset as $d | .mixed.runs[] | "| mixed (\($d.keys) keys, \(($d.withTTL / $d.keys * 100) | round) % TTL) | \(.strategy) | \(.keysPerSec.median | k) (\(.keysPerSec.min | k)–\(.keysPerSec.max | k), \(.keysPerSec.n)) | \(.ratioToPipe | pct) (best \(.ratioBestToBestPipe | pct)) | \(.ratioToBenchmark | pct) | \(.cpuSeconds.kvmigrate) / \(.cpuSeconds.source) / \(.cpuSeconds.target) / \(.cpuSeconds.other) | \(.maxRssKB | mib) |"),
	(if .compare then .compare.label as $l | .mixed.dataset as $d | .compare.mixed[] | "| mixed (\($d.keys) keys), **\($l)** | \(.strategy) | \(.keysPerSec.median | k) (\(.keysPerSec.min | k)–\(.keysPerSec.max | k), \(.keysPerSec.n)) | \(.ratioToPipe | pct) (best \(.ratioBestToBestPipe | pct)) | \(.ratioToBenchmark | pct) | \(.cpuSeconds.kvmigrate) / \(.cpuSeconds.source) / \(.cpuSeconds.target) / \(.cpuSeconds.other) | \(.maxRssKB | mib) |" else empty end),
	""
	else empty end),
	(if .cluster then .cluster as $c |
		def x: if . == null then "–" else (. * 100 | round / 100 | tostring) end;
		def rr: "\(.sameRep.median | x) (\(.sameRep.min | x)–\(.sameRep.max | x), n=\(.sameRep.n)); of medians \(.ofMedians | x)";
		def vlabel: {"cluster-parallel": "cluster → cluster, default --parallel (3 masters at once)",
			"cluster-serial": "cluster → cluster, --parallel 1", "standalone": "standalone → standalone"}[.];
		"### Cluster → cluster: 3 masters \(.engines.source.name) → 3 masters \(.engines.target.name), \($c.keys) keys per dataset",
		"",
		($c.datasets[] | "- \(.dataset): `kvmigrate sample \(.sampleArgs)`, \(.keys) keys, \(.withTTL) with TTL; per source master \(.perMaster | map(tostring) | join(" / ")); \(.slotsWithKeys) of 16384 slots hold keys"),
		"",
		"| dataset | copy | strategy | keys/s median (min–max, n) | CPU s kvmigrate / source / target / other | target CPU s per master | peak RSS MiB | contended |",
		"|---|---|---|---|---|---|---|---|",
		($c.runs | sort_by(.dataset, ({"cluster-parallel": 0, "cluster-serial": 1, "standalone": 2}[.variant])) | .[] |
			"| \(.dataset) | \(.variant | vlabel) | \(.strategy) | \(.keysPerSec.median | k) (\(.keysPerSec.min | k)–\(.keysPerSec.max | k), \(.keysPerSec.n)) | \(.cpuSeconds.kvmigrate) / \(.cpuSeconds.source) / \(.cpuSeconds.target) / \(.cpuSeconds.other) | \(.cpuSecondsPerMaster.target | map(tostring) | join(" / ")) | \(.maxRssKB | mib) | \(.contendedRuns) |"),
		"",
		"Ratios of keys/s, median of the same-repetition ratios (min–max, n); ratio of the medians:",
		"",
		"| dataset | strategy | cluster parallel / cluster serial | cluster parallel / standalone | cluster serial / standalone |",
		"|---|---|---|---|---|",
		($c.ratios[] | "| \(.dataset) | \(.strategy) | \(.parallelToSerial | rr) | \(.parallelToStandalone | rr) | \(.serialToStandalone | rr) |"),
		""
	else empty end),
	"Timed runs still contended after retries (other processes took > 10 % of the CPU): \([.rows[] | select(.contended == true and .kind != "rss")] | length) of \([.rows[] | select(.contended != null and .kind != "rss")] | length).",
	"",
	(if (.rss | length) > 0 then
		"| big keys only | strategy | keys | source MEMORY USAGE MiB | kvmigrate peak RSS MiB | wall ms |",
		"|---|---|---|---|---|---|",
		(.rss[] | "| \(.size) | \(.strategy) | \(.copied) | \(.sourceBytes / 1048576 * 10 | round / 10) | \(.maxRssKB | mib) | \(.wallMs) |")
	else empty end)
' "$out/results.json"
if has profile && [ -s "$out/pprof-top-${strategies[0]}.txt" ]; then
	echo
	echo "CPU profile of kvmigrate (${strategies[0]}, $nkeys strings), go tool pprof -top:"
	echo '```'
	sed -n '1,20p' "$out/pprof-top-${strategies[0]}.txt"
	echo '```'
fi
if has cluster; then
	for f in "$out"/pprof-top-cluster-*.txt; do
		[ -s "$f" ] || continue
		echo
		echo "CPU profile of kvmigrate ($(basename "$f" .txt | sed 's/^pprof-top-cluster-//'), ${cluster_strategies[0]}), go tool pprof -top:"
		echo '```'
		sed -n '1,16p' "$f"
		echo '```'
	done
fi
log "results: $out/results.json"
