"""The learning check on a lent GPU, split where the machines differ (learning_check_gpu.sh runs it).

The GPU machine cannot download, and what travels there is limited (64 MiB with the checkout), so
the set is made and annotated here on the CPU, training and generation run there, and the
evaluation (MediaPipe, dlib, the annotator's pose code) runs here again:

    pack WORK PAYLOAD     the held-out inputs and the shards of WORK (after --stop-after annotate),
                          each shard without the members the trainer does not read (landmarks, wav),
                          and a new run id (WORK/gpu_run.json, also in the payload)
    unpack WORK RESULTS   the device's results.tar into WORK, refused when it carries another run's id
                          (a results.tar of another WORK would mix two runs)
    check WORK            every stage finished and every generation there (before evaluating here)
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tarfile
import uuid
from pathlib import Path

from learning_check import PROFILES, STAGES  # this folder

TRAINER_SKIPS = (".lmk.npy", ".wav")  # shard members emo-train does not read (emo_train.data.dataset)
RUN_ID = "gpu_run.json"  # {"run_id": ...}: which pack a results.tar comes from


def slim_shard(source: Path, target: Path) -> None:
    """`source` without the members the trainer skips, in the same order."""
    with tarfile.open(source) as tar_in, tarfile.open(target, "w") as tar_out:
        for member in tar_in:
            if member.isreg() and not member.name.endswith(TRAINER_SKIPS):
                tar_out.addfile(member, io.BytesIO(tar_in.extractfile(member).read()))


def pack(work: Path, payload: Path) -> None:
    if not (work / "shards" / "index.parquet").is_file():
        raise SystemExit(f"{work}: no annotated shards (run learning_check.py --stop-after annotate first)")
    if payload.exists():
        shutil.rmtree(payload)
    info = json.loads((work / "set" / "set.json").read_text())
    identity = info["identities"][0]["name"]
    held = [r["name"] for r in info["recordings"] if r["split"] == "held_out"]
    wanted = [work / "set" / "set.json", work / "set" / "portraits" / f"{identity}.png",
              work / "set" / "held_out" / f"{identity}_{held[0]}.json", work / "timings.json",
              *(work / "set" / "audio" / f"{name}.wav" for name in held)]
    for path in wanted:
        target = payload / path.relative_to(work)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    for path in sorted((work / "shards").rglob("*")):
        target = payload / path.relative_to(work)
        if path.is_dir() or path.name == "run.lock":
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".tar":
            slim_shard(path, target)
        else:
            shutil.copy2(path, target)
    run = json.dumps({"run_id": uuid.uuid4().hex}) + "\n"
    (work / RUN_ID).write_text(run)
    (payload / RUN_ID).write_text(run)
    size = sum(p.stat().st_size for p in payload.rglob("*") if p.is_file())
    print(f"{payload}: {size / 1e6:.1f} MB")


def unpack(work: Path, results: Path) -> None:
    if not (work / RUN_ID).is_file():
        raise SystemExit(f"{work}: no {RUN_ID} (run `learning_check_gpu.sh prepare` with this WORK first)")
    expected = json.loads((work / RUN_ID).read_text())["run_id"]
    try:
        with tarfile.open(results) as tar:
            member = tar.extractfile(RUN_ID)
            carried = json.loads(member.read())["run_id"]
            if carried != expected:
                raise SystemExit(f"{results} comes from run {carried}, not from {work}'s {expected}: "
                                 "give `finish` the WORK its `prepare` used")
            tar.extractall(work, filter="data")
    except (KeyError, tarfile.TarError, OSError, ValueError) as err:
        raise SystemExit(f"{results}: not a results.tar of learning_check_gpu.sh device ({err})") from None


def check(work: Path) -> None:
    missing = [f"runs/stage{s}/summary.json" for s in STAGES if not (work / "runs" / f"stage{s}" / "summary.json").is_file()]
    videos = ("audio", "control", "silence", "long", *(f"speed_{int(s)}" for s in PROFILES["gpu"].speeds))
    missing += [f"generated/{v}.mp4" for v in videos if not (work / "generated" / f"{v}.mp4").is_file()]
    if missing:
        raise SystemExit(f"{work}: the GPU run did not finish: missing {', '.join(missing)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack")
    packing.add_argument("work", type=Path)
    packing.add_argument("payload", type=Path)
    unpacking = commands.add_parser("unpack")
    unpacking.add_argument("work", type=Path)
    unpacking.add_argument("results", type=Path)
    checking = commands.add_parser("check")
    checking.add_argument("work", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.work, args.payload)
    elif args.command == "unpack":
        unpack(args.work, args.results)
    else:
        check(args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
