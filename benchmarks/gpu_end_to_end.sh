#!/usr/bin/env bash
# End-to-end per-frame cost on a CUDA GPU (one call, a few minutes): the sample bag with CUDA graphs
# on (the default), compiled with graphs (compile: true) and off, onnxruntime when its CUDA provider
# is installed, and rendered scenes of 1 and 20 people, each also with the next frame decoded ahead.
# Each run's table is printed, then a summary table last, with each run's start-to-ready time.
#   bash benchmarks/gpu_end_to_end.sh [BAG]
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # a checkout without pip install -e
BAG="${1:-models/sample_bag}"
SUMMARY=$(mktemp)
run() {  # label, then bench_end_to_end.py arguments
    local label="$1"; shift
    local out
    out=$(python benchmarks/bench_end_to_end.py "$@" 2>&1)
    echo "== $label"; echo "$out" | tail -21
    echo "$out" | awk -v label="$label" '
        $1 == "estimator" {est = $2} $1 == "est." && $2 == "network" {net = $3}
        $1 == "est." && $2 == "decode" {dec = $3} $1 == "total" {total = $2; p90 = $3}
        $1 == "frames/s" {fps = $2} $1 == "decode-ahead" {ahead = $2; ahead_p90 = $3}
        $1 == "start-to-ready" {ready = $2}
        END {if (total == "") print label, "failed"; else printf "%-34s%10s%10s%10s%10s%10s%8s%10s%10s%10s\n", label, net, dec, est, total, p90, fps, ahead, ahead_p90, ready}' >> "$SUMMARY"
}
run "bag torch graph (default)" "$BAG" --device cuda
run "bag torch compiled + graph" "$BAG" --device cuda --compile
run "bag torch eager" "$BAG" --device cuda --cuda-graph off
if python -c "import onnxruntime, sys; sys.exit('CUDAExecutionProvider' not in onnxruntime.get_available_providers())" 2>/dev/null; then
    run "bag onnxruntime CUDA" "$BAG" --device cuda --backend onnxruntime
else
    echo "bag onnxruntime CUDA: skipped (no CUDAExecutionProvider)" >> "$SUMMARY"
fi
run "1 person torch graph" --people 1 --device cuda
run "20 people torch graph" --people 20 --device cuda
run "1 person torch eager" --people 1 --device cuda --cuda-graph off
run "20 people torch eager" --people 20 --device cuda --cuda-graph off
echo
echo "summary, ms per frame (median; p90 of total)"
echo "(ahead: ms between finished frames with the next frame decoded meanwhile, median and p90;"
echo " ready: s from the start to the end of the warm-up frames)"
printf "%-34s%10s%10s%10s%10s%10s%8s%10s%10s%10s\n" "run" "network" "decode" "estimator" "total" "p90" "fps" "ahead" "ahead p90" "ready s"
cat "$SUMMARY"; rm -f "$SUMMARY"
