"""The streaming engine's newest-frame updates (StreamConfig.update = "newest", cotracker3_core.newest).

Every push answers its own frame at once (never refined); the encoder runs once per frame; the state stays
flat; queries join and leave as in window mode; refusals are window mode's, word for word; and the periodic
re-estimate emits exactly what window mode with that step emits.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from cotracker3_core import build_model
from cotracker3_core.config import preset
from cotracker3_core.stream_config import DEFAULT_SETTINGS
from cotracker3_core.streaming import StreamConfig, StreamingTracker

TINY = preset("tiny")
RES = (32, 48)


def make(update: str = "newest", resolution=RES, iters: int = 3, arch=None, **kw) -> StreamingTracker:
    torch.manual_seed(0)
    model = build_model("online", model_resolution=resolution, **{**TINY, **(arch or {})})
    return StreamingTracker(
        model, StreamConfig(model_resolution=resolution, device="cpu", iters=iters, update=update, **kw)
    )


def frames(n: int, h: int = 40, w: int = 60, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w + n, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[:, i : i + w]) for i in range(n)]  # a panning camera


def script(tracker: StreamingTracker, video: list[np.ndarray]) -> list[list]:
    """Push `video` with queries added (newest frame, an older frame) and removed mid-stream; the emissions
    of every push."""
    out = []
    for i, f in enumerate(video):
        out.append(tracker.push(f, stamp=1000 + i))
        if i == 0:
            tracker.add_queries([[10, 10], [30, 20], [50, 30]])
        if i == 5:
            tracker.add_queries([[20, 15]])
        if i == 20:
            tracker.add_queries([[12, 25]], stamp=tracker.window_stamps[-3], ids=[100])
        if i == 30:
            tracker.remove_queries([1])
    return out


def test_default_is_window_and_checkpoints_may_recommend_newest():
    assert DEFAULT_SETTINGS["update"] == "window"
    assert StreamConfig().update is None and StreamConfig().resolved(recommended={}).update == "window"
    assert StreamConfig().resolved(recommended={"update": "newest"}).update == "newest"
    assert StreamConfig(update="window").resolved(recommended={"update": "newest"}).update == "window"


@pytest.mark.parametrize(
    "bad", [dict(update="latest"), dict(newest_iters=0), dict(reestimate_every=3), dict(reestimate_every=-1)]
)
def test_config_validation(bad):
    with pytest.raises(ValueError):
        StreamConfig(**bad)


def test_reestimate_period_within_half_the_window():
    with pytest.raises(ValueError, match="reestimate_every"):
        StreamConfig(window_len=8, reestimate_every=8)
    with pytest.raises(ValueError, match="reestimate_every"):
        make(reestimate_every=16)


def test_each_frame_answered_on_its_push_and_encoded_once():
    tracker = make()
    encoded = []
    tracker.model.encoder.register_forward_hook(lambda m, inp, out: encoded.append(inp[0].shape[0]))
    video = frames(40)
    out = script(tracker, video)
    assert sum(encoded) == len(video)
    for i, emitted in enumerate(out):
        assert len(emitted) == 1
        (ft,) = emitted
        assert ft.frame_index == i and ft.stamp == 1000 + i and not ft.refined
        assert ft.xy.shape == (len(ft.ids), 2) and ft.xy.dtype == np.float32 and np.isfinite(ft.xy).all()
    assert out[0][0].ids.tolist() == []  # queries added after the push of their frame join at the next one
    assert out[1][0].ids.tolist() == [0, 1, 2]
    assert out[6][0].ids.tolist() == [0, 1, 2, 3]
    assert out[21][0].ids.tolist() == [0, 1, 2, 3, 100]
    assert out[31][0].ids.tolist() == [0, 2, 3, 100]
    assert tracker.flush() == []  # nothing left to answer


def test_newest_iters_refine_only_the_newest_frame():
    tracker = make(newest_iters=2)
    calls = []
    tracker.model.transformer.register_forward_hook(lambda *a: calls.append(1))
    video = frames(20)
    script(tracker, video[:19])
    calls.clear()
    before = tracker.state.newest.coords.clone()
    tracker.push(video[19], stamp=5000)
    assert len(calls) == 2  # newest_iters passes of the transformer, no window iterations
    after = tracker.state.newest.coords
    assert torch.equal(after[:, :-1], before[:, 1:])  # the older frames keep their estimates


def test_empty_query_set_idles_and_still_answers_every_frame():
    tracker = make(reestimate_every=4)
    calls = []
    tracker.model.transformer.register_forward_hook(lambda *a: calls.append(1))
    emitted = [tracker.push(f, stamp=i + 1) for i, f in enumerate(frames(30))]
    assert not calls
    assert [e[0].frame_index for e in emitted] == list(range(30)) and all(len(e) == 1 for e in emitted)
    assert all(len(e[0].ids) == 0 for e in emitted)


def test_add_and_remove_free_memory_and_bound_the_window():
    tracker = make()
    video = frames(30)
    script(tracker, video[:25])
    assert len(tracker.window_stamps) == tracker.model.window_len
    before = tracker.state_nbytes()
    tracker.remove_queries([0])
    assert tracker.state_nbytes() < before
    with pytest.raises(ValueError, match="not a frame in the window"):
        tracker.add_queries([[5, 5]], stamp=1000)  # frame 0 left the window


@pytest.mark.parametrize("period", [2, 4])
def test_periodic_reestimate_equals_window_mode(period):
    video = frames(48)
    newest = script(make(reestimate_every=period), video)
    window = script(make(update="window", step=period), video)
    for i, emitted in enumerate(newest):
        assert emitted[0].frame_index == i and not emitted[0].refined
        assert all(ft.refined for ft in emitted[1:])
    refined = [ft for emitted in newest for ft in emitted[1:]]
    expected = [ft for emitted in window for ft in emitted]
    assert len(refined) == len(expected) > 0
    for got, want in zip(refined, expected, strict=True):
        assert got.frame_index == want.frame_index and got.ids.tolist() == want.ids.tolist()
        np.testing.assert_allclose(got.xy, want.xy, atol=1e-4, rtol=0)
        np.testing.assert_allclose(got.visibility, want.visibility, atol=1e-5, rtol=0)
        np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-5, rtol=0)


def test_per_frame_path_continues_from_the_reestimate():
    tracker = make(reestimate_every=4)
    out = script(tracker, frames(16))  # the first window is full at frame 15
    last = out[15][1:]
    assert [ft.frame_index for ft in last] == list(range(16))
    cache = tracker.state.newest
    scale = np.array([(60 - 1) / (48 - 1), (40 - 1) / (32 - 1)], dtype=np.float32)
    stride = tracker.model.config.stride
    for k, ft in enumerate(last):
        rows = [tracker.query_ids.index(i) for i in ft.ids.tolist()]
        np.testing.assert_allclose(cache.coords[0, k, rows].numpy() * stride * scale, ft.xy, atol=1e-4)


def snapshot(tracker: StreamingTracker):
    return (tracker.query_ids, tracker.frames_seen, tracker.window_stamps, tracker.state_nbytes(), tracker.frame_size)


BAD_CALLS = [
    lambda t: t.push(np.zeros((40, 60), np.uint8), 10_000),
    lambda t: t.push(np.zeros((40, 60, 3), np.int32), 10_000),
    lambda t: t.push(np.full((40, 60, 3), np.nan, np.float32), 10_000),
    lambda t: t.push(np.zeros((30, 60, 3), np.uint8), 10_000),
    lambda t: t.push(np.zeros((40, 60, 3), np.uint8), 1005),
    lambda t: t.add_queries([[1.0, float("nan")]]),
    lambda t: t.add_queries([[100.0, 5.0]]),
    lambda t: t.add_queries([[5.0, 5.0]], stamp=12_345),
    lambda t: t.add_queries([[5.0, 5.0]], ids=[0]),
    lambda t: t.add_queries(np.ones((5_000, 2), np.float32)),
    lambda t: t.add_queries(np.ones((3, 2), np.float32)),  # over max_points (6)
    lambda t: t.remove_queries([99]),
    lambda t: t.add_mask_queries(np.ones((40, 60), np.uint8), 3),  # 9 points > 4 per request
]


@pytest.mark.parametrize("call", range(len(BAD_CALLS)))
def test_refusals_as_in_window_mode(call):
    errors = {}
    for update in ("window", "newest"):
        tracker = make(update=update, max_points=6, max_points_per_request=4)
        script(tracker, frames(12))
        before = snapshot(tracker)
        with pytest.raises(ValueError) as info:
            BAD_CALLS[call](tracker)
        errors[update] = (type(info.value), str(info.value))
        assert snapshot(tracker) == before
        out = tracker.push(frames(13)[12], stamp=5000)  # and the engine keeps serving
        assert update == "window" or out[0].frame_index == 12
    assert errors["window"] == errors["newest"]


def test_reset_forgets_everything():
    tracker = make()
    script(tracker, frames(10))
    tracker.reset()
    assert tracker.query_ids == [] and tracker.frame_size is None and tracker.frames_seen == 0
    assert tracker.state.newest.coords.shape[2] == 0
    assert tracker.push(np.zeros((20, 20, 3), np.uint8), stamp=1)[0].frame_index == 0


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_state_flat_over_5000_frames():
    # A smaller window and network keep 5,000 pushes quick; the state's layout does not depend on them.
    small = dict(window_len=4, time_depth=1, space_depth=1, corr_levels=2, corr_radius=1)
    tracker = make(resolution=(32, 32), arch=small)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (20, 60, 3), dtype=np.uint8)
    # The encoder's cost is not what this measures: every frame gets fresh copies of one frame's features.
    with torch.inference_mode():
        pyramid = tracker._encode(base[:, :20])
    tracker._encode = lambda image: [level.clone() for level in pyramid]
    sizes, rss = {}, {}
    started = time.perf_counter()
    for i in range(5000):
        out = tracker.push(np.roll(base, i % 40, axis=1)[:, :20], stamp=i + 1)
        assert len(out) == 1 and out[0].frame_index == i
        if i == 0:
            tracker.add_queries(rng.uniform(0, 19, (8, 2)))
        if i + 1 in (100, 1000, 5000):
            sizes[i + 1] = (tracker.state_nbytes(), len(tracker.window_stamps), len(tracker.state.stamps))
            rss[i + 1] = rss_bytes()
    print(f"state {sizes} in {time.perf_counter() - started:.1f} s")
    assert sizes[100] == sizes[1000] == sizes[5000]
    assert (rss[5000] - rss[1000]) / 2**20 <= 20


def test_node_parameters_mirror_the_mode():
    from cotracker3_ros.params import PARAMS, stream_config_from_params

    values = {p.name: p.default for p in PARAMS}
    default = stream_config_from_params(values)
    assert default.update is None and default.newest_iters == 1 and default.reestimate_every == 0
    config = stream_config_from_params({**values, "update": "newest", "newest_iters": 2, "reestimate_every": 4})
    assert (config.update, config.newest_iters, config.reestimate_every) == ("newest", 2, 4)
    with pytest.raises(ValueError, match="update"):
        stream_config_from_params({**values, "update": "sometimes"})
    with pytest.raises(ValueError, match="reestimate_every"):
        stream_config_from_params({**values, "reestimate_every": 3})


@pytest.mark.parametrize("arch", [TINY, preset("lite"), {**TINY, "time_depth": 1, "space_depth": 1}])
def test_transformer_last_frames_equal_the_full_pass(arch):
    torch.manual_seed(0)
    model = build_model("online", **arch).eval()
    tokens = torch.randn(2, 5, model.window_len, model.config.transformer_input_dim)
    with torch.inference_mode():
        full = model.transformer(tokens)
        for last in (1, 3):
            torch.testing.assert_close(model.transformer(tokens, last), full[:, :, -last:], atol=1e-5, rtol=1e-5)
