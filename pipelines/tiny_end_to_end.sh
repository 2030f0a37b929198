#!/usr/bin/env bash
# The whole chain on the bundled sample, on a CPU in a few minutes:
#   emo-annotate (sample talking head) -> emo-train stages 1, 2, 3 (tiny preset) -> emo-infer (astronaut photo).
# A tiny model trained for a few steps animates nothing recognisable; this checks the plumbing and
# shows the commands. Usage: pipelines/tiny_end_to_end.sh [WORK_DIR] (default data/tiny_e2e)
set -euo pipefail
WORK=${1:-data/tiny_e2e}
STEPS=${STEPS:-20}

uv run emo-annotate demo "$WORK"
previous=()
for stage in 1 2 3; do
  run="$WORK/runs/stage$stage"
  if [ ! -e "$run/checkpoints/last" ]; then  # rerunning the script keeps finished stages
    uv run emo-train --stage "$stage" --shards "$WORK/shards" --out "$run" --max-steps "$STEPS" --lr 1e-4 "${previous[@]}"
  fi
  previous=(--init-from "$run")
done
uv run python -c "import sys; from PIL import Image; from emo_annotate.samples import astronaut_image; Image.fromarray(astronaut_image()).save(sys.argv[1])" "$WORK/portrait.png"
# the sample video's sound track drives the portrait
uv run emo-infer --checkpoint "$WORK/runs/stage3" --image "$WORK/portrait.png" --audio "$WORK/videos/carphone.mp4" \
  --out "$WORK/talking.mp4" --speed 15 --steps 20
