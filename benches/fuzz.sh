#!/usr/bin/env bash
# Run the property tests of tests/fuzz.rs for a chosen time, with a fresh seed each round,
# and say how long each target ran without a finding.
#
#     benches/fuzz.sh TARGET|all SECONDS
#
# TARGET is a test of tests/fuzz.rs (digest, reference, platform, manifest, index_json,
# archive, library, sync_file, cosign_key, payload, dsse, bundle, trusted_root,
# keyless_material, keyless_verify). Each round runs the target
# with PROPTEST_CASES=$FUZZ_CASES (default 256) and PROPTEST_RNG_SEED = the round's seed
# (starting at $FUZZ_SEED, default the current time), until SECONDS have passed. A finding
# stops that target and prints proptest's minimal failing input; the exit code is then 1.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(digest reference platform manifest index_json archive library dockerfile sync_file cosign_key payload dsse bundle trusted_root keyless_material keyless_verify)

usage() {
    echo "usage: $0 TARGET|all SECONDS   (targets: ${TARGETS[*]})" >&2
    exit 2
}
[ $# -eq 2 ] || usage
[[ "$2" =~ ^[0-9]+$ ]] || usage
seconds=$2
if [ "$1" = all ]; then
    targets=("${TARGETS[@]}")
else
    [[ " ${TARGETS[*]} " == *" $1 "* ]] || usage
    targets=("$1")
fi
cases=${FUZZ_CASES:-256}
seed=${FUZZ_SEED:-$(date +%s)}

# Build once; run the test binary directly.
bin=$(cargo test --test fuzz --no-run 2>&1 | sed -n 's/.*Executable tests\/fuzz\.rs (\(.*\))$/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "could not build the fuzz target" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
printf '%-11s %8s %7s %9s  %s\n' target seconds rounds cases result
for t in "${targets[@]}"; do
    start=$(date +%s)
    rounds=0
    result="no finding"
    while :; do
        now=$(date +%s)
        [ $((now - start)) -lt "$seconds" ] || break
        if ! PROPTEST_CASES=$cases PROPTEST_RNG_SEED=$seed "$bin" --exact "$t" --quiet >"$log" 2>&1; then
            result="FINDING (seed $seed)"
            status=1
            sed -n '/panicked\|Test failed\|minimal failing input/,+20p' "$log" | head -n 60 >&2
            break
        fi
        rounds=$((rounds + 1))
        seed=$((seed + 1))
    done
    elapsed=$(($(date +%s) - start))
    printf '%-11s %8d %7d %9d  %s\n' "$t" "$elapsed" "$rounds" $((rounds * cases)) "$result"
done
exit $status
