"""Person detectors: decoding, letterboxing, NMS, crops, rate limiting, checksum refusal.

The decoders run on tiny ONNX graphs built here with `onnx.helper` whose
outputs are constants laid out as a YOLOv5, a YOLOv8 or a TF OD API SSD export
would lay them out, with known boxes in them. So the whole path (verify →
session → pre-processing → decoding → un-mapping) runs, and the expected
answer is known exactly. The last tests run the real SSDLite model on
scikit-image's astronaut photo, where both are available.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from vaktpost.edge.config.detectors import DetectorSettings  # noqa: E402
from vaktpost.edge.detectors import Detection, NullDetector  # noqa: E402
from vaktpost.edge.detectors.factory import create_detector  # noqa: E402
from vaktpost.edge.detectors.ops import classwise_nms, letterbox, nms, unletterbox  # noqa: E402
from vaktpost.edge.detectors.regions import (  # noqa: E402
    RateLimiter,
    RegionDetector,
    detect_in_crops,
    expand_box,
    join_cut,
    merge_crops,
    merge_detections,
    plan_crops,
    plan_passes,
    square_crop,
    tile_grid,
    to_frame,
)
from vaktpost.edge.detectors.ssd import decode_ssd, ssd_input  # noqa: E402
from vaktpost.edge.detectors.yolo import decode_yolo, detect_layout, yolo_input  # noqa: E402
from vaktpost.edge.modelfile import MODELS_DIR, ModelError, load_manifest  # noqa: E402

SSD_NAME = "ssdlite_mobilenet_v2_coco"


# --- helpers ------------------------------------------------------------------


def const_model(path: Path, input_name: str, input_type: int, input_shape: list, outputs: dict[str, np.ndarray],
                output_shapes: dict[str, list] | None = None) -> str:
    """Write an ONNX graph that ignores its input and returns `outputs`; its sha256."""
    nodes = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name + "_value"))
             for name, arr in outputs.items()]
    shapes = output_shapes or {}
    graph = helper.make_graph(
        nodes,
        "const",
        [helper.make_tensor_value_info(input_name, input_type, input_shape)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shapes.get(name, list(arr.shape)))
         for name, arr in outputs.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every onnxruntime of the last years
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return hashlib.sha256(path.read_bytes()).hexdigest()


def iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# A 1280x720 frame letterboxed into 640x640: scale 0.5, 140 px of padding above and below.
FRAME_W, FRAME_H = 1280, 720
SCALE, PAD_Y = 0.5, 140
N_CLASSES, PERSON, CAR = 80, 0, 2
# (x1, y1, x2, y2) in frame pixels, class, objectness (v5 only), class score.
CANDIDATES = [
    ((100, 200, 300, 600), PERSON, 0.9, 0.95),  # kept: 0.855
    ((110, 210, 310, 610), PERSON, 0.9, 0.80),  # duplicate of the first (IoU ~0.82): suppressed
    ((800, 100, 1000, 500), PERSON, 0.9, 0.60),  # kept: 0.54 (v5), 0.6 (v8)
    ((500, 300, 600, 400), PERSON, 0.9, 0.45),  # under 0.5 in both layouts
    ((790, 90, 1010, 510), CAR, 0.95, 0.99),  # not a person; must not suppress the person under it
]
EXPECTED = [(100, 200, 300, 600), (800, 100, 1000, 500)]


def to_input_xywh(box) -> list[float]:
    """Frame-pixel xyxy → (cx, cy, w, h) in the 640x640 letterboxed input."""
    x1, y1, x2, y2 = box[0] * SCALE, box[1] * SCALE + PAD_Y, box[2] * SCALE, box[3] * SCALE + PAD_Y
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]


def yolo_output(layout: str, n: int = 200) -> np.ndarray:
    """A [1, n, 85] (v5) or [1, 84, n] (v8) output holding CANDIDATES among empty rows."""
    if layout == "v5":
        rows = np.zeros((n, 5 + N_CLASSES), np.float32)
        for i, (box, cls, obj, p) in enumerate(CANDIDATES):
            rows[i, :4], rows[i, 4], rows[i, 5 + cls] = to_input_xywh(box), obj, p
        rows[len(CANDIDATES):, 4] = 0.01  # background anchors: low objectness
        return rows[None]
    rows = np.zeros((n, 4 + N_CLASSES), np.float32)
    for i, (box, cls, _obj, p) in enumerate(CANDIDATES):
        rows[i, :4], rows[i, 4 + cls] = to_input_xywh(box), p
    return rows.T[None].copy()


def frame_bgr(w: int = FRAME_W, h: int = FRAME_H) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def no_session(monkeypatch):
    """Fails the test if onnxruntime is asked to load anything."""
    import onnxruntime

    def refuse(*a, **k):
        raise AssertionError("InferenceSession was created for a model that should have been refused")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)


# --- settings -------------------------------------------------------------------


def test_settings_defaults_and_validation():
    s = DetectorSettings()
    assert (s.kind, s.model, s.score_threshold, s.max_fps, s.threads) == ("ssd", SSD_NAME, 0.5, 2.0, 1)
    assert s.class_id == 1 and DetectorSettings(kind="yolo", model="m.onnx", model_sha256="a" * 64).class_id == 0
    assert DetectorSettings(kind="yolo", model="m.onnx", model_sha256="a" * 64, person_class=3).class_id == 3
    for field in DetectorSettings.model_fields.values():
        assert field.description, "every setting is documented"
    with pytest.raises(ValueError, match="extra"):
        DetectorSettings(treshold=0.3)
    with pytest.raises(ValueError, match="needs `model`"):
        DetectorSettings(kind="yolo")
    with pytest.raises(ValueError, match="model_sha256"):
        DetectorSettings(kind="yolo", model="models/yolov8n.onnx")
    with pytest.raises(ValueError, match="only for a model path"):
        DetectorSettings(model=SSD_NAME, model_sha256="a" * 64)
    with pytest.raises(ValueError):
        DetectorSettings(score_threshold=0)


def test_kind_none_loads_nothing(no_session):
    det = create_detector(DetectorSettings(kind="none"))
    assert isinstance(det, NullDetector) and det.detect(frame_bgr()) == []


# --- YOLO: letterbox, NMS, decoding -----------------------------------------------


def test_letterbox_keeps_aspect_and_pads_with_114():
    img = np.full((240, 320, 3), 7, np.uint8)
    img[0, 0] = (200, 100, 50)
    out, lb = letterbox(img, (640, 640))
    assert out.shape == (640, 640, 3)
    assert (lb.scale_x, lb.scale_y, lb.pad_x, lb.pad_y) == (2.0, 2.0, 0, 80)
    assert (out[:80] == 114).all() and (out[560:] == 114).all()
    assert (out[83:560, 3:] == 7).all()  # (bilinear spreads the odd corner pixel over 3 px)
    assert tuple(out[80, 0]) == (200, 100, 50)  # the top-left pixel lands right below the padding

    # An odd size: the recorded scales are the ones the rounded resize applied,
    # so the content rectangle maps back onto the whole image exactly.
    img = np.zeros((200, 301, 3), np.uint8)
    _, lb = letterbox(img, (640, 640))
    content = [lb.pad_x, lb.pad_y, lb.pad_x + lb.scale_x * 301, lb.pad_y + lb.scale_y * 200]
    np.testing.assert_allclose(unletterbox(np.array([content]), lb), [[0, 0, 1, 1]], atol=1e-9)


def test_yolo_input_is_rgb_nchw_0_to_1():
    blue = np.zeros((100, 200, 3), np.uint8)
    blue[..., 0] = 255  # BGR
    tensor, lb = yolo_input(blue, (64, 64))
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    centre = tensor[0, :, 32, 32]
    np.testing.assert_allclose(centre, [0, 0, 1])  # blue is the last channel in RGB
    np.testing.assert_allclose(tensor[0, :, 0, 32], [114 / 255] * 3, rtol=1e-6)  # padding row
    assert lb.pad_y == 16


def test_unletterbox_clips_to_the_image():
    _, lb = letterbox(np.zeros((720, 1280, 3), np.uint8), (640, 640))
    # A box reaching into the padding above and past the right edge.
    out = unletterbox(np.array([[600, 100, 700, 300]]), lb)
    np.testing.assert_allclose(out, [[1200 / 1280, 0, 1, (300 - 140) / 0.5 / 720]])


def test_nms_greedy_keeps_what_a_suppressed_box_overlapped():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10], [1, 1, 10, 10]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # B overlaps A (IoU 1/3) and goes; C overlaps only B, which is gone, so C stays;
    # D lies inside A (IoU 0.81) and goes.
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]
    assert nms(boxes, scores, 0.9).tolist() == [0, 1, 2, 3]
    assert nms(np.empty((0, 4)), np.empty(0), 0.5).tolist() == []


def test_classwise_nms_never_suppresses_across_classes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 11, 10]], float)
    scores = np.array([0.5, 0.9, 0.4])
    classes = np.array([0, 2, 0])
    assert classwise_nms(boxes, scores, classes, 0.5).tolist() == [1, 0]


def test_detect_layout():
    assert detect_layout((1, 25200, 85)) == "v5"
    assert detect_layout((1, 84, 8400)) == "v8"
    assert detect_layout((1, 84, 8400), "v5") == "v5"  # the setting wins
    with pytest.raises(ValueError, match="yolo_layout"):
        detect_layout((1, 84, 84))
    with pytest.raises(ValueError, match="yolo_layout"):
        detect_layout((1, None, 85))


@pytest.mark.parametrize("layout", ["v5", "v8"])
def test_decode_yolo_scores(layout):
    boxes, scores, classes = decode_yolo(yolo_output(layout), layout, 0.5)
    expected = [0.855, 0.72, 0.54, 0.9405] if layout == "v5" else [0.95, 0.8, 0.6, 0.99]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert classes.tolist() == [PERSON, PERSON, PERSON, CAR]
    np.testing.assert_allclose(boxes[0], [50, 240, 150, 440], atol=1e-4)  # xyxy, input pixels
    _, _, only_people = decode_yolo(yolo_output(layout), layout, 0.5, classes=(PERSON,))
    assert only_people.tolist() == [PERSON] * 3


@pytest.mark.parametrize("layout", ["v5", "v8"])
@pytest.mark.parametrize("symbolic", [False, True])
def test_yolo_detector_end_to_end(tmp_path, layout, symbolic):
    out = yolo_output(layout)
    in_shape = ["batch", 3, "height", "width"] if symbolic else [1, 3, 640, 640]
    out_shapes = {"output0": ["batch", "a", "b"]} if symbolic else None
    sha = const_model(tmp_path / "yolo.onnx", "images", TensorProto.FLOAT, in_shape, {"output0": out}, out_shapes)
    settings = DetectorSettings(kind="yolo", model=str(tmp_path / "yolo.onnx"), model_sha256=sha)
    det = create_detector(settings)
    assert det.size == (640, 640)

    found = det.detect(frame_bgr())
    assert det.layout == layout
    assert [d.label for d in found] == ["person", "person"]
    for d, (x1, y1, x2, y2) in zip(found, EXPECTED):
        np.testing.assert_allclose(d.box, (x1 / FRAME_W, y1 / FRAME_H, x2 / FRAME_W, y2 / FRAME_H), atol=1e-5)
    assert found[0].score == pytest.approx(0.855 if layout == "v5" else 0.95, rel=1e-5)
    assert found[0].score > found[1].score

    # The duplicate survives a looser NMS, and a higher threshold drops the weaker person.
    loose = create_detector(settings.model_copy(update={"nms_iou": 0.9})).detect(frame_bgr())
    assert len(loose) == 3
    strict = create_detector(settings.model_copy(update={"score_threshold": 0.7})).detect(frame_bgr())
    assert len(strict) == 1


def test_yolo_person_class_setting_selects_the_class(tmp_path):
    sha = const_model(tmp_path / "y.onnx", "images", TensorProto.FLOAT, [1, 3, 640, 640],
                      {"output0": yolo_output("v8")})
    det = create_detector(DetectorSettings(kind="yolo", model=str(tmp_path / "y.onnx"), model_sha256=sha,
                                           person_class=CAR))
    (only,) = det.detect(frame_bgr())
    np.testing.assert_allclose(only.box, (790 / FRAME_W, 90 / FRAME_H, 1010 / FRAME_W, 510 / FRAME_H), atol=1e-5)
    with pytest.raises(ModelError, match="not among the model's 80 classes"):
        create_detector(DetectorSettings(kind="yolo", model=str(tmp_path / "y.onnx"), model_sha256=sha,
                                         person_class=80))


def test_yolo_input_size_must_fit_a_fixed_model(tmp_path):
    sha = const_model(tmp_path / "y.onnx", "images", TensorProto.FLOAT, [1, 3, 640, 640],
                      {"output0": yolo_output("v8")})
    with pytest.raises(ModelError, match="input_size 320"):
        create_detector(DetectorSettings(kind="yolo", model=str(tmp_path / "y.onnx"), model_sha256=sha, input_size=320))


# --- SSD ------------------------------------------------------------------------


def ssd_outputs() -> dict[str, np.ndarray]:
    boxes = np.zeros((1, 6, 4), np.float32)
    scores = np.zeros((1, 6), np.float32)
    classes = np.zeros((1, 6), np.float32)
    rows = [
        ((0.1, 0.2, 0.5, 0.4), 0.95, 1),  # person; (ymin, xmin, ymax, xmax)
        ((0.3, 0.5, 1.02, 0.7), 0.7, 1),  # person reaching past the bottom: clipped
        ((0.1, 0.1, 0.2, 0.2), 0.9, 3),  # a car
        ((0.6, 0.6, 0.7, 0.7), 0.3, 1),  # a person under the threshold
        ((0.0, 0.0, 0.9, 0.9), 0.99, 1),  # past num_detections: padding, whatever it holds
    ]
    for i, (b, s, c) in enumerate(rows):
        boxes[0, i], scores[0, i], classes[0, i] = b, s, c
    return {
        "num_detections:0": np.array([4], np.float32),
        "detection_boxes:0": boxes,
        "detection_scores:0": scores,
        "detection_classes:0": classes,
    }


def ssd_model(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "ssd.onnx"
    sha = const_model(path, "image_tensor:0", TensorProto.UINT8, ["N", "H", "W", 3], ssd_outputs())
    return path, sha


def test_ssd_input_is_rgb_uint8_nhwc():
    img = np.zeros((480, 640, 3), np.uint8)
    img[..., 2] = 200  # red in BGR
    t = ssd_input(img, (300, 300))
    assert t.shape == (1, 300, 300, 3) and t.dtype == np.uint8
    assert tuple(t[0, 150, 150]) == (200, 0, 0)
    gray = ssd_input(np.full((10, 10), 9, np.uint8), (300, 300))
    assert gray.shape == (1, 300, 300, 3)


def test_decode_ssd_directly():
    o = ssd_outputs()
    found = decode_ssd(o["num_detections:0"], o["detection_boxes:0"], o["detection_scores:0"],
                       o["detection_classes:0"], class_id=1, threshold=0.5)
    assert [round(d.score, 2) for d in found] == [0.95, 0.7]
    np.testing.assert_allclose(found[0].box, (0.2, 0.1, 0.4, 0.5), atol=1e-6)
    np.testing.assert_allclose(found[1].box, (0.5, 0.3, 0.7, 1.0), atol=1e-6)
    cars = decode_ssd(o["num_detections:0"], o["detection_boxes:0"], o["detection_scores:0"],
                      o["detection_classes:0"], class_id=3, threshold=0.5)
    assert len(cars) == 1 and cars[0].label == "person"  # the label names what was asked for


def test_ssd_detector_end_to_end(tmp_path):
    path, sha = ssd_model(tmp_path)
    det = create_detector(DetectorSettings(model=str(path), model_sha256=sha))
    assert det.size == (300, 300)
    found = det.detect(frame_bgr(333, 517))
    assert len(found) == 2
    np.testing.assert_allclose(found[0].box, (0.2, 0.1, 0.4, 0.5), atol=1e-6)
    assert all(0 <= v <= 1 for d in found for v in d.box)
    assert len(create_detector(DetectorSettings(model=str(path), model_sha256=sha, score_threshold=0.25))
               .detect(frame_bgr())) == 3


def test_a_model_of_the_wrong_kind_is_refused(tmp_path):
    path, sha = ssd_model(tmp_path)
    with pytest.raises(ModelError, match="is `kind` right"):
        create_detector(DetectorSettings(kind="yolo", model=str(path), model_sha256=sha))
    ysha = const_model(tmp_path / "y.onnx", "images", TensorProto.FLOAT, [1, 3, 640, 640],
                      {"output0": yolo_output("v8")})
    with pytest.raises(ModelError, match="is `kind` right"):
        create_detector(DetectorSettings(kind="ssd", model=str(tmp_path / "y.onnx"), model_sha256=ysha))


# --- checksum refusal -------------------------------------------------------------


def test_changed_model_file_is_refused_before_loading(tmp_path, no_session):
    path, sha = ssd_model(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="failed its checksum and is refused"):
        create_detector(DetectorSettings(model=str(path), model_sha256=sha))


def test_corrupted_manifest_model_is_refused_before_loading(tmp_path, no_session):
    entry = load_manifest()[SSD_NAME]
    (tmp_path / entry.file).write_bytes(b"\0" * 1000)  # what a truncated SD-card write leaves
    with pytest.raises(ModelError) as e:
        create_detector(DetectorSettings(), models_dir=tmp_path)
    assert entry.sha256 in str(e.value) and entry.rebuild in str(e.value)


def test_missing_model_is_a_model_error(tmp_path, no_session):
    with pytest.raises(ModelError, match="missing"):
        create_detector(DetectorSettings(), models_dir=tmp_path)
    with pytest.raises(ModelError, match="no model 'nonesuch'"):
        create_detector(DetectorSettings(model="nonesuch"))


def test_unparseable_model_with_matching_checksum_is_a_model_error(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"not a protobuf at all")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        create_detector(DetectorSettings(model=str(path), model_sha256=sha))


# --- regions --------------------------------------------------------------------


def test_expand_box():
    assert expand_box((0.2, 0.4, 0.4, 0.8), 0.25) == pytest.approx((0.15, 0.3, 0.45, 0.9))


def test_square_crop_min_size_centre_shift_and_clip():
    # A 20x40 px box gets the minimum side, around the same centre.
    assert square_crop((100, 100, 120, 140), 120, 640, 480) == (50, 60, 170, 180)
    # Near the right edge it is shifted inside, not cut: still 120 px square.
    assert square_crop((630, 100, 640, 140), 120, 640, 480) == (520, 60, 640, 180)
    # A tall box: square on its height.
    assert square_crop((300, 0, 340, 200), 10, 640, 480) == (220, 0, 420, 200)
    # Taller than the frame: clipped to the frame height, width stays the larger side.
    assert square_crop((300, -50, 340, 600), 10, 640, 480) == (0, 0, 640, 480)


def test_merge_crops_merges_overlaps_transitively_not_touching():
    a, b, c = (0, 0, 100, 100), (90, 0, 190, 100), (180, 0, 280, 100)
    # a overlaps b; the merged square then overlaps c; one crop contains all three.
    (merged,) = merge_crops([a, c, b], 0, 640, 480)
    assert merged[0] <= 0 and merged[2] >= 280 and merged[2] - merged[0] == merged[3] - merged[1]
    touching = merge_crops([(0, 0, 100, 100), (100, 0, 200, 100)], 0, 640, 480)
    assert len(touching) == 2


def test_plan_crops():
    assert plan_crops([], 640, 480) == []
    crops = plan_crops([(0.1, 0.1, 0.15, 0.2), (0.8, 0.7, 0.85, 0.8)], 640, 480)
    assert len(crops) == 2
    for c in crops:
        assert c[2] - c[0] == c[3] - c[1] == 120  # min_crop 0.25 x 480
        assert 0 <= c[0] < c[2] <= 640 and 0 <= c[1] < c[3] <= 480
    # Two near boxes whose crops overlap become one.
    assert len(plan_crops([(0.1, 0.1, 0.15, 0.2), (0.17, 0.1, 0.22, 0.2)], 640, 480)) == 1


def test_tile_grid_covers_the_frame_with_overlapping_squares():
    grid = tile_grid(480, 360, 0.4, 0.25)
    assert {c[2] - c[0] for c in grid} == {144} and all(c[2] - c[0] == c[3] - c[1] for c in grid)
    covered = np.zeros((360, 480), bool)
    for x1, y1, x2, y2 in grid:
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    assert tile_grid(480, 360, 1.0, 0.25) == [(0, 0, 360, 360), (120, 0, 480, 360)]


def test_plan_passes_busy_scene_uses_tiles_within_budget_round_robin():
    grid = tile_grid(480, 360, 0.4, 0.25)
    seen: dict = {}
    # Sparse motion: its crop, then the least recently seen tiles fill the budget.
    plan = plan_passes([(0.45, 0.45, 0.5, 0.55)], grid, 480, 360, 3, seen, margin=0.25, min_crop=0.25)
    assert len(plan.motion) == 1 and plan.motion[0] not in grid and len(plan.sweep) == 2
    # Motion over most of the frame: never one shrunken whole-frame view, only tiles.
    busy = [(0.0, 0.0, 0.9, 0.9)]
    looked: set = set()
    for run in range(1, 6):
        plan = plan_passes(busy, grid, 480, 360, 3, seen, margin=0.25, min_crop=0.25)
        assert len(plan.crops) == 3 and set(plan.crops) <= set(grid)
        for c in plan.crops:
            seen[c] = run
        looked |= set(plan.crops)
    assert looked == set(grid)  # 15 tiles, 3 a run: all seen in 5 runs


def test_join_cut_joins_a_person_split_by_a_tile_edge():
    # A person at x 130..160 (px) in a 480x360 frame, cut by tile A's right edge at x 144.
    a, b = (0, 0, 144, 144), (108, 0, 252, 144)
    part_a = Detection((130 / 480, 20 / 360, 144 / 480, 100 / 360), 0.6)
    whole_b = Detection((130 / 480, 22 / 360, 160 / 480, 101 / 360), 0.8)
    (joined,) = join_cut([(part_a, a), (whole_b, b)], 480, 360)
    assert joined.score == 0.8 and joined.box == pytest.approx((130 / 480, 20 / 360, 160 / 480, 101 / 360))
    # Two people side by side in one tile are not joined.
    left, right = Detection((0.1, 0.1, 0.2, 0.5), 0.9), Detection((0.19, 0.1, 0.3, 0.5), 0.9)
    assert len(join_cut([(left, a), (right, a)], 480, 360)) == 2


def test_to_frame():
    assert to_frame((0.5, 0.5, 1.0, 1.0), (100, 50, 300, 250), 400, 500) == pytest.approx((0.5, 0.3, 0.75, 0.5))


class FakeDetector:
    """Returns fixed crop-normalised detections and records the crops it was given."""

    def __init__(self, boxes):
        self.boxes = boxes
        self.seen: list[tuple[int, ...]] = []

    def detect(self, image_bgr):
        self.seen.append(image_bgr.shape)
        return [Detection(b, s) for b, s in self.boxes]


def test_detect_in_crops_maps_back_and_merges_duplicates():
    img = np.zeros((400, 800, 3), np.uint8)
    # The same crop-relative box from two crops lands at x 180..280 and 230..330
    # in the frame: IoU 1/3, neither cut by a crop edge: two different people.
    found = detect_in_crops(img, [(100, 0, 300, 400), (150, 0, 350, 400)],
                            FakeDetector([((0.4, 0.25, 0.9, 0.75), 0.8)]), 0.45)
    assert sorted(round(d.box[0] * 800) for d in found) == [180, 230]
    det = FakeDetector([((0.25, 0.25, 0.75, 0.75), 0.8)])
    found = detect_in_crops(img, [(100, 0, 300, 400), (110, 0, 310, 400)], det, 0.45)
    assert det.seen == [(400, 200, 3), (400, 200, 3)]
    assert len(found) == 1  # 150..250 and 160..260: IoU 0.82, one person
    assert found[0].box == pytest.approx((150 / 800, 0.25, 250 / 800, 0.75))


def test_merge_detections_keeps_labels_apart():
    ds = [Detection((0, 0, 1, 1), 0.5, "person"), Detection((0, 0, 1, 1), 0.9, "car"),
          Detection((0, 0, 1, 1), 0.7, "person")]
    assert [(d.label, d.score) for d in merge_detections(ds, 0.5)] == [("car", 0.9), ("person", 0.7)]


def test_region_detector_runs_only_on_motion_and_at_most_max_fps():
    det = FakeDetector([((0.25, 0.25, 0.75, 0.75), 0.9)])
    # One pass a run: only the motion crop (the sweep over other tiles is tested above).
    rd = RegionDetector(det, DetectorSettings(kind="none", max_fps=2, max_tiles=1))
    img = np.zeros((480, 640, 3), np.uint8)
    assert rd.detect(img, [], now=0.0) is None  # no motion: not looked, and no slot used
    found = rd.detect(img, [(0.45, 0.45, 0.55, 0.55)], now=0.0)
    assert found is not None and len(found) == 1 and len(det.seen) == 1
    (crop,) = rd.last_crops
    assert found[0].box == pytest.approx(to_frame((0.25, 0.25, 0.75, 0.75), crop, 640, 480))
    assert rd.detect(img, [(0.45, 0.45, 0.55, 0.55)], now=0.2) is None  # too soon
    assert rd.detect(img, [(0.45, 0.45, 0.55, 0.55)], now=0.5) is not None
    assert len(det.seen) == 2
    # No motion, but a tracked person to keep an eye on: looked at, around the track.
    found = rd.detect(img, [], now=1.0, watch=[(0.1, 0.1, 0.2, 0.3)])
    assert found is not None and len(det.seen) == 3
    (crop,) = rd.last_crops
    assert crop[0] <= 0.1 * 640 and crop[1] <= 0.1 * 480 and crop[2] >= 0.2 * 640 and crop[3] >= 0.3 * 480


def test_rate_limiter_average_rate_without_bursts():
    lim = RateLimiter(2.0)
    # A 5 fps camera for 10 s: 2 runs a second (not 1.67), never two closer than one frame gap.
    times = [i / 5 for i in range(50)]
    runs = [t for t in times if lim.allow(t)]
    assert len(runs) == 20
    assert min(np.diff(runs)) >= 0.4 - 1e-9
    # After a long pause: one run, then the normal spacing again (no catch-up burst).
    later = [100 + i / 5 for i in range(5)]
    assert [t for t in later if lim.allow(t)] == [100, 100.6]
    clock = iter([0.0, 0.1, 0.6]).__next__
    lim = RateLimiter(2.0, clock=clock)
    assert [lim.allow(), lim.allow(), lim.allow()] == [True, False, True]


# --- the real SSDLite model -------------------------------------------------------

# The astronaut as a person would box her (with the helmet she holds), in 512x512 pixels.
ASTRONAUT = (20 / 512, 15 / 512, 365 / 512, 1.0)


@pytest.fixture(scope="module")
def real_ssd():
    if not (MODELS_DIR / load_manifest()[SSD_NAME].file).exists():
        pytest.skip(f"models/{SSD_NAME}.onnx not built")
    return create_detector(DetectorSettings())


@pytest.fixture(scope="module")
def astronaut_bgr():
    data = pytest.importorskip("skimage.data")
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def test_real_ssd_finds_the_astronaut(real_ssd, astronaut_bgr):
    found = real_ssd.detect(astronaut_bgr)
    assert found and found[0].score > 0.5
    assert iou(found[0].box, ASTRONAUT) > 0.7
    # Nothing in an empty gray frame.
    assert real_ssd.detect(np.full((480, 640, 3), 128, np.uint8)) == []


def test_real_ssd_crops_find_a_small_person_the_full_frame_misses(real_ssd, astronaut_bgr):
    # The astronaut 180 px tall in a 1080p frame: stretched to 300x300 whole, she is 50 px
    # tall and squashed; in a motion crop she is 200 px tall.
    frame = np.full((1080, 1920, 3), (90, 110, 100), np.uint8)
    x, y, side = 1200, 600, 180
    frame[y : y + side, x : x + side] = cv2.resize(astronaut_bgr, (side, side), interpolation=cv2.INTER_AREA)
    truth = (x / 1920, y / 1080, (x + side) / 1920, (y + side) / 1080)
    assert all(d.score < 0.5 for d in real_ssd.detect(frame))

    rd = RegionDetector(real_ssd, DetectorSettings())
    found = rd.detect(frame, [truth], now=0.0)
    assert found and found[0].score > 0.5
    assert iou(found[0].box, truth) > 0.5
