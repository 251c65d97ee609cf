"""The :mod:`mp3d_ros.geometry.camera` functions that decoding needs, in torch, for a batch of cameras.

Decoding turns network-input pixels into source-image pixels and camera metres with the live
intrinsics of each frame. Doing that on the network's device, inside the CUDA graph that replays
the network, leaves one small result to copy to the host. Everything here is therefore batched
over images (each with its own camera), uses tensor operations of static shapes only (no host
synchronisation, no host-to-device copy, a fixed number of solver iterations) and broadcasts
per-image parameters over any number of points per image. :mod:`mp3d_ros.geometry.camera` (numpy, OpenCV)
stays the reference; the tests hold the two equal.

- :class:`CameraBatch`: per image the network-input camera (for the geometric root depth), the
  source camera with its lens distortion, and the pixel map from the network input back to the
  source image. The host writes one float64 row per image (:func:`camera_rows`), so a batch is
  one upload.
- :func:`distort_normalized` / :func:`undistort_normalized`: ``plumb_bob`` and
  ``rational_polynomial`` share one rational form (plumb_bob's k4-k6 are zero); ``equidistant``
  is OpenCV's fisheye model. Undistortion takes a fixed number of Newton steps from the distorted
  point (2D for the polynomial form, 1D on the angle for the fisheye), where OpenCV iterates
  to a tolerance.
- :func:`pinhole_rays` (``K^-1 [u, v, 1]``, the one torch inverse of a camera matrix),
  :func:`pixel_rays` (undistorted ``[x, y, 1]``), :func:`project` (distortion included) and
  :func:`map_points_px` (a per-image pixel affine map).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import numpy as np
import torch

from mp3d_ros.geometry.camera import ImageTransform, Intrinsics, transform_intrinsics

__all__ = [
    "CAMERA_COLUMNS",
    "CameraBatch",
    "compiled_once",
    "camera_rows",
    "distort_normalized",
    "undistort_normalized",
    "pinhole_rays",
    "pixel_rays",
    "project",
    "map_points_px",
]

# One float64 row per image: K of the network input, K of the source image, the 2x3 pixel map
# network input -> source, the source size (w, h), 8 distortion coefficients, equidistant flag.
_K_INPUT, _K, _TO_SOURCE, _SIZE, _D, _EQUIDISTANT = (
    slice(0, 9), slice(9, 18), slice(18, 24), slice(24, 26), slice(26, 34), 34)
CAMERA_COLUMNS = 35
# Marks a function that decoding calls repeatedly (solver iterations): torch.compile then compiles
# it once instead of once per unrolled call, which keeps compiling the decoding to seconds.
# A no-op in eager mode; torch < 2.8 lacks it and inlines every call (slower to compile only).
compiled_once = getattr(torch.compiler, "nested_compile_region", lambda function: function)
# Lens families a batch may need (static per CUDA graph, so undistortion runs only when needed).
POLYNOMIAL, EQUIDISTANT = "polynomial", "equidistant"
# Newton steps of the undistortion. Over the image of random lenses that are one-to-one there
# (plumb_bob and fisheye, focal lengths down to 0.35 x the width) 10 steps reach the solution to
# 1e-14, and 6 the fisheye angle; beyond a fold of the lens the inverse is not unique and neither
# this nor OpenCV's iteration is meaningful.
_POLYNOMIAL_STEPS = 10
_EQUIDISTANT_STEPS = 6
# Largest Newton step of the polynomial form, as a fraction of the point's distance from the centre.
_MAX_STEP = 0.5


def _lens(intr: Intrinsics) -> str | None:
    """The undistortion family an image needs, None where pixels are ideal."""
    if intr.distortion_model == "equidistant":
        return EQUIDISTANT  # the fisheye projection bends rays even with zero coefficients
    if intr.distortion_model != "none" and np.any(intr.D):
        return POLYNOMIAL
    return None


def camera_rows(transforms: Sequence[ImageTransform],
                intrinsics: Sequence[Intrinsics]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per image ``(B, CAMERA_COLUMNS)`` float64 rows and the lens families the batch needs.

    ``transforms[i]`` maps source image i into the network input (the letterbox); its camera
    comes from :func:`mp3d_ros.geometry.camera.transform_intrinsics`.
    """
    rows = np.stack([_camera_row(t.A.tobytes(), t.out_size, i.K.tobytes(), i.size, i.distortion_model,
                                 i.D.tobytes(), i.rectified) for t, i in zip(transforms, intrinsics)])
    lenses = tuple(sorted({lens for lens in map(_lens, intrinsics) if lens is not None}))
    return rows, lenses


# Keyed by content: a ROS node builds new Intrinsics from every CameraInfo, their values rarely
# change, and transform_intrinsics' decomposition and checks cost ~70 us per frame.
@functools.lru_cache(maxsize=64)
def _camera_row(A: bytes, out_size: tuple[int, int], K: bytes, size: tuple[int, int], model: str,
                D: bytes, rectified: bool) -> np.ndarray:
    transform = ImageTransform(np.frombuffer(A).reshape(3, 3), out_size)
    intr = Intrinsics(np.frombuffer(K).reshape(3, 3), *size, model, np.frombuffer(D), rectified)
    row = np.zeros(CAMERA_COLUMNS)
    row[_K_INPUT] = transform_intrinsics(intr, transform)[0].K.ravel()
    row[_K] = intr.K.ravel()
    row[_TO_SOURCE] = np.linalg.inv(transform.A)[:2].ravel()
    row[_SIZE] = size
    row[_D][: len(intr.D)] = intr.D
    row[_EQUIDISTANT] = model == "equidistant"
    row.setflags(write=False)
    return row


class CameraBatch(NamedTuple):
    """The cameras of a batch of B images, on the device.

    Attributes:
        K_input: (B, 3, 3) camera matrices of the network inputs.
        K: (B, 3, 3) camera matrices of the source images.
        input_to_source: (B, 2, 3) pixel map from the network input to the source image.
        size_px: (B, 2) source image (width, height).
        D: (B, 8) distortion coefficients of the source cameras, zero-padded.
        equidistant: (B,) bool, the source camera is a fisheye (``equidistant``) one.
        lenses: which lens families occur (:func:`camera_rows`); static, not a tensor.
    """

    K_input: torch.Tensor
    K: torch.Tensor
    input_to_source: torch.Tensor
    size_px: torch.Tensor
    D: torch.Tensor
    equidistant: torch.Tensor
    lenses: tuple[str, ...]

    @classmethod
    def from_rows(cls, rows: torch.Tensor, lenses: Sequence[str]) -> "CameraBatch":
        """Views of :func:`camera_rows`' rows (already on the device)."""
        b = rows.shape[0]
        return cls(rows[:, _K_INPUT].reshape(b, 3, 3), rows[:, _K].reshape(b, 3, 3),
                   rows[:, _TO_SOURCE].reshape(b, 2, 3), rows[:, _SIZE], rows[:, _D],
                   rows[:, _EQUIDISTANT] > 0.5, tuple(lenses))

    @classmethod
    def build(cls, transforms: Sequence[ImageTransform], intrinsics: Sequence[Intrinsics],
              device: torch.device | str) -> "CameraBatch":
        """Rows of ``transforms`` and ``intrinsics`` uploaded to ``device``."""
        rows, lenses = camera_rows(transforms, intrinsics)
        return cls.from_rows(torch.from_numpy(rows).to(device), lenses)


def _per_image(values: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(B,) per-image values shaped to broadcast against (B, *, 2 or 3) points' coordinates."""
    return values.reshape(values.shape[:1] + (1,) * (points.dim() - 2))


def _coefficients(D: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(B, 8) coefficients shaped (B, 1.., 8) so that ``unbind(-1)`` broadcasts against points."""
    return D.to(points.dtype).reshape(D.shape[:1] + (1,) * (points.dim() - 2) + D.shape[1:])


def _polynomial(x: torch.Tensor, y: torch.Tensor, coefficients: torch.Tensor, jacobian: bool):
    """``plumb_bob`` / ``rational_polynomial`` distortion of (x, y) and, if asked, its Jacobian."""
    k1, k2, p1, p2, k3, k4, k5, k6 = coefficients.unbind(-1)
    r2 = x * x + y * y
    numerator = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    denominator = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
    radial = numerator / denominator
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    if not jacobian:
        return xd, yd
    # d radial / d r2, then the chain rule through r2 = x^2 + y^2.
    slope = ((k1 + r2 * (2 * k2 + 3 * k3 * r2)) * denominator
             - numerator * (k4 + r2 * (2 * k5 + 3 * k6 * r2))) / (denominator * denominator)
    cross = 2 * x * y * slope + 2 * p1 * x + 2 * p2 * y
    return xd, yd, (radial + 2 * x * x * slope + 2 * p1 * y + 6 * p2 * x, cross, cross,
                    radial + 2 * y * y * slope + 6 * p1 * y + 2 * p2 * x)


# Solver iterations are compiled regions (``compiled_once``), whose inputs must not alias each
# other: points and coefficients therefore travel as whole tensors, split inside.
@compiled_once
def _polynomial_newton_step(xy: torch.Tensor, xy_d: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """One Newton step on ``distort(xy) = xy_d``, at most ``_MAX_STEP`` of the radius long."""
    x, y = xy.unbind(-1)
    fx, fy, (a, b, c, d) = _polynomial(x, y, coefficients, jacobian=True)
    rx, ry = fx - xy_d[..., 0], fy - xy_d[..., 1]
    determinant = a * d - b * c
    usable = determinant.abs() > 1e-12  # on a fold of the lens: leave the point where it is
    safe = torch.where(usable, determinant, torch.ones_like(determinant))
    dx = torch.where(usable, (d * rx - b * ry) / safe, torch.zeros_like(rx))
    dy = torch.where(usable, (a * ry - c * rx) / safe, torch.zeros_like(ry))
    limit = _MAX_STEP * torch.sqrt(x * x + y * y)
    length = torch.sqrt(dx * dx + dy * dy)
    shrink = limit / torch.maximum(length, limit).clamp_min(1e-30)
    return torch.stack([x - dx * shrink, y - dy * shrink], dim=-1)


def _undistort_polynomial(xy_d: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Newton's method on ``distort(xy) = xy_d`` from the distorted point.

    A strong lens flattens out towards its fold (the slope of the radius nears 0 there) and a plain
    Newton step from the distorted point can overshoot far past the solution, where the
    high-order terms take many steps to come back; a step is therefore limited to half the
    point's distance from the centre.
    """
    xy = xy_d.clone()
    for _ in range(_POLYNOMIAL_STEPS):
        xy = _polynomial_newton_step(xy, xy_d, coefficients)
    return xy


def _fisheye_angle(theta: torch.Tensor, coefficients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``theta_d = theta (1 + k1 t2 + k2 t2^2 + k3 t2^3 + k4 t2^4)``, t2 = theta^2, and its slope."""
    k1, k2, k3, k4 = coefficients.unbind(-1)[:4]
    t2 = theta * theta
    theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
    slope = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
    return theta_d, slope


@compiled_once
def _fisheye_newton_step(theta: torch.Tensor, theta_d: torch.Tensor,
                         coefficients: torch.Tensor) -> torch.Tensor:
    value, slope = _fisheye_angle(theta, coefficients)
    return theta - (value - theta_d) / slope


def _distort_equidistant(xy: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    r = xy.norm(dim=-1)
    theta_d, _ = _fisheye_angle(torch.atan(r), coefficients)
    ideal = r > 1e-12
    scale = torch.where(ideal, theta_d / torch.where(ideal, r, torch.ones_like(r)), torch.ones_like(r))
    return xy * scale[..., None]


def _undistort_equidistant(xy_d: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """OpenCV's fisheye undistortion: Newton's method on the angle, then ``r = tan(theta)``."""
    theta_d = xy_d.norm(dim=-1)
    theta = theta_d.clone()
    for _ in range(_EQUIDISTANT_STEPS):
        theta = _fisheye_newton_step(theta, theta_d, coefficients)
    ideal = theta_d > 1e-8
    scale = torch.where(ideal, torch.tan(theta) / torch.where(ideal, theta_d, torch.ones_like(theta_d)),
                        torch.ones_like(theta_d))
    return xy_d * scale[..., None]


def distort_normalized(xy: torch.Tensor, cameras: CameraBatch) -> torch.Tensor:
    """Lens distortion of (B, *, 2) normalised coordinates, image i through camera i."""
    coefficients = _coefficients(cameras.D, xy)
    distorted = xy
    if POLYNOMIAL in cameras.lenses:  # zero coefficients (no lens) give the identity exactly
        distorted = torch.stack(_polynomial(*xy.unbind(-1), coefficients, jacobian=False), dim=-1)
    if EQUIDISTANT in cameras.lenses:
        fisheye = _per_image(cameras.equidistant, xy)[..., None]
        distorted = torch.where(fisheye, _distort_equidistant(xy, coefficients), distorted)
    return distorted


def undistort_normalized(xy_d: torch.Tensor, cameras: CameraBatch) -> torch.Tensor:
    """Inverse of :func:`distort_normalized` for (B, *, 2) distorted normalised coordinates."""
    coefficients = _coefficients(cameras.D, xy_d)
    xy = xy_d
    if POLYNOMIAL in cameras.lenses:
        xy = _undistort_polynomial(xy_d, coefficients)
    if EQUIDISTANT in cameras.lenses:
        fisheye = _per_image(cameras.equidistant, xy_d)[..., None]
        xy = torch.where(fisheye, _undistort_equidistant(xy_d, coefficients), xy)
    return xy


def map_points_px(uv_px: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
    """(B, *, 2) pixels through per-image (B, 2, 3) affine maps ``[u', v'] = A [u, v, 1]``."""
    u, v = uv_px.unbind(-1)
    a = [_per_image(value, uv_px).to(uv_px.dtype) for value in affine.flatten(1).unbind(-1)]
    return torch.stack([a[0] * u + a[1] * v + a[2], a[3] * u + a[4] * v + a[5]], dim=-1)


def _pinhole(K: torch.Tensor, points: torch.Tensor) -> list[torch.Tensor]:
    """fx, skew, cx, fy, cy of (B, 3, 3) camera matrices, shaped for ``points``."""
    return [_per_image(K[:, r, c], points).to(points.dtype)
            for r, c in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2))]


def pinhole_rays(uv_px: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(*, 3) rays ``K^-1 [u, v, 1]`` of (*, 2) pixels for (*, 3, 3) upper-triangular camera
    matrices (broadcast against the points); no lens distortion.

    The one torch ``K^-1``: back-substitution instead of a general solve, a handful of elementwise
    kernels that CUDA graphs capture, where ``linalg.solve`` launches a factorisation per call.
    """
    fx, skew, cx = K[..., 0, 0], K[..., 0, 1], K[..., 0, 2]
    fy, cy = K[..., 1, 1], K[..., 1, 2]
    y = (uv_px[..., 1] - cy) / fy
    x = (uv_px[..., 0] - cx - skew * y) / fx
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def pixel_rays(uv_px: torch.Tensor, cameras: CameraBatch) -> torch.Tensor:
    """(B, *, 3) rays ``[x, y, 1]`` (undistorted normalised coordinates) through (B, *, 2) pixels
    of the source images: :func:`mp3d_ros.geometry.camera.pixel_rays` per image."""
    K = cameras.K.to(uv_px.dtype).reshape(cameras.K.shape[:1] + (1,) * (uv_px.dim() - 2) + (3, 3))
    xy = undistort_normalized(pinhole_rays(uv_px, K)[..., :2], cameras)
    return torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1)


def project(xyz_m: torch.Tensor, cameras: CameraBatch) -> torch.Tensor:
    """(B, *, 3) camera points to (B, *, 2) source pixels, distortion included; points with
    z <= 0 give NaN (:func:`mp3d_ros.geometry.camera.project` per image)."""
    z = xyz_m[..., 2:3]
    in_front = z > 0
    xy_d = distort_normalized(xyz_m[..., :2] / torch.where(in_front, z, torch.ones_like(z)), cameras)
    fx, skew, cx, fy, cy = _pinhole(cameras.K, xyz_m)
    uv = torch.stack([fx * xy_d[..., 0] + skew * xy_d[..., 1] + cx, fy * xy_d[..., 1] + cy], dim=-1)
    return torch.where(in_front, uv, torch.full_like(uv, torch.nan))
