#!/bin/sh
# run.sh - run the libFuzzer targets: their regression inputs first, then
# fuzzing for a while on a scratch copy of their seed corpus.
#
# Usage: tests/fuzz/run.sh [-j JOBS] SECONDS BUILD_DIR TARGET...
#
# For each TARGET (fuzz_TARGET in BUILD_DIR):
#   - every file in tests/fuzz/regressions/TARGET/ (but README) is run
#     once as an input, no fuzzing: each must pass;
#   - SECONDS > 0: tests/fuzz/corpus/TARGET/ is copied to
#     BUILD_DIR/work/TARGET/ and the target fuzzes that copy for SECONDS
#     (the committed corpus is never written to); crash inputs land in
#     BUILD_DIR/crash/TARGET/, the full log in BUILD_DIR/work/TARGET.log;
#   - SECONDS = 0 (make check): no fuzzing; every seed in
#     tests/fuzz/corpus/TARGET/ is run once as an input instead, so the
#     pass takes seconds, not minutes.
# -j JOBS runs that many targets at once (each still gets its SECONDS:
# a fuzzing run uses one core).
# Then one line per target, in the order given, from libFuzzer's final
# stats:
#   fuzz TARGET: EXECS execs, cov N, ft M, Ss
# or, with SECONDS = 0:
#   fuzz TARGET: R regression inputs, S seeds replayed
# Exits 1 if any regression input, seed or fuzzing run failed.
set -eu

mode=all
if [ "${1:-}" = "--one" ]; then  # internal: one target, for the -j pool
	mode=one
	shift
fi
jobs=1
if [ "${1:-}" = "-j" ]; then
	[ $# -ge 2 ] || { echo "$0: -j needs a number" >&2; exit 2; }
	jobs=$2
	shift 2
fi
[ $# -ge 3 ] || { echo "usage: $0 [-j JOBS] SECONDS BUILD_DIR TARGET..." >&2; exit 2; }
secs=$1
build=$2
shift 2
dir=$(dirname "$0")
mkdir -p "$build/work"

# Run the inputs given after the target's name once each (no fuzzing), on
# their own so a failure names the input; logs to $1.log.  Prints how many
# ran; returns 1 if any failed.
replay() {
	what=$1 bin=$2 rlog=$3
	shift 3
	n=0 bad=0
	for f in "$@"; do
		[ -f "$f" ] || continue
		case ${f##*/} in README*) continue ;; esac
		n=$((n + 1))
		if ! "$bin" "$f" >"$rlog" 2>&1; then
			echo "fuzz $t: $what input fails: $f" >&2
			grep -a -m 3 -e 'check failed' -e 'ERROR:' \
				-e 'SUMMARY:' "$rlog" >&2 || :
			bad=1
		fi
	done
	echo "$n"
	return "$bad"
}

# One target: its regression inputs, then fuzzing or the seed replay.
# Writes its summary line to BUILD_DIR/work/TARGET.summary; returns 1 on
# any failure.
one() {
	t=$1
	bin=$build/fuzz_$t
	work=$build/work/$t
	log=$build/work/$t.log
	crash=$build/crash/$t
	rlog=$build/work/$t.regression.log
	failed=0

	nreg=$(replay regression "$bin" "$rlog" "$dir"/regressions/"$t"/*) ||
		failed=1

	if [ "$secs" -eq 0 ]; then
		# All seeds in one process (libFuzzer runs each file given once):
		# a failure shows as the last "Running:" line of the log.
		nseed=0
		for f in "$dir"/corpus/"$t"/*; do
			[ -f "$f" ] && nseed=$((nseed + 1))
		done
		if [ "$nseed" -gt 0 ] &&
			! "$bin" "$dir"/corpus/"$t"/* >"$rlog" 2>&1; then
			echo "fuzz $t: seed input fails:" \
				"$(grep -a '^Running: ' "$rlog" | tail -n 1)" >&2
			grep -a -m 3 -e 'check failed' -e 'ERROR:' \
				-e 'SUMMARY:' "$rlog" >&2 || :
			failed=1
		fi
		line="fuzz $t: $nreg regression inputs, $nseed seeds replayed"
		[ "$failed" -eq 0 ] || line="$line: FAILED (log $rlog)"
		echo "$line" >"$build/work/$t.summary"
		return "$failed"
	fi

	rm -rf "$work"
	mkdir -p "$work" "$crash"
	if [ -d "$dir/corpus/$t" ]; then
		cp "$dir/corpus/$t"/* "$work"/ 2>/dev/null || :
	fi
	dict=""
	[ -f "$dir/fuzz_$t.dict" ] && dict="-dict=$dir/fuzz_$t.dict"

	echo "  FUZZ    $t (${secs}s)"
	start=$(date +%s)
	rc=0
	"$bin" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
		-timeout=25 -print_final_stats=1 -artifact_prefix="$crash/" \
		$dict "$work" >"$log" 2>&1 || rc=$?
	took=$(($(date +%s) - start))

	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" |
		tail -n 1)
	cov=$(grep -a 'cov: ' "$log" | tail -n 1 |
		sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(grep -a 'ft: ' "$log" | tail -n 1 |
		sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	line="fuzz $t: ${execs:-?} execs, cov ${cov:-?}, ft ${ft:-?}, ${took}s"
	if [ "$rc" -ne 0 ]; then
		line="$line: FAILED (exit $rc; log $log)"
		failed=1
		echo "fuzz $t: failed; from $log:" >&2
		sed -n '/check failed\|ERROR: /,$p' "$log" | head -n 30 >&2
	fi
	echo "$line" >"$build/work/$t.summary"
	return "$failed"
}

if [ "$mode" = one ]; then
	one "$1"
	exit
fi

for t in "$@"; do
	rm -f "$build/work/$t.summary"
done
if [ "$jobs" -gt 1 ]; then
	# xargs keeps JOBS targets running; its status says whether any failed.
	printf '%s\n' "$@" |
		xargs -P "$jobs" -n 1 "$0" --one "$secs" "$build" || :
else
	for t in "$@"; do
		one "$t" || :
	done
fi

failed=""
for t in "$@"; do
	s=$build/work/$t.summary
	if [ ! -f "$s" ]; then
		echo "fuzz $t: FAILED (no result)"
		failed="$failed $t"
	elif cat "$s" && grep -q ': FAILED' "$s"; then
		failed="$failed $t"
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz: FAILED:$failed" >&2
	echo "fuzz: reproduce with $build/fuzz_TARGET FILE; keep a minimised" \
		"input (-minimize_crash=1 -runs=10000) in" \
		"tests/fuzz/regressions/TARGET/" >&2
	exit 1
fi
