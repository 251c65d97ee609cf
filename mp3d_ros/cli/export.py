"""``mp3d-export``: write a model's network as ONNX, verified against torch before it is kept.

    mp3d-export --checkpoint C.pt --out model.onnx [--float16-weights]
    mp3d-export --model movenet-lift --out movenet_lift.onnx
    mp3d-export --model movenet-lift --gpu --out movenet_lift_gpu.onnx   # for onnxruntime-gpu / TensorRT

What the file holds and how it is verified: :mod:`mp3d_ros.inference.export`.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Sequence

from mp3d_ros.cli.errors import BAD_INPUT, report_bad_input
from mp3d_ros.config import size_wxh
from mp3d_ros.inference.export import DEFAULT_OPSET, export_onnx
from mp3d_ros.inference.pipelines import load_pipeline


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mp3d-export", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint (.pt) of the papers' network")
    source.add_argument("--model", help="model name, e.g. movenet-lift")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--input-size", type=size_wxh, default=None, help="WxH (default: the model's CPU input)")
    size.add_argument("--gpu", action="store_true",
                      help="at the input the model runs at on a GPU (movenet-lift 512x384, a checkpoint's "
                           "cuda_input_size), for onnxruntime's CUDA and TensorRT providers")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--float16-weights", action="store_true",
                        help="store the weights as float16 (half the file; still computed in float32)")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="largest relative difference to torch that is accepted")
    args = parser.parse_args(argv)
    try:
        pipeline = load_pipeline(args.checkpoint or args.model, input_size=args.input_size, cuda=args.gpu)
        check = export_onnx(pipeline, args.out, args.opset, args.tolerance,
                            float16_weights=args.float16_weights)
    except BAD_INPUT as error:
        return report_bad_input("mp3d-export", error)
    size_mb = Path(args.out).stat().st_size / 2**20
    print(f"wrote {args.out} ({size_mb:.1f} MiB, {pipeline.kind}, {pipeline.joint_set}, "
          f"{pipeline.input_size[0]}x{pipeline.input_size[1]}, opset {args.opset})")
    for name, value in check.items():
        print(f"  {name:<16} max relative difference to torch {value:.2e}"
              + ("" if math.isfinite(value) else " (!)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
