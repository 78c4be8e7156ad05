"""Several cameras in one engine (`MultiStreamTracker`): each camera's tracks equal those of its own
`StreamingTracker` on the same frames, while the due windows run in one batched model call.

Batched products round differently from single ones (about 1e-6 relative), so the comparison needs a model
that does not amplify rounding: the shipped, trained `lite` over scenes whose points stay in view (measured
on these scenes: 2e-3 px at most over 30 frames). Untrained models are chaotic: encoding one frame in a batch
of two instead of alone (2e-6 in the features) moves their tracks by 2-5 px after eight windows, batching or
not; they are compared over their first window only, where the rounding has not grown (1e-4 px).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from cotracker3_core import build_model
from cotracker3_core.config import preset
from cotracker3_core.correlation import WindowFeatures
from cotracker3_core.evaluation.protocol import (
    evaluate,
    evaluate_batch,
    track_streaming,
    track_streaming_batch,
)
from cotracker3_core.evaluation.tapvid_datasets import TapVidClip
from cotracker3_core.evaluation.warp_clips import WarpClipConfig, make_warp_clip
from cotracker3_core.frames import StampOrderError
from cotracker3_core.model import CoTracker3
from cotracker3_core.multi_stream import MultiStreamTracker
from cotracker3_core.session import SessionStep, TrackingSession, push_sessions
from cotracker3_core.streaming import FrameTracks, StreamConfig, StreamingTracker
from cotracker3_core.window_batch import padding_groups
from cotracker3_core.windows import initial_estimates
from training.data.photos import load_photos

RES = (32, 48)
COORD_TOL = 5e-3  # px: batched products reorder float arithmetic
PROB_TOL = 1e-3


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("online", model_resolution=RES, **preset("tiny"))


def scene(n: int, h: int, w: int, seed: int, speed: int) -> list[np.ndarray]:
    """A camera swaying over a smooth random texture of its own, `speed` times a base rate; every point stays
    in view (points leaving the image make even a trained tracker's estimate ill-conditioned)."""
    m = 8  # margin: the sway's amplitude
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, (h + 2 * m) // 6 + 2, (w + 2 * m) // 6 + 2, generator=g)
    base = torch.nn.functional.interpolate(low, size=(h + 2 * m, w + 2 * m), mode="bicubic", align_corners=False)
    base = (base.clamp(0, 1) * 255).round().byte()[0].permute(1, 2, 0).numpy()
    out = []
    for i in range(n):
        dx = round(m + (m - 1) * np.sin(2 * np.pi * i * speed / 40))
        dy = round(m + (m - 1) * np.sin(2 * np.pi * i * speed / 55 + seed))
        out.append(np.ascontiguousarray(base[dy : dy + h, dx : dx + w]))
    return out


class Camera:
    """One camera's frames and what happens to its queries after given frames (the same on both engines)."""

    def __init__(self, index: int, frames: int) -> None:
        rng = np.random.default_rng(100 + index)
        self.h, self.w = (40, 60) if index % 2 == 0 else (60, 44)  # different sizes, one model resolution
        self.frames = scene(frames, self.h, self.w, seed=index, speed=1 + index % 3)
        self.start = 4 * index  # one step apart: the cameras join the batched windows one by one
        n = (3, 5, 1, 8)[index]  # different query counts
        self.queries = rng.uniform([2, 2], [self.w - 3, self.h - 3], (n, 2))
        self.added = rng.uniform([2, 2], [self.w - 3, self.h - 3], (2 + index, 2))

    def stamp(self, i: int) -> int:
        return 1000 * (i + 1) + 7

    def after_push(self, stream: StreamingTracker, i: int) -> None:
        if i == 0:
            stream.add_queries(self.queries)
        if i == 13:  # mid-stream, on a frame still in the window
            stream.add_queries(self.added, stamp=self.stamp(10))
        if i == 22:
            stream.remove_queries(stream.query_ids[1::2])


def reference_run(model, config: StreamConfig, camera: Camera) -> list[FrameTracks]:
    stream = StreamingTracker(model, config)
    out = []
    for i, frame in enumerate(camera.frames):
        out += stream.push(frame, camera.stamp(i))
        camera.after_push(stream, i)
    return out + stream.flush()


def batched_run(
    model, config: StreamConfig, cameras: list[Camera], max_padding: float = math.inf
) -> dict[int, list[FrameTracks]]:
    tracker = MultiStreamTracker(model, config, cameras=range(len(cameras)), max_padding=max_padding)
    out: dict[int, list[FrameTracks]] = {k: [] for k in range(len(cameras))}
    end = max(c.start + len(c.frames) for c in cameras)
    for t in range(end):
        due = {k: c for k, c in enumerate(cameras) if 0 <= t - c.start < len(c.frames)}
        pushed = tracker.push_many({k: (c.frames[t - c.start], c.stamp(t - c.start)) for k, c in due.items()})
        assert set(pushed) == set(due)
        for k, c in due.items():
            out[k] += pushed[k]
            c.after_push(tracker[k], t - c.start)
    for k, tracks in tracker.flush().items():
        out[k] += tracks
    return out


def assert_same_tracks(got: list[FrameTracks], want: list[FrameTracks], first_window: int | None = None) -> float:
    """The same frames, ids and flags; values within the tolerances (with `first_window` = the window length:
    only those of the first window's frames); returns the largest xy difference."""
    assert [(t.frame_index, t.stamp, t.refined) for t in got] == [(t.frame_index, t.stamp, t.refined) for t in want]
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        assert g.ids.tolist() == w.ids.tolist()
        if len(g.ids) and (first_window is None or (g.frame_index < first_window and not g.refined)):
            worst = max(worst, float(np.abs(g.xy - w.xy).max()))
            np.testing.assert_allclose(g.visibility, w.visibility, atol=PROB_TOL)
            np.testing.assert_allclose(g.confidence, w.confidence, atol=PROB_TOL)
    assert worst <= COORD_TOL
    return worst


@contextlib.contextmanager
def batch_sizes(model) -> Iterator[tuple[list[int], list[int]]]:
    """Batch sizes of the transformer's calls (one per refinement iteration) and of the encoder's calls."""
    refined: list[int] = []
    encoded: list[int] = []
    hooks = [
        model.transformer.register_forward_pre_hook(lambda m, args: refined.append(args[0].shape[0])),
        model.encoder.register_forward_pre_hook(lambda m, args: encoded.append(args[0].shape[0])),
    ]
    try:
        yield refined, encoded
    finally:
        for hook in hooks:
            hook.remove()


@pytest.fixture(scope="module")
def lite() -> tuple[CoTracker3, StreamConfig]:
    config = StreamConfig(checkpoint="lite", device="cpu").resolved()  # window 8, step 4, 2 iterations
    return config.build_online_model(), config


@pytest.mark.parametrize("count", [2, 4])
def test_each_camera_equals_its_own_stream(lite, count):
    """Different scenes, frame sizes and query counts; queries added and removed mid-stream; the cameras
    joining one step apart, so that windows run with B = 1 .. count and flushes end at different frames."""
    model, config = lite
    references = [reference_run(model, config, Camera(k, 30)) for k in range(count)]
    with batch_sizes(model) as (refined, encoded):
        batched = batched_run(model, config, [Camera(k, 30) for k in range(count)])
    for k in range(count):
        assert sum(not t.refined for t in batched[k]) == 30  # every frame emitted, so the test compares them all
        assert_same_tracks(batched[k], references[k])
    # The windows that fell due together ran as one call, and the frames of one push were encoded together.
    assert set(refined) == set(range(1, count + 1))
    assert max(encoded) == count and sum(encoded) == 30 * count


@pytest.mark.parametrize(("max_padding", "first_calls"), [(math.inf, [4]), (0.4, [2, 2]), (0.0, [1, 1, 2])])
def test_untrained_model_over_its_first_window(max_padding, first_calls):
    """Four cameras whose first windows fall due together, with 5, 8, 5 and 13 queries then: one call of B = 4
    padded to 13, or as many calls as `max_padding` asks (0: the two cameras with 5 share one); every later
    window's frames, ids and flags, and the first window's values (see the module docstring)."""
    model = tiny_model()
    config = StreamConfig(model_resolution=RES, step=4, iters=3, device="cpu")
    cameras = [Camera(k, 24) for k in range(4)]
    references = [reference_run(model, config, c) for c in cameras]
    for c in cameras:
        c.start = 0
    with batch_sizes(model) as (refined, _):
        batched = batched_run(model, config, cameras, max_padding)
    assert refined[: 3 * len(first_calls) : 3] == first_calls  # 3 iterations per call
    for k in range(4):
        assert_same_tracks(batched[k], references[k], first_window=model.window_len)


def test_padding_tracks_are_masked_out_of_the_virtual_tracks():
    """The virtual tracks gather from every track of a batch element: padding tracks change the real ones
    unless masked (so the mask, not luck, makes batches of unequal query counts exact)."""
    model = tiny_model(seed=3).eval()
    rng = torch.Generator().manual_seed(0)
    video = torch.rand(1, model.window_len, 3, *RES, generator=rng) * 255
    n, pad = 3, 4
    xy = torch.rand(1, n + pad, 2, generator=rng) * 8  # feature pixels
    with torch.inference_mode():
        pyramid = model.pyramid(model.encode(video))
        features = WindowFeatures.from_pyramid(pyramid)
        support = model.sample_support(pyramid, torch.zeros(1, n + pad, dtype=torch.long), xy)
        real = model.refine(features, [s[:, :n] for s in support], initial_estimates(xy[:, :n], model.window_len), 2)
        padded_init = initial_estimates(xy, model.window_len)
        mask = torch.arange(n + pad)[None] < n
        masked = model.refine(features, support, padded_init, 2, mask)
        unmasked = model.refine(features, support, padded_init, 2)
    for field in range(3):
        want = real[-1][field]
        torch.testing.assert_close(masked[-1][field][:, :, :n], want, atol=1e-4, rtol=0)  # coords: model px
        assert (unmasked[-1][field][:, :, :n] - want).abs().max() > 1e-3


def test_cameras_without_queries_idle_beside_tracked_ones():
    model = tiny_model()
    config = StreamConfig(model_resolution=RES, step=8, iters=2, device="cpu")
    tracker = MultiStreamTracker(model, config, cameras=["left", "right"])
    views = {"left": scene(20, 40, 60, 1, 1), "right": scene(20, 30, 30, 2, 2)}
    emitted = {"left": [], "right": []}
    with batch_sizes(model) as (sizes, _):
        for i in range(20):
            out = tracker.push_many({name: (frames[i], i + 1) for name, frames in views.items()})
            if i == 0:
                tracker["left"].add_queries([[10.0, 10.0]])
            for name, tracks in out.items():
                emitted[name] += tracks
    assert sizes and max(sizes) == 1  # only the left camera's windows ran the model
    assert [len(t.ids) for t in emitted["right"]] == [0] * len(emitted["right"]) and emitted["right"]
    assert all(len(t.ids) == 1 for t in emitted["left"])


def test_bad_frame_takes_nothing_from_any_camera():
    tracker = MultiStreamTracker(tiny_model(), StreamConfig(model_resolution=RES, device="cpu"), cameras=[0, 1])
    frame = scene(1, 40, 60, 0, 1)[0]
    tracker.push_many({0: (frame, 5), 1: (frame, 5)})
    with pytest.raises(StampOrderError) as error:
        tracker.push_many({0: (frame, 6), 1: (frame, 5)})
    assert "camera 1" in "".join(error.value.__notes__)
    assert tracker[0].frames_seen == tracker[1].frames_seen == 1 and tracker[0].last_stamp == 5
    with pytest.raises(ValueError):
        tracker.push_many({0: (frame[:, :, :2], 7)})
    with pytest.raises(KeyError):
        tracker.push_many({2: (frame, 7)})
    assert tracker[0].frames_seen == 1


def test_newest_mode_is_not_batched():
    with pytest.raises(ValueError, match="update 'window'"):
        MultiStreamTracker(tiny_model(), StreamConfig(model_resolution=RES, device="cpu", update="newest"))


def test_clips_evaluated_together_score_as_one_by_one(lite):
    """Protocol clips (queries entering mid-clip, occluders), three at a time through one MultiStreamTracker:
    the same tracks and scores as each clip through its own StreamingTracker."""
    model, config = lite
    photos = load_photos()
    clips = [
        TapVidClip.from_pixels(f"c{k}", c.video, c.tracks.transpose(1, 0, 2), ~c.visible.T)
        for k, c in enumerate(
            make_warp_clip(photos[k], photos[3:5], WarpClipConfig(num_frames=frames, num_points=points), seed=k)
            for k, (frames, points) in enumerate([(20, 12), (16, 5), (24, 9)])
        )
    ]
    singles: list = []
    batched: list = []

    def one_by_one(clip, q):
        singles.append(track_streaming(StreamingTracker(model, config), clip, q))
        return singles[-1]

    def together(clips, queries):
        batched.extend(track_streaming_batch(tracker, clips, queries))
        return batched[-len(clips) :]

    tracker = MultiStreamTracker(model, config)
    reference = evaluate(one_by_one, clips)
    with batch_sizes(model) as (refined, _):
        result = evaluate_batch(together, clips, batch=3)
    assert max(refined) == 3 and tracker.cameras == []
    for name, scores in reference["clips"].items():
        assert result["clips"][name] == pytest.approx(scores, abs=1e-3)
    for got, want in zip(batched, singles, strict=True):
        assert np.abs(got.tracks - want.tracks).max() <= COORD_TOL
        assert (got.visible == want.visible).mean() > 0.99


def test_padding_groups_bound_the_padding():
    assert padding_groups([100, 90, 80, 70]) == [[0, 1, 2, 3]]
    assert padding_groups([100, 90, 80, 70], 0.1) == [[0, 1], [2, 3]]  # 10 / 190 and 10 / 150 padded
    assert padding_groups([5, 8, 5], 0.0) == [[1], [0, 2]]
    with pytest.raises(ValueError, match="max_padding"):
        MultiStreamTracker(tiny_model(), StreamConfig(model_resolution=RES, device="cpu"), max_padding=-1)


def test_sessions_pushed_together_equal_one_by_one(lite):
    """`push_sessions` (the node's step over several cameras): the frames one by one through each camera's own
    `TrackingSession` give the same steps — glitches rejected, restarts (a new frame size), automatic grids,
    metadata — and the windows due together ran batched (`batched_windows`)."""
    model, config = lite
    frames = {k: scene(20, 40, 60, seed=k, speed=1 + k) for k in range(3)}
    frames[1][12] = scene(1, 44, 60, seed=9, speed=1)[0]  # camera 1 changes size for a frame: two restarts
    stamps = {k: [1000 * (i + 1) for i in range(20)] for k in range(3)}
    stamps[2][5] = stamps[2][4]  # camera 2 repeats a stamp: that frame is rejected, the stream goes on
    stamps[0][7] = 0  # camera 0 sends an unstamped frame

    def steps(step: SessionStep) -> tuple:
        return (step.restart is not None, type(step.rejected).__name__, step.grid and len(step.grid.ids),
                [(e.tracks.stamp, e.tracks.refined, e.meta) for e in step.emitted])

    alone = {}
    for k in range(3):
        session = TrackingSession(StreamingTracker(model, config), grid_size=3)
        alone[k] = [session.push(frames[k][i], stamps[k][i], meta=(k, i)) for i in range(20)]
    engine = MultiStreamTracker(model, config)
    sessions = {k: TrackingSession(engine.add_camera(k, StreamingTracker(model, config)), 3) for k in range(3)}
    together = {k: [] for k in range(3)}
    for i in range(20):
        out = push_sessions(engine, {k: (sessions[k], frames[k][i], stamps[k][i], (k, i)) for k in range(3)})
        for k in range(3):
            together[k].append(out[k])
    for k in range(3):
        assert [steps(s) for s in together[k]] == [steps(s) for s in alone[k]]
        got = [e.tracks for s in together[k] for e in s.emitted]
        assert_same_tracks(got, [e.tracks for s in alone[k] for e in s.emitted])
    assert sum(s.rejected is not None for s in together[0] + together[2]) == 2
    assert sum(s.restart is not None for s in together[1]) == 2  # to the other size and back
    # Cameras 0 and 2 each lost one frame before their first window, so their windows fell due together; camera
    # 1's fell one frame earlier (and its stream restarted at frame 12): it ran alone.
    assert engine.batched_windows == {0: 3, 1: 0, 2: 3}
    with pytest.raises(ValueError, match="same settings"):  # a stream of another model cannot join
        engine.add_camera(3, StreamingTracker(tiny_model(), StreamConfig(model_resolution=RES, device="cpu")))
