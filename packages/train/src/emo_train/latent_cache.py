"""A disk cache of the frozen VAE's posteriors of training frames: each frame is encoded once,
not every time a sample draws it.

    ROOT/<fingerprint>/<clip key>/<frame:05d>.safetensors     mean, std: (4, S/8, S/8) float16

The fingerprint names the VAE's weights and the training size, so one folder can serve several
VAEs and sizes without mixing them up. Entries are written under a temporary name and renamed,
so data-parallel workers can share the folder (two workers that encode the same frame at once
write the same content). A trainer option rather than an annotator one: the shards stay
independent of the VAE and the size, and the cache fills itself during the first epoch.

Values pass through float16 on the first use too, so a frame's latents are the same whether it
came from the VAE in this step or from the cache.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

Encoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # (m, 3, S, S) uint8 -> mean, std (m, 4, h, w)


class LatentCache:
    def __init__(self, root: str | Path, fingerprint: str):
        self.dir = Path(root) / fingerprint

    def path(self, key: str, frame: int) -> Path:
        folder = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else hashlib.sha1(key.encode()).hexdigest()
        return self.dir / folder / f"{frame:05d}.safetensors"

    def moments(
        self,
        keys: list[str],  # (b,) clip keys
        frames: torch.Tensor,  # (b, k) frame indices in the clips
        pixels: torch.Tensor,  # (b*k, 3, S, S) uint8, sample-major
        encode: Encoder,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std `(b*k, 4, h, w)` float32 of every frame: from the cache, or encoded (in one
        VAE pass for all missing frames) and stored."""
        paths = [self.path(key, int(frame)) for key, row in zip(keys, frames.tolist()) for frame in row]
        found: dict[int, dict[str, torch.Tensor]] = {}
        for index, path in enumerate(paths):
            if path.is_file():
                found[index] = load_file(str(path))
        missing = [index for index in range(len(paths)) if index not in found]
        if missing:
            mean, std = encode(pixels[missing])  # (m, 4, h, w)
            for row, index in enumerate(missing):
                entry = {"mean": mean[row].half().cpu().contiguous(), "std": std[row].half().cpu().contiguous()}
                self._store(paths[index], entry)
                found[index] = entry
        device = pixels.device
        mean = torch.stack([found[i]["mean"] for i in range(len(paths))]).to(device, torch.float32)
        std = torch.stack([found[i]["std"] for i in range(len(paths))]).to(device, torch.float32)
        return mean, std

    @staticmethod
    def _store(path: Path, entry: dict[str, torch.Tensor]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file(entry, str(tmp))
        os.replace(tmp, path)
