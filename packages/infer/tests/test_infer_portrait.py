"""The portrait is cropped exactly as the annotator crops training clips, and the mask covers the face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from emo_annotate import samples
from emo_annotate.config import AnnotateConfig, ClipConfig
from emo_annotate.pipeline import Annotator
from emo_infer import InferError
from emo_infer.portrait import prepare_portrait, read_image


def test_crop_matches_the_annotators_crop_of_the_same_face(tmp_path):
    """A still video of the photo through the annotator and the photo through inference give the
    same crop box (the training distribution's framing)."""
    photo = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(samples.astronaut_image(), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    video = samples.make_astronaut_video(tmp_path / "still.mp4", np.zeros(20), 25.0)
    # a still picture is a frozen stretch to the annotator: its freeze checks are off here, the
    # framing is what is compared
    cfg = AnnotateConfig(size=128, clip=ClipConfig(max_still_seconds=1e9, min_picture_rate=0.0))
    clips = []
    annotator = Annotator(cfg)
    try:
        annotator.annotate(video, "still", "still.mp4", clips.append)
    finally:
        annotator.close()
    import json

    x0, y0, x1, y1 = json.loads(clips[0]["json"])["crop_box_source_px"]
    portrait = prepare_portrait(photo, 128, cfg.clip.crop_scale, mask_scale=1.2)
    px0, py0, side = portrait.crop
    # the annotator's box follows the face through H.264-decoded frames, the portrait's comes from
    # one JPEG: their sides differ by 8 px (10 px without x264's macroblock tree) of 208
    assert abs(px0 - x0) <= 6 and abs(py0 - y0) <= 6 and abs(side - (x1 - x0)) <= 0.05 * side

    assert portrait.pixels.shape == (128, 128, 3) and portrait.mask.shape == (128, 128)
    fx0, fy0, fx1, fy1 = portrait.face_box
    assert abs((fx0 + fx1) / 2 - 64) < 12 and abs((fy0 + fy1) / 2 - 64) < 12  # face-centred
    assert 128 / 2.4 < max(fx1 - fx0, fy1 - fy0) <= 128 / 2 + 1  # crop_scale 2: the face is half the side
    inside = portrait.mask[int(fy0) + 1 : int(fy1) - 1, int(fx0) + 1 : int(fx1) - 1]
    assert inside.min() == 255  # the mask covers the face ...
    area = (portrait.mask > 0).mean() * 128 * 128
    assert area == pytest.approx(((fx1 - fx0) * 1.2) * ((fy1 - fy0) * 1.2), rel=0.15)  # ... grown by mask_scale


def test_tight_photo_is_padded_black(tmp_path):
    """A photo cropped tight around the face is smaller than the crop: the outside is black, as
    for training clips whose face fills the frame."""
    full = tmp_path / "full.png"
    cv2.imwrite(str(full), cv2.cvtColor(samples.astronaut_image(), cv2.COLOR_RGB2BGR))
    found = prepare_portrait(full, 64, 2.0, 1.2)
    fx0, fy0, fx1, fy1 = found.face_box / 64 * found.crop[2] + np.tile(found.crop[:2], 2)  # photo pixels
    margin = 0.15 * (fx1 - fx0)
    tight = samples.astronaut_image()[int(fy0 - margin) : int(fy1 + margin), int(fx0 - margin) : int(fx1 + margin)]
    path = tmp_path / "tight.png"
    cv2.imwrite(str(path), cv2.cvtColor(tight, cv2.COLOR_RGB2BGR))
    portrait = prepare_portrait(path, 64, 2.0, 1.2)
    x0, y0, side = portrait.crop
    assert side > max(tight.shape[:2]) and x0 < 0 and y0 < 0
    assert portrait.pixels[:2].max() < 8 and portrait.pixels[:, :2].max() < 8  # black padding on top and left
    assert portrait.pixels[24:40, 24:40].mean() > 30  # the face in the middle


def test_images_from_pillow_and_ffmpeg(tmp_path):
    rgb = samples.astronaut_image()
    cv2.imwrite(str(tmp_path / "a.webp"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert read_image(tmp_path / "a.webp").shape == (512, 512, 3)
    video = samples.make_astronaut_video(tmp_path / "a.mp4", np.zeros(3), 25.0, audio=False)
    assert read_image(video).shape == (512, 512, 3)  # a video: its first frame


def test_no_face_is_an_error(no_face_image):
    with pytest.raises(InferError, match="no face found"):
        prepare_portrait(no_face_image, 64, 2.0, 1.2)


def test_a_video_portrait_is_read_upright_with_its_own_colours(tmp_path):
    """A phone video (pixels stored sideways, a display matrix, full-range colours) given as the
    portrait is read as the annotator reads training videos: upright, colours as recorded."""
    from emo_annotate.sync_media import make_sync_video

    video = make_sync_video(tmp_path, "rotated_90")
    rgb = read_image(video.path)
    assert rgb.shape == (512, 384, 3)  # upright portrait, not the stored 512 x 384 landscape
    for level, (x0, y0, x1, y1) in video.grey_boxes.items():
        assert abs(rgb[(y0 + y1) // 2, (x0 + x1) // 2].mean() - level) <= 5
    full = make_sync_video(tmp_path, "full_range")
    rgb = read_image(full.path)
    for level, (x0, y0, x1, y1) in full.grey_boxes.items():
        assert abs(rgb[(y0 + y1) // 2, (x0 + x1) // 2].mean() - level) <= 5
