#!/usr/bin/env bash
# Runs every Go native fuzz target (func FuzzXxx(f *testing.F)) of every package in this
# module, one after another, each for FUZZTIME (default 1m), and prints the executions per
# target. Targets are discovered with `go test -list`, so new ones need no edit here.
# A crash leaves its input in the package's testdata/fuzz/FuzzXxx/ (commit it as a seed
# with the fix); the script goes on with the other targets and fails at the end.
#
#   FUZZTIME=10s hack/fuzz.sh                 # shorter
#   FUZZPKGS=./certauthority/... hack/fuzz.sh # only some packages
#   FUZZPARALLEL=1 hack/fuzz.sh               # fewer fuzzing workers (default: GOMAXPROCS)
set -euo pipefail

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-1m}
FUZZPKGS=${FUZZPKGS:-./...}
parallel=()
if [[ -n "${FUZZPARALLEL:-}" ]]; then parallel=(-parallel "$FUZZPARALLEL"); fi

cd "$(dirname "$0")/.."

# `go test -list` prints a package's matching names, then its "ok  PKG  TIME" line.
listlog=$(mktemp)
log=$(mktemp)
trap 'rm -f "$listlog" "$log"' EXIT
listfailed=0
targets=()
names=()
while IFS= read -r line; do
	case "$line" in
	Fuzz*) names+=("$line") ;;
	ok*)
		pkg=$(awk '{print $2}' <<<"$line")
		for n in "${names[@]}"; do targets+=("$pkg $n"); done
		names=()
		;;
	FAIL*)
		echo "fuzz: cannot list the targets: $line" >&2
		listfailed=1
		names=()
		;;
	*) names=() ;;
	esac
done < <($GO test -list '^Fuzz' $FUZZPKGS 2>"$listlog")
if [[ $listfailed -ne 0 ]]; then
	cat "$listlog" >&2
	exit 1
fi

if [[ ${#targets[@]} -eq 0 ]]; then
	echo "fuzz: no Fuzz targets found in $FUZZPKGS" >&2
	exit 1
fi
echo "fuzz: ${#targets[@]} targets, $FUZZTIME each"

summary=()
failed=0
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "fuzz: $pkg $name"
	status=ok
	if ! $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "${parallel[@]}" "$pkg" >"$log" 2>&1; then
		status=FAILED
		failed=1
		cat "$log"
	fi
	# The last progress line holds the total: "fuzz: elapsed: 1m0s, execs: 123456 (2057/sec), ...";
	# there is none when FUZZTIME ended while the seed corpus was still being run.
	execs=$({ grep -o 'execs: [0-9]*' "$log" || true; } | tail -n1 | awk '{print $2}')
	summary+=("$(printf '%-10s %12s  %s %s' "$status" "${execs:-0}" "$pkg" "$name")")
done

echo
printf '%-10s %12s  %s\n' result executions target
printf '%s\n' "${summary[@]}"
exit $failed
