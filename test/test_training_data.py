"""Tests for the Kubric reader/writer, the synthetic scene generator and training-clip sampling."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from training.data.kubric import KubricLayoutError, KubricReader, TrackSequence, write_kubric_sequence
from training.data.sampling import (
    ClipSamplingConfig,
    KubricClipDataset,
    NotEnoughPointsError,
    TrainingClip,
    collate_clips,
    make_training_clip,
    sample_training_clip,
)
from training.data.synthetic import (
    FrameTextureSource,
    SceneConfig,
    generate_scene,
    write_synthetic_dataset,
)
from training.data.synthetic import main as synthetic_main

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"

SMALL_SCENE = SceneConfig(num_frames=24, height=64, width=64, num_points=256)
NUM_SMALL = 4


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four generated 24-frame 64x64 sequences in the Kubric layout (seed 0)."""
    root = tmp_path_factory.mktemp("synthetic_kubric")
    write_synthetic_dataset(root, NUM_SMALL, SMALL_SCENE, seed=0)
    return root


@pytest.fixture(scope="module")
def long_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 70-frame 96x128 sequences with many points, long enough for T = 64 online clips."""
    root = tmp_path_factory.mktemp("synthetic_long")
    write_synthetic_dataset(root, 2, SceneConfig(num_frames=70, height=96, width=128, num_points=800), seed=1)
    return root


# ------------------------------------------------------------------------------------------------
# The released layout, built by hand


def _write_official_sequence(root: Path, name: str, coords: np.ndarray, occluded: np.ndarray,
                             frames_rgb: np.ndarray) -> Path:
    folder = root / name
    (folder / "frames").mkdir(parents=True)
    for t, frame in enumerate(frames_rgb):
        assert cv2.imwrite(str(folder / "frames" / f"{t:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    np.save(folder / f"{name}.npy", {"coords": coords, "visibility": occluded}, allow_pickle=True)
    return folder


def test_hand_built_official_layout_reads_as_documented(tmp_path: Path) -> None:
    """One sequence written directly in the layout of the released CoTracker3 Kubric data.

    Layout (sources: dataset card https://huggingface.co/datasets/facebook/CoTracker3_Kubric, which
    distributes one NNNN.tar.gz per sequence, ~6,000 sequences of 120 frames at 512x512; and the
    official loader facebookresearch/co-tracker ``cotracker/datasets/kubric_movif_dataset.py``,
    ``KubricMovifDataset.getitem_helper``)::

        <root>/<name>/frames/000.png ... (T RGB PNGs, sorted by name)
        <root>/<name>/<name>.npy        np.save of a dict, np.load(allow_pickle=True).item():
            "coords":     (N, T, 2) float32, pixel x, y
            "visibility": (N, T) bool, True = OCCLUDED (the loader applies np.logical_not)
        (the release also holds <name>_trajs_2d.npy, <name>_visibility.npy, <name>_with_rank.npz and
         depths/NNN.npy, which the loader does not read)

    The reader must give tracks (T, N, 2), visibility (T, N) True = visible, video (T, 3, H, W) RGB.
    """
    T, N, H, W = 3, 4, 8, 10
    coords = np.arange(N * T * 2, dtype=np.float32).reshape(N, T, 2) * 0.5  # distinct x, y values
    occluded = np.array(
        [[False, True, False], [True, True, False], [False, False, False], [True, False, True]]
    )
    frames = np.zeros((T, H, W, 3), np.uint8)
    for t in range(T):
        frames[t] = (10 * t, 100, 200)
        frames[t, 3, 2] = (255, 0, 0)  # a red pixel at x=2, y=3 to pin channel order and orientation
    folder = _write_official_sequence(tmp_path, "0007", coords, occluded, frames)
    (folder / "depths").mkdir()
    np.save(folder / "depths" / "000.npy", np.zeros((H, W), np.float32))  # extra release files are ignored
    np.save(folder / "0007_visibility.npy", ~occluded)

    reader = KubricReader(tmp_path)
    assert reader.names == ("0007",)
    assert reader.num_frames("0007") == T
    seq = reader.read(0)
    assert seq.name == "0007"
    assert seq.video.dtype == torch.uint8 and tuple(seq.video.shape) == (T, 3, H, W)
    assert seq.tracks.dtype == torch.float32 and tuple(seq.tracks.shape) == (T, N, 2)
    assert seq.visibility.dtype == torch.bool and tuple(seq.visibility.shape) == (T, N)
    np.testing.assert_array_equal(seq.tracks.numpy(), coords.transpose(1, 0, 2))
    np.testing.assert_array_equal(seq.visibility.numpy(), ~occluded.T)
    assert seq.video[1, :, 0, 0].tolist() == [10, 100, 200]
    assert seq.video[2, :, 3, 2].tolist() == [255, 0, 0]


def test_missing_annotations_are_kept_nan_and_invisible(tmp_path: Path) -> None:
    coords = np.zeros((2, 2, 2), np.float32)
    coords[1, 0] = np.nan
    _write_official_sequence(tmp_path, "s", coords, np.zeros((2, 2), bool), np.zeros((2, 8, 8, 3), np.uint8))
    seq = KubricReader(tmp_path).read("s")
    assert torch.isnan(seq.tracks[0, 1]).all()
    assert seq.visibility.tolist() == [[True, False], [True, True]]


# ------------------------------------------------------------------------------------------------
# Reader errors


def test_reader_rejects_missing_path(tmp_path: Path) -> None:
    with pytest.raises(KubricLayoutError, match="does not exist"):
        KubricReader(tmp_path / "nowhere")


def test_reader_rejects_file_as_root(tmp_path: Path) -> None:
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(KubricLayoutError, match="not a folder"):
        KubricReader(path)


def test_reader_rejects_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(KubricLayoutError, match="no sequence folders"):
        KubricReader(tmp_path)


def test_reader_hints_at_unextracted_archives(tmp_path: Path) -> None:
    (tmp_path / "0000.tar.gz").write_bytes(b"")
    with pytest.raises(KubricLayoutError, match="extract them"):
        KubricReader(tmp_path)


def test_reader_names_sequence_missing_annotations(synthetic_root: Path, tmp_path: Path) -> None:
    good = generate_scene(SMALL_SCENE, seed=3).sequence
    write_kubric_sequence(tmp_path / "good", good.video, good.tracks, good.visibility)
    (tmp_path / "broken" / "frames").mkdir(parents=True)
    with pytest.raises(KubricLayoutError, match=r"'broken' is missing broken\.npy"):
        KubricReader(tmp_path)


def test_reader_names_sequence_missing_frames(tmp_path: Path) -> None:
    (tmp_path / "seq9").mkdir()
    annotations = {"coords": np.zeros((1, 1, 2)), "visibility": np.zeros((1, 1), bool)}
    np.save(tmp_path / "seq9" / "seq9.npy", annotations, allow_pickle=True)
    with pytest.raises(KubricLayoutError, match=r"'seq9' is missing frames/"):
        KubricReader(tmp_path)


def test_reader_reports_frame_count_mismatch(tmp_path: Path) -> None:
    folder = _write_official_sequence(
        tmp_path, "a", np.zeros((2, 3, 2), np.float32), np.zeros((2, 3), bool),
        np.zeros((3, 8, 8, 3), np.uint8)
    )
    (folder / "frames" / "002.png").unlink()
    reader = KubricReader(tmp_path)
    with pytest.raises(KubricLayoutError, match="'a' has 2 frame images but annotations for 3"):
        reader.read("a")


def test_reader_reports_bad_annotation_content(tmp_path: Path) -> None:
    _write_official_sequence(tmp_path, "a", np.zeros((2, 1, 2), np.float32), np.zeros((2, 1), bool),
                             np.zeros((1, 8, 8, 3), np.uint8))
    np.save(tmp_path / "a" / "a.npy", {"tracks": np.zeros((2, 1, 2))}, allow_pickle=True)
    with pytest.raises(KubricLayoutError, match=r"missing keys \['coords', 'visibility'\]"):
        KubricReader(tmp_path).read(0)
    np.save(tmp_path / "a" / "a.npy", np.zeros((2, 1, 2)))
    with pytest.raises(KubricLayoutError, match="expected a pickled dict"):
        KubricReader(tmp_path).read(0)


def test_reader_rejects_unknown_names_and_indices(synthetic_root: Path) -> None:
    reader = KubricReader(synthetic_root)
    with pytest.raises(KeyError, match="no sequence named"):
        reader.read("nope")
    with pytest.raises(IndexError):
        reader.read(len(reader))
    with pytest.raises(IndexError):
        reader.read(0, frames=[0, 99])


def test_writer_refuses_to_overwrite(tmp_path: Path) -> None:
    seq = generate_scene(SMALL_SCENE, seed=0).sequence
    write_kubric_sequence(tmp_path / "s", seq.video, seq.tracks, seq.visibility)
    with pytest.raises(ValueError, match="refusing to overwrite"):
        write_kubric_sequence(tmp_path / "s", seq.video, seq.tracks, seq.visibility)
    with pytest.raises(ValueError, match="uint8"):
        write_kubric_sequence(tmp_path / "t", seq.video.float(), seq.tracks, seq.visibility)


# ------------------------------------------------------------------------------------------------
# Generator


def test_reader_round_trip_equals_generator_ground_truth(synthetic_root: Path) -> None:
    reader = KubricReader(synthetic_root)
    assert reader.names == ("0000", "0001", "0002", "0003")
    for index, name in enumerate(reader.names):
        expected = generate_scene(SMALL_SCENE, seed=(0, index), name=name).sequence
        got = reader.read(name)
        assert got.name == expected.name
        assert torch.equal(got.video, expected.video)
        assert torch.equal(got.tracks, expected.tracks)
        assert torch.equal(got.visibility, expected.visibility)


def test_reading_a_frame_range_equals_slicing(synthetic_root: Path) -> None:
    reader = KubricReader(synthetic_root)
    full, part = reader.read(1), reader.read(1, frames=slice(5, 12))
    assert torch.equal(part.video, full.video[5:12])
    assert torch.equal(part.tracks, full.tracks[5:12])
    assert torch.equal(part.visibility, full.visibility[5:12])


def _inside(tracks: np.ndarray, height: int, width: int) -> np.ndarray:
    x, y = tracks[..., 0], tracks[..., 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def test_visibility_follows_the_layer_rule_exactly() -> None:
    for seed in range(3):
        scene = generate_scene(SMALL_SCENE, seed=seed)
        tracks = scene.sequence.tracks.numpy()
        inside = _inside(tracks, 64, 64)
        px = np.clip(np.floor(tracks[..., 0] + 0.5), 0, 63).astype(int)
        py = np.clip(np.floor(tracks[..., 1] + 0.5), 0, 63).astype(int)
        top = scene.top_layer[np.arange(24)[:, None], py, px]
        expected = inside & (top == scene.point_layer[None])
        np.testing.assert_array_equal(scene.sequence.visibility.numpy(), expected)
        assert len(np.unique(scene.point_layer)) >= 3  # background plus at least two layers


def test_generator_produces_occlusions_and_points_leaving_the_frame() -> None:
    occluded_in_frame = left_frame = 0
    for seed in range(4):
        seq = generate_scene(SMALL_SCENE, seed=seed).sequence
        vis = seq.visibility.numpy()
        inside = _inside(seq.tracks.numpy(), 64, 64)
        # Occluded mid-clip while inside the frame, and visible at some other time.
        hidden = inside & ~vis
        occluded_in_frame += int((hidden[1:-1].any(axis=0) & vis.any(axis=0)).sum())
        # Inside the frame at one time, outside at another.
        left_frame += int((inside.any(axis=0) & (~inside).any(axis=0)).sum())
    assert occluded_in_frame > 20
    assert left_frame > 20


def test_tracks_follow_the_texture() -> None:
    """Colours at a visible point's exact positions in consecutive frames match far better than chance."""
    seq = generate_scene(SceneConfig(num_frames=12, height=96, width=96, num_points=400), seed=5).sequence
    video = seq.video.float()
    tracks, vis = seq.tracks, seq.visibility

    def colour(t: int, xy: torch.Tensor) -> torch.Tensor:
        grid = (xy / torch.tensor([95.0, 95.0]) * 2 - 1)[None, None]
        return torch.nn.functional.grid_sample(video[t : t + 1], grid, align_corners=True)[0, :, 0].T

    same, shuffled = [], []
    for t in range(11):
        both = vis[t] & vis[t + 1]
        a, b = colour(t, tracks[t, both]), colour(t + 1, tracks[t + 1, both])
        same.append((a - b).abs().mean(dim=1))
        shuffled.append((a - b[torch.randperm(len(b))]).abs().mean(dim=1))
    assert torch.cat(same).median() < 0.3 * torch.cat(shuffled).median()


def test_generator_is_deterministic_with_a_seed() -> None:
    a = generate_scene(SMALL_SCENE, seed=11).sequence
    b = generate_scene(SMALL_SCENE, seed=11).sequence
    c = generate_scene(SMALL_SCENE, seed=12).sequence
    assert torch.equal(a.video, b.video) and torch.equal(a.tracks, b.tracks)
    assert torch.equal(a.visibility, b.visibility)
    assert not torch.equal(a.tracks, c.tracks)


def test_generator_is_fast() -> None:
    config = SceneConfig(num_frames=24, height=64, width=64, num_points=300)
    generate_scene(config, seed=0)
    times = []
    for seed in range(5):
        start = time.perf_counter()
        generate_scene(config, seed=seed)
        times.append(time.perf_counter() - start)
    assert np.median(times) < 0.25, times


def test_scene_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="num_layers"):
        SceneConfig(num_layers=(1, 3))
    with pytest.raises(ValueError, match="num_frames"):
        SceneConfig(num_frames=1)
    with pytest.raises(ValueError, match="16x16"):
        SceneConfig(height=8)


def test_cli_writes_a_readable_deterministic_dataset(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "training.data.synthetic", "--out", str(out), "--num", "3", "--frames", "10",
           "--height", "32", "--width", "48", "--points", "64", "--seed", "7"]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    reader = KubricReader(out)
    assert reader.names == ("0000", "0001", "0002")
    seq = reader.read(2)
    assert tuple(seq.video.shape) == (10, 3, 32, 48) and tuple(seq.tracks.shape) == (10, 64, 2)
    config = SceneConfig(num_frames=10, height=32, width=48, num_points=64)
    assert torch.equal(seq.tracks, generate_scene(config, seed=(7, 2)).sequence.tracks)


def test_cli_reports_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        synthetic_main(["--out", str(tmp_path), "--min-layers", "1"])
    assert exit_info.value.code == 2 and "num_layers" in capsys.readouterr().err


def test_real_video_textures_are_used_deterministically() -> None:
    video = SHARED_DIR / "data" / "teddy.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not found: ../shared is on CI and dev machines, not in a user's clone")
    config = SceneConfig(num_frames=8, height=48, width=48, num_points=64, real_texture_prob=1.0)
    a = generate_scene(config, seed=2, texture_source=FrameTextureSource([video], frames_per_video=4))
    b = generate_scene(config, seed=2, texture_source=FrameTextureSource([video], frames_per_video=4))
    procedural = generate_scene(config, seed=2)
    assert torch.equal(a.sequence.video, b.sequence.video)
    assert not torch.equal(a.sequence.video, procedural.sequence.video)


def test_texture_source_rejects_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        FrameTextureSource([tmp_path / "missing.mp4"])
    with pytest.raises(ValueError, match="no video or image files"):
        FrameTextureSource([tmp_path])


# ------------------------------------------------------------------------------------------------
# Sampling


def _check_clip_semantics(clip: TrainingClip, config: ClipSamplingConfig) -> None:
    T, N = clip.tracks.shape[:2]
    H, W = config.crop_size
    assert tuple(clip.video.shape) == (T, 3, H, W) and clip.video.dtype == torch.float32
    assert 0.0 <= float(clip.video.min()) and float(clip.video.max()) <= 255.0
    assert tuple(clip.queries.shape) == (N, 3) and N == config.num_points
    assert clip.visibility.dtype == torch.bool and clip.valid.dtype == torch.bool
    frames = clip.queries[:, 0].long()
    assert torch.equal(clip.queries[:, 0], frames.float())
    assert ((frames >= 0) & (frames < T)).all()
    points = torch.arange(N)
    assert torch.equal(clip.tracks[frames, points], clip.queries[:, 1:])
    assert clip.visibility[frames, points].all()  # queried where visible
    # Visible points lie inside the crop.
    x, y = clip.tracks[..., 0], clip.tracks[..., 1]
    inside = (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)
    assert not (clip.visibility & ~inside).any()
    if config.supervise_before_query:
        assert clip.valid.all()
    else:
        assert torch.equal(clip.valid, torch.arange(T)[:, None] >= frames[None, :])


def test_online_clip_shapes_and_query_semantics(long_root: Path) -> None:
    config = ClipSamplingConfig.online(crop_size=(48, 64), num_points=256)
    dataset = KubricClipDataset(KubricReader(long_root), config, seed=0)
    for index in range(len(dataset)):
        clip = dataset[index]
        assert clip.tracks.shape[0] == 64 and 0 <= clip.start_frame <= 70 - 64
        _check_clip_semantics(clip, config)
        # Online queries are biased to the first half of the clip.
        assert (clip.queries[:, 0] < 32).all()


def test_online_queries_mostly_at_first_visible_frame(long_root: Path) -> None:
    seq = KubricReader(long_root).read(0)
    for share, expect_all_first in ((1.0, True), (0.0, False)):
        config = ClipSamplingConfig.online(crop_size=(48, 64), num_points=256, first_visible_share=share)
        clip = sample_training_clip(seq, config, np.random.default_rng(0))
        first = clip.visibility.float().argmax(dim=0)
        at_first = clip.queries[:, 0].long() == first
        assert bool(at_first.all()) == expect_all_first


def test_offline_clip_lengths_and_uniform_queries(long_root: Path) -> None:
    config = ClipSamplingConfig.offline(crop_size=(48, 64), num_points=256, num_frames_range=(20, 40))
    seq = KubricReader(long_root).read(1)
    lengths, late_queries = set(), 0
    for seed in range(6):
        clip = sample_training_clip(seq, config, np.random.default_rng(seed))
        T = clip.tracks.shape[0]
        assert 20 <= T <= 40
        lengths.add(T)
        _check_clip_semantics(clip, config)
        late_queries += int((clip.queries[:, 0] >= T / 2).sum())
    assert len(lengths) > 1
    assert late_queries > 0


def test_spatial_augmentation_moves_tracks_with_pixels() -> None:
    """Frames encode each pixel's own (x, y); after resize, crop and flips, the image sampled at a
    track must still read that point's original (x, y)."""
    H, W, T, N = 64, 96, 2, 200
    yy, xx = np.mgrid[0:H, 0:W]
    frame = np.stack([xx * 2, yy * 2, np.zeros_like(xx)]).astype(np.uint8)
    video = torch.from_numpy(np.stack([frame] * T))
    rng = np.random.default_rng(0)
    xy = torch.from_numpy(rng.uniform([2, 2], [W - 3, H - 3], size=(N, 2)).astype(np.float32))
    seq = TrackSequence("ramp", video, xy[None].repeat(T, 1, 1), torch.ones(T, N, dtype=torch.bool))
    cases = (((48, 64), (1.0, 1.0), 0.0), ((48, 64), (1.3, 1.6), 1.0), ((96, 128), (1.0, 1.2), 1.0))
    for crop, zoom, flip in cases:
        config = ClipSamplingConfig(crop_size=crop, num_frames=T, num_points=20, zoom_range=zoom,
                                    hflip_prob=flip, vflip_prob=flip, query_mode="uniform")
        clip = make_training_clip(seq, config, np.random.default_rng(1))
        ch, cw = crop
        tracks = clip.tracks[0]
        # Away from the borders, where resizing a linear ramp is exact.
        keep = (tracks[:, 0] > 2) & (tracks[:, 0] < cw - 3) & (tracks[:, 1] > 2) & (tracks[:, 1] < ch - 3)
        assert keep.sum() >= 5
        grid = (tracks[keep] / torch.tensor([cw - 1.0, ch - 1.0]) * 2 - 1)[None, None]
        sampled = torch.nn.functional.grid_sample(clip.video[:1], grid, align_corners=True)[0, :2, 0].T / 2
        original = xy[clip.point_index[keep]]
        error = (sampled - original).abs().max()
        assert error < 0.3, (crop, zoom, flip, error)


def test_points_outside_the_frame_become_invisible() -> None:
    T = 2
    video = torch.zeros(T, 3, 32, 32, dtype=torch.uint8)
    tracks = torch.tensor(
        [[[5.0, 5.0], [10.0, 10.0], [20.0, 20.0]], [[-1.0, 5.0], [10.0, 31.5], [20.0, 31.0]]]
    )
    seq = TrackSequence("s", video, tracks, torch.ones(T, 3, dtype=torch.bool))
    config = ClipSamplingConfig(crop_size=(32, 32), num_frames=T, num_points=3, query_mode="uniform")
    clip = make_training_clip(seq, config, np.random.default_rng(0))
    visible_at_1 = dict(zip(clip.point_index.tolist(), clip.visibility[1].tolist(), strict=True))
    assert visible_at_1 == {0: False, 1: False, 2: True}
    assert clip.visibility[0].all()


def test_clip_with_too_few_visible_points_is_reported() -> None:
    seq = generate_scene(SceneConfig(num_frames=10, height=32, width=32, num_points=20), seed=0).sequence
    config = ClipSamplingConfig(crop_size=(32, 32), num_frames=10, num_points=500)
    with pytest.raises(NotEnoughPointsError, match="500 requested"):
        sample_training_clip(seq, config, np.random.default_rng(0))


def test_dataset_names_the_sequence_when_it_gives_up(synthetic_root: Path) -> None:
    config = ClipSamplingConfig(crop_size=(32, 32), num_frames=10, num_points=10_000)
    dataset = KubricClipDataset(KubricReader(synthetic_root), config, max_attempts=2)
    with pytest.raises(ValueError, match="sequence '0001': no usable clip in 2 attempts"):
        dataset[1]


def test_clip_longer_than_sequence_is_an_error(synthetic_root: Path) -> None:
    dataset = KubricClipDataset(KubricReader(synthetic_root), ClipSamplingConfig.online(crop_size=(32, 32)))
    with pytest.raises(ValueError, match="clip of 64 frames requested from a sequence of 24 frames"):
        dataset[0]


def test_dataset_is_deterministic_per_seed_and_epoch(synthetic_root: Path) -> None:
    config = ClipSamplingConfig.online(crop_size=(48, 48), num_frames=16, num_points=64, hflip_prob=0.5)
    dataset = KubricClipDataset(KubricReader(synthetic_root), config, seed=3)
    a, b = dataset[2], dataset[2]
    assert torch.equal(a.video, b.video) and torch.equal(a.queries, b.queries)
    dataset.set_epoch(1)
    c = dataset[2]
    assert not (torch.equal(a.queries, c.queries) and a.start_frame == c.start_frame)


def test_collate_stacks_clips_and_rejects_mismatched_lengths(synthetic_root: Path) -> None:
    reader = KubricReader(synthetic_root)
    online = ClipSamplingConfig.online(crop_size=(48, 48), num_frames=16, num_points=64)
    dataset = KubricClipDataset(reader, online)
    batch = collate_clips([dataset[0], dataset[1]])
    assert tuple(batch.video.shape) == (2, 16, 3, 48, 48)
    assert tuple(batch.queries.shape) == (2, 64, 3) and tuple(batch.valid.shape) == (2, 16, 64)
    assert batch.names == ["0000", "0001"]
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate_clips)
    assert tuple(next(iter(loader)).tracks.shape) == (2, 16, 64, 2)
    shorter = ClipSamplingConfig.online(crop_size=(48, 48), num_frames=12, num_points=64)
    other = KubricClipDataset(reader, shorter)
    with pytest.raises(ValueError, match="clips differ in shape"):
        collate_clips([dataset[0], other[0]])
    with pytest.raises(ValueError, match="empty"):
        collate_clips([])


def test_sampling_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="query_mode"):
        ClipSamplingConfig(query_mode="late")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zoom_range"):
        ClipSamplingConfig(zoom_range=(0.5, 1.0))
    with pytest.raises(ValueError, match="num_frames_range"):
        ClipSamplingConfig(num_frames_range=(60, 30))
    with pytest.raises(ValueError, match="num_points"):
        ClipSamplingConfig(num_points=0)
    assert ClipSamplingConfig.offline().num_frames_range == (30, 60)
    assert ClipSamplingConfig.online().num_frames == 64
