"""Camera intrinsics, lens distortion, projection and the intrinsics of transformed images.

Conventions (REP-103 optical frame, OpenCV pixels):
- camera points ``xyz_m`` are metres in the optical frame: x right, y down, z forward (z > 0 in front);
- pixel coordinates ``uv_px`` put the centre of pixel column i at u = i (OpenCV, image_geometry);
- normalised coordinates are ``(x / z, y / z)``; lens distortion maps them to distorted normalised
  coordinates, and ``K`` maps those to pixels: ``[u, v, 1]^T = K [x_d, y_d, 1]^T``.

Distortion models are those of ``sensor_msgs/CameraInfo``: ``plumb_bob`` (k1 k2 p1 p2 k3),
``rational_polynomial`` (k1 k2 p1 p2 k3 k4 k5 k6) and ``equidistant`` (k1 k2 k3 k4, OpenCV's fisheye
model); ``none`` for rectified or ideal images.

Every resize, crop, pad, flip or rotation of an image is an :class:`ImageTransform` (a pixel affine
map); :func:`transform_intrinsics` gives the intrinsics of the transformed image and the rotation (or
reflection, for a flip) that takes camera points into the frame of the new image, so that projecting
the moved points with the new intrinsics lands on the moved pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

__all__ = [
    "DISTORTION_MODELS",
    "Intrinsics",
    "ImageTransform",
    "distort_normalized",
    "undistort_normalized",
    "project",
    "back_project",
    "pixel_rays",
    "resize_transform",
    "crop_transform",
    "pad_transform",
    "hflip_transform",
    "rotate_transform",
    "letterbox_layout",
    "letterbox_transform",
    "transform_intrinsics",
    "transform_points_px",
    "warp_image",
]

# Number of coefficients each model uses; CameraInfo may carry fewer (missing ones are zero).
DISTORTION_MODELS: dict[str, int] = {
    "none": 0,
    "plumb_bob": 5,
    "rational_polynomial": 8,
    "equidistant": 4,
}

# Plausible calibrations: the field of view across either image side (telephoto to the widest
# rectilinear lens; fisheye lenses go past 180 deg) and how far the principal point may lie outside
# the image, in image sizes (a crop or ROI can move it out, a calibration in other units moves it
# much further).
FIELD_OF_VIEW_RANGE_DEG = (0.1, 179.0)
FISHEYE_MAX_FIELD_OF_VIEW_DEG = 360.0
PRINCIPAL_POINT_MARGIN = 1.0

# Tight criteria: OpenCV's default five iterations leave ~1e-4 px errors under strong distortion.
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)


@dataclass(frozen=True, eq=False)
class Intrinsics:
    """Pinhole intrinsics with optional lens distortion for one image stream.

    Attributes:
        K: (3, 3) float64 camera matrix ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in pixels.
        width: image width in pixels.
        height: image height in pixels.
        distortion_model: one of :data:`DISTORTION_MODELS`.
        D: distortion coefficients, padded with zeros to the model's length.
        rectified: True when the image stream is rectified (then the model is ``none``).
    """

    K: np.ndarray
    width: int
    height: int
    distortion_model: str = "none"
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rectified: bool = False

    def __post_init__(self) -> None:
        K = np.array(self.K, dtype=np.float64).reshape(3, 3)
        if self.distortion_model not in DISTORTION_MODELS:
            raise ValueError(
                f"distortion_model {self.distortion_model!r} is not supported; expected one of "
                f"{sorted(DISTORTION_MODELS)}"
            )
        D = _padded_coefficients(self.D, self.distortion_model, "D")
        _check_camera_matrix(K, "K")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"image size must be positive, got width={self.width} height={self.height}")
        _check_plausible_camera(K, int(self.width), int(self.height), self.distortion_model, "K")
        K.setflags(write=False)
        D.setflags(write=False)
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "D", D)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    @classmethod
    def pinhole(
        cls, fx: float, fy: float, cx: float, cy: float, width: int, height: int
    ) -> "Intrinsics":
        """An undistorted camera from its four pinhole parameters."""
        return cls(np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), width, height)

    @classmethod
    def from_camera_info(cls, msg: Any, rectified: bool = False) -> "Intrinsics":
        """Intrinsics of the image stream a ``sensor_msgs/CameraInfo`` describes.

        ``msg`` is any object with CameraInfo's ROS 2 fields (``k``, ``d``, ``p``,
        ``distortion_model``, ``width``, ``height``, ``binning_x``, ``binning_y``, ``roi``).
        ``rectified=True`` describes the rectified stream (``image_rect``): ``P[:3, :3]`` and no
        distortion; otherwise the raw stream: ``K`` and ``D``. Binning and ROI reduce the camera
        as image_geometry's ``PinholeCameraModel`` does: the principal point moves by the ROI
        offset, then the x row is divided by ``binning_x`` and the y row by ``binning_y``.

        Raises:
            ValueError: naming the CameraInfo field that is missing, non-finite or out of range.
        """
        width, height = int(msg.width), int(msg.height)
        if width <= 0 or height <= 0:
            raise ValueError(f"CameraInfo.width/height must be positive, got {width}x{height}")
        if rectified:
            P = _field_array(msg, "p", 12).reshape(3, 4)
            K = P[:, :3].copy()
            model, D, name = "none", np.zeros(0), "p"
        else:
            K = _field_array(msg, "k", 9).reshape(3, 3)
            name = "k"
            model = str(msg.distortion_model) or "none"
            D = np.asarray(msg.d, dtype=np.float64).ravel()
            if model not in DISTORTION_MODELS:
                raise ValueError(
                    f"CameraInfo.distortion_model {model!r} is not supported; expected one of "
                    f"{sorted(m for m in DISTORTION_MODELS if m != 'none')} or empty"
                )
            D = _padded_coefficients(D, model, "CameraInfo.d")
        if not np.any(K):
            raise ValueError(f"CameraInfo.{name} is all zeros: the camera is not calibrated")
        _check_camera_matrix(K, f"CameraInfo.{name}")

        binning_x, binning_y = max(1, int(msg.binning_x)), max(1, int(msg.binning_y))
        roi = msg.roi
        x_off, y_off = int(roi.x_offset), int(roi.y_offset)
        roi_w, roi_h = int(roi.width), int(roi.height)
        if roi_w == 0 and roi_h == 0 and x_off == 0 and y_off == 0:
            roi_w, roi_h = width, height
        if roi_w <= 0 or roi_h <= 0 or x_off + roi_w > width or y_off + roi_h > height:
            raise ValueError(
                f"CameraInfo.roi (x_offset={x_off}, y_offset={y_off}, width={roi_w}, height={roi_h}) "
                f"does not fit the {width}x{height} image"
            )
        K = K.copy()
        K[0, 2] -= x_off
        K[1, 2] -= y_off
        K[0, :] /= binning_x
        K[1, :] /= binning_y
        width, height = roi_w // binning_x, roi_h // binning_y
        _check_plausible_camera(K, width, height, model, f"CameraInfo.{name}")
        return cls(K, width, height, model, D, rectified=rectified)

    def check_image_size(self, width: int, height: int, source: str = "image") -> None:
        """Raise ``ValueError`` when an image of ``width`` x ``height`` does not match."""
        if (int(width), int(height)) != (self.width, self.height):
            raise ValueError(
                f"{source} is {width}x{height} but its CameraInfo describes "
                f"{self.width}x{self.height} (after binning and ROI)"
            )


def _field_array(msg: Any, name: str, size: int) -> np.ndarray:
    value = getattr(msg, name, None)
    if value is None:
        raise ValueError(f"CameraInfo.{name} is missing")
    array = np.asarray(value, dtype=np.float64).ravel()
    if array.size != size:
        raise ValueError(f"CameraInfo.{name} must have {size} values, got {array.size}")
    return array


def _padded_coefficients(D: Any, model: str, name: str) -> np.ndarray:
    D = np.asarray(D, dtype=np.float64).ravel()
    size = DISTORTION_MODELS[model]
    if not np.all(np.isfinite(D)):
        raise ValueError(f"{name} has non-finite distortion coefficients: {D.tolist()}")
    if D.size > size and np.any(D[size:] != 0):
        raise ValueError(
            f"{name} has {D.size} coefficients; model {model!r} uses {size} and the extra ones "
            f"are not zero: {D.tolist()}"
        )
    out = np.zeros(size)
    out[: min(size, D.size)] = D[:size]
    return out


def _check_camera_matrix(K: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(K)):
        raise ValueError(f"{name} has non-finite values: {K.ravel().tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{name}: focal lengths must be > 0, got fx={K[0, 0]} fy={K[1, 1]}")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0:
        raise ValueError(f"{name} is not an upper-triangular camera matrix: {K.ravel().tolist()}")


def field_of_view_deg(focal_px: float, size_px: int, model: str) -> float:
    """Angle across ``size_px`` pixels centred on the axis: ``2 atan(size / 2f)`` for a pinhole
    (distortion only bends it), ``size / f`` radians for the equidistant fisheye (``r = f theta``)."""
    half = size_px / (2.0 * focal_px)
    return float(np.degrees(2.0 * (half if model == "equidistant" else np.arctan(half))))


def _check_plausible_camera(K: np.ndarray, width: int, height: int, model: str, name: str) -> None:
    """Refuse calibrations no lens has, which give no people or roots kilometres away silently:
    a field of view outside :data:`FIELD_OF_VIEW_RANGE_DEG` across either image side, or a principal
    point more than :data:`PRINCIPAL_POINT_MARGIN` image sizes outside the image."""
    low, high = FIELD_OF_VIEW_RANGE_DEG
    high = high if model != "equidistant" else FISHEYE_MAX_FIELD_OF_VIEW_DEG
    for field_name, focal, size in (("fx", K[0, 0], width), ("fy", K[1, 1], height)):
        fov = field_of_view_deg(focal, size, model)
        if not low <= fov <= high:
            raise ValueError(
                f"{name}: {field_name}={focal:g} px gives a field of view of {fov:.3g} deg across "
                f"{size} px; a real camera has {low:g} to {high:g} deg (is the calibration for "
                "this image size, in pixels?)")
    for field_name, centre, size in (("cx", K[0, 2], width), ("cy", K[1, 2], height)):
        if not -PRINCIPAL_POINT_MARGIN * size <= centre <= (1 + PRINCIPAL_POINT_MARGIN) * size:
            raise ValueError(
                f"{name}: {field_name}={centre:g} px is far outside the {width}x{height} image "
                f"(allowed {-PRINCIPAL_POINT_MARGIN * size:g} to {(1 + PRINCIPAL_POINT_MARGIN) * size:g})")


# ----------------------------------------------------------------------------- distortion


def distort_normalized(xy: np.ndarray, model: str, D: np.ndarray) -> np.ndarray:
    """Apply lens distortion to ``(*, 2)`` normalised coordinates (same formulas as OpenCV)."""
    xy = np.asarray(xy, dtype=np.float64)
    D = _padded_coefficients(D, model, "D")
    if model == "none":
        return xy.copy()
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    if model == "equidistant":
        r = np.sqrt(r2)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (D[0] + t2 * (D[1] + t2 * (D[2] + t2 * D[3]))))
        scale = np.where(r > 1e-12, theta_d / np.where(r > 1e-12, r, 1.0), 1.0)
        return xy * scale[..., None]
    k1, k2, p1, p2, k3 = D[:5]
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    if model == "rational_polynomial":
        radial = radial / (1 + r2 * (D[5] + r2 * (D[6] + r2 * D[7])))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], axis=-1)


def undistort_normalized(xy_d: np.ndarray, model: str, D: np.ndarray) -> np.ndarray:
    """Invert :func:`distort_normalized` for ``(*, 2)`` distorted normalised coordinates (OpenCV)."""
    xy_d = np.asarray(xy_d, dtype=np.float64)
    D = _padded_coefficients(D, model, "D")
    # A fisheye bends rays even with zero coefficients (theta_d = theta); the others are identity then.
    if model == "none" or (model != "equidistant" and not np.any(D)) or xy_d.size == 0:
        return xy_d.copy()
    points = np.ascontiguousarray(xy_d.reshape(-1, 1, 2))
    identity = np.eye(3)
    if model == "equidistant":
        try:
            out = cv2.fisheye.undistortPoints(points, identity, D, criteria=_UNDISTORT_CRITERIA)
        except TypeError:  # OpenCV < 4.6 has no criteria argument here
            out = cv2.fisheye.undistortPoints(points, identity, D)
    elif hasattr(cv2, "undistortPointsIter"):  # OpenCV 4.x
        out = cv2.undistortPointsIter(points, identity, D, None, None, _UNDISTORT_CRITERIA)
    else:  # OpenCV 5 folded the criteria into undistortPoints
        out = cv2.undistortPoints(points, identity, D, criteria=_UNDISTORT_CRITERIA)
    return _refine_undistortion(out.reshape(xy_d.shape), xy_d, model, D)


def _refine_undistortion(
    xy: np.ndarray, xy_d: np.ndarray, model: str, D: np.ndarray, steps: int = 4
) -> np.ndarray:
    """Newton steps on ``distort(xy) = xy_d``.

    OpenCV's fixed-point iteration converges slowly where the distortion is strong (wide lenses
    near the image corners) and can stop ~1e-5 short of the solution; Newton's method with a
    numerical Jacobian finishes the job in a few steps.
    """
    step = 1e-7
    for _ in range(steps):
        residual = distort_normalized(xy, model, D) - xy_d
        jacobian = np.stack(
            [
                (distort_normalized(xy + [step, 0.0], model, D)
                 - distort_normalized(xy - [step, 0.0], model, D)) / (2 * step),
                (distort_normalized(xy + [0.0, step], model, D)
                 - distort_normalized(xy - [0.0, step], model, D)) / (2 * step),
            ],
            axis=-1,
        )
        determinant = jacobian[..., 0, 0] * jacobian[..., 1, 1] - jacobian[..., 0, 1] * jacobian[..., 1, 0]
        usable = np.abs(determinant) > 1e-12
        safe = np.where(usable, determinant, 1.0)
        dx = (jacobian[..., 1, 1] * residual[..., 0] - jacobian[..., 0, 1] * residual[..., 1]) / safe
        dy = (jacobian[..., 0, 0] * residual[..., 1] - jacobian[..., 1, 0] * residual[..., 0]) / safe
        xy = xy - np.where(usable[..., None], np.stack([dx, dy], axis=-1), 0.0)
    return xy


# ----------------------------------------------------------------------------- projection


def project(xyz_m: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Project ``(*, 3)`` camera points (metres) to ``(*, 2)`` pixels, distortion included.

    Points with z <= 0 are behind the camera and project to NaN.
    """
    xyz_m = np.asarray(xyz_m, dtype=np.float64)
    z = xyz_m[..., 2:3]
    in_front = z > 0
    xy = xyz_m[..., :2] / np.where(in_front, z, 1.0)
    xy_d = distort_normalized(xy, intr.distortion_model, intr.D)
    uv = xy_d @ intr.K[:2, :2].T + intr.K[:2, 2]
    return np.where(in_front, uv, np.nan)


def pixel_rays(uv_px: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """``(*, 3)`` rays ``[x, y, 1]`` (undistorted normalised coordinates) through ``(*, 2)`` pixels."""
    uv_px = np.asarray(uv_px, dtype=np.float64)
    K_inv = np.linalg.inv(intr.K)
    xy_d = uv_px @ K_inv[:2, :2].T + K_inv[:2, 2]
    xy = undistort_normalized(xy_d, intr.distortion_model, intr.D)
    return np.concatenate([xy, np.ones_like(xy[..., :1])], axis=-1)


def back_project(uv_px: np.ndarray, depth_m: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Camera points ``(*, 3)`` at depth ``depth_m`` (z, metres, shape ``(*)``) behind pixels ``(*, 2)``.

    MAR Eq. 1 / DRM Eq. 13: ``P = Z K^-1 [u, v, 1]^T`` after undistorting ``(u, v)``.
    """
    return pixel_rays(uv_px, intr) * np.asarray(depth_m, dtype=np.float64)[..., None]


# ----------------------------------------------------------------------------- image transforms


@dataclass(frozen=True, eq=False)
class ImageTransform:
    """A pixel affine map ``[u', v', 1]^T = A [u, v, 1]^T`` onto an output image of ``out_size``.

    Attributes:
        A: (3, 3) float64 matrix with last row ``[0, 0, 1]``.
        out_size: (width, height) of the transformed image in pixels.
    """

    A: np.ndarray
    out_size: tuple[int, int]

    def then(self, other: "ImageTransform") -> "ImageTransform":
        """This transform followed by ``other``."""
        return ImageTransform(other.A @ self.A, other.out_size)


def _affine(a: float, b: float, tx: float, ty: float, out_size: tuple[int, int]) -> ImageTransform:
    return ImageTransform(
        np.array([[a, 0.0, tx], [0.0, b, ty], [0.0, 0.0, 1.0]]), (int(out_size[0]), int(out_size[1]))
    )


def resize_transform(src_size: tuple[int, int], dst_size: tuple[int, int]) -> ImageTransform:
    """Resize a ``src_size`` image to ``dst_size`` (both (w, h)) with half-pixel centres.

    Matches ``cv2.resize`` and ``torch.nn.functional.interpolate(align_corners=False)``:
    ``u' = (u + 0.5) * s - 0.5``.
    """
    sx, sy = dst_size[0] / src_size[0], dst_size[1] / src_size[1]
    return _affine(sx, sy, 0.5 * (sx - 1), 0.5 * (sy - 1), dst_size)


def crop_transform(x0: int, y0: int, size: tuple[int, int]) -> ImageTransform:
    """Crop the ``size`` (w, h) window whose top-left pixel is ``(x0, y0)``."""
    return _affine(1.0, 1.0, -x0, -y0, size)


def pad_transform(left: int, top: int, out_size: tuple[int, int]) -> ImageTransform:
    """Place the image at ``(left, top)`` in an ``out_size`` canvas."""
    return _affine(1.0, 1.0, left, top, out_size)


def hflip_transform(width: int, height: int) -> ImageTransform:
    """Mirror the image left-right: column i becomes column ``width - 1 - i``."""
    return _affine(-1.0, 1.0, width - 1, 0.0, (width, height))


def rotate_transform(
    center_px: tuple[float, float], angle_deg: float, scale: float, out_size: tuple[int, int]
) -> ImageTransform:
    """Rotate by ``angle_deg`` (counter-clockwise on screen) and scale about ``center_px``.

    Same matrix as ``cv2.getRotationMatrix2D``.
    """
    A = np.eye(3)
    A[:2] = cv2.getRotationMatrix2D((float(center_px[0]), float(center_px[1])), angle_deg, scale)
    return ImageTransform(A, (int(out_size[0]), int(out_size[1])))


def letterbox_layout(
    src_size: tuple[int, int], dst_size: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where a letterboxed image goes: ``((new_w, new_h), (left, top))``.

    The resized image is ``round(w * s) x round(h * s)`` with ``s = min(W'/w, H'/h)``, centred.
    """
    scale = min(dst_size[0] / src_size[0], dst_size[1] / src_size[1])
    new_size = (max(1, round(src_size[0] * scale)), max(1, round(src_size[1] * scale)))
    return new_size, ((dst_size[0] - new_size[0]) // 2, (dst_size[1] - new_size[1]) // 2)


def letterbox_transform(src_size: tuple[int, int], dst_size: tuple[int, int]) -> ImageTransform:
    """Resize keeping the aspect ratio so the image fits ``dst_size``, then pad it centred."""
    new_size, (left, top) = letterbox_layout(src_size, dst_size)
    return resize_transform(src_size, new_size).then(pad_transform(left, top, dst_size))


def transform_points_px(uv_px: np.ndarray, transform: ImageTransform) -> np.ndarray:
    """Apply an image transform to ``(*, 2)`` pixel coordinates."""
    uv_px = np.asarray(uv_px, dtype=np.float64)
    return uv_px @ transform.A[:2, :2].T + transform.A[:2, 2]


def transform_intrinsics(
    intr: Intrinsics, transform: ImageTransform
) -> tuple[Intrinsics, np.ndarray]:
    """Intrinsics of the transformed image, and the map of camera points into its frame.

    The pixel map ``A`` acts on ``K``: ``A K = K' Q`` with ``K'`` upper triangular (positive
    focal lengths) and ``Q`` orthogonal about the optical axis (RQ decomposition). ``Q`` is the
    identity for resize / crop / pad, ``diag(-1, 1, 1)`` for a horizontal flip (the mirrored image
    shows the mirrored world) and a rotation about z for an in-plane rotation. Lens distortion is
    radially symmetric except for its tangential part, whose vector ``(p2, p1)`` turns with ``Q``.

    Returns:
        ``(intrinsics, Q)``: ``project(points @ Q.T, intrinsics)`` equals
        ``transform_points_px(project(points, intr), transform)``.
    """
    M = transform.A @ intr.K
    # RQ decomposition of the 2x2 block through QR of its row-reversed transpose.
    flip = np.array([[0.0, 1.0], [1.0, 0.0]])
    q, r = np.linalg.qr((flip @ M[:2, :2]).T)
    upper = flip @ r.T @ flip
    rotation2 = flip @ q.T
    signs = np.diag(np.sign(np.diag(upper)))
    upper, rotation2 = upper @ signs, signs @ rotation2
    K_new = np.eye(3)
    K_new[:2, :2] = upper
    K_new[:2, 2] = M[:2, 2]
    K_new[1, 0] = 0.0
    D = np.array(intr.D, dtype=np.float64)
    if intr.distortion_model in ("plumb_bob", "rational_polynomial"):
        p2, p1 = rotation2 @ np.array([D[3], D[2]])
        D[2], D[3] = p1, p2
    Q = np.eye(3)
    Q[:2, :2] = rotation2
    new = Intrinsics(K_new, transform.out_size[0], transform.out_size[1], intr.distortion_model, D,
                     intr.rectified)
    return new, Q


def warp_image(
    image: np.ndarray,
    transform: ImageTransform,
    interpolation: int = cv2.INTER_LINEAR,
    border_value: float | tuple[float, ...] = 0,
) -> np.ndarray:
    """Resample ``image`` (H, W[, C]) through ``transform`` (same pixel convention as the points)."""
    return cv2.warpAffine(
        image, transform.A[:2], transform.out_size, flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT, borderValue=border_value,
    )
