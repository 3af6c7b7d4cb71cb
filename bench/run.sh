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
#   5. a CPU profile of one run on the small strings (pprof -top).
# For every run it records wall time and the CPU time of kvmigrate (or the
# client), source and target, and of everything else on the machine.
#
# Writes bench/out/results.json (+ rows.jsonl, profiles) and prints markdown
# tables. No pass/fail on timings: it fails only when a copy is wrong.
#
#   BENCH_SOURCE=redis-8.0 BENCH_TARGET=valkey-8.1 bench/run.sh
#   BENCH_KEYS=200000 BENCH_REPS=1 BENCH_PARTS="strings" bench/run.sh
#   BENCH_STRATEGIES="commands" BENCH_PARTS="strings" bench/run.sh
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

start() { # name server cli -> sets <name>_port, <name>_pid
	local name=$1 bin=$2 cli=$3 dir=$work/$1 port pid
	mkdir -p "$dir"
	for _ in 1 2 3; do
		port=$(free_port)
		"$bin" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
			--dir "$dir" --logfile "$dir/server.log" --daemonize no &
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
version() { "$1" -p "$2" info server | tr -d '\r' | awk -F: '$1=="valkey_version"{v=$2} $1=="redis_version"&&v==""{v=$2} END{print v}'; }
src_version=$(version "$src_cli" "$src_port")
dst_version=$(version "$dst_cli" "$dst_port")
log "source $src_engine $src_version on :$src_port, target $dst_engine $dst_version on :$dst_port, work dir $work"

# --- measurement -------------------------------------------------------------
# CPU ticks (user+sys) of a process, and busy ticks of the whole machine.
tck=$(getconf CLK_TCK)
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12+$13}'; }
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

# measure CMD... : runs CMD under /usr/bin/time -v (stdin from $stdin,
# stdout to $stdout) and sets m_wall_ms m_cpu_client m_cpu_src m_cpu_dst
# m_cpu_other (seconds) m_rss_kb m_rc m_cmdstats. With quiet=1 it first
# waits for an idle machine.
stdin=/dev/null stdout=/dev/null quiet=1
# Every FLUSHALL is SYNC: Valkey 8 frees flushed keys in a background
# thread by default (lazyfree-lazy-user-flush yes), which would eat into
# the next timed run.
measure() {
	local tv=$work/time.txt s0 d0 b0 t0 t1 s1 d1 b1
	m_waited=0
	[ "$quiet" = 1 ] && wait_quiet
	scli config resetstat >/dev/null
	dcli config resetstat >/dev/null
	s0=$(proc_ticks "$src_pid") d0=$(proc_ticks "$dst_pid") b0=$(busy_ticks) t0=$(now_ns)
	m_rc=0
	/usr/bin/time -v -o "$tv" "$@" <"$stdin" >"$stdout" 2>"$work/stderr.txt" || m_rc=$?
	t1=$(now_ns) s1=$(proc_ticks "$src_pid") d1=$(proc_ticks "$dst_pid") b1=$(busy_ticks)
	m_wall_ms=$(((t1 - t0) / 1000000))
	m_cpu_client=$(awk -F': ' '/User time|System time/{s+=$2} END{printf "%.2f", s}' "$tv")
	m_rss_kb=$(awk -F': ' '/Maximum resident set size/{print $2}' "$tv")
	m_cpu_src=$(awk -v t=$((s1 - s0)) -v hz="$tck" 'BEGIN{printf "%.2f", t/hz}')
	m_cpu_dst=$(awk -v t=$((d1 - d0)) -v hz="$tck" 'BEGIN{printf "%.2f", t/hz}')
	m_cpu_other=$(awk -v t=$((b1 - b0)) -v hz="$tck" -v u="$m_cpu_src $m_cpu_dst $m_cpu_client" \
		'BEGIN{split(u, a, " "); o = t/hz - a[1] - a[2] - a[3]; printf "%.2f", (o < 0 ? 0 : o)}')
	m_cmdstats="{\"source\":$(commandstats "$src_cli" "$src_port"),\"target\":$(commandstats "$dst_cli" "$dst_port")}"
}
cpu_json() {
	printf '"wallMs":%s,"cpu":{"client":%s,"source":%s,"target":%s,"other":%s},"contended":%s,"attempt":%s,"maxRssKB":%s,"quietWaitS":%s,"commandstats":%s' \
		"$m_wall_ms" "$m_cpu_client" "$m_cpu_src" "$m_cpu_dst" "$m_cpu_other" "${m_contended:-false}" "${m_attempt:-1}" "${m_rss_kb:-0}" \
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

# migrate KIND STRATEGY EXPECT [flags...]: one kvmigrate run into the flushed
# target; checks the counters (and target key count when EXPECT > 0).
migrate() {
	local kind=$1 strategy=$2 expect=$3 extra
	shift 3
	extra=("$@")
	local attempt=1
	while :; do
		dcli flushall sync >/dev/null
		stdout=$work/migrate.json
		measure "${kv_bin:-$kv}" migrate --source "$src_url" --target "$dst_url" --strategy "$strategy" \
			--json --no-progress --job-store "$work/jobs.db" "${kv_args[@]}" "${extra[@]}"
		stdout=/dev/null
		accept $attempt && break
		attempt=$((attempt + 1))
	done
	local copied failed elapsed tgt
	copied=$(jq '.job.counters.copied' "$work/migrate.json" 2>/dev/null || echo -1)
	failed=$(jq '.job.counters.failed' "$work/migrate.json" 2>/dev/null || echo -1)
	elapsed=$(jq '.elapsedMs' "$work/migrate.json" 2>/dev/null || echo 0)
	tgt=$(dbsize dcli)
	if [ "$m_rc" -ne 0 ] || [ "$failed" != 0 ] || { [ "$expect" -gt 0 ] && [ "$tgt" != "$expect" ]; }; then
		cat "$work/stderr.txt" >&2
		die "$kind/$strategy: exit $m_rc, $copied copied, $failed failed, target has $tgt keys (want $expect)"
	fi
	m_copied=$copied
	m_keys_per_sec=$((copied * 1000 / m_wall_ms))
	row "$(printf '{"kind":"%s","binary":"%s","strategy":"%s","copied":%s,"bytes":%s,"elapsedMs":%s,"keysPerSec":%s,%s%s}' \
		"$kind" "${kv_label:-current}" "$strategy" "$copied" "$(jq '.job.counters.bytes' "$work/migrate.json")" "$elapsed" \
		"$m_keys_per_sec" "$(cpu_json)" "${row_extra:-}")"
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

# --- results -----------------------------------------------------------------------
took=$((($(now_ns) - bench_started) / 1000000000))
jq -s \
	--arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	--arg cpu "$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)" \
	--argjson nproc "$(nproc)" --arg kernel "$(uname -r)" --arg load "$machine_load" \
	--arg src "$src_engine" --arg srcv "$src_version" --arg dst "$dst_engine" --arg dstv "$dst_version" \
	--arg bench "$(basename "$dst_bench")" \
	--arg commit "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo -dirty)" \
	--argjson keys "$nkeys" --argjson took "$took" --arg kvargs "${BENCH_KV_ARGS:-}" --arg cmpbin "$compare_bin" --arg cmplabel "$compare_label" '
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
		date: $date, tookSeconds: $took, commit: $commit, kvmigrateArgs: $kvargs,
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
	"\(.machine.nproc) × \(.machine.cpu), kernel \(.machine.kernel), load at start \(.machine.loadAtStart); commit \(.commit); \(.tookSeconds) s",
	"",
	"Target ingest ceiling (idle target, \(.keys) keys): `cli --pipe` \(.ceiling.pipe.median | k) keys/s (\(.ceiling.pipe.min | k)–\(.ceiling.pipe.max | k), n=\(.ceiling.pipe.n)); \(.engines.benchmarkTool) -t set -P 64 -d 32 \(.ceiling.benchmark.median | k) SET/s (\(.ceiling.benchmark.min | k)–\(.ceiling.benchmark.max | k))",
	"",
	"| dataset | strategy | keys/s median (min–max, n) | ratio to pipe ceiling, median (best/best) | ratio to benchmark | CPU s kvmigrate / source / target / other | peak RSS MiB |",
	"|---|---|---|---|---|---|---|",
	.keys as $n | (.strings[] | "| \($n | k) strings | \(.strategy) | \(.keysPerSec.median | k) (\(.keysPerSec.min | k)–\(.keysPerSec.max | k), \(.keysPerSec.n)) | \(.ratioToPipe | pct) (best \(.ratioBestToBestPipe | pct)) | \(.ratioToBenchmark | pct) | \(.cpuSeconds.kvmigrate) / \(.cpuSeconds.source) / \(.cpuSeconds.target) / \(.cpuSeconds.other) | \(.maxRssKB | mib) |"),
	(if .compare then .compare.label as $l | .compare.strings[] | "| \($n | k) strings, **\($l)** | \(.strategy) | \(.keysPerSec.median | k) (\(.keysPerSec.min | k)–\(.keysPerSec.max | k), \(.keysPerSec.n)) | \(.ratioToPipe | pct) (best \(.ratioBestToBestPipe | pct)) | \(.ratioToBenchmark | pct) | \(.cpuSeconds.kvmigrate) / \(.cpuSeconds.source) / \(.cpuSeconds.target) / \(.cpuSeconds.other) | \(.maxRssKB | mib) |" else empty end),
	(.mixed.dataset as $d | .mixed.runs[] | "| mixed (\($d.keys) keys, \(($d.withTTL / $d.keys * 100) | round) % TTL) | \(.strategy) | \(.keysPerSec.median | k) (\(.keysPerSec.min | k)–\(.keysPerSec.max | k), \(.keysPerSec.n)) | \(.ratioToPipe | pct) (best \(.ratioBestToBestPipe | pct)) | \(.ratioToBenchmark | pct) | \(.cpuSeconds.kvmigrate) / \(.cpuSeconds.source) / \(.cpuSeconds.target) / \(.cpuSeconds.other) | \(.maxRssKB | mib) |"),
	(if .compare then .compare.label as $l | .mixed.dataset as $d | .compare.mixed[] | "| mixed (\($d.keys) keys), **\($l)** | \(.strategy) | \(.keysPerSec.median | k) (\(.keysPerSec.min | k)–\(.keysPerSec.max | k), \(.keysPerSec.n)) | \(.ratioToPipe | pct) (best \(.ratioBestToBestPipe | pct)) | \(.ratioToBenchmark | pct) | \(.cpuSeconds.kvmigrate) / \(.cpuSeconds.source) / \(.cpuSeconds.target) / \(.cpuSeconds.other) | \(.maxRssKB | mib) |" else empty end),
	"",
	"Timed runs still contended after retries (other processes took > 10 % of the CPU): \([.rows[] | select(.contended == true and .kind != "rss")] | length) of \([.rows[] | select(.contended != null and .kind != "rss")] | length).",
	"",
	(if (.rss | length) > 0 then
		"| big keys only | strategy | keys | source MEMORY USAGE MiB | kvmigrate peak RSS MiB | wall ms |",
		"|---|---|---|---|---|---|",
		(.rss[] | "| \(.size) | \(.strategy) | \(.copied) | \(.sourceBytes / 1048576 * 10 | round / 10) | \(.maxRssKB | mib) | \(.wallMs) |")
	else empty end)
' "$out/results.json"
if [ -s "$out/pprof-top-${strategies[0]}.txt" ]; then
	echo
	echo "CPU profile of kvmigrate (${strategies[0]}, $nkeys strings), go tool pprof -top:"
	echo '```'
	sed -n '1,20p' "$out/pprof-top-${strategies[0]}.txt"
	echo '```'
fi
log "results: $out/results.json"
