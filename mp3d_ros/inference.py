"""``Estimator``: an RGB image and its live intrinsics in, :class:`~mp3d_ros.people.People` out.

Two models share the output, so callers never care which one runs:

- ``movenet-lift`` (the default): MoveNet MultiPose 2D + the mocap-trained lifter + geometric root
  depth (:mod:`mp3d_ros.model.movenet_lift`), shipped in ``models/``;
- the papers' network (:mod:`mp3d_ros.model.network`) from a training checkpoint (``.pt``).

and two backends run their network: ``torch`` (eval mode, inference mode, channels-last, half
precision on GPU, optional CUDA-graph replay or ``torch.compile``) and ``onnxruntime`` (a file
written by ``mp3d-export``; providers tried in the order TensorRT, CUDA, CPU). Pre-processing
(letterbox + normalisation, :mod:`mp3d_ros.preprocess`) runs on the network's device, decoding in
torch; the letterbox's intrinsics come from :mod:`mp3d_ros.camera`, and results are in the source
image's pixels and the camera's metres.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mp3d_ros.camera import Intrinsics
from mp3d_ros.people import People
from mp3d_ros.pipelines import Pipeline, input_camera_matrices, load_pipeline, pipeline_from_onnx_metadata
from mp3d_ros.preprocess import check_rgb_image, letterbox_batch

__all__ = ["DEFAULT_MODEL", "Estimator", "TorchRunner", "OnnxRunner"]

LOGGER = logging.getLogger(__name__)
DEFAULT_MODEL = "movenet-lift"
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ONNX_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class _Graphed:
    """One CUDA graph of ``function(*inputs)`` for fixed input shapes: replay skips kernel launches."""

    def __init__(self, function, inputs: tuple[torch.Tensor, ...]) -> None:
        self.static_inputs = tuple(t.clone() for t in inputs)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm-up outside the graph (cuDNN autotuning, allocator)
                function(*self.static_inputs)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_outputs = function(*self.static_inputs)

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for static, value in zip(self.static_inputs, inputs):
            static.copy_(value)
        self.graph.replay()
        return self.static_outputs


class TorchRunner:
    """Runs a pipeline's network in torch on ``device`` at ``dtype``.

    With ``cuda_graph`` the network *and* the pipeline's device-side decoding are captured as one
    CUDA graph per input shape, and :meth:`__call__` returns the decoded tensors
    (``fused_decode``); otherwise it returns the network's maps.
    """

    def __init__(self, pipeline: Pipeline, device: torch.device, dtype: torch.dtype,
                 cuda_graph: bool = False, compile_network: bool = False) -> None:
        if cuda_graph and device.type != "cuda":
            raise ValueError("cuda_graph=True needs device='cuda'")
        module = pipeline.network().to(device=device, dtype=dtype).eval()
        module = module.to(memory_format=torch.channels_last)
        if compile_network:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True  # folds batch norms into convolutions
            module = torch.compile(module)
        self.module, self.pipeline, self.device, self.dtype = module, pipeline, device, dtype
        self.fused_decode = cuda_graph
        self._graphs: dict[tuple[tuple[int, ...], ...], _Graphed] = {}
        self.name = f"torch:{device.type}:{_dtype_name(dtype)}" + (":cuda-graph" if cuda_graph else "") \
            + (":compiled" if compile_network else "")

    def _network_and_decode(self, batch: torch.Tensor, K_input: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.pipeline.device_decode(self.module(batch), K_input)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor, K_input: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        batch = batch.to(self.dtype).contiguous(memory_format=torch.channels_last)
        if not self.fused_decode:
            return self.module(batch)
        key = (tuple(batch.shape), tuple(K_input.shape))
        if key not in self._graphs:
            self._graphs[key] = _Graphed(self._network_and_decode, (batch, K_input))
        return self._graphs[key](batch, K_input)


class OnnxRunner:
    """Runs an exported network with onnxruntime, on the best available execution provider."""

    def __init__(self, session: Any, output_names: Sequence[str]) -> None:
        self.session = session
        self.output_names = list(output_names)
        self.input_name = session.get_inputs()[0].name
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.fused_decode = False
        self.name = f"onnxruntime:{session.get_providers()[0]}"

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feed = {self.input_name: batch.detach().to("cpu", torch.float32).contiguous().numpy()}
        outputs = self.session.run(self.output_names, feed)
        return tuple(torch.from_numpy(np.ascontiguousarray(o)) for o in outputs)


def _dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in PRECISIONS.items()}[dtype]


def open_onnx_session(path: Path, device: torch.device, threads: int | None = None) -> Any:
    """An onnxruntime session of ``path`` with providers TensorRT -> CUDA -> CPU as available."""
    import onnxruntime

    available = set(onnxruntime.get_available_providers())
    wanted = ONNX_PROVIDERS if device.type == "cuda" else ONNX_PROVIDERS[-1:]
    providers = [p for p in wanted if p in available]
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        raise ValueError(f"model {path} is corrupt or not an ONNX model: {error}") from error
    LOGGER.info("onnxruntime providers for %s: %s (available: %s)", path.name,
                session.get_providers(), sorted(available))
    return session


class Estimator:
    """People in images from one camera (any camera: intrinsics are given per frame).

    Args:
        model_path: ``"movenet-lift"`` (default), a checkpoint of the papers' network (``.pt``), or
            an ONNX file from ``mp3d-export``.
        backend: ``"auto"`` (onnxruntime for ``.onnx`` files, torch otherwise), ``"torch"`` or
            ``"onnxruntime"``.
        device: ``"cuda"`` or ``"cpu"``; default CUDA when available.
        precision: ``"fp16"``, ``"bf16"`` or ``"fp32"``; default fp16 on CUDA, fp32 on CPU.
        input_size: network input (W, H), multiples of 32; default the model's own. A fixed-size
            ONNX model refuses another size.
        joint_set: refuse a model predicting another joint set (default: accept any).
        max_people: most people reported per image.
        cuda_graph: replay the network and the device-side decoding as one CUDA graph per input
            shape (CUDA only); ``last_timings_ms["network"]`` then includes that decoding.
        compile_network: ``torch.compile`` the network (batch norms folded).
        threads: CPU threads for torch / onnxruntime. Default on CPU: half the cores (at least
            one), because OpenMP threads that spin-wait collapse (20x slower measured on 2 cores)
            when a camera driver or RViz competes for the same cores.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        backend: str = "auto",
        device: str | None = None,
        precision: str | None = None,
        input_size: tuple[int, int] | None = None,
        joint_set: str | None = None,
        max_people: int = 20,
        cuda_graph: bool = False,
        compile_network: bool = False,
        threads: int | None = None,
    ) -> None:
        model = str(model_path) if model_path is not None else DEFAULT_MODEL
        if backend not in ("auto", "torch", "onnxruntime"):
            raise ValueError(f"backend must be auto, torch or onnxruntime, got {backend!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was asked for but torch sees no CUDA GPU")
        precision = precision or ("fp16" if self.device.type == "cuda" else "fp32")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if threads is None and self.device.type == "cpu":
            threads = max(1, (os.cpu_count() or 2) // 2)
        if threads:
            torch.set_num_threads(int(threads))
        is_onnx = model.endswith(".onnx")
        if backend == "auto":
            backend = "onnxruntime" if is_onnx else "torch"
        if backend == "onnxruntime" and not is_onnx:
            raise ValueError(f"backend onnxruntime needs an .onnx model, got {model!r} "
                             "(write one with mp3d-export)")
        if backend == "torch" and is_onnx:
            raise ValueError(f"backend torch cannot run the ONNX file {model}")
        if is_onnx:
            path = Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"model {path} does not exist")
            session = open_onnx_session(path, self.device, threads)
            metadata = session.get_modelmeta().custom_metadata_map
            self.pipeline = pipeline_from_onnx_metadata(metadata, path, max_people)
            if input_size is not None and tuple(input_size) != self.pipeline.input_size:
                raise ValueError(f"model {path} was exported for input size "
                                 f"{self.pipeline.input_size}, not {tuple(input_size)}")
            self.runner: TorchRunner | OnnxRunner = OnnxRunner(session, self.pipeline.output_names)
        else:
            self.pipeline = load_pipeline(model, input_size=input_size, max_people=max_people)
            self.runner = TorchRunner(self.pipeline, self.device, PRECISIONS[precision],
                                      cuda_graph=cuda_graph, compile_network=compile_network)
        if joint_set is not None and self.pipeline.joint_set != joint_set:
            raise ValueError(f"model {model} predicts joint set {self.pipeline.joint_set!r}, "
                             f"not {joint_set!r}")
        self.model_name = model
        self.last_timings_ms: dict[str, float] = {}
        LOGGER.info("Estimator: model %s on %s, input %s", model, self.backend_name,
                    self.pipeline.input_size)

    @property
    def backend_name(self) -> str:
        return self.runner.name

    @property
    def input_size(self) -> tuple[int, int]:
        return self.pipeline.input_size

    @property
    def joint_set(self) -> str:
        return self.pipeline.joint_set

    def estimate(self, image: np.ndarray, intrinsics: Intrinsics) -> People:
        """People in one (H, W, 3) uint8 RGB image taken with ``intrinsics``."""
        return self.estimate_batch([image], [intrinsics])[0]

    def estimate_batch(self, images: Sequence[np.ndarray], intrinsics: Sequence[Intrinsics]) -> list[People]:
        """People in each image of a batch (images may differ in size and camera)."""
        if len(images) != len(intrinsics):
            raise ValueError(f"{len(images)} images but {len(intrinsics)} intrinsics")
        for index, (image, intr) in enumerate(zip(images, intrinsics)):
            check_rgb_image(image, f"image {index}")
            intr.check_image_size(image.shape[1], image.shape[0], f"image {index}")
        clock = _StageClock(self.device)
        batch, transforms = letterbox_batch(list(images), self.pipeline.input_size,
                                            self.pipeline.normalization, self.runner.device)
        K_input = input_camera_matrices(transforms, intrinsics, self.runner.device)
        clock.mark("preprocess")
        if self.runner.fused_decode:
            decoded = self.runner(batch, K_input)
            clock.mark("network")
        else:
            outputs = self.runner(batch)
            clock.mark("network")
            decoded = self.pipeline.device_decode(outputs, K_input)
        people = self.pipeline.finish(decoded, transforms, list(intrinsics))
        clock.mark("decode")
        self.last_timings_ms = clock.elapsed_ms()
        return people


class _StageClock:
    """Stage durations in ms: CUDA events on a GPU (one synchronisation at the end), else a clock."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.names: list[str] = []
        self.marks: list = [self._now()]

    def _now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def mark(self, name: str) -> None:
        self.names.append(name)
        self.marks.append(self._now())

    def elapsed_ms(self) -> dict[str, float]:
        if self.cuda:
            self.marks[-1].synchronize()
            spans = [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:])]
        else:
            spans = [1e3 * (b - a) for a, b in zip(self.marks, self.marks[1:])]
        return dict(zip(self.names, spans))
