"""Parity with the official CoTracker3 implementation, through the reference vectors.

The vectors (test/data, copied from ../shared/reference) were made by the official code with the weights
of the reference rule (`cotracker3_core.reference_weights`). Tolerances are those of the reference README:
raw coordinates 1e-3 px, visibility/confidence 1e-4, predictor tracks 5e-3 px, and boolean visibility may
flip only where the score sits within 1e-3 of its threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cotracker3_core import build_model
from cotracker3_core.checkpoint import official_layout
from cotracker3_core.embeddings import resample_time_embedding
from cotracker3_core.encoder import normalize_frames
from cotracker3_core.model import initial_estimates
from cotracker3_core.predictor import CoTrackerOnlinePredictor, CoTrackerPredictor
from cotracker3_core.reference_weights import apply_reference_weights
from cotracker3_core.streaming import StreamConfig, StreamingTracker

DATA = Path(__file__).parent / "data"
COORD_TOL = 1e-3
PROB_TOL = 1e-4
PREDICTOR_TOL = 5e-3

pytestmark = pytest.mark.slow


def load(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def video_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, T, 3, H, W) float."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float()


def reference_model(mode: str, **kwargs) -> torch.nn.Module:
    return apply_reference_weights(build_model(mode, **kwargs))


@pytest.fixture(scope="module")
def model_parity():
    return load("model_parity")


@pytest.fixture(scope="module")
def offline_run(model_parity):
    model = reference_model("offline")
    with torch.no_grad():
        out = model(video_tensor(model_parity["video"]), torch.from_numpy(model_parity["queries"])[None], iters=6)
    return model, out


def assert_close(actual, expected, tol, what):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    err = np.abs(actual - expected).max()
    assert err <= tol, f"{what}: max abs error {err:.3g} > {tol}"


def assert_flags_match(actual, expected, score, threshold, what):
    """Boolean flags agree, except where the score sits within 1e-3 of the threshold."""
    differ = np.asarray(actual) != np.asarray(expected)
    near = np.abs(np.asarray(score) - threshold) <= 1e-3
    assert not (differ & ~near).any(), f"{what}: {int((differ & ~near).sum())} flags flipped away from the threshold"


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_state_dict_layout_matches_official(mode):
    ours = official_layout(build_model(mode))
    reference = json.loads((DATA / "state_dict_layout.json").read_text())[mode]
    assert sorted(ours, key=lambda e: e["key"]) == sorted(reference, key=lambda e: e["key"])


def test_encoder_output(model_parity):
    model = reference_model("offline")
    with torch.no_grad():
        raw = model.encoder(normalize_frames(video_tensor(model_parity["video"])[0, :2]))
    assert_close(raw, model_parity["encoder_out_frames01"], 5e-5, "encoder frames 0-1")


def test_offline_intermediates(model_parity):
    ref = load("offline_intermediates")
    model = reference_model("offline")
    video = video_tensor(model_parity["video"])
    queries = torch.from_numpy(model_parity["queries"])[None]
    with torch.no_grad():
        assert_close(model.encoder(normalize_frames(video[0, :1])), ref["encoder_frame0"], 5e-5, "encoder frame 0")
        features = model.encode(video)
        pyramid = model.pyramid(features)
        frames, xy = queries[..., 0].long(), queries[..., 1:] / model.config.stride
        support = model.sample_support(pyramid, frames, xy)
        start = initial_estimates(xy, video.shape[1])
        corr = model.correlation(pyramid, support, start.coords)  # (1, T, N, 4 * 256)
        for level in range(4):
            emb = corr[..., level * 256 : (level + 1) * 256].reshape(-1, 256)
            assert_close(emb, ref[f"iter0_corr_embedding_level{level}"], 1e-4, f"corr embedding level {level}")
        time_embedding = resample_time_embedding(model.time_embedding, video.shape[1])
        tokens = model.transformer_input(pyramid, support, start, time_embedding)
        assert_close(tokens.transpose(1, 2), ref["iter0_transformer_input"], 1e-4, "transformer input")
        iterations = model.refine(pyramid, support, start, iters=6)
    previous = start
    for k, it in enumerate(iterations):
        delta = torch.cat(
            [
                it.coords / model.config.stride - previous.coords,
                (it.vis_logits - previous.vis_logits)[..., None],
                (it.conf_logits - previous.conf_logits)[..., None],
            ],
            dim=-1,
        )
        expected = ref["transformer_deltas"][k]  # (1, N, T, 4)
        assert_close(delta.transpose(1, 2)[..., :2], expected[..., :2], COORD_TOL / 4, f"iteration {k} dxy")
        assert_close(delta.transpose(1, 2)[..., 2:], expected[..., 2:], PROB_TOL, f"iteration {k} dvis/dconf")
        previous = it._replace(coords=it.coords / model.config.stride)


def test_offline_model_outputs(model_parity, offline_run):
    _, out = offline_run
    assert_close(out.coords, model_parity["offline_coords"], COORD_TOL, "offline coords")
    assert_close(out.visibility, model_parity["offline_vis"], PROB_TOL, "offline visibility")
    assert_close(out.confidence, model_parity["offline_conf"], PROB_TOL, "offline confidence")


def test_online_model_outputs(model_parity):
    model = reference_model("online")
    with torch.no_grad():
        out = model(video_tensor(model_parity["video"]), torch.from_numpy(model_parity["queries"])[None], iters=6)
    assert [w.start for w in out.windows] == [0, 8]
    assert_close(out.coords, model_parity["online_coords"], COORD_TOL, "online coords")
    assert_close(out.visibility, model_parity["online_vis"], PROB_TOL, "online visibility")
    assert_close(out.confidence, model_parity["online_conf"], PROB_TOL, "online confidence")


@pytest.fixture(scope="module")
def predictor_parity():
    return load("predictor_parity")


def test_online_predictor(predictor_parity):
    ref = predictor_parity
    resolution = tuple(int(v) for v in ref["model_resolution"])
    predictor = CoTrackerOnlinePredictor(model_resolution=resolution)
    apply_reference_weights(predictor.model)
    video = video_tensor(ref["video_small"])
    queries = torch.from_numpy(ref["queries_small"])[None]
    assert predictor(video[:, :16], is_first_step=True, queries=queries) == (None, None)
    for ind in range(0, video.shape[1] - predictor.step, predictor.step):
        tracks, visible = predictor(video[:, ind : ind + 2 * predictor.step])
    assert_close(tracks, ref["online_tracks"], PREDICTOR_TOL, "online predictor tracks")
    score = (predictor._vis.sigmoid() * predictor._conf.sigmoid()).numpy()
    assert_flags_match(visible, ref["online_visible"], score, 0.6, "online predictor visible")


def test_offline_predictor_grid_backward(predictor_parity):
    ref = predictor_parity
    predictor = CoTrackerPredictor(model_resolution=tuple(int(v) for v in ref["model_resolution"]))
    apply_reference_weights(predictor.model)
    video = video_tensor(ref["video_small"])[:, :16]
    tracks, visible = predictor(video, grid_size=4, grid_query_frame=2, backward_tracking=True)
    assert_close(tracks, ref["offline_grid_tracks"], PREDICTOR_TOL, "offline grid tracks")
    assert (visible.numpy() == ref["offline_grid_visible"]).mean() > 0.99
    assert_flags_match(visible, ref["offline_grid_visible"], np.full(visible.shape, 0.5), 0.9, "grid visible")


def test_offline_predictor_queries(predictor_parity):
    ref = predictor_parity
    predictor = CoTrackerPredictor(model_resolution=tuple(int(v) for v in ref["model_resolution"]))
    apply_reference_weights(predictor.model)
    video = video_tensor(ref["video_small"])[:, :16]
    queries = torch.from_numpy(ref["queries_small"])[None]
    queries = queries[:, queries[0, :, 0] < 16]
    tracks, visible = predictor(video, queries=queries)
    assert_close(tracks, ref["offline_query_tracks"], PREDICTOR_TOL, "offline query tracks")
    assert_flags_match(visible, ref["offline_query_visible"], np.full(visible.shape, 0.5), 0.9, "query visible")


def test_streaming_engine_steps():
    """Each frame's values at the step that emits it, the refined values one step later, and the flush."""
    ref = load("stream_steps")
    resolution = tuple(int(v) for v in ref["model_resolution"])
    model = reference_model("online", model_resolution=resolution)
    tracker = StreamingTracker(model, StreamConfig(model_resolution=resolution, device="cpu"))
    queries = ref["queries_small"]
    assert (queries[:, 0] == 0).all()
    steps = []
    for i, frame in enumerate(ref["video_small"]):
        emitted = tracker.push(frame, stamp=1_000 + i)
        if i == 0:
            ids = tracker.add_queries(queries[:, 1:], stamp=1_000)
        if emitted:
            steps.append(emitted)
    steps.append(tracker.flush())
    starts = ref["window_starts"]
    assert len(steps) == len(starts)
    seen_new, seen_refined = set(), set()
    for k, emitted in enumerate(steps):
        window = ref[f"step{k}_coords"].shape[1]
        expected_frames = list(range(starts[k], starts[k] + window))
        assert [f.frame_index for f in emitted] == expected_frames
        for f in emitted:
            j = f.frame_index - starts[k]
            assert f.stamp == 1_000 + f.frame_index
            assert f.ids.tolist() == ids
            assert_close(f.xy, ref[f"step{k}_coords"][0, j], COORD_TOL, f"step {k} frame {f.frame_index} xy")
            assert_close(f.visibility, ref[f"step{k}_vis"][0, j], PROB_TOL, f"step {k} frame {f.frame_index} vis")
            assert_close(f.confidence, ref[f"step{k}_conf"][0, j], PROB_TOL, f"step {k} frame {f.frame_index} conf")
            assert (f.visible == (f.visibility * f.confidence > 0.6)).all()
            target = seen_refined if f.refined else seen_new
            assert f.frame_index not in target, "a frame was emitted twice with the same flag"
            target.add(f.frame_index)
            if f.refined:
                assert f.frame_index in seen_new
    assert seen_new == set(range(len(ref["video_small"])))
    # The latest value of each frame is the official predictor's final answer.
    last = {f.frame_index: f for emitted in steps for f in emitted}
    final = np.stack([last[i].xy for i in sorted(last)])
    assert_close(final, ref["final_coords"][0], COORD_TOL, "final coords")
