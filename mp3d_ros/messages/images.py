"""``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` to and from RGB arrays, without cv_bridge.

Decoding supports every encoding a colour camera driver publishes: ``rgb8``, ``bgr8``, ``rgba8``,
``bgra8``, ``mono8``, packed 4:2:2 YUV as ``yuv422`` / ``uyvy`` (U Y0 V Y1) and ``yuv422_yuy2`` /
``yuyv`` (Y0 U Y1 V), and compressed jpeg / png. Rows may be padded (``step`` > width * bytes per
pixel). All supported encodings have one byte per channel, so ``is_bigendian`` does not change their
meaning. 16-bit images (depth, thermal ``mono16``) and every other encoding are refused with
:class:`UnsupportedEncodingError` naming the encoding.

The same functions read rclpy messages (``data`` is an ``array.array('B')``) and ``rosbags`` messages
(``data`` is a numpy array). The builders write ``data`` the way each expects: ``array.array('B')``
(rclpy's fast path; a numpy array fails its type check) or a numpy uint8 array (rosbags);
:func:`float64_field` does the same for ``float64[]`` (e.g. ``CameraInfo.d``).
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = [
    "SUPPORTED_ENCODINGS",
    "UnsupportedEncodingError",
    "image_to_rgb",
    "compressed_image_to_rgb",
    "any_image_to_rgb",
    "rgb_to_image",
    "rgb_to_compressed_image",
    "uint8_field",
    "float64_field",
]


# OpenCV >= 4.10 decodes straight to RGB (libjpeg-turbo writes the channels in that order: 0.1-0.2
# ms less per 640x480 JPEG than a BGR decode and a conversion); ROS's system OpenCV (4.5 on Humble,
# 4.6 on Jazzy) has no such flag and converts after decoding.
_IMREAD_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)


class UnsupportedEncodingError(ValueError):
    """An image encoding (or compressed format) this package cannot turn into RGB."""


@dataclass(frozen=True)
class _Layout:
    bytes_per_pixel: int
    channels: int  # channels of the (H, W, C) view of the pixel bytes


_UYVY = _Layout(2, 2)
_YUYV = _Layout(2, 2)
_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(3, 3),
    "bgr8": _Layout(3, 3),
    "rgba8": _Layout(4, 4),
    "bgra8": _Layout(4, 4),
    "mono8": _Layout(1, 1),
    "yuv422": _UYVY,  # ROS's historic name for UYVY
    "uyvy": _UYVY,
    "yuv422_yuy2": _YUYV,
    "yuyv": _YUYV,
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS)
_UYVY_NAMES = ("yuv422", "uyvy")

# BT.601 limited-range RGB -> YCbCr (the inverse of what OpenCV's YUV 4:2:2 decoders apply).
_RGB_TO_YCBCR = np.array([
    [65.481, 128.553, 24.966],
    [-37.797, -74.203, 112.0],
    [112.0, -93.786, -18.214],
]) / 255.0
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])


def _is_rclpy_class(message_cls: Any) -> bool:
    return hasattr(message_cls, "get_fields_and_field_types")


def uint8_field(message_cls: Any, data: bytes) -> Any:
    """A ``uint8[]`` field value for a message of ``message_cls`` (rclpy or rosbags flavour)."""
    if _is_rclpy_class(message_cls):
        return array.array("B", data)
    return np.frombuffer(data, dtype=np.uint8).copy()


def float64_field(message_cls: Any, values: Any) -> Any:
    """A ``float64[]`` (unbounded sequence) field value for a message of ``message_cls``."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if _is_rclpy_class(message_cls):
        return array.array("d", values.tobytes())
    return values.copy()


def _field_bytes(data: Any) -> np.ndarray:
    """The bytes of a ``uint8[]`` field as a flat uint8 array (no copy where possible)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain list of ints
        return np.asarray(data, dtype=np.uint8)


def _unsupported(encoding: str) -> UnsupportedEncodingError:
    hint = ""
    if "16" in encoding or "32" in encoding or "64" in encoding:
        hint = " (images with more than 8 bits per channel, e.g. depth or thermal, are not colour images)"
    elif encoding.startswith("bayer"):
        hint = " (debayer it first, e.g. with image_proc)"
    return UnsupportedEncodingError(
        f"image encoding {encoding!r} is not supported{hint}; expected one of "
        f"{', '.join(SUPPORTED_ENCODINGS)}, or a jpeg/png CompressedImage"
    )


def image_to_rgb(msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of a ``sensor_msgs/Image``.

    Raises:
        UnsupportedEncodingError: the encoding is not one of :data:`SUPPORTED_ENCODINGS`.
        ValueError: empty image, ``step`` shorter than a row, ``data`` shorter than
            ``step * height``, or odd width for a 4:2:2 encoding.
    """
    encoding = str(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ValueError(f"empty image: {width}x{height} (encoding {encoding!r})")
    layout = _LAYOUTS.get(encoding.lower())
    if layout is None:
        raise _unsupported(encoding)
    encoding = encoding.lower()
    row_bytes = width * layout.bytes_per_pixel
    if step < row_bytes:
        raise ValueError(
            f"Image.step is {step} bytes but a {width}-pixel {encoding} row needs {row_bytes}")
    data = _field_bytes(msg.data)
    if data.size < step * height:
        raise ValueError(
            f"Image.data has {data.size} bytes, expected step * height = {step} * {height} = "
            f"{step * height} ({width}x{height} {encoding})")
    rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    pixels = rows.reshape(height, width, layout.channels)
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels)
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels[..., ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(pixels[..., :3])
    if encoding == "bgra8":
        return np.ascontiguousarray(pixels[..., 2::-1])
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if width % 2:
        raise ValueError(f"{encoding} packs pixel pairs, so the width must be even, got {width}")
    code = cv2.COLOR_YUV2RGB_UYVY if encoding in _UYVY_NAMES else cv2.COLOR_YUV2RGB_YUY2
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


def compressed_image_to_rgb(msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of a jpeg or png ``sensor_msgs/CompressedImage``.

    ``format`` is image_transport's string (``"jpeg"``, ``"png"``, ``"rgb8; jpeg compressed bgr8"``);
    when it is empty the data's signature decides.

    Raises:
        UnsupportedEncodingError: compressedDepth or a codec other than jpeg / png.
        ValueError: empty or undecodable data.
    """
    fmt = str(msg.format)
    lowered = fmt.lower()
    data = _field_bytes(msg.data)
    if "compresseddepth" in lowered:
        raise UnsupportedEncodingError(
            f"CompressedImage format {fmt!r} is a depth image; expected a jpeg or png colour image")
    if lowered and not any(codec in lowered for codec in ("jpeg", "jpg", "png")):
        raise UnsupportedEncodingError(
            f"CompressedImage format {fmt!r} is not supported; expected jpeg or png")
    if data.size == 0:
        raise ValueError(f"empty CompressedImage (format {fmt!r})")
    if not lowered and not (data[:2].tobytes() == b"\xff\xd8" or data[:8].tobytes() == b"\x89PNG\r\n\x1a\n"):
        raise UnsupportedEncodingError("CompressedImage has no format and its data is neither jpeg nor png")
    try:
        pixels = cv2.imdecode(np.ascontiguousarray(data), _IMREAD_RGB or cv2.IMREAD_COLOR)
    except cv2.error as error:  # e.g. a header claiming 65500 x 65500 pixels
        reason = str(error).strip().splitlines()[-1]
        raise ValueError(f"CompressedImage ({fmt!r}, {data.size} bytes) could not be decoded: OpenCV: "
                         f"{reason}") from None
    if pixels is None or pixels.size == 0:
        raise ValueError(f"CompressedImage ({fmt!r}, {data.size} bytes) could not be decoded")
    return pixels if _IMREAD_RGB else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def any_image_to_rgb(msg: Any) -> np.ndarray:
    """RGB pixels of an ``Image`` (it has ``encoding``) or a ``CompressedImage`` (it has ``format``)."""
    if hasattr(msg, "encoding"):
        return image_to_rgb(msg)
    return compressed_image_to_rgb(msg)


# ----------------------------------------------------------------------------- builders


def _rgb_uint8(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"empty RGB array {rgb.shape}")
    return rgb


def _pack_yuv422(rgb: np.ndarray, uyvy: bool) -> np.ndarray:
    """(H, W, 2) packed 4:2:2 bytes: luma per pixel, chroma averaged over each horizontal pair."""
    ycc = rgb.astype(np.float64) @ _RGB_TO_YCBCR.T + _YCBCR_OFFSET
    luma = np.clip(np.rint(ycc[..., 0]), 0, 255).astype(np.uint8)
    chroma = ycc[..., 1:].reshape(rgb.shape[0], rgb.shape[1] // 2, 2, 2).mean(axis=2)
    chroma = np.clip(np.rint(chroma), 0, 255).astype(np.uint8)  # (H, W/2, [U, V])
    packed = np.empty((rgb.shape[0], rgb.shape[1] // 2, 4), dtype=np.uint8)
    y0, y1, u, v = luma[:, 0::2], luma[:, 1::2], chroma[..., 0], chroma[..., 1]
    order = (u, y0, v, y1) if uyvy else (y0, u, y1, v)
    for index, plane in enumerate(order):
        packed[..., index] = plane
    return packed.reshape(rgb.shape[0], rgb.shape[1], 2)


def _encode_pixels(rgb: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return rgb[..., ::-1]
    if encoding in ("rgba8", "bgra8"):
        colour = rgb if encoding == "rgba8" else rgb[..., ::-1]
        return np.concatenate([colour, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    if encoding == "mono8":
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)[..., None]
    if rgb.shape[1] % 2:
        raise ValueError(f"{encoding} needs an even width, got {rgb.shape[1]}")
    return _pack_yuv422(rgb, uyvy=encoding in _UYVY_NAMES)


def rgb_to_image(
    rgb: np.ndarray, encoding: str, header: Any, image_cls: Any, row_padding_bytes: int = 0
) -> Any:
    """A ``sensor_msgs/Image`` of ``encoding`` holding ``rgb`` ((H, W, 3) uint8).

    ``row_padding_bytes`` extra bytes (filled with 0xAB) end every row, as some drivers align rows.
    """
    rgb = _rgb_uint8(rgb)
    layout = _LAYOUTS.get(encoding.lower())
    if layout is None:
        raise _unsupported(encoding)
    pixels = _encode_pixels(rgb, encoding.lower())
    height, width = rgb.shape[:2]
    row_bytes = width * layout.bytes_per_pixel
    step = row_bytes + int(row_padding_bytes)
    buffer = np.full((height, step), 0xAB, dtype=np.uint8)
    buffer[:, :row_bytes] = np.ascontiguousarray(pixels).reshape(height, row_bytes)
    return image_cls(
        header=header, height=height, width=width, encoding=encoding, is_bigendian=0, step=step,
        data=uint8_field(image_cls, buffer.tobytes()),
    )


def rgb_to_compressed_image(
    rgb: np.ndarray, header: Any, compressed_cls: Any, fmt: str = "jpeg", jpeg_quality: int = 90
) -> Any:
    """A ``sensor_msgs/CompressedImage`` (jpeg or png) of ``rgb``, with image_transport's format string."""
    rgb = _rgb_uint8(rgb)
    fmt = fmt.lower()
    if fmt not in ("jpeg", "png"):
        raise UnsupportedEncodingError(f"compressed format {fmt!r} is not supported; expected jpeg or png")
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    return compressed_cls(
        header=header, format=f"rgb8; {fmt} compressed bgr8",
        data=uint8_field(compressed_cls, encoded.tobytes()),
    )
