"""TAP-Vid / RoboTAP pickles -> rosbag2 -> ``cotracker3-bag-eval`` (no DDS), with real components throughout.

Clips come from the project's synthetic scene generator (exact ground truth, 26 frames of 64x64, a dozen
points; 26 frames so that the last window is partial and the end-of-bag flush matters), written as a RoboTAP
pickle, converted by ``python -m cotracker3_ros.tools.tapvid_to_bag`` and read back with ``rosbags`` + rclpy. The
model is a tiny seeded architecture saved as a checkpoint (`small_checkpoint`), the way the replay test hands
the same weights to the node process. Untrained weights give visibility x confidence around 0.01-0.1, so the
tests use ``visibility_threshold 0.02``: visible flags then are a real mix and the AJ / OA paths are exercised.

A real video (``../shared/data/apple.mp4``, skipped when absent) is warped by a known affine motion to get exact
ground truth for a compressed (JPEG) bag.

The helpers here are imported by test_eval_replay.py.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from cotracker3_msgs.msg import Tracks
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from cotracker3_core.checkpoint import build_model, save_checkpoint
from cotracker3_core.evaluation.ground_truth import GroundTruth, load_sidecar_ground_truth
from cotracker3_core.evaluation.metrics import compute_tapvid_metrics, summarize
from cotracker3_core.evaluation.scoring import (
    FrameOutput,
    Predictions,
    first_queries,
    predictions_from_outputs,
    score_clip,
    strided_queries,
)
from cotracker3_core.evaluation.tapvid_datasets import TapVidClip, load_tapvid_pickle, write_tapvid_pickle
from cotracker3_ros.tools import bag_eval, tapvid_to_bag
from cotracker3_ros.tools.bag_tools import (
    TRACKS_TYPE,
    BagWriteOptions,
    bag_custom_data,
    deserialize_tracks,
    find_bags,
    frame_stamps,
    list_topics,
    make_typestore,
    read_clip_bag,
    write_clip_bag,
)
from cotracker3_ros.tools.demo import DEMO_ARCH
from training.data.synthetic import SceneConfig, generate_scene

NUM_FRAMES, SIZE, POINTS = 26, 64, 12
FPS = 15.0
WINDOW, STEP, ITERS = 8, 4, 2
THRESHOLD = 0.02
CLIP_NAMES = ("synthetic_0", "synthetic_1")


# --- data and model helpers (also used by test_eval_replay.py) -----------------------------------------------


def synthetic_clip(name: str, seed: int) -> TapVidClip:
    scene = generate_scene(
        SceneConfig(num_frames=NUM_FRAMES, height=SIZE, width=SIZE, num_points=POINTS), seed=seed, name=name
    ).sequence
    video = scene.video.permute(0, 2, 3, 1).numpy()
    return TapVidClip.from_pixels(name, video, scene.tracks.numpy().transpose(1, 0, 2), ~scene.visibility.numpy().T)


def make_dataset(root: Path, *extra_args: str) -> tuple[Path, Path]:
    """A RoboTAP-format pickle of the synthetic clips and its bags (via the converter's CLI)."""
    pkl = root / "robotap_split0.pkl"
    write_tapvid_pickle(pkl, [synthetic_clip(name, seed) for seed, name in enumerate(CLIP_NAMES)])
    bags = root / "bags"
    rc = tapvid_to_bag.main([str(pkl), str(bags), "--fps", str(FPS), "--sidecar", "--no-progress", *extra_args])
    assert rc == 0
    return pkl, bags


def small_checkpoint(path: Path, seed: int = 7) -> Path:
    """A tiny seeded online model saved with its architecture: both evaluations load the same weights."""
    torch.manual_seed(seed)
    model = build_model("online", window_len=WINDOW, model_resolution=(SIZE, SIZE), **DEMO_ARCH)
    return save_checkpoint(path, model)


def model_args(checkpoint: Path) -> list[str]:
    return [
        "--checkpoint", str(checkpoint),
        "--model-resolution", str(SIZE), str(SIZE),
        "--window-len", str(WINDOW),
        "--step", str(STEP),
        "--iters", str(ITERS),
        "--visibility-threshold", str(THRESHOLD),
        "--device", "cpu",
        "--threads", "1",
        "--no-progress",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_dataset(tmp_path_factory.mktemp("eval_bag_data"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_checkpoint(tmp_path_factory.mktemp("eval_bag_model") / "small.pth")


def run_bag_eval(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = bag_eval.main(args)
    return rc, capsys.readouterr().err


# --- converter and bag reading --------------------------------------------------------------------------------


def test_converter_writes_images_camera_info_and_ground_truth(dataset: tuple[Path, Path]) -> None:
    pkl, bags = dataset
    source = load_tapvid_pickle(pkl)
    paths = find_bags([bags])
    assert [p.name for p in paths] == list(CLIP_NAMES)
    for path, clip in zip(paths, source, strict=True):
        topics = list_topics(path)
        assert topics == {
            "/camera/image_raw": "sensor_msgs/msg/Image",
            "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
            "/ground_truth/tracks": TRACKS_TYPE,
        }
        bag = read_clip_bag(path)
        assert bag.name == clip.name and bag.size_hw == (SIZE, SIZE) and bag.num_frames == NUM_FRAMES
        np.testing.assert_array_equal(bag.stamps, frame_stamps(NUM_FRAMES, FPS))
        assert bag.fps == pytest.approx(FPS)
        # Pixels through the node's conversion are the clip's, exactly.
        for t in range(NUM_FRAMES):
            np.testing.assert_array_equal(bag.rgb(t), clip.video[t])
        gt = bag.ground_truth
        np.testing.assert_array_equal(gt.occluded, clip.occluded)
        np.testing.assert_allclose(gt.points_px, clip.points_px(None), atol=1e-4)  # float32 in the message
        np.testing.assert_array_equal(gt.track_ids, np.arange(clip.num_tracks))


def test_bag_is_readable_with_rosbags_typestore(dataset: tuple[Path, Path]) -> None:
    """The registered Tracks definition decodes the rclpy-serialised messages (what Foxglove & co. use)."""
    _, bags = dataset
    store = make_typestore("kilted")
    with Reader(bags / CLIP_NAMES[0]) as reader:
        gt = [c for c in reader.connections if c.topic == "/ground_truth/tracks"]
        assert gt[0].msgdef.data.startswith("std_msgs/Header header")
        messages = [store.deserialize_cdr(raw, TRACKS_TYPE) for _, _, raw in reader.messages(connections=gt)]
        info = [c for c in reader.connections if c.topic == "/camera/camera_info"]
        infos = [store.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages(connections=info)]
    assert len(messages) == NUM_FRAMES and len(infos) == NUM_FRAMES
    assert messages[3].image_width == SIZE and len(messages[3].ids) == POINTS
    assert infos[0].k.tolist() == [0.0] * 9  # uncalibrated
    assert messages[3].header.stamp.nanosec == infos[3].header.stamp.nanosec


#: cotracker3_msgs/Tracks as it was before #15 added x3d, y3d, z3d (comments left out).
TRACKS_BEFORE_3D = """std_msgs/Header header
bool refined
uint32 image_width
uint32 image_height
uint32[] ids
float32[] x
float32[] y
float32[] visibility
float32[] confidence
uint8[] visible
"""


def test_bag_recorded_with_the_tracks_of_before_3d_still_reads(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    """A bag whose ground truth was written with the old definition (recorded as such in the bag): the same
    ground truth as the bag of today, and the x3d/y3d/z3d arrays read empty."""
    _, bags = dataset
    new_store = make_typestore("kilted")
    old_store = get_typestore(Stores.ROS2_KILTED)
    old_store.register(get_types_from_msg(TRACKS_BEFORE_3D, TRACKS_TYPE))
    old_class = old_store.types[TRACKS_TYPE]
    old_path = tmp_path / "before_3d"
    writer = Writer(old_path, version=9)
    for key, value in bag_custom_data(bags / CLIP_NAMES[0]).items():
        writer.set_custom_data(key, value)
    with Reader(bags / CLIP_NAMES[0]) as reader, writer:
        out = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=old_store) for c in reader.connections}
        old_raw = []
        for connection, timestamp, raw in reader.messages():
            if connection.msgtype == TRACKS_TYPE:
                msg = new_store.deserialize_cdr(raw, TRACKS_TYPE)
                old = old_class(**{k: getattr(msg, k) for k in old_class.__dataclass_fields__})
                raw = old_store.serialize_cdr(old, TRACKS_TYPE)
                old_raw.append(bytes(raw))
            writer.write(out[connection.id], timestamp, raw)
    with pytest.raises(Exception):  # noqa: B017 - the old bytes are too short for today's definition
        deserialize_message(old_raw[0], Tracks)
    assert len(deserialize_tracks(old_raw[0]).x3d) == 0 and len(deserialize_tracks(old_raw[0]).x) == POINTS
    with Reader(old_path) as reader:
        assert "x3d" not in next(c for c in reader.connections if c.msgtype == TRACKS_TYPE).msgdef.data
    old_gt, new_gt = read_clip_bag(old_path).ground_truth, read_clip_bag(bags / CLIP_NAMES[0]).ground_truth
    np.testing.assert_array_equal(old_gt.points_px, new_gt.points_px)
    np.testing.assert_array_equal(old_gt.occluded, new_gt.occluded)
    np.testing.assert_array_equal(old_gt.track_ids, new_gt.track_ids)
    with pytest.raises(ValueError, match="cannot deserialise"):
        deserialize_tracks(old_raw[0][:-40])


def test_sqlite3_png_humble_bag_round_trips(tmp_path: Path) -> None:
    clip = synthetic_clip("png_clip", 5)
    options = BagWriteOptions(fps=30.0, encoding="png", storage="sqlite3", distro="humble", focal_px=50.0)
    path = write_clip_bag(tmp_path / "png_clip", clip, options)
    assert any(p.suffix == ".db3" for p in path.iterdir())
    bag = read_clip_bag(path)
    assert bag.compressed and bag.fps == pytest.approx(30.0)
    np.testing.assert_array_equal(bag.rgb(NUM_FRAMES - 1), clip.video[-1])  # PNG is lossless
    with pytest.raises(ValueError, match="exists already"):
        write_clip_bag(path, clip, options)


def test_queries_match_the_tapvid_sampling(dataset: tuple[Path, Path]) -> None:
    pkl, _ = dataset
    clip = load_tapvid_pickle(pkl)[0]
    gt = GroundTruth(clip.points_px(None), clip.occluded, np.arange(clip.num_tracks))
    for mode, ours in (("first", first_queries(gt)), ("strided", strided_queries(gt))):
        theirs = clip.make_queries(mode, size_hw=None)
        np.testing.assert_array_equal(ours.rows, theirs.track_index)
        np.testing.assert_array_equal(ours.frames, theirs.query_points[:, 0])
        np.testing.assert_array_equal(ours.xy, theirs.query_points[:, :0:-1])


def test_scoring_perfect_and_missing_predictions(dataset: tuple[Path, Path]) -> None:
    pkl, _ = dataset
    clip = load_tapvid_pickle(pkl)[1]
    gt = GroundTruth(clip.points_px(None), clip.occluded, np.arange(clip.num_tracks))
    queries = first_queries(gt)
    no_missing = np.zeros((queries.count, NUM_FRAMES), bool)
    perfect = Predictions(gt.points_px[queries.rows], ~gt.occluded[queries.rows], no_missing, [])
    scores = score_clip(gt, queries, perfect, clip.size_hw)
    assert scores["AJ"] == scores["delta_avg"] == scores["OA"] == 1.0 and scores["missing_points"] == 0
    # Outputs for every frame but one: that frame's evaluated points are missing and scored as occluded.
    stamps = np.arange(NUM_FRAMES) + 1
    outputs = {
        int(s): FrameOutput(gt.track_ids, gt.points_px[:, t].astype(np.float32), ~gt.occluded[:, t])
        for t, s in enumerate(stamps)
        if t != 20
    }
    pred = predictions_from_outputs(outputs, stamps, queries)
    assert pred.frames_without_output == [20]
    scored = score_clip(gt, queries, pred, clip.size_hw)
    assert scored["missing_points"] == int((queries.frames < 20).sum()) and scored["delta_avg"] < 1.0


# --- the evaluation ------------------------------------------------------------------------------------------


def test_bag_eval_both_modes_writes_reports(
    dataset: tuple[Path, Path], checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pkl, bags = dataset
    out = tmp_path / "out"
    rc, err = run_bag_eval(
        [str(bags), *model_args(checkpoint), "--mode", "both", "--out", str(out), "--save-tracks"], capsys
    )
    assert rc == 0, err
    report = json.loads((out / "results.json").read_text())
    expected_rows = [(n, m) for n in CLIP_NAMES for m in ("first", "strided")]
    assert [(c["clip"], c["mode"]) for c in report["clips"]] == expected_rows
    assert set(report["mean"]) == {"first", "strided"}
    markdown = (out / "results.md").read_text()
    assert "| synthetic_0 | first |" in markdown and "**mean (2 clips)**" in markdown
    for name in CLIP_NAMES:
        for mode in ("first", "strided"):
            image = cv2.imread(str(out / f"{name}_{mode}.png"))
            assert image is not None and image.shape[0] > 4 * SIZE
    # The first-mode scores, recomputed from the saved tracks through the core metrics and TAP-Vid sampling.
    source = load_tapvid_pickle(pkl)
    for clip, result in zip(source, [c for c in report["clips"] if c["mode"] == "first"], strict=True):
        saved = np.load(out / f"{clip.name}_first_tracks.npz")
        queries = clip.make_queries("first")  # 256x256 raster
        pred = saved["xy"] * (256 / SIZE)
        metrics = compute_tapvid_metrics(
            queries.query_points[None], queries.occluded[None], queries.target_points[None],
            ~saved["visible"][None], pred[None], "first",
        )  # fmt: skip
        expected = summarize(metrics)
        for key in ("AJ", "delta_avg", "OA", "jaccard_4", "pts_within_2"):
            assert result["metrics"][key] == pytest.approx(expected[key], abs=1e-9)
        assert result["metrics"]["missing_points"] == 0 and not saved["missing"].any()
        assert 0.0 < result["metrics"]["OA"] < 1.0  # a real mix of visible / occluded predictions
        assert result["step_latency"]["count"] == (NUM_FRAMES - WINDOW) // STEP + 1  # pushes that ran a window


def test_bag_eval_sidecar_ground_truth_equals_topic(
    dataset: tuple[Path, Path], checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pkl, bags = dataset
    bag = bags / CLIP_NAMES[1]
    scores = []
    for gt_args in ([], ["--gt", str(bags / f"{CLIP_NAMES[1]}.gt.npz")], ["--gt", str(pkl)]):
        out = tmp_path / f"out{len(scores)}"
        args = [str(bag), *model_args(checkpoint), "--out", str(out), "--png-frames", "0", *gt_args]
        rc, err = run_bag_eval(args, capsys)
        assert rc == 0, err
        scores.append(json.loads((out / "results.json").read_text())["clips"][0]["metrics"])
    for key in ("AJ", "delta_avg", "OA"):
        assert scores[1][key] == scores[0][key]
        assert scores[2][key] == pytest.approx(scores[0][key], abs=1e-6)  # float64 pickle vs float32 topic


# --- bad input -------------------------------------------------------------------------------------------------


def test_bag_without_the_image_topic_is_named(
    dataset: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, bags = dataset
    rc, err = run_bag_eval([str(bags / CLIP_NAMES[0]), "--image-topic", "/front/image", "--out", str(tmp_path)], capsys)
    assert rc == 2
    assert "no topic '/front/image'" in err and "/camera/image_raw (sensor_msgs/msg/Image)" in err
    # A bag that has no image topic at all.
    store = get_typestore(Stores.ROS2_KILTED)
    empty = tmp_path / "no_images"
    with Writer(empty, version=9) as writer:
        conn = writer.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=store)
        info = store.types["sensor_msgs/msg/CameraInfo"]
        raw = store.serialize_cdr(
            info(
                header=store.types["std_msgs/msg/Header"](
                    stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="c"
                ),
                height=4, width=4, distortion_model="", d=np.zeros(0), k=np.zeros(9), r=np.zeros(9), p=np.zeros(12),
                binning_x=0, binning_y=0,
                roi=store.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                                    do_rectify=False),
            ),
            "sensor_msgs/msg/CameraInfo",
        )  # fmt: skip
        writer.write(conn, 1, raw)
    rc, err = run_bag_eval([str(empty), "--out", str(tmp_path)], capsys)
    assert rc == 2 and "no image topic" in err and "/camera/camera_info" in err
    rc, err = run_bag_eval([str(tmp_path / "nothing_here"), "--out", str(tmp_path)], capsys)
    assert rc == 2 and "neither a rosbag2 folder" in err


def test_pickle_with_mismatched_shapes_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = synthetic_clip("broken", 3)
    record = {"video": clip.video, "points": clip.points[:, :-1].astype(np.float32), "occluded": clip.occluded[:, :-1]}
    pkl = tmp_path / "broken.pkl"
    pkl.write_bytes(pickle.dumps({"broken": record}))
    rc = tapvid_to_bag.main([str(pkl), str(tmp_path / "bags"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "clip 'broken'" in err and f"cover {NUM_FRAMES - 1} frames but video has {NUM_FRAMES}" in err
    assert not (tmp_path / "bags").exists()
    record["occluded"] = clip.occluded  # occluded (N, T) against points (N, T - 1, 2)
    pkl.write_bytes(pickle.dumps({"broken": record}))
    assert tapvid_to_bag.main([str(pkl), str(tmp_path / "bags"), "--no-progress"]) == 2
    assert "occluded has shape" in capsys.readouterr().err


def test_pickle_without_clips_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkl = tmp_path / "empty.pkl"
    pkl.write_bytes(pickle.dumps({}))
    assert tapvid_to_bag.main([str(pkl), str(tmp_path / "bags"), "--no-progress"]) == 2
    assert "holds no clips" in capsys.readouterr().err
    assert not (tmp_path / "bags").exists()


def test_ground_truth_for_a_clip_not_in_the_bag(
    dataset: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pkl, bags = dataset
    bag = bags / CLIP_NAMES[0]
    rc, err = run_bag_eval([str(bag), "--gt", str(bags / f"{CLIP_NAMES[1]}.gt.npz"), "--out", str(tmp_path)], capsys)
    assert rc == 2 and f"for clip '{CLIP_NAMES[1]}', not for the bag's clip '{CLIP_NAMES[0]}'" in err
    rc, err = run_bag_eval([str(bag), "--gt", str(pkl), "--clip", "kitchen_07", "--out", str(tmp_path)], capsys)
    assert rc == 2 and "no clip named 'kitchen_07'" in err and CLIP_NAMES[0] in err
    rc = tapvid_to_bag.main([str(pkl), str(tmp_path / "b"), "--clips", "kitchen_07", "--no-progress"])
    assert rc == 2 and "no clip named kitchen_07" in capsys.readouterr().err
    # Ground truth of another length than the bag.
    with pytest.raises(ValueError, match=f"covers {NUM_FRAMES} frames but the bag has {NUM_FRAMES - 1}"):
        load_sidecar_ground_truth(pkl, CLIP_NAMES[0], frame_stamps(NUM_FRAMES - 1, FPS), (SIZE, SIZE))
    # A bag written without ground truth, and no --gt.
    plain = write_clip_bag(tmp_path / "plain", synthetic_clip("plain", 4), BagWriteOptions(gt_topic=""))
    rc, err = run_bag_eval([str(plain), "--out", str(tmp_path)], capsys)
    assert rc == 2 and "no ground truth" in err


def test_command_line_help(capsys: pytest.CaptureFixture[str]) -> None:
    for main, words in ((bag_eval.main, ("--image-topic", "--gt", "--mode", "--step", "--params-file")),
                        (tapvid_to_bag.main, ("--fps", "--storage", "--sidecar", "--distro"))):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            main(["--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert all(w in text for w in words)


# --- a real video with a known warp ----------------------------------------------------------------------------


def warped_video_clip(video_path: Path, num_frames: int = 20, size_hw: tuple[int, int] = (64, 96)) -> TapVidClip:
    """The video's first frame moved by a known affine motion; ground truth = the motion applied to a grid."""
    capture = cv2.VideoCapture(str(video_path))
    ok, bgr = capture.read()
    capture.release()
    assert ok, f"cannot read {video_path}"
    h, w = size_hw
    base = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (w, h), interpolation=cv2.INTER_AREA)
    ys, xs = np.meshgrid(np.linspace(8, h - 9, 4), np.linspace(8, w - 9, 5), indexing="ij")
    points0 = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], axis=0)  # (3, N)
    frames, tracks = [], []
    for t in range(num_frames):
        matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 1.5 * t, 1.0 + 0.01 * t)
        matrix[:, 2] += (1.2 * t, 0.5 * t)
        frames.append(cv2.warpAffine(base, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
        tracks.append((matrix @ points0).T)  # (N, 2): warpAffine maps source to destination by `matrix`
    points = np.stack(tracks, axis=1)
    occluded = (points[..., 0] < 0) | (points[..., 0] > w - 1) | (points[..., 1] < 0) | (points[..., 1] > h - 1)
    return TapVidClip.from_pixels("apple_warp", np.stack(frames), points, occluded)


def test_real_video_with_known_warp_as_jpeg_bag(
    shared_dir: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = shared_dir / "data" / "apple.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not found")
    clip = warped_video_clip(video)
    assert clip.occluded.any() and (~clip.occluded).any()
    pkl = write_tapvid_pickle(tmp_path / "warp.pkl", [clip])
    assert tapvid_to_bag.main([str(pkl), str(tmp_path / "bags"), "--encoding", "jpeg", "--no-progress"]) == 0
    bag = read_clip_bag(tmp_path / "bags" / "apple_warp")
    assert bag.compressed and bag.size_hw == clip.size_hw
    errors = [np.abs(bag.rgb(t).astype(float) - clip.video[t]).mean() for t in range(clip.num_frames)]
    assert max(errors) < 4.0  # JPEG quality 95
    out = tmp_path / "out"
    args = [str(tmp_path / "bags"), *model_args(checkpoint), "--mode", "both", "--out", str(out)]
    rc, err = run_bag_eval(args, capsys)
    assert rc == 0, err
    report = json.loads((out / "results.json").read_text())
    assert [c["mode"] for c in report["clips"]] == ["first", "strided"]
    assert report["clips"][0]["metrics"]["queries"] == int((~clip.occluded).any(axis=1).sum())


@pytest.mark.parametrize("damage", ["truncated", "corrupted", "empty"])
def test_damaged_bag_gives_one_line_error(
    dataset: tuple[Path, Path], checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    _, bags = dataset
    bag = tmp_path / "damaged"
    shutil.copytree(bags / CLIP_NAMES[0], bag)
    data_file = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    content = data_file.read_bytes()
    if damage == "truncated":
        data_file.write_bytes(content[: len(content) // 2])
    elif damage == "corrupted":
        data_file.write_bytes(content[:64] + bytes(b ^ 0xFF for b in content[64:]))
    else:
        data_file.write_bytes(b"")
    rc, err = run_bag_eval([str(bag), *model_args(checkpoint), "--out", str(tmp_path / "out")], capsys)
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and str(bag) in err, err
