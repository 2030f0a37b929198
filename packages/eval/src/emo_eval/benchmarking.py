"""`benchmark`: the peers' protocol in one call. For each test clip of annotator shards: generate
from its first frame and its audio (and, for a stage-3 checkpoint, its own mean head speed) with
`emo_infer.generate`, then `compare` the generated videos with the real clips."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .errors import EvalError

logger = logging.getLogger(__name__)


def shard_samples(shards: str | Path, limit: int | None):
    """The clips of an `emo-annotate` output folder, a shard file or a brace pattern, in order."""
    import webdataset as wds
    from emo_annotate.shards import shard_urls

    path = Path(shards)
    if path.is_dir():
        urls = shard_urls(path)
        if not urls:
            raise EvalError(f"--shards: no committed shards in {path} (an emo-annotate output folder)")
    elif path.is_file() or "{" in str(shards):
        urls = str(shards)
    else:
        raise EvalError(f"--shards: no such file or directory: {shards}")
    count = 0
    try:
        for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
            if not {"mp4", "wav"} <= sample.keys():
                continue
            yield sample
            count += 1
            if limit is not None and count >= limit:
                return
    except (OSError, ValueError) as err:
        raise EvalError(f"--shards: cannot read {shards}: {err}") from None
    if count == 0:
        raise EvalError(f"--shards: no clips with mp4 and wav in {shards}")


def write_inputs(sample: dict, folder: Path) -> tuple[Path, Path, Path, float]:
    """The clip (real video), its first frame (portrait), its audio; and its mean head speed."""
    import cv2
    from emo_annotate.media import decode_mp4

    key = sample["__key__"]
    real = folder / "real" / f"{key}.mp4"
    portrait = folder / "portraits" / f"{key}.png"
    audio = folder / "audio" / f"{key}.wav"
    for path in (real, portrait, audio):
        path.parent.mkdir(parents=True, exist_ok=True)
    real.write_bytes(sample["mp4"])
    audio.write_bytes(sample["wav"])
    frames = decode_mp4(sample["mp4"])
    if not frames:
        raise EvalError(f"--shards: clip {key} has no frames")
    cv2.imwrite(str(portrait), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    speed = float("nan")
    if "speed.npy" in sample:
        import io

        speed = float(np.load(io.BytesIO(sample["speed.npy"]), allow_pickle=False).mean())
    return real, portrait, audio, speed


def benchmark(
    checkpoint: str | Path,
    shards: str | Path,
    out: str | Path,
    limit: int | None = None,
    steps: int = 40,
    guidance: float = 3.5,
    speed: float | None = None,
    seed: int = 0,
    size: int | None = None,
    gen_device: str = "auto",
    **options,
) -> dict:
    """Generate every test clip (at most `limit`) into `out/generated/`, then `compare` them with
    the real clips into `out` (report.json, report.md, plots). `speed`: a constant head speed for
    every clip instead of each clip's own mean (stage-3 checkpoints only); `gen_device`: emo-infer's
    `device` for generation. `options`:
    `EvalConfig` fields for the comparison. Returns the report."""
    from emo_infer import InferError, generate
    from emo_infer.checkpoint import open_checkpoint
    from tqdm import tqdm

    from .comparison import compare
    from .config import EvalConfig

    cfg = EvalConfig(**options)  # option mistakes surface before any generation
    try:
        info = open_checkpoint(Path(checkpoint))
    except InferError as err:
        raise EvalError(str(err)) from None
    if limit is not None and limit < 1:
        raise EvalError("--limit must be at least 1")
    out = Path(out)
    inputs, generated = out / "inputs", out / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    speeds: dict[str, float | None] = {}
    skipped: dict[str, str] = {}  # clips emo-infer refused (e.g. no face it can find in the first frame)
    clips = list(shard_samples(shards, limit))
    for sample in tqdm(clips, desc="generating", unit="clip", disable=not cfg.progress):
        key = sample["__key__"]
        real, portrait, audio, own_speed = write_inputs(sample, inputs)
        wanted = None
        if info.stage >= 3:
            wanted = speed if speed is not None else (own_speed if np.isfinite(own_speed) else None)
        try:
            generate(checkpoint=Path(checkpoint), image=portrait, audio=audio, out=generated / f"{key}.mp4", speed=wanted,
                     steps=steps, guidance=guidance, seed=seed, size=size, device=gen_device, progress=False)
        except InferError as err:
            skipped[key] = str(err)
            for path in (real, portrait, audio):  # the comparison pairs the remaining clips only
                path.unlink(missing_ok=True)
            continue
        speeds[key] = wanted
    if not speeds:
        first = next(iter(skipped.items()))
        raise EvalError(f"no test clip could be generated (e.g. {first[0]}: {first[1]})")
    report = compare(generated, real=inputs / "real", portraits=inputs / "portraits", audio=inputs / "audio",
                     out=out, speed=speeds, cfg=cfg)
    report["benchmark"] = {"checkpoint": str(checkpoint), "stage": info.stage, "shards": str(shards), "clips": len(speeds),
                           "skipped": skipped, "steps": steps, "guidance": guidance, "seed": seed,
                           "speed": "own mean" if speed is None else speed}
    _rewrite_report(out, report)
    return report


def _rewrite_report(out: Path, report: dict) -> None:
    """report.json again with the benchmark's settings, atomically."""
    import json
    import os

    partial = out / ".report.json.partial"
    partial.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(partial, out / "report.json")
