"""Reports of the bag and replay evaluations: JSON, a Markdown table (per clip and the mean), and PNG overlays
of predicted tracks next to the ground truth (OpenCV)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cotracker3_core.evaluation.ground_truth import GroundTruth
from cotracker3_core.evaluation.scoring import Predictions, Queries

from ..debug_image import id_colours

__all__ = ["comparison_image", "markdown_report", "mean_row", "summarize_latency", "write_reports"]

#: Columns of the Markdown table: (header, key in a result's flat row, format).
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("clip", "clip", "{}"),
    ("mode", "mode", "{}"),
    ("frames", "frames", "{}"),
    ("queries", "queries", "{}"),
    ("AJ", "AJ", "{:.2f}"),
    ("δ_avg", "delta_avg", "{:.2f}"),
    ("OA", "OA", "{:.2f}"),
    ("missing pts", "missing_points", "{}"),
    ("step latency mean / max (ms)", "step_latency", "{}"),
)
_REPLAY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("dropped frames", "dropped_frames", "{}"),
    ("lag mean / p95 / max (ms)", "lag", "{}"),
)
#: Metrics shown in percent (x100), as papers do.
_PERCENT = {"AJ", "delta_avg", "OA"}


def summarize_latency(seconds: Sequence[float]) -> dict[str, float | None]:
    """mean / p50 / p95 / max of durations in seconds, as milliseconds (None when there are none)."""
    if not len(seconds):
        return {"mean_ms": None, "p50_ms": None, "p95_ms": None, "max_ms": None, "count": 0}
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return {
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
        "count": int(ms.size),
    }


def _ms(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.1f}"


def _flat_row(result: Mapping[str, Any]) -> dict[str, str]:
    metrics = result["metrics"]
    row: dict[str, str] = {}
    for _, key, fmt in _COLUMNS + _REPLAY_COLUMNS:
        if key in metrics:
            value = metrics[key]
            if key in _PERCENT:
                value = 100.0 * value if value is not None else float("nan")
            row[key] = fmt.format(value)
        elif key in result:
            row[key] = fmt.format(result[key])
    if "step_latency" in result:
        lat = result["step_latency"]
        row["step_latency"] = f"{_ms(lat.get('mean_ms'))} / {_ms(lat.get('max_ms'))}"
    if "lag" in result:
        lag = result["lag"]
        row["lag"] = f"{_ms(lag.get('mean_ms'))} / {_ms(lag.get('p95_ms'))} / {_ms(lag.get('max_ms'))}"
    return row


def mean_row(results: Sequence[Mapping[str, Any]], mode: str) -> dict[str, Any]:
    """Plain mean over clips of every numeric metric (the benchmark score) for the results of one mode."""
    chosen = [r for r in results if r["mode"] == mode]
    if not chosen:
        return {}
    keys = [k for k, v in chosen[0]["metrics"].items() if isinstance(v, (int, float))]
    means = {k: float(np.mean([r["metrics"][k] for r in chosen])) for k in keys}
    return {"mode": mode, "clips": len(chosen), "metrics": means}


def markdown_report(title: str, results: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]) -> str:
    """A Markdown page: settings, one table row per clip and mode, then the mean per mode (AJ, δ_avg, OA in %)."""
    replay = any("lag" in r for r in results)
    columns = _COLUMNS + (_REPLAY_COLUMNS if replay else ())
    lines = [f"# {title}", ""]
    for key, value in settings.items():
        lines.append(f"- {key}: `{value}`")
    lines += ["", "| " + " | ".join(c[0] for c in columns) + " |", "|" + " --- |" * len(columns)]
    for result in results:
        row = _flat_row(result)
        lines.append("| " + " | ".join(row.get(key, "") for _, key, _ in columns) + " |")
    for mode in dict.fromkeys(r["mode"] for r in results):
        mean = mean_row(results, mode)
        metrics = mean["metrics"]
        cells = {
            "clip": f"**mean ({mean['clips']} clips)**",
            "mode": mode,
            "AJ": f"**{100 * metrics['AJ']:.2f}**",
            "delta_avg": f"**{100 * metrics['delta_avg']:.2f}**",
            "OA": f"**{100 * metrics['OA']:.2f}**",
        }
        lines.append("| " + " | ".join(cells.get(key, "") for _, key, _ in columns) + " |")
    lines += [
        "",
        "AJ: average Jaccard, δ_avg: fraction of visible points within 1, 2, 4, 8, 16 px (averaged), OA: occlusion "
        "accuracy; all in % in the 256x256 TAP-Vid raster. missing pts: evaluated (query, frame) pairs without an "
        "estimate, scored as predicted occluded.",
        "",
    ]
    return "\n".join(lines)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_reports(
    out_dir: str | os.PathLike[str],
    title: str,
    results: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
) -> dict[str, Path]:
    """Write ``results.json`` (settings, per-clip results, means per mode) and ``results.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    modes = list(dict.fromkeys(r["mode"] for r in results))
    payload = {
        "title": title,
        "settings": dict(settings),
        "clips": list(results),
        "mean": {mode: mean_row(results, mode) for mode in modes},
    }
    json_path = out / "results.json"
    json_path.write_text(json.dumps(payload, indent=2, default=_json_default, allow_nan=True) + "\n")
    md_path = out / "results.md"
    md_path.write_text(markdown_report(title, results, settings))
    return {"json": json_path, "markdown": md_path}


# --- images --------------------------------------------------------------------------------------------------


def pick_frames(queries: Queries, num_frames: int, count: int = 4) -> list[int]:
    """``count`` frames spread over the evaluated part of the clip (after the earliest query frame)."""
    first = int(queries.frames.min()) + 1 if queries.count else 0
    first = min(first, num_frames - 1)
    return sorted({int(round(v)) for v in np.linspace(first, num_frames - 1, count)})


def _upscale(rgb: np.ndarray, xy: np.ndarray, min_side: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = rgb.shape[:2]
    factor = max(1, int(math.ceil(min_side / min(h, w))))
    if factor == 1:
        return rgb, xy
    big = cv2.resize(rgb, (w * factor, h * factor), interpolation=cv2.INTER_NEAREST)
    # Pixel centres: x_big = (x + 0.5) * factor - 0.5.
    return big, (xy + 0.5) * factor - 0.5


def _draw_points(rgb: np.ndarray, ids: np.ndarray, xy: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Dots (visible) or rings (occluded), outlined in black so they stand out on any texture."""
    out = rgb.copy()
    radius = max(3, round(min(out.shape[:2]) / 60))
    for (x, y), colour, vis in zip(xy, id_colours(ids), visible, strict=True):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        centre, colour = (round(float(x)), round(float(y))), tuple(int(c) for c in colour)
        if vis:
            cv2.circle(out, centre, radius + 1, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(out, centre, radius, colour, -1, cv2.LINE_AA)
        else:
            cv2.circle(out, centre, radius, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.circle(out, centre, radius, colour, 1, cv2.LINE_AA)
    return out


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def comparison_image(
    frames: Mapping[int, np.ndarray],
    gt: GroundTruth,
    queries: Queries,
    pred: Predictions,
    min_side: int = 320,
) -> np.ndarray:
    """(H', W', 3) RGB: one row per frame of ``frames`` (index -> RGB), prediction on the left, ground truth on
    the right; a point is a filled dot where (predicted / truly) visible, a ring where occluded, one colour per
    track id in both panels. Points not yet queried on a frame are left out."""
    rows = []
    for t, rgb in sorted(frames.items()):
        active = queries.frames <= t
        ids = queries.ids[active]
        pred_xy, gt_xy = pred.xy[active, t], gt.points_px[queries.rows[active], t]
        base, pred_big = _upscale(rgb, pred_xy, min_side)
        _, gt_big = _upscale(rgb, gt_xy, min_side)
        left = _draw_points(base, ids, pred_big, pred.visible[active, t])
        right = _draw_points(base, ids, gt_big, ~gt.occluded[queries.rows[active], t])
        gap = np.full((base.shape[0], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([_label(left, f"frame {t}: prediction"), gap, _label(right, "ground truth")], 1))
    if not rows:
        raise ValueError("no frame to draw")
    sep = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    out = [rows[0]]
    for row in rows[1:]:
        out += [sep, row]
    return np.concatenate(out, axis=0)


def write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise ValueError(f"could not write {path}")
    return path


def run_report_command(
    prog: str,
    evaluate: Callable[[argparse.Namespace], dict[str, Any]],
    args: argparse.Namespace,
    errors: tuple[type[Exception], ...] = (ValueError, FileNotFoundError),
) -> int:
    """The end of an evaluation command: run it, print the Markdown report (stdout) and where the files went
    (stderr); an expected error is one line on stderr and exit code 2."""
    try:
        report = evaluate(args)
    except errors as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(report["files"]["markdown"].read_text())
    print(f"wrote {report['files']['json']} and {report['files']['markdown']}", file=sys.stderr)
    return 0
