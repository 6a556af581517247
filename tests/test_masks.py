"""Privacy and motion masks: rasterisation is conservative and pixel-exact at every resolution."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vaktpost.edge.privacy.masks import PrivacyMasker, polygon_mask

RESOLUTIONS = [(48, 64), (240, 320), (359, 641), (450, 800)]  # (h, w), odd sizes included

SQUARE = [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]]
TRIANGLE = [[0.1, 0.9], [0.5, 0.05], [0.93, 0.77]]
CONCAVE = [[0.05, 0.1], [0.6, 0.1], [0.3, 0.4], [0.6, 0.8], [0.05, 0.8]]  # arrow-like, not convex
POLYGONS = {"square": SQUARE, "triangle": TRIANGLE, "concave": CONCAVE}


def inside(poly: list[list[float]], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised; independent of OpenCV's rasteriser."""
    x, y = np.broadcast_arrays(x, y)
    res = np.zeros(x.shape, bool)
    pts = np.asarray(poly, np.float64)
    for (x0, y0), (x1, y1) in zip(pts, np.roll(pts, -1, axis=0)):
        if y0 == y1:
            continue
        crosses = (y0 > y) != (y1 > y)
        xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        res ^= crosses & (x < xc)
    return res


def covered_pixels(poly: list[list[float]], h: int, w: int, sub: int = 4) -> np.ndarray:
    """Pixels any of sub x sub sample points of which fall inside the polygon (normalised coords)."""
    offs = (np.arange(sub) + 0.5) / sub
    ys = (np.arange(h)[:, None] + offs[None, :]).ravel() / h
    xs = (np.arange(w)[:, None] + offs[None, :]).ravel() / w
    hit = inside(poly, xs[None, :], ys[:, None])  # (h*sub, w*sub)
    return hit.reshape(h, sub, w, sub).any(axis=(1, 3))


@pytest.mark.parametrize("shape", RESOLUTIONS)
@pytest.mark.parametrize("name", POLYGONS)
def test_mask_covers_every_touched_pixel(name: str, shape: tuple[int, int]) -> None:
    poly = POLYGONS[name]
    mask = polygon_mask([poly], shape)
    assert mask.shape == shape and mask.dtype == bool
    need = covered_pixels(poly, *shape)
    assert need.any()
    missing = need & ~mask
    assert not missing.any(), f"{missing.sum()} touched pixels left unmasked"


@pytest.mark.parametrize("shape", RESOLUTIONS)
def test_sliver_thinner_than_a_pixel_is_still_masked(shape: tuple[int, int]) -> None:
    h, w = shape
    y = 0.503
    sliver = [[0.1, y], [0.9, y], [0.9, y + 0.1 / h]]  # a tenth of a pixel thick at its widest
    mask = polygon_mask([sliver], shape)
    row = int(y * h)
    assert mask[row, int(0.1 * w) + 1 : int(0.9 * w)].all()
    assert mask.sum() < 6 * w  # still a thin strip, not a blob


@pytest.mark.parametrize("shape", RESOLUTIONS)
@pytest.mark.parametrize("name", POLYGONS)
def test_mask_margin_is_small(name: str, shape: tuple[int, int]) -> None:
    h, w = shape
    poly = POLYGONS[name]
    mask = polygon_mask([poly], shape)
    contour = (np.asarray(poly, np.float32) * np.float32([w, h])).reshape(-1, 1, 2)
    rows, cols = np.nonzero(mask)
    for r, c in zip(rows, cols):
        # Signed distance of the pixel centre (negative = outside), in pixels.
        d = cv2.pointPolygonTest(contour, (float(c) + 0.5, float(r) + 0.5), True)
        if d < -2.5:  # 1.5 px along each axis at a corner: 2.12
            pytest.fail(f"pixel ({c}, {r}) masked though {-d:.2f} px outside")


def test_masked_area_agrees_across_resolutions() -> None:
    fractions = [polygon_mask([TRIANGLE], s).mean() for s in RESOLUTIONS]
    xs, ys = np.array(TRIANGLE).T
    area = 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))
    for (h, w), frac in zip(RESOLUTIONS, fractions):
        # Conservative margin: at most ~2 px along the perimeter (< 3 in normalised units).
        slack = 2.0 * 3.0 * max(1 / h, 1 / w)
        assert area <= frac <= area + slack, (h, w, frac, area)
    assert abs(fractions[-1] - area) < 0.01  # at high resolution the margin becomes negligible


def test_full_and_exact_square() -> None:
    assert polygon_mask([[[0, 0], [1, 0], [1, 1], [0, 1]]], (37, 53)).all()
    assert not polygon_mask([], (10, 10)).any()
    m = polygon_mask([SQUARE], (480, 640))
    rows, cols = np.nonzero(m)
    # The square spans pixels 160..479 x 120..359; the margin is at most two pixels.
    assert 158 <= cols.min() <= 159 and 480 <= cols.max() <= 481
    assert 118 <= rows.min() <= 119 and 360 <= rows.max() <= 361
    assert m[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()


def _frame(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(1, 256, size=shape, dtype=np.uint8)  # never 0, so fill is visible


def test_privacy_masker_is_pixel_exact_across_formats_and_resolution_changes() -> None:
    rng = np.random.default_rng(1)
    masker = PrivacyMasker([TRIANGLE, CONCAVE])
    # One masker, a stream whose size and format change mid-way.
    shapes = [(240, 320, 3), (240, 320), (720, 1280, 3), (359, 641, 4), (240, 320, 1), (480, 640, 3), (240, 320, 3)]
    for shape in shapes:
        frame = _frame(rng, shape)
        before = frame.copy()
        out = masker.apply(frame)
        mask = polygon_mask([TRIANGLE, CONCAVE], shape[:2])
        assert out.shape == frame.shape and out.dtype == frame.dtype
        assert not np.shares_memory(out, frame)
        assert (out[mask] == 0).all(), f"unmasked privacy pixels at {shape}"
        assert (out[~mask] == frame[~mask]).all()
        assert (frame == before).all()  # the caller's frame is untouched
        assert mask.mean() > 0.2


def test_privacy_masker_other_fill_and_views() -> None:
    rng = np.random.default_rng(2)
    frame = _frame(rng, (120, 160, 3))
    masker = PrivacyMasker([SQUARE], fill=128)
    mask = masker.mask_for(frame.shape)
    for view in (frame, frame[:, ::-1], frame[10:100, 5:150], frame[::2, ::2]):
        out = masker.apply(view)
        m = polygon_mask([SQUARE], view.shape[:2])
        assert (out[m] == 128).all() and (out[~m] == view[~m]).all()
    assert not mask.flags.writeable


def test_privacy_masker_without_polygons_still_copies() -> None:
    frame = np.ones((10, 10, 3), np.uint8)
    out = PrivacyMasker([]).apply(frame)
    assert out is not frame and not np.shares_memory(out, frame) and (out == frame).all()


@pytest.mark.parametrize("bad", [np.zeros((0, 5, 3), np.uint8), np.zeros((5,), np.uint8), "frame", None])
def test_privacy_masker_refuses_what_it_cannot_mask(bad: object) -> None:
    with pytest.raises(ValueError):
        PrivacyMasker([SQUARE]).apply(bad)  # type: ignore[arg-type]


def test_privacy_polygon_validation() -> None:
    with pytest.raises(ValueError):
        PrivacyMasker([[[0, 0], [1, 1]]])
