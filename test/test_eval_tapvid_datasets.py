"""TAP-Vid pickle readers, writer and query sampling, on small fixtures built to each layout.

Layout facts, from google-deepmind/tapnet:

- https://github.com/google-deepmind/tapnet/blob/main/tapnet/tapvid/README.md : DAVIS is a dict video
  name → {"video": 4-D uint8, "points": (point, time, x/y) float32, "occluded": (point, time) bool};
  RGB-Stacking is the same but a list (no names); RoboTAP follows the DAVIS format (dict).
- https://github.com/google-deepmind/tapnet/blob/main/tapnet/tapvid/generate_tapvid.py : Kinetics shards
  ``NNNN_of_0010.pkl`` hold a list of records whose "video" is ``np.array`` of JPEG bytes per frame and
  whose "points" are float64.
- https://github.com/google-deepmind/tapnet/blob/main/tapnet/tapvid/evaluation_datasets.py : points are
  normalised and scaled by (width, height) of the evaluated frames; JPEG frames are decoded with PIL
  (RGB); a Kinetics shard holding a dict is accepted; ``sample_queries_first`` queries each track at its
  first visible frame and drops tracks never visible; ``sample_queries_strided`` (stride 5) queries every
  track visible on frames 0, 5, 10, … ordered by frame then track; queries are (t, y, x).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from cotracker3_core.evaluation import (
    TapVidClip,
    load_tapvid_pickle,
    read_robotap,
    read_tapvid_davis,
    read_tapvid_kinetics,
    read_tapvid_rgb_stacking,
    write_tapvid_pickle,
)

NUM_FRAMES, HEIGHT, WIDTH, NUM_POINTS = 12, 24, 40, 5


def _raw_record(seed: int, num_frames: int = NUM_FRAMES) -> dict[str, np.ndarray]:
    """A record exactly as the TAP-Vid pickles store it (uint8 video, float32 points, bool occlusion)."""
    rng = np.random.default_rng(seed)
    occluded = rng.random((NUM_POINTS, num_frames)) < 0.4
    occluded[-1] = True  # a track never visible
    return {
        "video": rng.integers(0, 256, (num_frames, HEIGHT, WIDTH, 3), dtype=np.uint8),
        "points": rng.random((NUM_POINTS, num_frames, 2)).astype(np.float32),
        "occluded": occluded,
    }


def _dump(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as stream:
        pickle.dump(data, stream)
    return path


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return encoded.tobytes()


def _assert_clip_equals_record(clip: TapVidClip, record: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(clip.video, record["video"])
    np.testing.assert_array_equal(clip.points, record["points"].astype(np.float64))
    np.testing.assert_array_equal(clip.occluded, record["occluded"])


# ---------------------------------------------------------------------------------------------- layouts


def test_davis_dict_layout(tmp_path: Path) -> None:
    records = {"bear": _raw_record(0), "camel": _raw_record(1)}
    dataset = read_tapvid_davis(_dump(tmp_path / "tapvid_davis.pkl", records))
    assert len(dataset) == 2 and dataset.names == ["bear", "camel"]
    clip = dataset[1]
    assert clip.name == "camel" and clip.size_hw == (HEIGHT, WIDTH)
    assert (clip.num_frames, clip.num_tracks) == (NUM_FRAMES, NUM_POINTS)
    _assert_clip_equals_record(clip, records["camel"])
    np.testing.assert_allclose(clip.points_px(), records["camel"]["points"] * [WIDTH, HEIGHT])
    assert [c.name for c in dataset] == ["bear", "camel"]


def test_robotap_folder_of_splits_is_merged(tmp_path: Path) -> None:
    _dump(tmp_path / "robotap_split0.pkl", {"a": _raw_record(0), "b": _raw_record(1)})
    # Some RoboTAP readers treat "video" as a list of (H, W, 3) frames; accept that form too.
    listed = _raw_record(2, num_frames=7)
    listed["video"] = list(listed["video"])
    _dump(tmp_path / "robotap_split1.pkl", {"c": listed})
    (tmp_path / "notes.pkl").write_bytes(b"not a split")  # ignored: does not match robotap_split*.pkl
    dataset = read_robotap(tmp_path)
    assert dataset.names == ["a", "b", "c"]
    assert dataset[2].num_frames == 7
    np.testing.assert_array_equal(dataset[2].video, np.stack(listed["video"]))
    assert read_robotap(tmp_path / "robotap_split1.pkl").names == ["c"]


def test_robotap_duplicate_clip_across_splits_is_an_error(tmp_path: Path) -> None:
    _dump(tmp_path / "robotap_split0.pkl", {"a": _raw_record(0)})
    _dump(tmp_path / "robotap_split1.pkl", {"a": _raw_record(1)})
    with pytest.raises(ValueError, match="'a' appears in both"):
        read_robotap(tmp_path)


def test_rgb_stacking_list_layout(tmp_path: Path) -> None:
    records = [_raw_record(3), _raw_record(4)]
    path = _dump(tmp_path / "tapvid_rgb_stacking.pkl", records)
    dataset = read_tapvid_rgb_stacking(path)
    assert dataset.names == ["tapvid_rgb_stacking_0000", "tapvid_rgb_stacking_0001"]
    _assert_clip_equals_record(dataset[-1], records[1])
    with pytest.raises(ValueError, match="expected a dict, found a list"):
        read_tapvid_davis(path)
    assert load_tapvid_pickle(path).names == dataset.names


def test_kinetics_jpeg_frames_decode_to_rgb(tmp_path: Path) -> None:
    # Solid colours survive JPEG almost exactly, so a swapped channel order would be obvious.
    colours = np.array([[250, 10, 10], [10, 250, 10], [10, 10, 250]], dtype=np.uint8)
    frames = np.broadcast_to(colours[:, None, None, :], (3, 16, 16, 3))
    record = {
        "video": np.array([_jpeg(frame) for frame in frames]),  # generate_tapvid.py: np.array of bytes
        "points": np.random.default_rng(0).random((2, 3, 2)),  # float64 there
        "occluded": np.zeros((2, 3), dtype=bool),
    }
    _dump(tmp_path / "0000_of_0010.pkl", [record])
    _dump(tmp_path / "0001_of_0010.pkl", [record, record])
    dataset = read_tapvid_kinetics(tmp_path)
    assert dataset.names == ["0000_of_0010_0000", "0001_of_0010_0000", "0001_of_0010_0001"]
    clip = dataset[0]
    assert clip.video.shape == (3, 16, 16, 3) and clip.video.dtype == np.uint8
    assert np.abs(clip.video.astype(int) - frames).max() <= 3
    np.testing.assert_array_equal(clip.points, record["points"])
    # A single shard, frames as a plain list of bytes, and a dict shard (tapnet accepts one) also read.
    single = _dump(
        tmp_path / "single" / "0000_of_0010.pkl", {"clip": {**record, "video": list(record["video"])}}
    )
    assert read_tapvid_kinetics(single).names == ["clip"]


def test_kinetics_decoding_agrees_with_pil(tmp_path: Path) -> None:
    """tapnet decodes Kinetics frames with PIL; OpenCV's decoder must give the same RGB image."""
    pil_image = pytest.importorskip("PIL.Image")
    import io

    rng = np.random.default_rng(5)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8), (5, 5), 0)
    encoded = _jpeg(frame)
    record = {"video": [encoded], "points": np.zeros((1, 1, 2)), "occluded": np.zeros((1, 1), bool)}
    clip = read_tapvid_kinetics(_dump(tmp_path / "0000_of_0010.pkl", [record]))[0]
    via_pil = np.array(pil_image.open(io.BytesIO(encoded)))
    assert np.abs(clip.video[0].astype(int) - via_pil).max() <= 1


# ------------------------------------------------------------------------------------------------ writer


@pytest.mark.parametrize(
    ("layout", "reader"), [("dict", read_tapvid_davis), ("list", read_tapvid_rgb_stacking)]
)
def test_writer_round_trip(tmp_path: Path, layout: str, reader) -> None:
    clips = [TapVidClip(f"clip{i}", **_raw_record(i)) for i in range(2)]
    path = write_tapvid_pickle(tmp_path / "out" / "data.pkl", clips, layout=layout)
    dataset = reader(path)
    assert len(dataset) == 2
    if layout == "dict":
        assert dataset.names == ["clip0", "clip1"]
    for clip, original in zip(dataset, clips, strict=True):
        np.testing.assert_array_equal(clip.video, original.video)
        np.testing.assert_allclose(clip.points, original.points, atol=1e-7)
        np.testing.assert_array_equal(clip.occluded, original.occluded)
    with path.open("rb") as stream:
        raw = pickle.load(stream)
    first = raw["clip0"] if layout == "dict" else raw[0]
    assert first["points"].dtype == np.float32 and first["occluded"].dtype == bool


def test_writer_jpeg_frames_read_as_kinetics(tmp_path: Path) -> None:
    video = np.full((4, 16, 16, 3), (200, 30, 60), dtype=np.uint8)
    clip = TapVidClip("k", video, np.full((1, 4, 2), 0.5), np.zeros((1, 4), dtype=bool))
    path = write_tapvid_pickle(tmp_path / "0000_of_0010.pkl", [clip], layout="list", jpeg_quality=95)
    with path.open("rb") as stream:
        assert isinstance(pickle.load(stream)[0]["video"][0], bytes)
    decoded = read_tapvid_kinetics(path)[0]
    assert np.abs(decoded.video.astype(int) - video).max() <= 3


def test_writer_rejects_bad_input_and_keeps_existing_file(tmp_path: Path) -> None:
    clip = TapVidClip("same", **_raw_record(0))
    path = write_tapvid_pickle(tmp_path / "d.pkl", [clip])
    before = path.read_bytes()
    with pytest.raises(ValueError, match="repeated: \\['same'\\]"):
        write_tapvid_pickle(path, [clip, clip])
    with pytest.raises(ValueError, match="layout"):
        write_tapvid_pickle(path, [clip], layout="tuple")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="jpeg_quality"):
        write_tapvid_pickle(path, [clip], jpeg_quality=0)
    with pytest.raises(ValueError, match="TapVidClip"):
        write_tapvid_pickle(path, [_raw_record(0)])  # type: ignore[list-item]
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.pkl"]  # no temporary file left


# ------------------------------------------------------------------------------------------------ queries


def _tapnet_style_queries(occluded: np.ndarray, points_px: np.ndarray, mode: str, stride: int = 5):
    """Loop version of tapnet's sample_queries_first / sample_queries_strided semantics."""
    queries, tracks = [], []
    if mode == "first":
        for n in range(occluded.shape[0]):
            visible_frames = np.flatnonzero(~occluded[n])
            if visible_frames.size:
                t = visible_frames[0]
                queries.append([t, points_px[n, t, 1], points_px[n, t, 0]])
                tracks.append(n)
    else:
        for t in range(0, occluded.shape[1], stride):
            for n in range(occluded.shape[0]):
                if not occluded[n, t]:
                    queries.append([t, points_px[n, t, 1], points_px[n, t, 0]])
                    tracks.append(n)
    return np.array(queries, dtype=np.float64).reshape(-1, 3), np.array(tracks, dtype=np.int64)


@pytest.mark.parametrize("mode", ["first", "strided"])
@pytest.mark.parametrize("size_hw", [(256, 256), None, (100, 50)])
def test_queries_follow_tapnet_sampling(mode: str, size_hw) -> None:
    clip = TapVidClip("q", **_raw_record(7))
    points_px = clip.points * np.array([size_hw[1], size_hw[0]] if size_hw else [WIDTH, HEIGHT])
    expected_queries, expected_tracks = _tapnet_style_queries(clip.occluded, points_px, mode)
    queries = clip.make_queries(mode, size_hw=size_hw)
    assert queries.mode == mode and queries.num_queries == len(expected_tracks)
    np.testing.assert_array_equal(queries.track_index, expected_tracks)
    np.testing.assert_allclose(queries.query_points, expected_queries, rtol=0, atol=1e-12)
    np.testing.assert_allclose(queries.target_points, points_px[expected_tracks], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(queries.occluded, clip.occluded[expected_tracks])
    assert NUM_POINTS - 1 not in queries.track_index  # the never-visible track gives no query


def test_queries_hand_checked() -> None:
    occluded = np.array(
        [
            [True, True, False, False, False, False, True],  # first visible at 2; visible at 5
            [False, True, True, True, True, True, False],  # visible at 0 only (of 0, 5)
        ]
    )
    points = np.zeros((2, 7, 2))
    points[0, 2] = [0.25, 0.5]  # x, y
    clip = TapVidClip("h", np.zeros((7, 8, 8, 3), np.uint8), points, occluded)
    first = clip.make_queries("first")
    np.testing.assert_array_equal(first.query_points, [[2, 128, 64], [0, 0, 0]])
    strided = clip.make_queries("strided")
    np.testing.assert_array_equal(strided.query_points[:, 0], [0, 5])
    np.testing.assert_array_equal(strided.track_index, [1, 0])
    strided_2 = clip.make_queries("strided", stride=2)  # frame 0: track 1; 2, 4: track 0; 6: track 1
    np.testing.assert_array_equal(strided_2.track_index, [1, 0, 0, 1])


def test_queries_empty_and_bad_arguments() -> None:
    record = _raw_record(0)
    record["occluded"][:] = True
    clip = TapVidClip("empty", **record)
    for mode in ("first", "strided"):
        queries = clip.make_queries(mode)
        assert queries.query_points.shape == (0, 3) and queries.target_points.shape == (0, NUM_FRAMES, 2)
    with pytest.raises(ValueError, match="query mode"):
        clip.make_queries("last")
    with pytest.raises(ValueError, match="stride"):
        clip.make_queries("strided", stride=0)
    with pytest.raises(ValueError, match="size_hw"):
        clip.make_queries("first", size_hw=(0, 256))


def test_from_pixels_round_trips() -> None:
    record = _raw_record(2)
    points_px = record["points"] * [WIDTH, HEIGHT]
    clip = TapVidClip.from_pixels("p", record["video"], points_px, record["occluded"])
    np.testing.assert_allclose(clip.points, record["points"], atol=1e-6)
    np.testing.assert_allclose(clip.points_px(), points_px)


# ------------------------------------------------------------------------------------------------- errors


def test_missing_files_raise_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        read_tapvid_davis(tmp_path / "absent.pkl")
    with pytest.raises(FileNotFoundError, match="robotap_split"):
        read_robotap(tmp_path)
    with pytest.raises(FileNotFoundError, match="_of_"):
        read_tapvid_kinetics(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_tapvid_kinetics(tmp_path / "absent")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (42, "unknown layout: top level is a int"),
        ({"x"}, "unknown layout: top level is a set"),
        (_raw_record(0), "single clip record"),
        ({"bear": [1, 2, 3]}, "clip 'bear' is a list"),
        ({"bear": {"video": np.zeros((2, 4, 4, 3), np.uint8)}}, r"lacks \['points', 'occluded'\]"),
    ],
)
def test_unknown_layouts_are_errors(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_tapvid_pickle(_dump(tmp_path / "x.pkl", data))


def test_unreadable_pickle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.pkl"
    path.write_bytes(b"\x80\x05garbage")
    with pytest.raises(ValueError, match="not a readable pickle"):
        load_tapvid_pickle(path)


def test_mismatched_shapes_name_clip_and_arrays(tmp_path: Path) -> None:
    short_video = _raw_record(0)
    short_video["video"] = short_video["video"][:-2]
    with pytest.raises(ValueError, match=r"clip 'bear': points/occluded cover 12 frames but video has 10"):
        read_tapvid_davis(_dump(tmp_path / "a.pkl", {"bear": short_video}))

    bad_occluded = _raw_record(0)
    bad_occluded["occluded"] = bad_occluded["occluded"][:, :-1]
    with pytest.raises(ValueError, match=r"tapvid_rgb_stacking_0000': occluded has shape \(5, 11\)"):
        read_tapvid_rgb_stacking(_dump(tmp_path / "tapvid_rgb_stacking.pkl", [bad_occluded]))

    bad_points = _raw_record(0)
    bad_points["points"] = bad_points["points"][..., :1]
    with pytest.raises(ValueError, match=r"clip 'c': points must have shape \(N, T, 2\)"):
        read_tapvid_davis(_dump(tmp_path / "c.pkl", {"c": bad_points}))


def test_bad_jpeg_frame_names_clip_and_frame(tmp_path: Path) -> None:
    record = {
        "video": [_jpeg(np.zeros((8, 8, 3), np.uint8)), b"\xff\xd8 not really a jpeg"],
        "points": np.zeros((1, 2, 2)),
        "occluded": np.zeros((1, 2), dtype=bool),
    }
    dataset = read_tapvid_kinetics(_dump(tmp_path / "0000_of_0010.pkl", [record]))
    with pytest.raises(ValueError, match="clip '0000_of_0010_0000': video frame 1"):
        dataset[0]


def test_clip_validation() -> None:
    record = _raw_record(0)
    with pytest.raises(ValueError, match="uint8"):
        TapVidClip("v", record["video"].astype(np.float32), record["points"], record["occluded"])
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        TapVidClip("v", record["video"][..., :1], record["points"], record["occluded"])
    with pytest.raises(ValueError, match="occluded must be bool"):
        TapVidClip("v", record["video"], record["points"], record["occluded"] * 0.5)
    as_ints = TapVidClip("v", record["video"], record["points"], record["occluded"].astype(np.int64))
    assert as_ints.occluded.dtype == bool
