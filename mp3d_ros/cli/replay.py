"""``mp3d-replay``: the whole pipeline over a rosbag2 recording, without ROS.

    mp3d-replay BAG [--out OUT_BAG] [--report DIR] [--model M] [--device cuda]

What is read, paired, skipped and written is described in :mod:`mp3d_ros.evaluation.replay`.
Exit status: 0 when the whole bag was read; 1 when the replay finished but parts of the bag could
not be read (damaged storage: the summary names them; every frame read is in the outputs and the
report); 2 for bad input (one ``mp3d-replay: error: ...`` line on stderr, nothing written); 130 when
interrupted (what was processed is written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from mp3d_ros.evaluation.floor_source import TF_TYPE, FloorSource
from mp3d_ros.geometry.floor import FloorPlane
from mp3d_ros.evaluation.replay import (
    ReplayInputError,
    check_output_bag,
    open_replay,
    replay_bag,
)
from mp3d_ros.evaluation.memory import bound_malloc
from mp3d_ros.evaluation.replay_report import summary_text, write_report
from mp3d_ros.inference.estimator import Estimator
from mp3d_ros.messages.pairing import DEFAULT_SYNC_SLOP_S
from mp3d_ros.tracking.tracker import Tracker


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mp3d-replay", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("bag", help="rosbag2 folder (sqlite3 or MCAP storage)")
    parser.add_argument("--out", help="write PoseArray3D + MarkerArray outputs to this new bag")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                        help="storage of the output bag")
    parser.add_argument("--copy-inputs", action="store_true",
                        help="also copy the image, CameraInfo and ground-truth topics into --out")
    parser.add_argument("--image-topic", help="default: the bag's Image/CompressedImage topic")
    parser.add_argument("--camera-info-topic", help="default: the bag's CameraInfo topic")
    parser.add_argument("--gt-topic", help="default: the bag's PoseArray3D topic, if any")
    parser.add_argument("--rectified", action="store_true",
                        help="images are rectified: use CameraInfo P instead of K + D")
    parser.add_argument("--model", default=None,
                        help="model name or file for the Estimator (default: its default model)")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime"))
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--no-tracking", action="store_true", help="report people without track ids")
    parser.add_argument("--report", help="folder for the Markdown summary, metrics JSON and plots")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many images")
    floor = parser.add_argument_group(
        "floor", "depth from the floor for standing people: the camera's pose over it from the bag's "
                 "/tf and /tf_static, or a fixed camera height and pitch")
    floor.add_argument("--ground-frame", help="frame whose z = 0 plane is the floor, e.g. base_footprint "
                                              "(the sample bag's is 'ground')")
    floor.add_argument("--camera-height-m", type=float, help="camera height over the floor (fixed camera)")
    floor.add_argument("--camera-pitch-deg", type=float, default=0.0,
                       help="with --camera-height-m: downward pitch of the optical axis")
    floor.add_argument("--floor-tilt-sigma-rad", type=float, default=FloorPlane.tilt_sigma_rad,
                       help="standard deviation of the floor plane's orientation about each horizontal "
                            "axis (the node's floor_tilt_sigma_rad)")
    floor.add_argument("--floor-height-sigma-m", type=float, default=FloorPlane.height_sigma_m,
                       help="standard deviation of the camera's height over the floor (the node's "
                            "floor_height_sigma_m)")
    parser.add_argument("--sync-slop-s", type=float, default=DEFAULT_SYNC_SLOP_S,
                        help="largest stamp difference, seconds, pairing an image with its CameraInfo "
                             "(the node's sync_slop_s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.ground_frame and args.camera_height_m is not None:
        parser.error("give either --ground-frame or --camera-height-m, not both")
    if args.camera_height_m is not None and not 0.0 < args.camera_height_m < 100.0:
        parser.error(f"--camera-height-m must be in (0, 100) m, got {args.camera_height_m}")
    for name, value, high in (("--floor-tilt-sigma-rad", args.floor_tilt_sigma_rad, 0.5),
                              ("--floor-height-sigma-m", args.floor_height_sigma_m, 1.0)):
        if not 0.0 <= value <= high:
            parser.error(f"{name} must be in [0, {high}], got {value}")
    noise = {"tilt_sigma_rad": args.floor_tilt_sigma_rad, "height_sigma_m": args.floor_height_sigma_m}
    floor = (FloorSource(ground_frame=args.ground_frame, **noise) if args.ground_frame else
             FloorSource.from_height_pitch(args.camera_height_m, args.camera_pitch_deg, **noise)
             if args.camera_height_m is not None else None)
    bound_malloc()  # before the model and the bag allocate: see mp3d_ros.evaluation.memory
    try:
        # Refuse bad input before loading the model.
        source, _, _ = open_replay(args.bag, args.image_topic, args.camera_info_topic, args.gt_topic)
        if args.ground_frame and TF_TYPE not in source.topic_types.values():
            raise ReplayInputError(f"{args.bag}: --ground-frame {args.ground_frame}, but the bag has no "
                                   f"{TF_TYPE} topic (/tf or /tf_static) to find the floor from")
        if args.out:
            check_output_bag(args.out)
        estimator = Estimator(args.model, backend=args.backend, device=args.device)
        print(f"model {estimator.model_name} on {estimator.backend_name}")
        result = replay_bag(
            args.bag, estimator.estimate, out_bag=args.out, image_topic=args.image_topic,
            camera_info_topic=args.camera_info_topic, ground_truth_topic=args.gt_topic,
            rectified=args.rectified, copy_inputs=args.copy_inputs, storage=args.storage,
            tracker=None if args.no_tracking else Tracker(), max_frames=args.max_frames,
            sync_slop_s=args.sync_slop_s, floor=floor, decode_ahead=estimator.device.type == "cuda",
        )
    except ReplayInputError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(summary_text(result, Path(args.bag).name))
    if args.report:
        try:
            write_report(result, args.report, Path(args.bag).name)
        except OSError as error:
            parser.exit(2, f"{parser.prog}: error: {args.report}: cannot write the report ({error})\n")
        print(f"report written to {args.report}")
    if args.out:
        print(f"outputs written to {args.out}")
    if result.interrupted:
        return 130
    if result.read_damage:
        print(f"{parser.prog}: warning: {args.bag}: parts of the bag could not be read "
              f"({len(result.read_damage)} listed under 'could not read')", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
