"""A talking-head set with known ground truth: identities x recordings, split by recording.

Layout of `OUT_DIR`:

    train/<identity>_<recording>.mp4 + .json      videos of the training recordings
    held_out/<identity>_<recording>.mp4 + .json   the same identities speaking the held-out recordings
    audio/<recording>.wav                         every recording (16 kHz mono PCM)
    portraits/<identity>.png                      each identity's frame, mouth closed, head unturned
    set.json                                      the options, identities, recordings and split, videos

Annotate `OUT_DIR/train` to train; `held_out` holds the reference renderings of audio the model
never heard. Recording names never contain `_`, so a file name splits at its last `_`.
Each video is written under a temporary name and renamed; a rerun with the same options skips
finished videos, and set.json is written last.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import AnnotateError
from ..media import AUDIO_RATE, encode_wav
from .identities import DEFAULT_IDENTITIES, identity_name, load_identity
from .motion import SpeedProfile
from .recordings import ESPEAK_VOICES, VOICES, Recording, espeak_recording, synth_recording
from .render import SynthConfig, TalkingHead, render_video

SET_FORMAT = "emo-annotate synth set v1"


class SetError(AnnotateError):
    """Options or an output directory a set cannot be built with."""


@dataclass(frozen=True)
class SetOptions:
    """What a set holds (besides the rendering config)."""

    identities: tuple[str, ...] = DEFAULT_IDENTITIES
    """Built-in identity names or photo paths."""
    recordings: int = 6
    """Synthesised recordings (voices cycle through `recordings.VOICES`)."""
    held_out: int = 2
    """How many of the synthesised recordings (the last ones) are held out of training."""
    espeak_recordings: int = 0
    """Extra training recordings spoken by espeak-ng (needs it installed)."""
    seconds: float = 8.0
    """Length of every recording and video."""
    seed: int = 0
    """Seeds recordings, speed profiles and the head's starting point on its path."""

    def to_dict(self) -> dict:
        return {"identities": list(self.identities), "recordings": self.recordings, "held_out": self.held_out,
                "espeak_recordings": self.espeak_recordings, "seconds": self.seconds, "seed": self.seed}


def make_recordings(opts: SetOptions) -> list[tuple[Recording, str]]:
    """(recording, split) pairs: the synthesised ones (the last `held_out` held out), then espeak's."""
    voices = list(VOICES)
    made = []
    for i in range(opts.recordings):
        split = "held_out" if i >= opts.recordings - opts.held_out else "train"
        made.append((synth_recording(opts.seconds, opts.seed * 100 + i, voices[i % len(voices)]), split))
    for i in range(opts.espeak_recordings):
        made.append((espeak_recording(opts.seconds, opts.seed * 100 + 50 + i, ESPEAK_VOICES[i % len(ESPEAK_VOICES)]), "train"))
    return made


def build_set(out_dir: Path, opts: SetOptions = SetOptions(), cfg: SynthConfig = SynthConfig(), progress: bool = True) -> dict:
    """Render the set into `out_dir`; returns the contents of set.json."""
    if opts.recordings < 1 or not 0 <= opts.held_out < opts.recordings:
        raise SetError("need at least one recording, and fewer held-out recordings than recordings")
    if not opts.identities:
        raise SetError("need at least one identity")
    names = [identity_name(key) for key in opts.identities]
    if len({name for name, _ in names}) < len(names):
        raise SetError("two identities have the same name")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SetError(f"{out_dir} is not a directory")
    manifest_path = out_dir / "set.json"
    wanted = {"options": opts.to_dict(), "config": cfg.to_dict()}
    if manifest_path.exists():
        previous = json.loads(manifest_path.read_text())
        if {k: previous.get(k) for k in wanted} != json.loads(json.dumps(wanted)):
            raise SetError(f"{out_dir} holds a set made with other options; choose another directory")
    elif out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "train").is_dir():
        raise SetError(f"{out_dir} is not empty and holds no synth set; choose another directory")

    recordings = make_recordings(opts)
    for sub in ("train", "held_out", "audio", "portraits"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    # the options first (a rerun checks them), the full manifest when every video is done
    _write_atomic(manifest_path, json.dumps({"format": SET_FORMAT, **wanted, "complete": False}, indent=1).encode())
    for rec, _ in recordings:
        _write_atomic(out_dir / "audio" / f"{rec.name}.wav", encode_wav(rec.audio))

    identities, videos = [], []
    total = len(opts.identities) * len(recordings)
    bar = tqdm(total=total, desc="synth videos", unit="video", disable=not progress)
    for i, (key, (name, source)) in enumerate(zip(opts.identities, names)):
        portrait = out_dir / "portraits" / f"{name}.png"
        identities.append({"name": name, "source": source, "portrait": f"portraits/{portrait.name}"})
        head = None  # the photo is read and rigged only when something of it is missing
        if not portrait.exists():
            head = TalkingHead(load_identity(key, cfg.size, cfg.face_fraction), cfg)
            tmp = portrait.with_name(f".{portrait.stem}.partial.png")
            Image.fromarray(head.identity.image).save(tmp)
            os.replace(tmp, portrait)
        for j, (rec, split) in enumerate(recordings):
            path = out_dir / split / f"{name}_{rec.name}.mp4"
            if not path.with_suffix(".json").exists():
                head = head or TalkingHead(load_identity(key, cfg.size, cfg.face_fraction), cfg)
                rng = np.random.default_rng([opts.seed, i, j])
                profile_seed = int(rng.integers(2**31))
                render_video(head, rec.audio, path, cfg.varied_profile(opts.seconds, profile_seed),
                             phase=float(rng.uniform(0, 2 * np.pi)), direction=int(rng.choice([-1, 1])),
                             recording={"name": rec.name, "split": split, **rec.description},
                             extra={"seeds": {"set": opts.seed, "identity_index": i, "recording_index": j,
                                              "speed_profile": profile_seed}})
            videos.append({"video": f"{split}/{path.name}", "truth": f"{split}/{path.with_suffix('.json').name}",
                           "identity": name, "recording": rec.name, "split": split})
            bar.update()
    bar.close()
    manifest = {
        "format": SET_FORMAT,
        **wanted,
        "complete": True,
        "identities": identities,
        "recordings": [{"name": r.name, "split": s, "audio": f"audio/{r.name}.wav", **r.description} for r, s in recordings],
        "videos": videos,
    }
    _write_atomic(manifest_path, json.dumps(manifest, indent=1).encode())
    return manifest


def render_one(out_dir: Path, identity: str, recording: Recording, speed: float | None, cfg: SynthConfig = SynthConfig(),
               seed: int = 0) -> Path:
    """One video of `identity` speaking `recording` into `out_dir/<identity>_<recording>.mp4` (+ .json):
    the head still (`speed` 0), at a constant `speed` deg/s from the unturned pose, or along a
    varied profile (`speed` None, seeded)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SetError(f"{out_dir} is not a directory")
    person = load_identity(identity, cfg.size, cfg.face_fraction)
    out_dir.mkdir(parents=True, exist_ok=True)
    head = TalkingHead(person, cfg)
    seconds = len(recording.audio) / AUDIO_RATE
    seeds = {"render": seed}
    if speed is None:
        rng = np.random.default_rng(seed)
        seeds["speed_profile"] = int(rng.integers(2**31))
        profile = cfg.varied_profile(seconds, seeds["speed_profile"])
        phase, direction = float(rng.uniform(0, 2 * np.pi)), int(rng.choice([-1, 1]))
    else:
        profile, phase, direction = SpeedProfile.constant(speed, seconds), 0.0, 1
    path = out_dir / f"{person.name}_{recording.name}.mp4"
    render_video(head, recording.audio, path, profile, phase, direction, recording={"name": recording.name, **recording.description},
                 extra={"seeds": seeds})
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)
