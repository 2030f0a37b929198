"""emo-infer: one portrait and a speech or song recording in, a talking / singing video out.

    from emo_infer import generate
    result = generate(checkpoint="runs/stage3", image="portrait.jpg", audio="speech.wav", out="talking.mp4", speed=15)

`generate` checks every input before loading weights, then runs `EMOPipeline` clip after clip.
"""

from .api import GenerationResult, generate
from .config import InferConfig
from .errors import InferError

__all__ = ["GenerationResult", "InferConfig", "InferError", "generate"]
