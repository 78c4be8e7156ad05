"""Convert TAP-Vid / RoboTAP pickles into rosbag2 bags, one bag per clip, for the bag and replay evaluations.

    python -m cotracker3_ros.tools.tapvid_to_bag robotap_split0.pkl bags/ --fps 15
    python -m cotracker3_ros.tools.tapvid_to_bag tapvid_davis.pkl bags/ --clips bear dog --storage sqlite3

Each clip becomes ``OUT/<clip name>/`` (a rosbag2 folder): camera images, CameraInfo and the ground truth as a
``cotracker3_msgs/msg/Tracks`` topic (layout: `cotracker3_ros.tools.bag_tools`). ``--sidecar`` also writes the ground
truth as ``OUT/<clip name>.gt.npz``, for tools that read it beside the bag (``cotracker3-bag-eval --gt``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from cotracker3_core.evaluation.ground_truth import GroundTruth, write_sidecar_ground_truth
from cotracker3_core.evaluation.tapvid_datasets import load_tapvid_pickle

from .bag_tools import (
    COMPRESSED_FORMATS,
    DEFAULT_CAMERA_INFO_TOPIC,
    DEFAULT_FRAME_ID,
    DEFAULT_GT_TOPIC,
    DEFAULT_IMAGE_TOPIC,
    DEFAULT_START_NS,
    DISTROS,
    RAW_ENCODINGS,
    STORAGES,
    BagWriteOptions,
    CliHelpFormatter,
    frame_stamps,
    safe_name,
    write_clip_bag,
)

PROG = "python -m cotracker3_ros.tools.tapvid_to_bag"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Convert TAP-Vid / RoboTAP pickles (clip name -> {video, points, occluded}) into rosbag2 bags "
        "with camera images, CameraInfo and ground-truth tracks, one bag per clip.",
        formatter_class=CliHelpFormatter,
    )
    parser.add_argument("pickle", type=Path, help="TAP-Vid / RoboTAP pickle (dict or list layout)")
    parser.add_argument("out", type=Path, help="output folder; each clip becomes OUT/<clip name>/")
    parser.add_argument("--clips", nargs="+", help="convert only these clips (names as in the pickle)")
    parser.add_argument("--max-clips", type=int, default=0, help="convert at most this many clips (0: all)")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate the images are stamped at")
    parser.add_argument("--start-ns", type=int, default=DEFAULT_START_NS, help="stamp of the first frame (ns, > 0)")
    parser.add_argument(
        "--encoding",
        choices=RAW_ENCODINGS + COMPRESSED_FORMATS,
        default="rgb8",
        help="image encoding: raw sensor_msgs/Image, or jpeg/png sensor_msgs/CompressedImage",
    )
    parser.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality with --encoding jpeg, 1..100")
    parser.add_argument("--image-topic", default=DEFAULT_IMAGE_TOPIC, help="camera topic")
    parser.add_argument("--camera-info-topic", default=DEFAULT_CAMERA_INFO_TOPIC, help="CameraInfo topic")
    parser.add_argument("--gt-topic", default=DEFAULT_GT_TOPIC, help="ground-truth Tracks topic; '' writes none")
    parser.add_argument("--sidecar", action="store_true", help="also write OUT/<clip>.gt.npz")
    parser.add_argument("--frame-id", default=DEFAULT_FRAME_ID, help="header frame_id of every message")
    parser.add_argument("--focal-px", type=float, default=0.0, help="nominal focal length for CameraInfo (0: K = 0)")
    parser.add_argument("--storage", choices=tuple(STORAGES), default="mcap", help="rosbag2 storage plugin")
    parser.add_argument("--distro", choices=tuple(DISTROS), default="kilted", help="message definitions written")
    parser.add_argument("--overwrite", action="store_true", help="replace existing bags of the same name")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def convert(args: argparse.Namespace) -> list[Path]:
    """Convert the clips ``args`` name; returns the bag folders written."""
    options = BagWriteOptions(
        fps=args.fps,
        start_ns=args.start_ns,
        encoding=args.encoding,
        image_topic=args.image_topic,
        camera_info_topic=args.camera_info_topic,
        gt_topic=args.gt_topic,
        frame_id=args.frame_id,
        focal_px=args.focal_px,
        storage=args.storage,
        distro=args.distro,
        jpeg_quality=args.jpeg_quality,
    )
    dataset = load_tapvid_pickle(args.pickle)
    names = dataset.names
    if not names:
        raise ValueError(f"{args.pickle} holds no clips: nothing to convert")
    if args.clips:
        unknown = [n for n in args.clips if n not in names]
        if unknown:
            shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
            raise ValueError(f"{args.pickle}: no clip named {', '.join(unknown)}; it holds {shown}")
        chosen = [names.index(n) for n in args.clips]
    else:
        chosen = list(range(len(names)))
    if args.max_clips > 0:
        chosen = chosen[: args.max_clips]
    targets = [args.out / safe_name(names[i]) for i in chosen]
    if len(set(targets)) != len(targets):
        raise ValueError("two clip names map to the same bag folder name; convert them separately with --clips")
    existing = [t for t in targets if t.exists()]
    if existing and not args.overwrite:
        raise ValueError(f"{existing[0]} exists already (use --overwrite to replace it)")
    written = []
    for index, target in tqdm(list(zip(chosen, targets, strict=True)), desc="clips", disable=args.no_progress):
        clip = dataset[index]
        if target.exists():
            _remove_bag(target)
        write_clip_bag(target, clip, options, source=f"{args.pickle.name}:{clip.name}")
        if args.sidecar:
            gt = GroundTruth(clip.points_px(None), clip.occluded, list(range(clip.num_tracks)), source=clip.name)
            stamps = frame_stamps(clip.num_frames, options.fps, options.start_ns)
            write_sidecar_ground_truth(target.with_name(target.name + ".gt.npz"), clip.name, gt, stamps, clip.size_hw)
        written.append(target)
    return written


def _remove_bag(path: Path) -> None:
    """Delete a bag folder written earlier (its metadata.yaml and storage files only)."""
    if not (path / "metadata.yaml").is_file():
        raise ValueError(f"{path} exists and is not a bag; not replacing it")
    for child in path.iterdir():
        if child.is_dir():
            raise ValueError(f"{path} holds a folder ({child.name}); not a bag written by this tool, not replacing it")
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        written = convert(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
