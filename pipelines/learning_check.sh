#!/usr/bin/env bash
# The learning check (see pipelines/learning_check.py and LEARNING.md): synthetic talking heads ->
# emo-annotate -> emo-train vae, 1, 2, 3 (small preset) -> emo-infer on held-out audio -> emo-eval.
# Usage: pipelines/learning_check.sh [--out DIR] [--profile full|quick] [--videos DIR --portrait IMG --audio FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
# Ray under `uv run` would ship this whole checkout to its workers as a runtime environment
export RAY_ENABLE_UV_RUN_RUNTIME_ENV=0
exec uv run python pipelines/learning_check.py "$@"
