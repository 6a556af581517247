"""Snapshot anonymisation: masks, people and faces filled solid; stripped JPEG; failing closed.

The real models run here (CenterFace and the SSDLite person detector). Faces
come from scikit-image's `astronaut` and `camera` photographs composited into
a synthetic scene, with face boxes measured by hand in the source photos.
OpenCV's Haar cascades serve as an independent judge: they must find the face
in the un-anonymised picture (so the judge works) and nothing in the snapshot.
"""

from __future__ import annotations

import itertools
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from vaktpost.edge.config.snapshot import SnapshotSettings
from vaktpost.edge.detectors import Detection, NullDetector
from vaktpost.edge.detectors.faces import (
    centerface_input,
    decode_centerface,
    plan_input,
    to_faces,
)
from vaktpost.edge.evidence.anonymise import (
    REASONS,
    AnonymiseError,
    Anonymiser,
    Cover,
    box_pixels,
    detect_people,
    model_file_problem,
    paint,
    person_tiles,
)
from vaktpost.edge.evidence.snapshot import (
    KEEP_MARKERS,
    EncodeError,
    downscale,
    encode_jpeg,
    jpeg_segments,
    make_snapshot,
    snapshot_image,
    strip_jpeg,
)
from vaktpost.edge.modelfile import MODELS_DIR, load_manifest
from vaktpost.edge.privacy.masks import PrivacyMasker, polygon_mask
from vaktpost.scenes import Figure, Scene, render_frame

BLACK = (0, 0, 0)
TRIANGLE = [[0.05, 0.05], [0.35, 0.08], [0.15, 0.45]]
CONCAVE = [[0.55, 0.55], [0.95, 0.5], [0.75, 0.7], [0.97, 0.95], [0.5, 0.9]]
APP_AND_COM = set(range(0xE0, 0xF0)) | {0xFE}


# --- fixtures and helpers ---------------------------------------------------------


@pytest.fixture(scope="module")
def settings() -> SnapshotSettings:
    return SnapshotSettings()


@pytest.fixture(scope="module")
def anonymiser(settings: SnapshotSettings) -> Anonymiser:
    """The real thing: default models, verified; masks TRIANGLE and CONCAVE."""
    return Anonymiser(settings, masker=PrivacyMasker([TRIANGLE, CONCAVE]))


@pytest.fixture(scope="module")
def faces_only(settings: SnapshotSettings, anonymiser: Anonymiser) -> Anonymiser:
    """CenterFace alone: shows that faces are hidden even when no person is detected."""
    return Anonymiser(settings, person_detector=NullDetector(), faces=anonymiser.faces)


def scene_frame(w: int, h: int) -> np.ndarray:
    """A schoolyard with two photographed people in it (the detectors have something to find)."""
    scene = Scene(width=w, height=h, seed=1, figures=[
        Figure(0, 10, [(0.3, 0.95)], height=0.6, kind="astronaut"),
        Figure(0, 10, [(0.72, 0.9)], height=0.5, kind="cameraman"),
    ])
    return render_frame(scene, 1.0)


def decode(jpeg: bytes, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flags)
    assert img is not None, "not a decodable JPEG"
    return img


# --- CenterFace pre- and post-processing ----------------------------------------------


def test_plan_input_pads_to_32_and_downscales_only_large_frames():
    p = plan_input(1280, 720)
    assert (p.scale, p.resized_w, p.resized_h, p.in_w, p.in_h) == (1.0, 1280, 720, 1280, 736)
    p = plan_input(641, 481)
    assert (p.scale, p.in_w, p.in_h) == (1.0, 672, 512)
    p = plan_input(1920, 1080, max_side=1280)
    assert (p.resized_w, p.resized_h, p.in_w, p.in_h) == (1280, 720, 1280, 736)
    assert plan_input(64, 2000, max_side=1000).resized_h == 1000  # the longer side counts, portrait too
    with pytest.raises(ValueError):
        plan_input(640, 480, max_side=16)


def test_centerface_input_is_rgb_nchw_padded_with_zeros_not_stretched():
    img = np.zeros((40, 50, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # B, G, R
    t = centerface_input(img, plan_input(50, 40))
    assert t.shape == (1, 3, 64, 64) and t.dtype == np.float32
    assert (t[0, 0, :40, :50] == 30).all() and (t[0, 2, :40, :50] == 10).all()  # RGB order, 0..255
    assert (t[0, :, 40:, :] == 0).all() and (t[0, :, :, 50:] == 0).all()


def synthetic_outputs(h4: int, w4: int, cells: dict[tuple[int, int], tuple[float, float, float, float, float]]):
    """CenterFace-shaped outputs; cells maps (row, col) → (score, box h, box w, offset y, offset x) in pixels."""
    heat = np.zeros((1, 1, h4, w4), np.float32)
    scale = np.zeros((1, 2, h4, w4), np.float32)
    offset = np.zeros((1, 2, h4, w4), np.float32)
    lms = np.zeros((1, 10, h4, w4), np.float32)
    for (r, c), (score, bh, bw, oy, ox) in cells.items():
        heat[0, 0, r, c] = score
        scale[0, :, r, c] = np.log(bh / 4), np.log(bw / 4)
        offset[0, :, r, c] = oy, ox
        # Landmarks (y, x) in box units: eyes at a third of the height, mouth at 0.8.
        lms[0, :, r, c] = [0.33, 0.3, 0.33, 0.7, 0.55, 0.5, 0.8, 0.35, 0.8, 0.65]
    return heat, scale, offset, lms


def test_decode_centerface_places_box_and_landmarks_exactly():
    outs = synthetic_outputs(20, 30, {(10, 20): (0.9, 40.0, 32.0, 0.25, -0.5), (3, 3): (0.2, 8.0, 8.0, 0, 0)})
    boxes, scores, points = decode_centerface(*outs, threshold=0.5)
    assert scores.tolist() == pytest.approx([0.9])
    cy, cx = (10 + 0.25 + 0.5) * 4, (20 - 0.5 + 0.5) * 4  # 43, 80
    assert boxes[0] == pytest.approx([cx - 16, cy - 20, cx + 16, cy + 20], abs=1e-4)
    assert points[0, 0] == pytest.approx([cx - 16 + 0.3 * 32, cy - 20 + 0.33 * 40], abs=1e-4)  # (x, y)
    assert points[0, 4] == pytest.approx([cx - 16 + 0.65 * 32, cy - 20 + 0.8 * 40], abs=1e-4)
    with pytest.raises(ValueError):
        decode_centerface(outs[0], outs[1][:, :1], outs[2], outs[3], 0.5)


def test_to_faces_maps_back_through_the_downscale_and_clips_to_the_frame():
    plan = plan_input(2560, 1440, max_side=1280)  # scale 0.5, input 1280x736
    boxes = np.array([[640.0, 360.0, 700.0, 440.0], [1250.0, 700.0, 1300.0, 730.0], [1281.0, 0, 1300.0, 10.0]])
    points = np.zeros((3, 5, 2))
    points[0] = [[650.0, 380.0]] * 5
    faces = to_faces(boxes, np.array([0.8, 0.9, 0.95]), points, plan)
    # The third lies wholly in the padding (x > 1280): dropped. Best first.
    assert [f.score for f in faces] == pytest.approx([0.9, 0.8])
    assert faces[0].box == pytest.approx((1250 / 1280, 700 / 720, 1.0, 1.0))
    assert faces[1].box == pytest.approx((0.5, 0.5, 700 / 1280, 440 / 720))
    assert faces[1].landmarks[0] == pytest.approx((650 / 1280, 380 / 720))


def test_centerface_finds_the_astronaut_with_landmarks(anonymiser: Anonymiser):
    from skimage import data

    faces = anonymiser.faces.detect(data.astronaut()[:, :, ::-1].copy(), threshold=0.5)
    assert len(faces) == 1  # NMS leaves one of the many cells that fire on a face
    x1, y1, x2, y2 = (v * 512 for v in faces[0].box)
    gx1, gy1, gx2, gy2 = PHOTOS["astronaut"].face
    iw, ih = min(x2, gx2) - max(x1, gx1), min(y2, gy2) - max(y1, gy1)
    iou = iw * ih / ((x2 - x1) * (y2 - y1) + (gx2 - gx1) * (gy2 - gy1) - iw * ih)
    assert iou > 0.6
    (lx, ly), (rx, ry) = (np.array(p) * 512 for p in faces[0].landmarks[:2])
    assert 190 < lx < rx < 265 and 90 < ly < 115 and 90 < ry < 115  # eyes at ~(204, 102) and ~(247, 104)


# --- pure helpers of the anonymiser ---------------------------------------------------


def test_box_pixels_rounds_outwards_and_clips():
    assert box_pixels((0.1, 0.1, 0.2, 0.2), 100, 50) == (10, 5, 20, 10)
    assert box_pixels((0.101, 0.109, 0.2001, 0.2), 100, 50) == (10, 5, 21, 10)
    assert box_pixels((-0.2, -1.0, 1.5, 2.0), 100, 50) == (0, 0, 100, 50)


def test_paint_fills_mask_and_boxes_and_leaves_the_rest():
    img = np.full((20, 40, 3), 200, np.uint8)
    mask = np.zeros((20, 40), bool)
    mask[0, 0] = True
    out = paint(img, mask, [(0.5, 0.5, 0.75, 1.0)], (1, 2, 3))
    assert (img == 200).all(), "the input must not be modified"
    assert out[0, 0].tolist() == [1, 2, 3]
    assert (out[10:20, 20:30] == (1, 2, 3)).all()
    filled = np.zeros((20, 40), bool)
    filled[0, 0] = True
    filled[10:20, 20:30] = True
    assert (out[~filled] == 200).all()


def test_person_tiles_cover_the_frame_with_squares():
    assert person_tiles(1280, 720) == [(0, 0, 1280, 720), (0, 0, 720, 720), (560, 0, 1280, 720)]
    assert person_tiles(480, 640) == [(0, 0, 480, 640), (0, 0, 480, 480), (0, 160, 480, 640)]
    assert person_tiles(500, 500) == [(0, 0, 500, 500)]
    tiles = person_tiles(2000, 400)[1:]
    assert len(tiles) == 5 and tiles[0][0] == 0 and tiles[-1][2] == 2000
    assert all(t[2] - t[0] == 400 for t in tiles) and all(b[0] <= a[2] for a, b in itertools.pairwise(tiles))


def test_detect_people_maps_tile_boxes_to_the_frame():
    class Stub:
        def __init__(self) -> None:
            self.shapes: list[tuple[int, ...]] = []

        def detect(self, image: np.ndarray) -> list[Detection]:
            self.shapes.append(image.shape[:2])
            return [Detection((0.0, 0.0, 0.5, 1.0), 0.9)]

    stub = Stub()
    boxes = detect_people(stub, np.zeros((720, 1280, 3), np.uint8))
    # The whole frame, two height-squares, then the fine half-overlapping grid of 180 px tiles.
    assert stub.shapes[:3] == [(720, 1280), (720, 720), (720, 720)]
    assert stub.shapes[3:] == [(180, 180)] * (14 * 7)
    assert np.allclose(boxes[:3], [(0, 0, 0.5, 1), (0, 0, 360 / 1280, 1), (560 / 1280, 0, 920 / 1280, 1)])
    assert np.allclose(boxes[3], (0, 0, 90 / 1280, 180 / 720))


# --- (a) privacy masks are constant fill in every snapshot --------------------------


@pytest.mark.parametrize("size", [(640, 360), (641, 359), (1280, 720), (1920, 1080)])
def test_masks_are_constant_fill_at_every_resolution(anonymiser: Anonymiser, settings: SnapshotSettings, size):
    w, h = size
    frame = anonymiser.masker.apply(scene_frame(w, h))  # what the pipeline hands over
    full = anonymiser.anonymise(frame, [])
    assert (full[polygon_mask([TRIANGLE, CONCAVE], full.shape)] == BLACK).all()

    image = snapshot_image(anonymiser, frame, [], settings)
    assert image.shape[1] == min(w, settings.width)
    # Pixel-exact on the array that is encoded, on every pixel the polygons touch at the output size.
    out_mask = polygon_mask([TRIANGLE, CONCAVE], image.shape)
    assert out_mask.sum() > 0.05 * out_mask.size
    assert (image[out_mask] == BLACK).all()

    jpeg = make_snapshot(anonymiser, frame, [], settings)
    assert jpeg == encode_jpeg(image, settings.width, settings.quality), "make_snapshot encodes exactly that array"
    # The decoded JPEG, away from the mask edge (16 px, one chroma block): black within JPEG noise.
    inner = cv2.erode(out_mask.astype(np.uint8), np.ones((33, 33), np.uint8)).astype(bool)
    assert inner.any()
    assert int(np.abs(decode(jpeg)[inner].astype(int)).max()) <= 3


def test_masks_are_reapplied_in_the_fill_colour_even_on_an_unmasked_frame():
    green = (40, 200, 90)
    s = SnapshotSettings(fill=green)
    an = Anonymiser(s, person_detector=NullDetector(), faces=_NoFaces(), masker=PrivacyMasker([TRIANGLE]))
    frame = scene_frame(640, 360)  # NOT masked by the caller: belt and braces must catch it
    image = snapshot_image(an, frame, [], s)
    mask = polygon_mask([TRIANGLE], image.shape)
    assert (image[mask] == green).all()
    assert not (image[~mask] == green).all(axis=1).any()  # nothing else is painted


def test_given_person_boxes_are_filled_with_their_margin():
    s = SnapshotSettings(person_margin=0.5)
    an = Anonymiser(s, person_detector=NullDetector(), faces=_NoFaces())
    frame = np.full((100, 200, 3), 255, np.uint8)
    out = an.anonymise(frame, [(0.4, 0.4, 0.6, 0.6)])  # 40x20 px; +50 % each side → x 60..140, y 30..70
    assert (out[30:70, 60:140] == 0).all()
    assert (out[:30] == 255).all() and (out[70:] == 255).all()
    assert (out[:, :60] == 255).all() and (out[:, 140:] == 255).all()


def test_with_masker_shares_the_models_and_swaps_the_masks(anonymiser: Anonymiser, settings):
    other = anonymiser.with_masker(PrivacyMasker([[[0.0, 0.0], [1.0, 0.0], [1.0, 0.2]]]))
    assert other.faces is anonymiser.faces and other.person_detector is anonymiser.person_detector
    assert anonymiser.masker is not None and anonymiser.masker.polygons == [TRIANGLE, CONCAVE]
    frame = np.full((90, 160, 3), 255, np.uint8)
    assert (other.anonymise(frame)[0, 150] == BLACK).all() and (anonymiser.anonymise(frame)[0, 150] == 255).all()


class _NoFaces:
    """Stands in for CenterFace where faces do not matter."""

    def detect(self, image_bgr: np.ndarray, threshold: float = 0.5) -> list:
        return []


# --- (b) real faces: pixels filled, and an independent judge finds none ----------------


class Photo:
    """A scikit-image photograph, the crop of it that is composited, and its face box (hand-measured,
    pixels of the 512x512 photo, x2/y2 exclusive)."""

    def __init__(self, name: str, crop: tuple[int, int, int, int], face: tuple[int, int, int, int]) -> None:
        self.name, self.crop, self.face = name, crop, face

    def image(self) -> np.ndarray:
        from skimage import data

        if self.name == "astronaut":
            return np.ascontiguousarray(data.astronaut()[:, :, ::-1])
        return cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR)


PHOTOS = {
    # Frontal face, eyebrows/forehead to chin, ear to ear (hair excluded).
    "astronaut": Photo("astronaut", crop=(110, 0, 350, 330), face=(180, 66, 274, 184)),
    # Three-quarter profile, hairline to chin, sideburn to nose tip.
    "cameraman": Photo("cameraman", crop=(60, 40, 340, 420), face=(188, 128, 258, 196)),
}


def composite(photo: Photo, size: tuple[int, int], face_px: int,
              at: tuple[float, float]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A scene of `size` with the photo's crop pasted in, scaled so the face is `face_px` tall,
    its top-left at fraction `at` of the free room; and the face box in frame pixels (rounded outwards)."""
    w, h = size
    frame = render_frame(Scene(width=w, height=h, seed=3), 0.0)
    cx1, cy1, cx2, cy2 = photo.crop
    fx1, fy1, fx2, fy2 = photo.face
    s = face_px / (fy2 - fy1)
    cw, ch = round((cx2 - cx1) * s), round((cy2 - cy1) * s)
    interpolation = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    crop = cv2.resize(photo.image()[cy1:cy2, cx1:cx2], (cw, ch), interpolation=interpolation)
    ox, oy = round(at[0] * (w - cw)), round(at[1] * (h - ch))
    frame[oy : oy + ch, ox : ox + cw] = crop
    face = (math.floor(ox + (fx1 - cx1) * s), math.floor(oy + (fy1 - cy1) * s),
            math.ceil(ox + (fx2 - cx1) * s), math.ceil(oy + (fy2 - cy1) * s))
    return frame, face


# (photo, frame size, face height px, position, judge): `judge` is False where the face is too
# small in the 640-px snapshot for a Haar cascade (24 px window) to find it even un-anonymised.
FACE_CASES = [
    ("astronaut", (640, 360), 40, (0.1, 0.5), True),
    ("astronaut", (640, 360), 60, (0.9, 0.2), True),
    ("astronaut", (960, 540), 100, (0.3, 0.6), True),
    ("astronaut", (1280, 720), 200, (0.7, 0.3), True),
    ("astronaut", (1280, 720), 50, (0.5, 0.1), False),
    ("cameraman", (640, 480), 60, (0.8, 0.5), True),
    ("cameraman", (1280, 720), 90, (0.2, 0.7), True),
    ("cameraman", (1280, 720), 120, (0.5, 0.0), True),
]


def haar_faces(jpeg: bytes) -> list[tuple[int, int, int, int]]:
    """Faces OpenCV's Haar cascades find in a JPEG: frontal, and profiles facing either way."""
    gray = decode(jpeg, cv2.IMREAD_GRAYSCALE)
    w = gray.shape[1]
    frontal = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    profile = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_profileface.xml")
    found = [tuple(b) for b in frontal.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)]
    found += [tuple(b) for b in profile.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)]
    mirrored = np.ascontiguousarray(gray[:, ::-1])  # the profile cascade knows one side only
    mirrored_found = profile.detectMultiScale(mirrored, scaleFactor=1.1, minNeighbors=5)
    found += [(w - x - bw, y, bw, bh) for x, y, bw, bh in mirrored_found]
    return [tuple(int(v) for v in b) for b in found]  # type: ignore[misc]


def overlaps(xywh: tuple[int, int, int, int], box: tuple[float, float, float, float]) -> bool:
    x, y, bw, bh = xywh
    return min(x + bw, box[2]) > max(x, box[0]) and min(y + bh, box[3]) > max(y, box[1])


@pytest.mark.parametrize("kind,size,face_px,at,judge", FACE_CASES,
                         ids=[f"{c[0]}-{c[1][0]}-{c[2]}px" for c in FACE_CASES])
def test_real_faces_are_filled_and_the_judge_finds_none(anonymiser, faces_only, settings,
                                                        kind, size, face_px, at, judge):
    pytest.importorskip("skimage")
    frame, (x1, y1, x2, y2) = composite(PHOTOS[kind], size, face_px, at)
    assert y2 - y1 >= face_px  # the composite is what the case says

    # CenterFace alone hides the face at full resolution (no help from the person boxes).
    face_filled = faces_only.anonymise(frame, [])
    assert (face_filled[y1:y2, x1:x2] == BLACK).all()
    assert haar_faces(encode_jpeg(face_filled, settings.width, settings.quality)) == []

    # The whole snapshot path; the caller passed no person boxes.
    image = snapshot_image(anonymiser, frame, [], settings)
    k = image.shape[1] / size[0]
    ox1, oy1, ox2, oy2 = math.floor(x1 * k), math.floor(y1 * k), math.ceil(x2 * k), math.ceil(y2 * k)
    assert (image[oy1:oy2, ox1:ox2] == BLACK).all()

    assert haar_faces(encode_jpeg(image, settings.width, settings.quality)) == []
    if judge:
        before = haar_faces(encode_jpeg(frame, settings.width, settings.quality))
        assert any(overlaps(b, (x1 * k, y1 * k, x2 * k, y2 * k)) for b in before), \
            "the judge must find the face in the un-anonymised picture, or its silence proves nothing"


# --- (c) failing closed ---------------------------------------------------------------------


@pytest.fixture
def models_copy(tmp_path: Path) -> Path:
    """A models folder with its own copy of every model file (to damage) and the manifest."""
    out = tmp_path / "models"
    out.mkdir()
    for entry in load_manifest().values():
        shutil.copyfile(MODELS_DIR / entry.file, out / entry.file)
    return out


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def assert_fails_closed(an: Anonymiser, reason: str, settings: SnapshotSettings) -> None:
    frame = scene_frame(320, 180)
    produced: list[bytes] = []
    with pytest.raises(AnonymiseError) as e:
        produced.append(make_snapshot(an, frame, [], settings))
    assert e.value.reason == reason and produced == []
    for call in (lambda: an.anonymise(frame, []), lambda: snapshot_image(an, frame, [], settings)):
        with pytest.raises(AnonymiseError) as e:
            call()
        assert e.value.reason == reason


@pytest.mark.parametrize("model", ["centerface", "ssdlite_mobilenet_v2_coco"])
@pytest.mark.parametrize("damage,reason", [("flip", "model_checksum"), ("delete", "model_missing")])
def test_damaged_or_missing_model_fails_closed(models_copy: Path, settings, model, damage, reason):
    path = models_copy / load_manifest()[model].file
    if damage == "flip":
        flip_byte(path)
    else:
        path.unlink()
    assert model_file_problem(model, models_copy) == reason

    with pytest.raises(AnonymiseError) as e:
        Anonymiser(settings, models_dir=models_copy)
    assert e.value.reason == reason

    an = Anonymiser.create(settings, PrivacyMasker([TRIANGLE]), models_dir=models_copy)  # the node keeps running
    assert an.unavailable == reason and path.name in an.detail
    assert_fails_closed(an, reason, settings)


def test_intact_models_copy_works(models_copy: Path, settings):
    """The damage tests above fail for the damage, not for the copy."""
    an = Anonymiser.create(settings, models_dir=models_copy)
    assert an.unavailable is None
    assert model_file_problem("centerface", models_copy) == "inference_error"  # verified: not a file problem
    assert decode(make_snapshot(an, scene_frame(320, 180), [], settings)).shape == (180, 320, 3)


@pytest.mark.parametrize("part", ["faces", "person_detector"])
def test_inference_raising_fails_closed(anonymiser: Anonymiser, settings, monkeypatch, part):
    session = getattr(anonymiser, part).session

    def boom(*args, **kwargs):
        raise RuntimeError("onnxruntime: simulated failure")

    monkeypatch.setattr(session, "run", boom)
    assert_fails_closed(anonymiser, "inference_error", settings)


def test_garbage_model_output_fails_closed(anonymiser: Anonymiser, settings, monkeypatch):
    """A face output that cannot be decoded (wrong shape, or NaN boxes) is an inference error, not 'no faces'."""
    session = anonymiser.faces.session
    real_run = session.run

    def wrong_shape(names, feeds):
        heat, scale, offset, lms = real_run(names, feeds)
        return heat, scale[:, :1], offset, lms

    monkeypatch.setattr(session, "run", wrong_shape)
    assert_fails_closed(anonymiser, "inference_error", settings)

    def nan_boxes(names, feeds):
        heat, scale, offset, lms = real_run(names, feeds)
        heat[0, 0, 5, 5] = 0.99
        offset[0, :, 5, 5] = np.nan
        return heat, scale, offset, lms

    monkeypatch.setattr(session, "run", nan_boxes)
    assert_fails_closed(anonymiser, "inference_error", settings)

    def nan_heatmap(names, feeds):
        heat, scale, offset, lms = real_run(names, feeds)
        heat[:] = np.nan  # compares False with any threshold: must not read as "no faces"
        return heat, scale, offset, lms

    monkeypatch.setattr(session, "run", nan_heatmap)
    assert_fails_closed(anonymiser, "inference_error", settings)


def test_anonymise_error_reasons():
    assert set(REASONS) == {"model_missing", "model_checksum", "inference_error"}
    with pytest.raises(ValueError):
        AnonymiseError("oops")  # type: ignore[arg-type]


def test_bad_frame_is_refused(anonymiser: Anonymiser):
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((0, 10, 3), np.uint8)):
        with pytest.raises(ValueError):
            anonymiser.anonymise(bad, [])


# --- (d) the JPEG carries the picture and nothing else -------------------------------------


def test_snapshot_jpeg_has_no_metadata(anonymiser: Anonymiser, settings):
    jpeg = make_snapshot(anonymiser, scene_frame(640, 360), [], settings)
    markers = jpeg_segments(jpeg)
    assert markers[0] == 0xD8 and markers[-1] == 0xD9 and 0xDA in markers
    assert set(markers) <= KEEP_MARKERS and not set(markers) & APP_AND_COM
    for tag in (b"Exif", b"JFIF", b"http://ns.adobe.com", b"ICC_PROFILE"):
        assert tag not in jpeg
    assert decode(jpeg).shape == (360, 640, 3)


def with_metadata(jpeg: bytes) -> bytes:
    """`jpeg` with APP1 EXIF, APP2, a comment and trailing bytes added, as a camera might write it."""
    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    extra = segment(0xE1, b"Exif\x00\x00MM\x00*GPS 59.33N 18.06E") + segment(0xE2, b"ICC_PROFILE\x00x") \
        + segment(0xFE, b"school yard camera 3")
    return jpeg[:2] + extra + jpeg[2:] + b"trailing"


@pytest.mark.parametrize("params", [[], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 4]],
                         ids=["baseline", "progressive", "restart-markers"])
def test_strip_jpeg_keeps_the_picture_and_drops_the_rest(params):
    img = scene_frame(320, 180)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85, *params])
    assert ok
    dirty = with_metadata(buf.tobytes())
    assert {0xE0, 0xE1, 0xE2, 0xFE} <= set(jpeg_segments(dirty))
    clean = strip_jpeg(dirty)
    assert not set(jpeg_segments(clean)) & APP_AND_COM
    assert b"Exif" not in clean and b"GPS" not in clean and b"school yard" not in clean and b"trailing" not in clean
    assert np.array_equal(decode(clean), decode(buf.tobytes()))  # same pixels


def test_encode_failures_are_encode_errors(monkeypatch):
    img = np.zeros((16, 16, 3), np.uint8)
    monkeypatch.setattr(cv2, "imencode", lambda *a, **k: (False, None))
    with pytest.raises(EncodeError):
        encode_jpeg(img, 640, 80)
    monkeypatch.setattr(cv2, "imencode", lambda *a, **k: (True, np.frombuffer(b"\xff\xd8\xff\xe1\x00", np.uint8)))
    with pytest.raises(EncodeError):  # unparseable means unstrippable: no bytes
        encode_jpeg(img, 640, 80)
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros((16, 16), np.uint8), 640, 80)


def test_jpeg_segments_rejects_broken_data():
    _, buf = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    data = buf.tobytes()
    for bad in (b"", b"\x89PNG....", data[: len(data) // 2], data[:-2]):
        with pytest.raises(ValueError):
            jpeg_segments(bad)


# --- (e) size -------------------------------------------------------------------------------


def test_downscale_never_upscales():
    big, small = np.zeros((720, 1280, 3), np.uint8), np.zeros((240, 320, 3), np.uint8)
    assert downscale(big, 640).shape == (360, 640, 3)
    assert downscale(small, 640) is small
    assert decode(encode_jpeg(big, 640, 80)).shape == (360, 640, 3)
    assert decode(encode_jpeg(small, 640, 80)).shape == (240, 320, 3)


def test_snapshot_width_is_respected(anonymiser: Anonymiser):
    frame = scene_frame(1280, 720)
    for width, expected in ((640, (360, 640)), (480, (270, 480)), (2000, (720, 1280))):
        s = SnapshotSettings(width=width)
        assert decode(make_snapshot(anonymiser, frame, [], s)).shape[:2] == expected


def test_settings_are_strict():
    with pytest.raises(ValueError):
        SnapshotSettings(colour=(0, 0, 0))  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        SnapshotSettings(fill=(0, 0, 256))
    with pytest.raises(ValueError):
        SnapshotSettings(quality=101)
    for name, field in SnapshotSettings.model_fields.items():
        assert field.description, f"{name} has no description"


def test_cover_is_resolution_independent(anonymiser: Anonymiser):
    """The regions found at full size are the ones re-filled at the snapshot size."""
    frame = scene_frame(1280, 720)
    cover = anonymiser.find(frame, [(0.0, 0.0, 0.05, 0.05)])
    assert isinstance(cover, Cover) and cover.people and cover.faces
    small = anonymiser.paint(downscale(frame, 640), cover)
    for box in cover.boxes:
        x1, y1, x2, y2 = box_pixels(box, 640, 360)
        assert (small[y1:y2, x1:x2] == BLACK).all()
