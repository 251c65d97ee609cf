"""ONNX exports kept on disk, so ``backend="auto"`` runs onnxruntime on a CPU without a manual export.

On two CPU cores onnxruntime runs movenet-lift's network in 35 ms against torch's 64 ms
(benchmarks/RESULTS.md, issue 19). The first Estimator of a model on a CPU exports its network
(:func:`mp3d_ros.inference.export.export_onnx`, verified against torch, a few seconds) into the
cache; later ones load the file. A file is named by what it was exported from (the pipeline's
ONNX metadata: kind, joint set, input size, normalisation, outputs; every weight; the opset), so
other weights or another input size never load a stale graph.

The folder is ``$MP3D_ROS_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/mp3d_ros`` or
``~/.cache/mp3d_ros``; files live in its ``onnx/`` subfolder and may be deleted at any time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from mp3d_ros.inference.export import DEFAULT_OPSET, export_onnx
from mp3d_ros.inference.pipelines import Pipeline

__all__ = ["CACHE_ENV", "cache_dir", "cached_export", "export_key"]

LOGGER = logging.getLogger(__name__)
CACHE_ENV = "MP3D_ROS_CACHE_DIR"


def cache_dir() -> Path:
    """The cache folder (see the module docstring); not created here."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mp3d_ros"


def export_key(pipeline: Pipeline, opset: int = DEFAULT_OPSET) -> str:
    """SHA-256 (hex) of what an export of ``pipeline``'s network depends on."""
    digest = hashlib.sha256()
    digest.update(json.dumps(pipeline.onnx_metadata(), sort_keys=True).encode())
    digest.update(f"opset {opset}".encode())
    for name, value in pipeline.network().state_dict().items():
        digest.update(name.encode())
        digest.update(str(value.dtype).encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_export(pipeline: Pipeline, folder: Path | None = None, refresh: bool = False) -> Path:
    """The ONNX file of ``pipeline``'s network in the cache, exported first when missing (or when
    ``refresh``, replacing it).

    Raises:
        OSError: the cache folder cannot be created or written.
        ValueError: the export failed its check against torch.
        ImportError: ``onnx`` or ``onnxruntime`` is not installed.
    """
    width, height = pipeline.input_size
    folder = (folder or cache_dir()) / "onnx"
    path = folder / f"{pipeline.kind}-{width}x{height}-{export_key(pipeline)[:20]}.onnx"
    if path.is_file() and not refresh:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    export_onnx(pipeline, path)  # atomic: a concurrent reader never sees half a file
    LOGGER.info("exported the %s network for onnxruntime to %s in %.1f s", pipeline.kind, path,
                time.perf_counter() - started)
    return path
