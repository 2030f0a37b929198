"""Wheels a lent GPU machine lacks, at this project's pins, cut to what the pipelines use there.

The device image has Python 3.12 with torch, numpy, OpenCV, scikit-image, pyarrow and the rest
of the usual stack, but not PyAV, diffusers, webdataset or MediaPipe, and it cannot download.
What travels with a device call is limited (64 MiB with the checkout), so the two large wheels
are cut down:

- MediaPipe: only the face detector and face mesh models are kept (emo-infer finds the
  portrait's face with them); the pose, hand, iris, selfie and holistic models go;
- diffusers: the ready-made pipelines go (this project builds its own from the models and
  schedulers).

    python pipelines/device_wheels.py DIR [--for learning|gpu_check]

writes the wheels to DIR and prints their sizes. On the device:
`pip install --no-index --no-deps --target /tmp/site DIR/*.whl` and PYTHONPATH=/tmp/site.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
DEVICE_PYTHON = "3.12"

NEEDS = {
    # emo_train + emo_infer's GPU paths (gpu_check.py)
    "gpu_check": ("av", "diffusers", "webdataset", "braceexpand", "importlib-metadata"),
    # the learning check's training and generation: emo-infer also finds the portrait's face
    "learning": ("av", "diffusers", "webdataset", "braceexpand", "importlib-metadata", "mediapipe", "protobuf"),
}

UNUSED_MEDIAPIPE_MODELS = tuple(f"mediapipe/modules/{name}/" for name in (
    "pose_landmark", "pose_detection", "hand_landmark", "palm_detection", "iris_landmark", "selfie_segmentation",
    "holistic_landmark"))


def mediapipe_drops(name: str) -> bool:
    """The models of the solutions not used (their Python and protobuf modules stay: others import
    them), and the attention mesh (the mesh runs with refine_landmarks=False)."""
    return name.endswith(".tflite") and (name.startswith(UNUSED_MEDIAPIPE_MODELS)
                                         or name.endswith("face_landmark_with_attention.tflite"))


def diffusers_drops(name: str) -> bool:
    """The ready-made pipelines (subfolders of pipelines/); diffusers' own modules there stay
    (training_utils imports pipeline_utils)."""
    if name.startswith("diffusers/modular_pipelines/"):
        return True
    return name.startswith("diffusers/pipelines/") and name.count("/") > 2


CUTS = {"mediapipe": mediapipe_drops, "diffusers": diffusers_drops}  # wheel name -> is a path dropped


def pins(names: tuple[str, ...], python: str) -> list[str]:
    """`name==version` of each name from pyproject's constraint-dependencies, for `python` (3.12)."""
    from packaging.markers import Marker

    constraints = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["constraint-dependencies"]
    environment = {"python_full_version": f"{python}.0", "python_version": python}
    found = {}
    for pin in constraints:
        requirement, _, marker = pin.partition(";")
        name = re.split(r"[=<>! ]", requirement.strip(), maxsplit=1)[0]
        if name in names and (not marker.strip() or Marker(marker).evaluate(environment)):
            found[name] = requirement.strip()
    missing = set(names) - set(found)
    if missing:
        raise SystemExit(f"no pin in pyproject.toml for {', '.join(sorted(missing))}")
    return [found[name] for name in names]


def cut(wheel: Path) -> None:
    """Rewrite `wheel` without the paths CUTS names for it (its RECORD rows go too)."""
    dropped = next((test for prefix, test in CUTS.items() if wheel.name.startswith(f"{prefix}-")), None)
    if dropped is None:
        return
    cut_path = wheel.with_suffix(".cut")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(cut_path, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if dropped(info.filename):
                continue
            data = source.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                rows = data.decode().splitlines()
                data = ("\n".join(row for row in rows if not dropped(row.split(",", 1)[0])) + "\n").encode()
            target.writestr(info, data)
    cut_path.replace(wheel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder of the wheels")
    parser.add_argument("--for", dest="purpose", choices=sorted(NEEDS), default="learning")
    parser.add_argument("--python", default=DEVICE_PYTHON, help="target Python (another one for a rehearsal here)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = pins(NEEDS[args.purpose], args.python)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", args.python, "--implementation", "cp", *platforms, "-d", str(args.out), *wanted],
                   check=True)
    names = {re.split(r"[=<>! ]", pin, maxsplit=1)[0].replace("-", "_").lower() for pin in wanted}
    for wheel in sorted(args.out.glob("*.whl")):
        if wheel.name.split("-", 1)[0].lower() not in names:
            wheel.unlink()  # another purpose's wheel from an earlier call
            continue
        cut(wheel)
        print(f"{wheel.stat().st_size / 1e6:7.2f} MB  {wheel.name}")
    total = sum(w.stat().st_size for w in args.out.glob("*.whl"))
    print(f"{total / 1e6:7.2f} MB  in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
