"""The networks: backbones, heads, MoveNet, the lifter, checkpoints and the pose-map codec."""
