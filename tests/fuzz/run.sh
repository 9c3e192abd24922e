#!/bin/sh
# run.sh - run the libFuzzer targets: their regression inputs first, then
# fuzzing for a while on a scratch copy of their seed corpus.
#
# Usage: tests/fuzz/run.sh SECONDS BUILD_DIR TARGET...
#
# For each TARGET (fuzz_TARGET in BUILD_DIR):
#   - every file in tests/fuzz/regressions/TARGET/ (but README) is run
#     once as an input, no fuzzing: each must pass;
#   - tests/fuzz/corpus/TARGET/ is copied to BUILD_DIR/work/TARGET/ and
#     the target fuzzes that copy for SECONDS (the committed corpus is
#     never written to); crash inputs land in BUILD_DIR/crash/TARGET/,
#     the full log in BUILD_DIR/work/TARGET.log.
# Then one line per target from libFuzzer's final stats:
#   fuzz TARGET: EXECS execs, cov N, ft M, Ss
# Exits 1 if any regression input or any fuzzing run failed.
set -eu

[ $# -ge 3 ] || { echo "usage: $0 SECONDS BUILD_DIR TARGET..." >&2; exit 2; }
secs=$1
build=$2
shift 2
dir=$(dirname "$0")
summary=""
failed=""
mkdir -p "$build/work"

nl='
'

for t in "$@"; do
	bin=$build/fuzz_$t
	work=$build/work/$t
	log=$build/work/$t.log
	crash=$build/crash/$t

	# Regression inputs: each one on its own, so a failure names it.
	for f in "$dir"/regressions/"$t"/*; do
		[ -f "$f" ] || continue
		case ${f##*/} in README*) continue ;; esac
		if ! "$bin" "$f" >"$build/work/regression.log" 2>&1; then
			echo "fuzz $t: regression input fails: $f" >&2
			grep -a -m 3 -e 'check failed' -e 'ERROR:' \
				-e 'SUMMARY:' "$build/work/regression.log" >&2 || :
			case " $failed " in *" $t "*) ;; *) failed="$failed $t" ;; esac
		fi
	done

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
		case " $failed " in *" $t "*) ;; *) failed="$failed $t" ;; esac
		echo "fuzz $t: failed; from $log:" >&2
		sed -n '/check failed\|ERROR: /,$p' "$log" | head -n 30 >&2
	fi
	summary="$summary$line$nl"
done

printf '%s' "$summary"
if [ -n "$failed" ]; then
	echo "fuzz: FAILED:$failed" >&2
	echo "fuzz: reproduce with $build/fuzz_TARGET FILE; keep a minimised" \
		"input (-minimize_crash=1 -runs=10000) in" \
		"tests/fuzz/regressions/TARGET/" >&2
	exit 1
fi
