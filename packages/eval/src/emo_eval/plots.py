"""Pictures a person would rather look at than read, per video: identity per frame, mouth opening
against the audio envelope, requested against measured head speed, and a frame strip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

STRIP_COLUMNS = 6


def _figure(title: str, ylabel: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=100)
    ax.set_title(title)
    ax.set_xlabel("seconds")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return plt, fig, ax


def _save(plt, fig, ax, path: Path) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_plots(folder: Path, curves: dict, cond, pair, requested) -> None:
    """identity.png, mouth.png, speed.png and strip.png of one video into `folder`."""
    gen, real = curves["generated"], curves.get("real")
    fps = pair.generated.fps
    seconds = lambda n: np.arange(n) / fps  # noqa: E731

    plt, fig, ax = _figure("identity similarity per frame", "cosine")
    if gen.identity is not None:
        ax.plot(seconds(len(gen.identity)), gen.identity, label="generated vs portrait")
    if real is not None and real.identity is not None:
        ax.plot(seconds(len(real.identity)), real.identity, label="real vs portrait", alpha=0.7)
    if gen.extra.get("csim") is not None:
        ax.plot(seconds(len(gen.extra["csim"])), gen.extra["csim"], label="generated vs real frame", alpha=0.7)
    _save(plt, fig, ax, folder / "identity.png")

    plt, fig, ax = _figure("mouth opening and audio envelope", "mouth opening (inner lips / eye corners)")
    ax.plot(seconds(len(gen.mouth)), gen.mouth, label="generated mouth")
    if real is not None:
        ax.plot(seconds(len(real.mouth)), real.mouth, label="real mouth", alpha=0.7)
    if gen.envelope is not None and np.nanmax(gen.envelope) > 0:
        top = np.nanmax(np.concatenate([gen.mouth[np.isfinite(gen.mouth)], [0.3]]))
        ax.fill_between(seconds(len(gen.envelope)), 0, gen.envelope / np.nanmax(gen.envelope) * top,
                        color="grey", alpha=0.3, label="audio RMS (scaled)")
    _save(plt, fig, ax, folder / "mouth.png")

    plt, fig, ax = _figure("head rotation speed", "deg/s")
    ax.plot(seconds(len(gen.speed)), gen.speed, label="generated (measured)")
    if real is not None:
        ax.plot(seconds(len(real.speed)), real.speed, label="real (measured)", alpha=0.7)
    if requested is not None:
        values = np.broadcast_to(np.asarray(requested, np.float32), (len(gen.speed),)) if np.ndim(requested) == 0 else np.asarray(requested)[: len(gen.speed)]
        ax.plot(seconds(len(values)), values, "k--", label="requested")
    _save(plt, fig, ax, folder / "speed.png")

    cv2.imwrite(str(folder / "strip.png"), cv2.cvtColor(frame_strip(cond.portrait_rgb, pair), cv2.COLOR_RGB2BGR))


def frame_strip(portrait: np.ndarray | None, pair) -> np.ndarray:
    """Rows: real frames (if any) and generated frames at the same moments; the portrait first."""
    gen_thumbs = pair.generated.thumbs
    indices = sorted(gen_thumbs)
    if len(indices) > STRIP_COLUMNS:
        indices = [indices[i] for i in np.linspace(0, len(indices) - 1, STRIP_COLUMNS).round().astype(int)]
    side = next(iter(gen_thumbs.values())).shape[0]

    def tile(image: np.ndarray | None) -> np.ndarray:
        if image is None:
            return np.full((side, side, 3), 255, np.uint8)
        h, w = image.shape[:2]
        scale = side / max(h, w)
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        canvas = np.full((side, side, 3), 255, np.uint8)
        y, x = (side - image.shape[0]) // 2, (side - image.shape[1]) // 2
        canvas[y : y + image.shape[0], x : x + image.shape[1]] = image
        return canvas

    rows = []
    if pair.real is not None:
        rows.append([tile(portrait)] + [tile(pair.real.thumbs.get(i)) for i in indices])
    rows.append([tile(portrait if pair.real is None else None)] + [tile(gen_thumbs[i]) for i in indices])
    gap = np.full((side, 4, 3), 255, np.uint8)
    lines = [np.concatenate([x for t in row for x in (t, gap)][:-1], axis=1) for row in rows]
    return np.concatenate([x for line in lines for x in (line, np.full((4, line.shape[1], 3), 255, np.uint8))][:-1], axis=0)
