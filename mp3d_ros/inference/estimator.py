"""``Estimator``: an RGB image and its live intrinsics in, :class:`~mp3d_ros.geometry.people.People` out.

Two models share the output, so callers never care which one runs:

- ``movenet-lift`` (the default): MoveNet MultiPose 2D + the mocap-trained lifter + geometric root
  depth (:mod:`mp3d_ros.inference.movenet_lift`), shipped in ``models/``;
- the papers' network (:mod:`mp3d_ros.model.network`) from a training checkpoint (``.pt``).

and two backends run their network: ``torch`` (eval mode, batch norms folded, inference mode,
channels-last, half precision on GPU, optional CUDA-graph replay or ``torch.compile``) and
``onnxruntime`` (a file written by ``mp3d-export``, or on a CPU the cached export of
:mod:`mp3d_ros.inference.onnx_cache`; providers tried in the order TensorRT, CUDA, CPU).

A frame goes through three timed stages (``last_timings_ms``):

1. ``preprocess``: on the host the letterbox of each image and one row of camera parameters
   (:func:`mp3d_ros.geometry.camera_torch.camera_rows`); on the network's device the uint8 image is uploaded,
   letterboxed and normalised (:func:`mp3d_ros.inference.preprocess.letterbox_tensors`);
2. ``network``: the network;
3. ``decode``: decoding to people in the source image's pixels and the camera's metres, back-
   projected with the live intrinsics, in torch on the network's device (onnxruntime's GPU
   providers write their maps into torch tensors there, :mod:`mp3d_ros.inference.onnx_binding`),
   then one copy of the packed result that the host slices into :class:`People`.

With ``cuda_graph`` stage 1's device part is one CUDA graph and the network with stage 3's device
part another, per batch layout (image sizes and lens families), replayed over static input
buffers; ``network`` then includes the device-side decoding. onnxruntime's network runs on its
own stream, outside torch's capture: it is called between the two graphs, and the decoding is a
graph of its own.

On a GPU the stages are timed with CUDA events recorded on the stream between them: no
synchronisation between stages, one wait on the last event after the result is already on the host.
That still cost 0.12 to 0.23 ms per frame on an H200 with CUDA graphs (about 4.2 ms per frame;
``benchmarks/bench_stage_timing.py``); ``stage_timing=False`` records no events and leaves
``last_timings_ms`` empty. The people found are the same either way.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mp3d_ros.geometry.camera import ImageTransform, Intrinsics, letterbox_transform
from mp3d_ros.geometry.camera_torch import camera_rows
from mp3d_ros.geometry.floor import FloorConfig, FloorPlane, apply_floor
from mp3d_ros.geometry.people import People
from mp3d_ros.inference.onnx_binding import TENSORRT_LIBRARIES, BoundSession, tensorrt_libraries_found
from mp3d_ros.inference.pipelines import Pipeline, load_pipeline, pipeline_from_onnx_metadata
from mp3d_ros.inference.preprocess import check_rgb_image, letterbox_tensors
from mp3d_ros.model.checkpoint import fits_float16, model_file_error
from mp3d_ros.model.codec.decode import unpack_people
from mp3d_ros.model.fold import fold_batch_norms

__all__ = ["DEFAULT_MODEL", "MAX_GRAPH_LAYOUTS", "Estimator", "TorchRunner", "OnnxRunner", "LayoutCache",
           "layout_key", "onnx_providers", "use_cuda_graph"]

LOGGER = logging.getLogger(__name__)
# The ankle keypoint's 2D error across its ray in network-input pixels: the robust sd of its
# vertical error at movenet-lift's 288 x 224 input (FloorConfig.sigma_px's 5.67 px on 640 x 480
# renders times their 0.45 zoom), measured by benchmarks/calibrate_depth_sigma.py on 2026-12-03
# on renders whose feet have heels (2.35 px before).
ANKLE_SIGMA_INPUT_PX = 2.55
DEFAULT_MODEL = "movenet-lift"
MAX_GRAPH_LAYOUTS = 8  # CUDA graphs kept (each holds its static buffers and memory pool)
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ONNX_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def use_cuda_graph(requested: bool | str, device: torch.device) -> bool:
    """Whether to replay CUDA graphs: ``"auto"`` means yes on CUDA, for either backend (with
    onnxruntime the graph holds the pre-processing and the decoding around its network).

    Raises:
        ValueError: ``True`` off CUDA, or a value that is neither bool nor "auto".
    """
    if requested == "auto":
        return device.type == "cuda"
    if not isinstance(requested, bool):
        raise ValueError(f"cuda_graph must be True, False or 'auto', got {requested!r}")
    if requested and device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs device='cuda' (got {device.type})")
    return requested


def layout_key(images: Sequence[np.ndarray], lenses: tuple[str, ...]) -> tuple:
    """What a captured graph is specific to: every image's shape and lens family, in batch order."""
    return tuple(image.shape for image in images), tuple(lenses)


class LayoutCache(OrderedDict):
    """At most ``capacity`` values by layout key; the least recently used one is dropped first."""

    def __init__(self, capacity: int = MAX_GRAPH_LAYOUTS) -> None:
        super().__init__()
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity

    def get_or_build(self, key: tuple, build: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = build()
        self[key] = value
        while len(self) > self.capacity:
            self.popitem(last=False)
        return value


def _run_stages(runner: "_Runner", images: Sequence[np.ndarray], rows: np.ndarray,
                lenses: tuple[str, ...], clock: _StageClock) -> np.ndarray:
    """A frame stage by stage (no CUDA graph): packed people (B, K, C) on the host."""
    pixels = [torch.from_numpy(np.ascontiguousarray(image)).to(runner.device) for image in images]
    batch = runner.letterbox(pixels)
    clock.mark("preprocess")
    outputs = runner.network(batch)
    clock.mark("network")
    rows_tensor = torch.from_numpy(rows).to(outputs[0].device)
    return runner.decode(outputs, rows_tensor, lenses).cpu().numpy()


class _Graph:
    """``function()`` captured as one CUDA graph over static buffers; ``output`` is its result,
    :meth:`replay` runs it again."""

    def __init__(self, function: Callable[[], torch.Tensor]) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm-up outside the graph (compilation, cuDNN autotuning, allocator)
                function()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = function()

    def replay(self) -> None:
        self.graph.replay()


class _FrameGraphs:
    """One batch layout (image sizes, lens families) as two CUDA graphs over static buffers.

    Each frame is copied into pinned host buffers and from there, asynchronously, into the static
    uint8 images and camera rows on the device (the driver would stage a pageable upload through
    its own buffers, blocking the host); the pre-processing graph and the runner's network and
    decoding (:meth:`_Runner.network_and_decode`: one graph for torch) replay, and one copy brings
    the packed people back. Two graphs rather than one keep the stage timings apart for microseconds.
    """

    def __init__(self, runner: "_Runner", images: Sequence[np.ndarray], rows: np.ndarray,
                 lenses: tuple[str, ...]) -> None:
        self.host_images = [torch.empty(image.shape, dtype=torch.uint8, pin_memory=True) for image in images]
        self.host_rows = torch.empty(rows.shape, dtype=torch.float64, pin_memory=True)
        self.images = [torch.empty_like(host, device=runner.device) for host in self.host_images]
        self.rows = torch.empty_like(self.host_rows, device=runner.device)
        self._upload(images, rows)  # the warm-ups below then see a real frame
        self.preprocess = _Graph(lambda: runner.letterbox(self.images))
        self.preprocess.replay()
        self.network_and_decode = runner.network_and_decode(self.preprocess.output, self.rows, lenses)
        self.host_output = torch.empty_like(self.network_and_decode.output, device="cpu", pin_memory=True)

    def _upload(self, images: Sequence[np.ndarray], rows: np.ndarray) -> None:
        # The previous frame ended with a synchronisation: its copies out of the buffers are done.
        for host, static, image in zip(self.host_images, self.images, images):
            np.copyto(host.numpy(), image)
            static.copy_(host, non_blocking=True)
        np.copyto(self.host_rows.numpy(), rows)
        self.rows.copy_(self.host_rows, non_blocking=True)

    def __call__(self, images: Sequence[np.ndarray], rows: np.ndarray, clock: _StageClock) -> np.ndarray:
        self._upload(images, rows)
        self.preprocess.replay()
        clock.mark("preprocess")
        self.network_and_decode.replay()
        clock.mark("network")
        self.host_output.copy_(self.network_and_decode.output, non_blocking=True)
        torch.cuda.current_stream().synchronize()
        return self.host_output.numpy().copy()  # the buffer is the next frame's


class _Runner:
    """What both backends share: a frame stage by stage, or, with ``cuda_graph``, replayed as CUDA
    graphs captured once per batch layout (:class:`_FrameGraphs`, at most
    :data:`MAX_GRAPH_LAYOUTS` kept). Subclasses set the attributes and :meth:`network`."""

    pipeline: Pipeline
    device: torch.device
    dtype: torch.dtype
    decode: Callable[..., torch.Tensor]
    cuda_graph: bool
    name: str

    def __init__(self) -> None:
        self._graphs = LayoutCache()

    def letterbox(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, 3, H, W) network input of uint8 images on :attr:`device`."""
        return letterbox_tensors(images, self.pipeline.input_size, self.pipeline.normalization, self.dtype)

    def network(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def network_and_decode(self, batch: torch.Tensor, rows: torch.Tensor,
                           lenses: tuple[str, ...]) -> "_Graph | _SessionThenGraph":
        """The network and decoding of the static ``batch`` as something to replay (its ``output``
        the packed people): one CUDA graph."""
        return _Graph(lambda: self.decode(self.network(batch), rows, lenses))

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray], rows: np.ndarray, lenses: tuple[str, ...],
                 clock: _StageClock) -> np.ndarray:
        """Packed people (B, K, C) of a batch on the host (:meth:`PeopleTensors.pack`)."""
        if not self.cuda_graph:
            return _run_stages(self, images, rows, lenses, clock)
        graphs = self._graphs.get_or_build(layout_key(images, lenses),
                                           lambda: _FrameGraphs(self, images, rows, lenses))
        return graphs(images, rows, clock)


def network_at(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """``module`` on ``device`` at ``dtype``, except batch norms whose statistics ``dtype`` cannot
    hold: they stay float32 (batch norm takes float16 inputs with float32 statistics, as under
    mixed-precision training). A trained lite network's running variances reach 7.7e4, beyond
    float16's 6.55e4, and would become infinite."""
    if dtype != torch.float16:
        return module.to(device=device, dtype=dtype)
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    kept = [(layer, {name: value.clone() for name, value in layer.state_dict().items()})
            for layer in module.modules() if isinstance(layer, norms)
            and not all(fits_float16(t) for t in layer.state_dict().values() if t.is_floating_point())]
    module = module.to(device=device, dtype=dtype)
    for layer, state in kept:  # from the float32 originals: the cast made them infinite
        layer.float().load_state_dict(state)
    return module


class TorchRunner(_Runner):
    """Runs a pipeline in torch on ``device`` (network at ``dtype``, decoding in float32/64).

    With ``cuda_graph`` every batch layout is captured once as CUDA graphs (:class:`_FrameGraphs`);
    with ``compile_network`` the network and the decoding are compiled by ``torch.compile``.
    """

    def __init__(self, pipeline: Pipeline, device: torch.device, dtype: torch.dtype,
                 cuda_graph: bool = False, compile_network: bool = False) -> None:
        super().__init__()
        if cuda_graph and device.type != "cuda":
            raise ValueError("cuda_graph=True needs device='cuda'")
        if device.type == "cuda":
            # One input shape per input size: cuDNN's search for the fastest convolution
            # algorithms is paid once, at the first frame.
            torch.backends.cudnn.benchmark = True
        # A copy: a pipeline's network (movenet-lift's) is shared, and folding changes it.
        module = network_at(fold_batch_norms(copy.deepcopy(pipeline.network()).eval()), device, dtype)
        module = module.to(memory_format=torch.channels_last)
        decode = pipeline.to(device).decode_rows
        if compile_network:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True  # folds batch norms into convolutions
            module = torch.compile(module)
            # Decoding is hundreds of tiny element-wise operations; fused they are a few kernels.
            decode = torch.compile(decode, dynamic=False)
        self.module, self.pipeline, self.device, self.dtype = module, pipeline, device, dtype
        self.decode = decode
        self.cuda_graph = cuda_graph
        self.name = f"torch:{device.type}:{_dtype_name(dtype)}" + (":cuda-graph" if cuda_graph else "") \
            + (":compiled" if compile_network else "")

    def network(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.module(batch)


class _SessionThenGraph:
    """onnxruntime's network into its bound output tensors, then the decoding of those tensors
    replayed as a CUDA graph. onnxruntime runs on its own stream, outside what torch captures, so
    it is called each frame; ``output`` is the graph's packed people."""

    def __init__(self, bound: BoundSession, batch: torch.Tensor,
                 decode: Callable[[tuple[torch.Tensor, ...]], torch.Tensor]) -> None:
        self.bound, self.batch = bound, batch
        bound.run(batch)  # the warm-ups of the capture decode a real frame
        self.decode = _Graph(lambda: decode(bound.outputs))
        self.output = self.decode.output

    def replay(self) -> None:
        self.bound.run(self.batch)
        self.decode.replay()


class OnnxRunner(_Runner):
    """Runs an exported network with onnxruntime, its best execution provider (the session's).

    With a CPU provider the maps come back as arrays and decoding runs in torch on the CPU. With
    a GPU provider (CUDA or TensorRT) on ``device`` cuda the image is letterboxed on the GPU,
    onnxruntime reads it and writes the maps into torch tensors there (:class:`BoundSession`), and
    decoding runs on the GPU: with ``cuda_graph`` as a CUDA graph per batch layout, so that only
    the packed people cross to the host.
    """

    def __init__(self, session: Any, pipeline: Pipeline, device: torch.device = torch.device("cpu"),
                 cuda_graph: bool = False) -> None:
        super().__init__()
        provider = session.get_providers()[0]
        on_gpu = device.type == "cuda" and provider != "CPUExecutionProvider"
        if device.type == "cuda" and not on_gpu:
            LOGGER.warning("onnxruntime started no GPU provider (it runs %s), so the network and its "
                           "decoding run on the CPU", session.get_providers())
        self.session = session
        self.output_names = list(pipeline.output_names)
        self.input_name = session.get_inputs()[0].name
        self.device = device if on_gpu else torch.device("cpu")
        self.dtype = torch.float32
        self.pipeline = pipeline.to(self.device)
        self.decode = self.pipeline.decode_rows
        self.cuda_graph = bool(cuda_graph) and on_gpu
        self._bound = LayoutCache()
        self.name = f"onnxruntime:{provider}" + (":cuda-graph" if self.cuda_graph else "")

    def letterbox(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        # onnxruntime reads plain NCHW memory; torch letterboxes channels-last.
        return super().letterbox(images).contiguous()

    def _bound_session(self, batch: torch.Tensor) -> BoundSession:
        return self._bound.get_or_build(tuple(batch.shape),
                                        lambda: BoundSession(self.session, self.output_names, batch))

    def network(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.device.type != "cpu":
            return self._bound_session(batch).run(batch)
        feed = {self.input_name: batch.numpy()}  # contiguous: see letterbox
        outputs = self.session.run(self.output_names, feed)
        return tuple(torch.from_numpy(np.ascontiguousarray(o)) for o in outputs)

    def network_and_decode(self, batch: torch.Tensor, rows: torch.Tensor,
                           lenses: tuple[str, ...]) -> _SessionThenGraph:
        """onnxruntime into bound tensors, then the decoding as one CUDA graph."""
        return _SessionThenGraph(BoundSession(self.session, self.output_names, batch), batch,
                                 lambda maps: self.decode(maps, rows, lenses))


def check_onnx_session(session: Any, pipeline: Pipeline, path: Path) -> None:
    """Refuse, at load, an ONNX graph that cannot feed ``pipeline``'s decoding: outputs its
    metadata promises but the graph lacks, or a fixed input shape other than (B, 3, H, W) of the
    metadata's input size (else the first frame would fail)."""
    outputs = {output.name for output in session.get_outputs()}
    missing = [name for name in pipeline.output_names if name not in outputs]
    if missing:
        raise model_file_error(path, f"the graph lacks the outputs {missing} its metadata "
                                     f"mp3d_ros.outputs names (graph outputs: {sorted(outputs)})")
    inputs = session.get_inputs()
    width, height = pipeline.input_size
    shape = list(inputs[0].shape) if len(inputs) == 1 else None
    fits = shape is not None and len(shape) == 4 and all(
        not isinstance(found, int) or found == wanted
        for found, wanted in zip(shape[1:], (3, height, width)))
    if not fits:
        found = [(i.name, i.shape) for i in inputs]
        raise model_file_error(path, f"the graph's inputs {found} are not one (B, 3, {height}, {width}) "
                                     f"image batch as its metadata mp3d_ros.input_size says")


def _dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in PRECISIONS.items()}[dtype]


def onnx_providers(available: set[str], device: torch.device, fp16: bool,
                   engine_cache: Path | None) -> list[str | tuple[str, dict[str, Any]]]:
    """onnxruntime's providers for ``device``: TensorRT -> CUDA -> CPU as ``available``.

    TensorRT builds an engine for the graph when a session opens (minutes on a Jetson); with
    ``engine_cache`` it keeps the engine there and later starts load it. ``fp16`` lets TensorRT
    run layers in float16, as the torch path does on a GPU."""
    if device.type != "cuda":
        return [p for p in ONNX_PROVIDERS[-1:] if p in available]
    device_id = device.index or 0
    tensorrt: dict[str, Any] = {"device_id": device_id, "trt_fp16_enable": fp16}
    if engine_cache is not None:
        tensorrt.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(engine_cache))
    options = {"TensorrtExecutionProvider": tensorrt, "CUDAExecutionProvider": {"device_id": device_id}}
    return [(p, options[p]) if p in options else p for p in ONNX_PROVIDERS if p in available]


def _tensorrt_engine_cache() -> Path | None:
    """``$MP3D_ROS_CACHE_DIR/tensorrt``, created; None (logged) when it cannot be written."""
    from mp3d_ros.inference.onnx_cache import cache_dir

    folder = cache_dir() / "tensorrt"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        LOGGER.warning("TensorRT engines will not be cached (%s): each start builds them again", error)
        return None
    return folder


def open_onnx_session(path: Path, device: torch.device, threads: int | None = None,
                      fp16: bool = False) -> Any:
    """An onnxruntime session of ``path`` with providers TensorRT -> CUDA -> CPU as available
    (:func:`onnx_providers`; TensorRT's engines cached under ``$MP3D_ROS_CACHE_DIR/tensorrt``)."""
    import onnxruntime

    available = set(onnxruntime.get_available_providers())
    if device.type == "cuda" and "TensorrtExecutionProvider" in available and not tensorrt_libraries_found():
        LOGGER.info("onnxruntime has a TensorRT provider but TensorRT's library (%s) is not found: "
                    "TensorRT is not tried", " or ".join(TENSORRT_LIBRARIES))
        available.discard("TensorrtExecutionProvider")
    engine_cache = _tensorrt_engine_cache() if "TensorrtExecutionProvider" in available \
        and device.type == "cuda" else None
    providers = onnx_providers(available, device, fp16, engine_cache)
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


def _cached_onnx_runner(pipeline: Pipeline, model: str, threads: int | None) -> OnnxRunner | None:
    """onnxruntime on the CPU for ``pipeline`` through its cached export
    (:mod:`mp3d_ros.inference.onnx_cache`), or None (logged) when onnxruntime or onnx is missing
    or the cache cannot be used: the caller then runs torch. A cached file that does not load is
    exported again once."""
    try:
        import onnx  # noqa: F401  (the export needs it; fail here rather than half-way)
        import onnxruntime  # noqa: F401
    except ImportError as error:
        LOGGER.info("backend auto: %s is not installed, so %s runs in torch on the CPU", error.name, model)
        return None
    from mp3d_ros.inference.onnx_cache import cached_export

    def runner(path: Path) -> OnnxRunner:
        session = open_onnx_session(path, torch.device("cpu"), threads)
        check_onnx_session(session, pipeline, path)
        return OnnxRunner(session, pipeline)

    try:
        try:
            return runner(cached_export(pipeline))
        except ValueError as error:  # a damaged cached file, or a failed export: once more
            LOGGER.warning("backend auto: the onnxruntime export of %s failed (%s); exporting it again",
                           model, error)
            return runner(cached_export(pipeline, refresh=True))
    except (OSError, ValueError) as error:
        LOGGER.warning("backend auto: no onnxruntime export of %s (%s); running torch on the CPU",
                       model, error)
        return None


class Estimator:
    """People in images from one camera (any camera: intrinsics are given per frame).

    Args:
        model_path: ``"movenet-lift"`` (default), a checkpoint of the papers' network (``.pt``), or
            an ONNX file from ``mp3d-export``.
        backend: ``"auto"`` (onnxruntime for ``.onnx`` files and, on a CPU at fp32 without
            ``compile_network``, for any model through an export cached on disk when onnxruntime
            and onnx are installed, :mod:`mp3d_ros.inference.onnx_cache`; torch otherwise),
            ``"torch"`` or ``"onnxruntime"``.
        device: ``"cuda"`` or ``"cpu"``; default CUDA when available.
        precision: ``"fp16"``, ``"bf16"`` or ``"fp32"``; default fp16 on CUDA, fp32 on CPU.
        input_size: network input (W, H), multiples of 32; default the model's own, on CUDA its
            GPU input when it has one (``movenet-lift``: 288 x 224 on the CPU, 512 x 384 on CUDA;
            a checkpoint's ``extra["cuda_input_size"]``, :func:`~mp3d_ros.inference.pipelines.load_pipeline`).
            A fixed-size ONNX model refuses another size.
        joint_set: refuse a model predicting another joint set (default: accept any).
        max_people: most people reported per image.
        cuda_graph: replay the pre-processing, and the network with the device-side decoding, as
            CUDA graphs per batch layout (CUDA only); ``last_timings_ms["network"]`` then
            includes that decoding (with onnxruntime, whose network runs outside the graph, its
            network too). ``"auto"`` (default): on on CUDA (:func:`use_cuda_graph`), for a
            GPU provider of onnxruntime too, so the node, replay and evaluation run at graph speed
            without a flag. A layout (image sizes, lens families) is captured when first seen
            (about 3 warm-up runs and one capture; :meth:`warmup` does it before the first
            frame); at most :data:`MAX_GRAPH_LAYOUTS` are kept, least recently used dropped.
        compile_network: ``torch.compile`` the network (batch norms folded) and the decoding.
            Off by default: compiling costs tens of seconds at start-up (more per new layout).
        threads: CPU threads for torch / onnxruntime. Default on CPU: half the cores (at least
            one), because OpenMP threads that spin-wait collapse (20x slower measured on 2 cores)
            when a camera driver or RViz competes for the same cores.
        stage_timing: time the stages of each call into ``last_timings_ms`` (CUDA events on a GPU,
            see the module docstring); False leaves it empty. Results do not depend on it.
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
        cuda_graph: bool | str = "auto",
        compile_network: bool = False,
        threads: int | None = None,
        stage_timing: bool = True,
    ) -> None:
        started = time.perf_counter()
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
        # auto on a CPU: onnxruntime through a cached export (float32 and eager torch only).
        cached_onnx = (backend == "auto" and not is_onnx and self.device.type == "cpu"
                       and precision == "fp32" and not compile_network)
        if backend == "auto":
            backend = "onnxruntime" if is_onnx else "torch"
        if backend == "onnxruntime" and not is_onnx:
            raise ValueError(f"backend onnxruntime needs an .onnx model, got {model!r} "
                             "(write one with mp3d-export)")
        if backend == "torch" and is_onnx:
            raise ValueError(f"backend torch cannot run the ONNX file {model}")
        graphs = use_cuda_graph(cuda_graph, self.device)
        if is_onnx:
            path = Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"model {path} does not exist")
            session = open_onnx_session(path, self.device, threads, fp16=precision == "fp16")
            metadata = session.get_modelmeta().custom_metadata_map
            self.pipeline = pipeline_from_onnx_metadata(metadata, path, max_people)
            check_onnx_session(session, self.pipeline, path)
            if input_size is not None and tuple(input_size) != self.pipeline.input_size:
                raise ValueError(f"model {path} was exported for input size "
                                 f"{self.pipeline.input_size}, not {tuple(input_size)}")
            self.runner: TorchRunner | OnnxRunner = OnnxRunner(session, self.pipeline, self.device,
                                                               cuda_graph=graphs)
        else:
            self.pipeline = load_pipeline(model, input_size=input_size, max_people=max_people,
                                          cuda=self.device.type == "cuda")
            runner = _cached_onnx_runner(self.pipeline, model, threads) if cached_onnx else None
            self.runner = runner or TorchRunner(self.pipeline, self.device, PRECISIONS[precision],
                                                cuda_graph=graphs, compile_network=compile_network)
        if joint_set is not None and self.pipeline.joint_set != joint_set:
            raise ValueError(f"model {model} predicts joint set {self.pipeline.joint_set!r}, "
                             f"not {joint_set!r}")
        self.model_name = model
        self.floor_config = FloorConfig()
        self.last_timings_ms: dict[str, float] = {}
        self.stage_timing = bool(stage_timing)
        self.load_s = time.perf_counter() - started
        LOGGER.info("Estimator: model %s on %s, input %s, %d CPU threads, loaded in %.2f s",
                    model, self.backend_name, self.pipeline.input_size, torch.get_num_threads(),
                    self.load_s)

    def warmup(self, image_size: tuple[int, int], intrinsics: Intrinsics | None = None,
               runs: int = 2) -> float:
        """Run ``runs`` blank (W, H) frames so the first real frame pays no capture, cuDNN search
        or lazy initialisation; returns the seconds from construction start to ready (logged).

        ``intrinsics`` default to a pinhole camera of focal length = width; a distorted camera
        belongs to another graph layout, so pass the real one when it is known.
        """
        width, height = (int(v) for v in image_size)
        if intrinsics is None:
            intrinsics = Intrinsics.pinhole(width, width, width / 2, height / 2, width, height)
        started = time.perf_counter()
        blank = np.zeros((height, width, 3), np.uint8)
        for _ in range(runs):
            self.estimate(blank, intrinsics)
        ready_s = self.load_s + time.perf_counter() - started
        LOGGER.info("Estimator ready for %dx%d frames %.2f s after start (%s)", width, height,
                    ready_s, self.backend_name)
        return ready_s

    def _floor_config(self, transform: ImageTransform) -> FloorConfig:
        """The floor cue's settings, with the ankle's 2D noise in this image's pixels: a fixed
        error in network-input pixels, divided by the image-to-input zoom."""
        zoom = float(np.sqrt(abs(np.linalg.det(transform.A[:2, :2]))))
        return replace(self.floor_config, sigma_px=ANKLE_SIGMA_INPUT_PX / zoom)

    @property
    def backend_name(self) -> str:
        return self.runner.name

    @property
    def input_size(self) -> tuple[int, int]:
        return self.pipeline.input_size

    @property
    def joint_set(self) -> str:
        return self.pipeline.joint_set

    def estimate(self, image: np.ndarray, intrinsics: Intrinsics, floor: FloorPlane | None = None) -> People:
        """People in one (H, W, 3) uint8 RGB image taken with ``intrinsics``.

        With ``floor`` (the floor plane in the camera frame at this image's stamp) standing people
        also get their depth from the floor (:mod:`mp3d_ros.geometry.floor`).
        """
        return self.estimate_batch([image], [intrinsics], None if floor is None else [floor])[0]

    def estimate_batch(self, images: Sequence[np.ndarray], intrinsics: Sequence[Intrinsics],
                       floors: Sequence[FloorPlane | None] | None = None) -> list[People]:
        """People in each image of a batch (images may differ in size, camera and floor)."""
        if len(images) != len(intrinsics):
            raise ValueError(f"{len(images)} images but {len(intrinsics)} intrinsics")
        if not images:
            return []
        if floors is not None and len(floors) != len(images):
            raise ValueError(f"{len(images)} images but {len(floors)} floor planes")
        for index, (image, intr) in enumerate(zip(images, intrinsics)):
            check_rgb_image(image, f"image {index}")
            intr.check_image_size(image.shape[1], image.shape[0], f"image {index}")
        clock = _StageClock(self.device) if self.stage_timing else _NoStageClock()
        transforms = [letterbox_transform((image.shape[1], image.shape[0]), self.pipeline.input_size)
                      for image in images]
        rows, lenses = camera_rows(transforms, intrinsics)
        people = unpack_people(self.runner(list(images), rows, lenses, clock), self.pipeline.joint_set)
        people = [replace(found, depth_cues=np.full(len(found), self.pipeline.depth_cues, dtype=np.uint8))
                  for found in people]
        clock.mark("decode")
        if floors is not None:
            people = [apply_floor(found, intr, floor, self._floor_config(transform))
                      for found, intr, floor, transform in zip(people, intrinsics, floors, transforms)]
            clock.mark("floor")
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


class _NoStageClock:
    """A :class:`_StageClock` that times nothing (``stage_timing=False``)."""

    def mark(self, name: str) -> None:
        pass

    def elapsed_ms(self) -> dict[str, float]:
        return {}
