"""emo-eval: the metrics that tell a good talking-head model from a bad one.

    import emo_eval
    report = emo_eval.compare("generated/", real="real/", portraits="portraits/", out="report/", speed=15)
    report["videos"]["clip_000"]["metrics"]["paired"]["psnr"]
    report["overall"]["distribution"]["fid"]

`compare` and `benchmark` drive everything; the single metrics are plain functions too:
`landmark_sync`, `mouth_opening`, `audio_envelope`, `frechet_distance`, `head_motion`, `psnr`, `ssim`,
`seam_flicker`, `cosine`, and the model wrappers `InceptionFeatures`, `I3DFeatures`, `load_syncnet`,
`DlibEmbedder`, `ArcFaceEmbedder`, `FaceTracker`.
"""

from importlib import import_module

from .errors import EvalError

# name -> module; imported on first use, so `emo-eval --help` starts without torch
_LAZY = {
    "benchmark": "benchmarking", "compare": "comparison", "EvalConfig": "config", "FaceTracker": "faces",
    "I3DFeatures": "frechet", "InceptionFeatures": "frechet", "expression_features": "frechet", "frechet_distance": "frechet",
    "ArcFaceEmbedder": "identity", "DlibEmbedder": "identity", "cosine": "identity",
    "audio_envelope": "lipsync", "landmark_sync": "lipsync", "mouth_opening": "lipsync", "mouth_summary": "lipsync",
    "head_motion": "motion", "psnr": "pixels", "seam_flicker": "pixels", "ssim": "pixels",
    "SyncNet": "syncnet", "load_syncnet": "syncnet", "sync_scores": "syncnet",
}
__all__ = ["EvalError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
