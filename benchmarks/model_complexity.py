"""Parameter count and FLOPs of the papers' network per configuration and input size.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` for one forward pass of batch 1
(2 FLOPs per multiply-add; convolutions and matrix products only: grid sampling, pooling and
element-wise operations are not counted). Run:

    python benchmarks/model_complexity.py [--sizes 832x512 416x256]

and it prints a Markdown table.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from mp3d_ros.model.config import ModelConfig, lite_mobilenet_fpn_config, mar_hrnet_w32_config
from mp3d_ros.model.network import build_network

CONFIGS: dict[str, ModelConfig] = {
    "hrnet_w32": mar_hrnet_w32_config(),
    "hrnet_w32 log_bins": mar_hrnet_w32_config(depth_head="log_bins"),
    "hrnet_w32 no PDQM": mar_hrnet_w32_config(pdqm=False),
    "mobilenet_fpn (lite)": lite_mobilenet_fpn_config(),
    "mobilenet_fpn no PDQM": lite_mobilenet_fpn_config(pdqm=False),
}


def count(cfg: ModelConfig, size: tuple[int, int]) -> tuple[int, int, float, float]:
    """(total params, backbone params, backbone GFLOPs, total GFLOPs) at input ``size`` (W, H)."""
    model = build_network(ModelConfig.from_dict({**cfg.to_dict(), "input_size": list(size)})).eval()
    params = sum(p.numel() for p in model.parameters())
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    x = torch.zeros(1, 3, size[1], size[0])
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            features = model.forward_features(x)
        backbone_flops = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            model.forward_head(features)
        head_flops = counter.get_total_flops()
    return params, backbone_params, backbone_flops / 1e9, (backbone_flops + head_flops) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["832x512", "416x256"], help="input sizes WxH")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    print("| configuration | input (WxH) | params (M) | backbone params (M) | backbone GFLOPs | total GFLOPs |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, cfg in CONFIGS.items():
        for size in sizes:
            params, backbone_params, backbone_gflops, gflops = count(cfg, size)
            print(f"| {name} | {size[0]}x{size[1]} | {params / 1e6:.2f} | {backbone_params / 1e6:.2f} | "
                  f"{backbone_gflops:.1f} | {gflops:.1f} |")


if __name__ == "__main__":
    main()
