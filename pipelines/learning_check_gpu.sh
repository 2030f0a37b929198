#!/usr/bin/env bash
# The learning check at 256 px with the medium preset on a lent GPU (profile `gpu` of
# learning_check.py; LEARNING.md records a run). Three steps, two machines:
#
#   pipelines/learning_check_gpu.sh prepare   # here: synthetic set + annotation (CPU), then the
#                                             # payload .device/ (held-out inputs, slimmed shards, wheels)
#   pipelines/learning_check_gpu.sh device    # on the GPU machine, carrying .device: VAE and stages
#                                             # 1-3 (each for a fixed time), the generations -> $OUT/results.tar
#   pipelines/learning_check_gpu.sh finish RESULTS.tar   # here: evaluation, report.json, strip.png
#
# WORK (default data/learning_check_gpu) is the run's folder on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${WORK:-data/learning_check_gpu}"
export RAY_ENABLE_UV_RUN_RUNTIME_ENV=0  # see learning_check.sh

case "${1:-}" in
prepare)
    uv run python pipelines/learning_check.py --profile gpu --out "$work" --stop-after annotate
    exclude="$(git rev-parse --git-path info/exclude)"
    grep -qx '/.device/' "$exclude" 2>/dev/null || echo '/.device/' >> "$exclude"
    uv run python pipelines/learning_check_gpu.py pack "$work" .device/learning
    python3 pipelines/device_wheels.py .device/wheels --for learning
    du -sh .device
    ;;
device)
    # the device image's python3 has torch; the rest travels as wheels, the packages from this checkout
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/wheels/*.whl
    export PYTHONPATH="/tmp/site:$PWD/packages/annotate/src:$PWD/packages/train/src:$PWD/packages/infer/src"
    export PYTHONUNBUFFERED=1
    run=/tmp/learning_check_gpu
    rm -rf "$run" && cp -r .device/learning "$run"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$run/device.txt" || true
    python3 -c "import torch; print('torch', torch.__version__)" >> "$run/device.txt"
    # the card's load every 5 s: whether it, or the loader, sets the training pace
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 5 > "$run/gpu_load.csv" 2>/dev/null &
    load=$!
    status=0
    timeout "${DEVICE_SECONDS:-540}" python3 pipelines/learning_check.py --profile gpu --out "$run" --stop-after generate \
        2>&1 | tee "$run/device_log.txt" || status=$?
    kill "$load" 2>/dev/null || true
    # whatever finished comes back, also after a failure or the time limit
    (cd "$run" && tar cf "${OUT:-.}/results.tar" gpu_run.json device.txt device_log.txt gpu_load.csv timings.json inputs generated \
        runs/*/summary.json runs/*/metrics.jsonl 2>/dev/null) || true
    exit "$status"
    ;;
finish)
    results="${2:?finish needs the results.tar the device call brought back}"
    uv run python pipelines/learning_check_gpu.py unpack "$work" "$results"
    uv run python pipelines/learning_check_gpu.py check "$work"
    exec uv run python pipelines/learning_check.py --profile gpu --out "$work"
    ;;
*)
    echo "usage: $0 prepare | device | finish RESULTS.tar" >&2
    exit 2
    ;;
esac
