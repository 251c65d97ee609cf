"""The networks: backbones, heads and the real-camera model."""
