"""onnxruntime reading and writing torch tensors in place (IO binding), and TensorRT's presence.

On a GPU, ``session.run`` with numpy arrays copies the image batch to the host and back and every
map to the host: :class:`BoundSession` binds a torch tensor as the input and torch tensors it
allocates once as the outputs, so the maps stay on the device where the decoding reads them, at
fixed addresses a CUDA graph of the decoding can replay over.
"""

from __future__ import annotations

import ctypes
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["BoundSession", "TENSORRT_LIBRARIES", "tensorrt_libraries_found"]

# TensorRT's main library, by the names its releases give it: onnxruntime-gpu 1.31's provider
# needs libnvinfer.so.10, Jetson wheels for JetPack 5 libnvinfer.so.8. Any of them means TensorRT
# is worth trying; a version the provider was not built for fails its session as before, and
# onnxruntime starts it again without TensorRT.
TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so.8", "libnvinfer.so")

# onnxruntime's element type names -> (torch dtype, numpy dtype) of the tensors bound to them.
_ELEMENT_TYPES = {
    "tensor(float)": (torch.float32, np.float32),
    "tensor(float16)": (torch.float16, np.float16),
    "tensor(double)": (torch.float64, np.float64),
    "tensor(int64)": (torch.int64, np.int64),
    "tensor(int32)": (torch.int32, np.int32),
    "tensor(bool)": (torch.bool, np.bool_),
}
_NUMPY_TYPES = {torch_type: numpy_type for torch_type, numpy_type in _ELEMENT_TYPES.values()}


def tensorrt_libraries_found(names: Sequence[str] = TENSORRT_LIBRARIES) -> bool:
    """Whether one of ``names`` loads (the dynamic loader's search: ``LD_LIBRARY_PATH``, the
    ldconfig cache, libraries already loaded). onnxruntime-gpu lists its TensorRT provider whether
    or not TensorRT is installed, and a session asked for it without the library prints an error
    and starts again without it."""
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


def _device_of(tensor: torch.Tensor) -> tuple[str, int]:
    return tensor.device.type, tensor.device.index or 0


def _wait_for_torch(tensor: torch.Tensor) -> None:
    """Let torch's queued work (which may write ``tensor``) finish: onnxruntime runs on its own stream."""
    if tensor.device.type == "cuda":
        torch.cuda.current_stream(tensor.device).synchronize()


class BoundSession:
    """``session`` with its one input read from, and its outputs written into, torch tensors.

    The output tensors are allocated at construction on the input's device, after one run that
    tells their shapes and types, and every :meth:`run` overwrites them.

    Args:
        session: an onnxruntime ``InferenceSession`` with one input.
        output_names: the outputs to bind, in the order :meth:`run` returns them.
        batch: an input of the shape every later run will have; contiguous (NCHW), on the
            device the session's provider runs on (``cpu`` or ``cuda``).
    """

    def __init__(self, session: Any, output_names: Sequence[str], batch: torch.Tensor) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_names = list(output_names)
        self.shape = tuple(batch.shape)
        self.binding = session.io_binding()
        self._bound_input: tuple[int, torch.dtype] | None = None  # address and type of the bound input
        device_type, device_id = _device_of(batch)
        self._bind_input(batch)
        for name in self.output_names:  # onnxruntime allocates these, once
            self.binding.bind_output(name, device_type, device_id)
        _wait_for_torch(batch)
        session.run_with_iobinding(self.binding)
        found = self.binding.get_outputs()
        unknown = sorted({value.data_type() for value in found} - set(_ELEMENT_TYPES))
        if unknown:
            raise ValueError(f"onnxruntime outputs of element types {unknown} cannot be bound to torch tensors")
        self.outputs = tuple(torch.empty(value.shape(), dtype=_ELEMENT_TYPES[value.data_type()][0],
                                         device=batch.device) for value in found)
        self.binding.clear_binding_outputs()
        for name, output in zip(self.output_names, self.outputs):
            self.binding.bind_output(name, device_type, device_id, _NUMPY_TYPES[output.dtype],
                                     list(output.shape), output.data_ptr())

    def _bind_input(self, batch: torch.Tensor) -> None:
        """Bind ``batch`` as the input; one bound before at the same address (a graph's static
        input) stays bound."""
        if tuple(batch.shape) != self.shape:
            raise ValueError(f"a session bound for inputs of shape {self.shape} got {tuple(batch.shape)}")
        if batch.dtype not in _NUMPY_TYPES or not batch.is_contiguous():
            raise ValueError(f"the bound input must be a contiguous tensor of a bindable type, "
                             f"got {batch.dtype} with strides {batch.stride()}")
        if (batch.data_ptr(), batch.dtype) != self._bound_input:
            self.binding.bind_input(self.input_name, *_device_of(batch), _NUMPY_TYPES[batch.dtype],
                                    list(batch.shape), batch.data_ptr())
            self._bound_input = (batch.data_ptr(), batch.dtype)

    def run(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The outputs for ``batch`` (same shape as at construction), written into :attr:`outputs`.

        On a GPU, torch's queued work on the input is finished first and onnxruntime's on the
        outputs before this returns: onnxruntime runs on its own stream.
        """
        self._bind_input(batch)
        _wait_for_torch(batch)
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()
        return self.outputs
