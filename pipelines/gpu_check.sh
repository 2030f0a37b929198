#!/usr/bin/env bash
# The sd15 path on a lent GPU in one short run (gpu_check.py: training steps of each stage with and
# without gradient checkpointing, Ray Train with two GPUs, emo-infer seconds per frame); a JSON of results.
# It lives in pipelines/, not in a package, because it drives both emo_train and emo_infer.
#
# On the development machine (the project's uv environment):
#   pipelines/gpu_check.sh --smoke --out /tmp/smoke.json   # tiny preset on the CPU, ~3 min
#   pipelines/gpu_check.sh --prepare-wheels                 # what the device image lacks -> .whl/
# On the device machine (its python3 has torch; nothing can be downloaded there), carrying .whl:
#   pipelines/gpu_check.sh --out "$OUT/gpu_check.json"     # at most 8 minutes
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [[ "${1:-}" == "--prepare-wheels" ]]; then
    # the packages gpu_check.py needs beyond the device image (it has torch, not these), at the project's pins
    exclude="$(git rev-parse --git-path info/exclude)"  # .git is a file in a worktree
    grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
    python3 pipelines/device_wheels.py .whl --for gpu_check
    exit 0
fi

export PYTHONUNBUFFERED=1
if [[ -x .venv/bin/python ]]; then
    exec .venv/bin/python pipelines/gpu_check.py "$@"
fi
# the device image: carried wheels into a private site folder, the packages from this checkout
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$root/packages/annotate/src:$root/packages/train/src:$root/packages/infer/src"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
exec timeout 480 python3 pipelines/gpu_check.py "$@"
