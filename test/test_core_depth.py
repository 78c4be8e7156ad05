"""3D points from aligned depth (cotracker3_core.depth): units, robust sampling, back-projection, size checks and
the stamp pairing of colour frames with depth images. Exact numbers on constructed depth maps."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from cotracker3_core.depth import (
    Intrinsics,
    StampBuffer,
    back_project,
    check_alignment,
    depth_to_metres,
    points_3d,
    sample_depth,
)

K = [100.0, 0.0, 15.5, 0.0, 120.0, 11.5, 0.0, 0.0, 1.0]  # fx 100, fy 120, principal point at the image centre
H, W = 24, 32
INTR = Intrinsics.from_k(K, W, H)


def test_intrinsics_from_k_and_refusals() -> None:
    assert INTR == Intrinsics(100.0, 120.0, 15.5, 11.5, 32, 24)
    with pytest.raises(ValueError, match="not calibrated"):
        Intrinsics.from_k([0.0] * 9, W, H)  # what an uncalibrated camera publishes
    with pytest.raises(ValueError, match="9 finite"):
        Intrinsics.from_k(K[:8], W, H)
    with pytest.raises(ValueError, match="9 finite"):
        Intrinsics.from_k([np.nan, *K[1:]], W, H)
    with pytest.raises(ValueError, match="no image size"):
        Intrinsics.from_k(K, 0, 0)


def test_16uc1_millimetres_and_32fc1_metres_give_the_same_metres() -> None:
    mm = np.array([[0, 1, 1500], [65535, 800, 0]], np.uint16)
    m = np.array([[0.0, 0.001, 1.5], [65.535, 0.8, np.nan]], np.float32)
    from_mm, from_m = depth_to_metres(mm, "16UC1"), depth_to_metres(m, "32FC1")
    expected = np.array([[np.nan, 0.001, 1.5], [65.535, 0.8, np.nan]], np.float32)
    np.testing.assert_allclose(from_mm, expected, rtol=1e-6)
    np.testing.assert_allclose(from_m, expected, rtol=1e-6)
    assert from_mm.dtype == np.float32 and from_m.dtype == np.float32
    weird = np.array([[np.inf, -np.inf, -1.0, 2.0]], np.float32)
    assert np.isnan(depth_to_metres(weird, "32FC1")[0, :3]).all() and depth_to_metres(weird, "32FC1")[0, 3] == 2.0
    ranged = depth_to_metres(np.array([[100, 200, 5000, 6000]], np.uint16), "16UC1", valid_range_m=(0.15, 5.0))
    np.testing.assert_array_equal(np.isnan(ranged), [[True, False, False, True]])  # out of range: invalid


def test_depth_to_metres_refuses_unsupported_encodings_and_wrong_arrays() -> None:
    with pytest.raises(ValueError, match=r"unsupported depth encoding 'mono16'.*16UC1, 32FC1"):
        depth_to_metres(np.zeros((2, 2), np.uint16), "mono16")
    with pytest.raises(ValueError, match="uint16"):
        depth_to_metres(np.zeros((2, 2), np.float32), "16UC1")
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        depth_to_metres(np.zeros((2, 2, 1), np.float32), "32FC1")


def test_sample_depth_is_the_median_of_the_valid_window() -> None:
    depth = np.arange(H * W, dtype=np.float32).reshape(H, W)  # depth(row, col) = row * W + col
    # The point (10.4, 4.6) lies in pixel row 5, column 10 (centres at integers); its 5x5 window is rows 3..7,
    # columns 8..12.
    assert sample_depth(depth, np.array([[10.4, 4.6]]))[0] == 5 * W + 10
    assert sample_depth(depth, np.array([[10.5, 5.0]]))[0] == 5 * W + 11  # half-way: the next pixel
    holed = depth.copy()
    holed[3:8, 11:13] = np.nan  # 10 of 25 invalid: the median of the 15 left (columns 8..10)
    assert sample_depth(holed, np.array([[10.4, 4.6]]))[0] == np.median(depth[3:8, 8:11])
    holed[3:8, 10] = np.nan
    assert np.isnan(sample_depth(holed, np.array([[10.4, 4.6]]))[0])
    assert sample_depth(holed, np.array([[10.4, 4.6]]), min_valid=10)[0] == np.median(depth[3:8, 8:10])
    # A single dropout at the point itself does not matter: the median of the other 24.
    spot = np.full((H, W), 2.0, np.float32)
    spot[5, 10] = np.nan
    assert sample_depth(spot, np.array([[10.0, 5.0]]))[0] == 2.0


def test_sample_depth_at_borders_outside_and_non_finite_points() -> None:
    depth = np.full((H, W), 1.25, np.float32)
    xy = np.array([[-0.5, -0.5], [W - 0.51, H - 0.51], [-0.51, 3.0], [W - 0.5, 3.0], [3.0, H + 5.0], [np.nan, 3.0]])
    z = sample_depth(depth, xy)
    # A corner window holds 3x3 = 9 pixels, fewer than 13: no depth; the others are outside or not finite.
    assert np.isnan(z).all()
    assert sample_depth(depth, xy[:2], min_valid=9).tolist() == [1.25, 1.25]
    edge = sample_depth(depth, np.array([[0.0, 10.0], [W - 1.0, 10.0]]))  # 3x5 = 15 pixels at the side edges
    assert edge.tolist() == [1.25, 1.25]
    assert sample_depth(depth, np.zeros((0, 2))).shape == (0,)
    with pytest.raises(ValueError, match="odd"):
        sample_depth(depth, xy, window=4)


def test_back_projection_exact_numbers() -> None:
    # Track positions and K share the convention (pixel centres at integers): the principal point is (15.5, 11.5).
    xy = np.array([[15.5, 11.5], [25.5, 11.5], [15.5, -0.5], [5.5, 23.5]])
    z = np.array([2.0, 2.0, 3.0, 1.2])
    expected = np.array(
        [
            [0.0, 0.0, 2.0],
            [10.0 / 100.0 * 2.0, 0.0, 2.0],  # 10 px right at fx 100, 2 m away: 0.2 m
            [0.0, -12.0 / 120.0 * 3.0, 3.0],
            [-10.0 / 100.0 * 1.2, 12.0 / 120.0 * 1.2, 1.2],
        ],
        np.float32,
    )
    np.testing.assert_allclose(back_project(xy, z, INTR), expected, atol=1e-7)


def test_points_3d_on_a_tilted_plane_matches_the_ray_intersection() -> None:
    """Depth rendered exactly from a plane n.P = d; each point's 3D position is the plane's point on its ray."""
    normal, offset = np.array([0.3, -0.2, 1.0]), 1.5
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)  # pixel centres, ROS/OpenCV convention
    rays = np.stack([(u - INTR.cx) / INTR.fx, (v - INTR.cy) / INTR.fy, np.ones_like(u)], axis=-1)
    depth = (offset / (rays @ normal)).astype(np.float32)
    xy = np.array([[16.0, 12.0], [5.0, 4.0], [25.0, 18.0], [20.3, 7.8]])  # pixel centres, then between
    got = points_3d(depth, INTR, xy, np.ones(len(xy), bool))
    ray = np.stack([(xy[:, 0] - INTR.cx) / INTR.fx, (xy[:, 1] - INTR.cy) / INTR.fy, np.ones(len(xy))], 1)
    truth = ray * (offset / (ray @ normal))[:, None]
    np.testing.assert_allclose(got[:3], truth[:3], atol=1e-6)  # at pixel centres: exact (median = centre)
    assert np.linalg.norm(got[3] - truth[3]) < 0.01  # between centres: the centre pixel's depth, within 1 cm
    hidden = points_3d(depth, INTR, xy, np.array([True, False, True, True]))
    assert np.isnan(hidden[1]).all() and np.isfinite(hidden[[0, 2, 3]]).all()
    with pytest.raises(ValueError, match="intrinsics are for 32x24"):
        points_3d(depth[:, :20], INTR, xy, np.ones(len(xy), bool))


def test_check_alignment_names_what_does_not_match() -> None:
    check_alignment((H, W), (H, W), INTR)
    with pytest.raises(ValueError, match="depth image is 16x12, the colour image 32x24"):
        check_alignment((H, W), (12, 16), INTR)
    with pytest.raises(ValueError, match="no CameraInfo"):
        check_alignment((H, W), (H, W), None)
    with pytest.raises(ValueError, match="CameraInfo is for 32x24 images, the colour image is 64x48"):
        check_alignment((48, 64), (48, 64), INTR)


def test_stamp_buffer_exact_then_nearest_within_skew_and_bounded() -> None:
    buffer: StampBuffer[str] = StampBuffer(3)
    ms = 1_000_000
    for stamp in (100, 133, 166, 200):
        buffer.put(stamp * ms, f"d{stamp}")
    assert len(buffer) == 3  # 100 was discarded
    assert buffer.nearest(133 * ms, 20 * ms) == (133 * ms, "d133")
    assert buffer.nearest(140 * ms, 20 * ms) == (133 * ms, "d133")
    assert buffer.nearest(160 * ms, 20 * ms) == (166 * ms, "d166")
    assert buffer.nearest(150 * ms, 10 * ms) is None  # 16 / 17 ms away: beyond the skew
    assert buffer.nearest(100 * ms, 20 * ms) is None  # gone from the buffer
    buffer.put(166 * ms, "again")  # a repeated stamp replaces
    assert buffer.nearest(166 * ms, 0) == (166 * ms, "again") and len(buffer) == 3
    buffer.clear()
    assert buffer.nearest(166 * ms, 20 * ms) is None
    with pytest.raises(ValueError, match="maxlen"):
        StampBuffer(0)


def test_stamp_buffer_waits_for_a_partner_still_on_its_way() -> None:
    ms = 1_000_000
    buffer: StampBuffer[str] = StampBuffer(5)
    buffer.put(100 * ms, "d100")
    late = threading.Timer(0.05, buffer.put, args=(133 * ms, "d133"))
    late.start()
    started = time.monotonic()
    assert buffer.nearest(133 * ms, 20 * ms, wait_s=2.0) == (133 * ms, "d133")
    assert time.monotonic() - started < 1.0  # woken by the put, not by the timeout
    late.join()
    # Settled at once: a later item rules out anything nearer; a stopped stream (newest > 1 s old) is not waited on.
    started = time.monotonic()
    assert buffer.nearest(120 * ms, 10 * ms, wait_s=2.0) is None
    assert buffer.nearest(5_000 * ms, 20 * ms, wait_s=2.0) is None
    assert time.monotonic() - started < 0.5
    started = time.monotonic()
    assert buffer.nearest(150 * ms, 10 * ms, wait_s=0.2) is None  # a live stream whose partner never comes
    assert 0.15 < time.monotonic() - started < 1.0
