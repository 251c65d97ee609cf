"""Ray casting of capsules and ellipsoids: closed-form intersections, screen binning, depth buffer,
and exact per-joint visibility. Torch, batched; float32 for images, float64 for visibility.

Rays start at the camera centre with directions ``d = (x, y, 1)`` (undistorted normalised
coordinates in the optical frame: x right, y down, z forward), so the ray parameter of a hit is its
depth z.

Intersections (front surface): a capsule is the set of points within ``r`` of the segment ``ab``;
the ray is tested against the infinite cylinder and, where that hit lies beyond an end, against
that end's sphere (the standard capsule test). An ellipsoid with semi-axes ``E`` (columns) is the
unit sphere in the coordinates ``E^-1 (p - c)``. Both quadratics are solved from a ray origin moved
next to the primitive, so float32 keeps its precision at 15 m.

Screen binning keeps the work proportional to the covered area: the image is cut into 16x16 tiles;
each primitive's exact bounding box in normalised coordinates (from its end spheres, or its
bounding sphere) selects the tiles it may cover, and intersections are computed for those
(tile, primitive) pairs only, then reduced into a depth buffer with ``scatter_reduce('amin')``,
which does not depend on the order of the pairs (deterministic). Ties go to the higher primitive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from mp3d_ros.geometry.camera import Intrinsics, pixel_rays, project
from mp3d_ros.geometry.camera_torch import pinhole_rays
from mp3d_ros.synthetic.body import Primitives

__all__ = [
    "TILE",
    "dot3",
    "ray_capsule_depth",
    "ray_ellipsoid_depth",
    "image_rays",
    "image_rays_batch",
    "ray_grid",
    "RAY_GRID_PX",
    "PackedPrimitives",
    "pack_primitives",
    "depth_buffer",
    "joint_visibility",
]

TILE = 16


def dot3(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Dot products over the last axis of (*, 3) tensors, component by component (the same
    arithmetic for any batch size, on any device)."""
    return x[..., 0] * y[..., 0] + x[..., 1] * y[..., 1] + x[..., 2] * y[..., 2]


def ray_capsule_depth(
    x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, r: torch.Tensor
) -> torch.Tensor:
    """Depth ``t`` of the first hit of the rays ``t (x, y, 1)`` with capsules; inf on a miss.

    Written per component (no (*, 3) temporaries), the fastest form on a CPU.

    Args:
        x, y: (*) normalised coordinates of the rays.
        a, b: (*, 3) segment ends; r: (*) radii (all broadcast against ``x``).
    """
    dd = x * x + y * y + 1
    mx, my, mz = (a[..., i] + b[..., i] for i in range(3))
    t0 = (x * mx + y * my + mz) / (2 * dd)
    # The ray origin moves to t0 (x, y, 1), next to the capsule: oa is small, so float32 is precise.
    oax, oay, oaz = t0 * x - a[..., 0], t0 * y - a[..., 1], t0 - a[..., 2]
    bax, bay, baz = b[..., 0] - a[..., 0], b[..., 1] - a[..., 1], b[..., 2] - a[..., 2]
    baba = bax * bax + bay * bay + baz * baz
    bard = bax * x + bay * y + baz
    baoa = bax * oax + bay * oay + baz * oaz
    rdoa = x * oax + y * oay + oaz
    qa = baba * dd - bard * bard
    qb = baba * rdoa - baoa * bard
    qc = baba * (oax * oax + oay * oay + oaz * oaz) - baoa * baoa - r * r * baba
    h = qb * qb - qa * qc
    parallel = qa <= 1e-9 * baba * dd
    t_body = (-qb - torch.sqrt(h.clamp_min(0))) / torch.where(parallel, torch.ones_like(qa), qa)
    s = baoa + t_body * bard
    on_body = (h >= 0) & ~parallel & (s > 0) & (s < baba)
    # Beyond an end the first hit is on that end's sphere; along the axis, on the nearer end's.
    far_end = torch.where(parallel, bard < 0, s > 0).to(x.dtype)
    ocx, ocy, ocz = oax - far_end * bax, oay - far_end * bay, oaz - far_end * baz
    b2 = x * ocx + y * ocy + ocz
    h2 = b2 * b2 - dd * (ocx * ocx + ocy * ocy + ocz * ocz - r * r)
    t_cap = (-b2 - torch.sqrt(h2.clamp_min(0))) / dd
    t = torch.where(on_body, t_body, t_cap) + t0
    hit = (on_body | ((h2 >= 0) & ((h >= 0) | parallel))) & (t > 0)
    return torch.where(hit, t, torch.full_like(t, math.inf))


def ray_ellipsoid_depth(
    x: torch.Tensor, y: torch.Tensor, center: torch.Tensor, inverse_axes: torch.Tensor
) -> torch.Tensor:
    """Depth of the first hit of the rays ``t (x, y, 1)`` with ellipsoids ``|A^-1 (p - c)| = 1``.

    inf on a miss.

    Args:
        x, y: (*) normalised coordinates of the rays.
        center: (*, 3) centres; inverse_axes: (*, 3, 3) inverses of the semi-axis matrices.
    """
    dd = x * x + y * y + 1
    t0 = (x * center[..., 0] + y * center[..., 1] + center[..., 2]) / dd
    w = (t0 * x - center[..., 0], t0 * y - center[..., 1], t0 - center[..., 2])
    m = inverse_axes
    q = [m[..., i, 0] * w[0] + m[..., i, 1] * w[1] + m[..., i, 2] * w[2] for i in range(3)]
    e = [m[..., i, 0] * x + m[..., i, 1] * y + m[..., i, 2] for i in range(3)]
    ee = e[0] * e[0] + e[1] * e[1] + e[2] * e[2]
    qe = q[0] * e[0] + q[1] * e[1] + q[2] * e[2]
    h = qe * qe - ee * (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] - 1)
    t = (-qe - torch.sqrt(h.clamp_min(0))) / ee + t0
    return torch.where((h >= 0) & (t > 0), t, torch.full_like(t, math.inf))


# ----------------------------------------------------------------------------- rays and bins


# Pixel spacing of the grid on which a distorted camera's rays are undistorted exactly (OpenCV's
# iterative undistortion of every pixel would take ~1 s per image); the rays in between are
# interpolated with cubic convolution (Keys, a = -0.5), whose error falls with the 4th power of the
# spacing: below 0.01 px for the lenses of the synthetic scenes (checked in test_render.py).
RAY_GRID_PX = 8


def _cubic_axis(values: torch.Tensor, positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Cubic convolution of ``values`` along ``dim`` at fractional grid ``positions``.

    The grid needs one sample before and two after every position (the caller pads it).
    """
    base = positions.floor().long().clamp(1, values.shape[dim] - 3)
    t = (positions - base).to(values.dtype)
    shape = [1] * values.dim()
    shape[dim] = -1
    t = t.reshape(shape)
    weights = (
        ((-0.5 * t + 1.0) * t - 0.5) * t,
        (1.5 * t - 2.5) * t * t + 1.0,
        ((-1.5 * t + 2.0) * t + 0.5) * t,
        (0.5 * t - 0.5) * t * t,
    )
    return sum(w * values.index_select(dim, base + k - 1) for k, w in enumerate(weights))


def _distorted(intr: Intrinsics) -> bool:
    return intr.distortion_model != "none" and bool(np.any(intr.D))


def ray_grid(intr: Intrinsics) -> np.ndarray | None:
    """(Gv, Gu, 2) float64 undistorted normalised coordinates of the pixels every
    :data:`RAY_GRID_PX` pixels (from one step before the image to two after it, for the cubic's
    outer samples), which :func:`image_rays` interpolates; None for a camera without distortion.

    Exact (:func:`mp3d_ros.geometry.camera.pixel_rays`) and the slow part of a distorted camera's rays
    (milliseconds), so a scene computes it once, where it is sampled.
    """
    if not _distorted(intr):
        return None
    step = RAY_GRID_PX
    grid_v = np.arange(-step, intr.height - 1 + 3 * step, step, dtype=np.float64)
    grid_u = np.arange(-step, intr.width - 1 + 3 * step, step, dtype=np.float64)
    gv, gu = np.meshgrid(grid_v, grid_u, indexing="ij")
    return pixel_rays(np.stack([gu, gv], axis=-1), intr)[..., :2]


def image_rays_batch(
    intrinsics: Sequence[Intrinsics], height_p: int, width_p: int, device: torch.device | str,
    grids: Sequence[np.ndarray | None] | None = None,
) -> torch.Tensor:
    """(B, height_p, width_p, 2) float32 undistorted normalised coordinates ``(x, y)`` of the pixels
    of B padded images of one size: the ray of a pixel is ``(x, y, 1)``. Padding pixels (beyond the
    image) repeat the rays of the border.

    Pinhole rays are exact; a distorted camera's are interpolated from its :func:`ray_grid`
    (``grids[b]``, computed here when absent). Every value is computed alone, so a batch gives the
    rays of its cameras one by one.
    """
    width, height = intrinsics[0].size
    v = torch.arange(height_p, device=device, dtype=torch.float64).clamp_max(height - 1)
    u = torch.arange(width_p, device=device, dtype=torch.float64).clamp_max(width - 1)
    K = torch.as_tensor(np.stack([intr.K for intr in intrinsics]), device=device)
    pixels = torch.stack(torch.meshgrid(u, v, indexing="xy"), dim=-1)  # (height_p, width_p, 2) as (u, v)
    rays = pinhole_rays(pixels, K[:, None, None])[..., :2]
    grids = [None] * len(intrinsics) if grids is None else list(grids)
    distorted = [b for b, intr in enumerate(intrinsics) if _distorted(intr)]
    if distorted:
        step = RAY_GRID_PX
        grid = np.stack([ray_grid(intrinsics[b]) if grids[b] is None else grids[b]
                         for b in distorted])
        grid = torch.as_tensor(grid, dtype=torch.float64, device=device)
        grid = _cubic_axis(grid, v / step + 1, 1)
        rays[distorted] = _cubic_axis(grid, u / step + 1, 2)
    return rays.to(torch.float32)


def image_rays(
    intr: Intrinsics, height_p: int, width_p: int, device: torch.device | str
) -> torch.Tensor:
    """(height_p, width_p, 2) float32 rays of one camera (:func:`image_rays_batch`)."""
    return image_rays_batch([intr], height_p, width_p, device)[0]


def _sphere_bounds(center: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """(*, 4) exact ``x_min, x_max, y_min, y_max`` of spheres in normalised coordinates.

    The tangents from the origin to the circle (c_i, c_z) of radius r have slopes
    ``(c_i c_z -+ r sqrt(c_i^2 + c_z^2 - r^2)) / (c_z^2 - r^2)``; spheres reaching z <= r get the
    whole plane.
    """
    cz = center[..., 2]
    denominator = cz * cz - radius * radius
    in_front = cz > radius * 1.001
    safe = torch.where(in_front, denominator, torch.ones_like(denominator))
    bounds = []
    for i in (0, 1):
        ci = center[..., i]
        root = radius * torch.sqrt((ci * ci + denominator).clamp_min(0))
        low, high = (ci * cz - root) / safe, (ci * cz + root) / safe
        bounds += [torch.where(in_front, low, torch.full_like(low, -math.inf)),
                   torch.where(in_front, high, torch.full_like(high, math.inf))]
    return torch.stack(bounds, dim=-1)


def _tile_pairs(tile_bounds: torch.Tensor, prim_bounds: torch.Tensor, prim_image: torch.Tensor):
    """(tile, primitive) index pairs whose boxes overlap; tiles are numbered across the batch.

    Args:
        tile_bounds: (B, T, 4) normalised-coordinate boxes of the tiles.
        prim_bounds: (N, 4) boxes of the primitives; prim_image: (N,) their image index.
    """
    tiles = tile_bounds[prim_image]  # (N, T, 4)
    box = prim_bounds[:, None, :]
    overlap = (
        (tiles[..., 0] <= box[..., 1]) & (tiles[..., 1] >= box[..., 0])
        & (tiles[..., 2] <= box[..., 3]) & (tiles[..., 3] >= box[..., 2])
    )
    prim, tile = torch.nonzero(overlap, as_tuple=True)
    return prim_image[prim] * tile_bounds.shape[1] + tile, prim


# ----------------------------------------------------------------------------- batch packing


@dataclass(frozen=True)
class PackedPrimitives:
    """The primitives of a batch of images as tensors on one device. N capsules, M ellipsoids.

    Person indices are global across the batch (``person_offset[b]`` is image b's first person).
    """

    cap_a: torch.Tensor  # (N, 3)
    cap_b: torch.Tensor  # (N, 3)
    cap_r: torch.Tensor  # (N,)
    cap_part: torch.Tensor  # (N,)
    cap_person: torch.Tensor  # (N,)
    cap_image: torch.Tensor  # (N,)
    ell_c: torch.Tensor  # (M, 3)
    ell_inv: torch.Tensor  # (M, 3, 3) inverse semi-axis matrices
    ell_part: torch.Tensor  # (M,)
    ell_person: torch.Tensor  # (M,)
    ell_image: torch.Tensor  # (M,)
    ell_radius: torch.Tensor  # (M,) bounding sphere radii
    person_offset: torch.Tensor  # (B,)

    @property
    def num_capsules(self) -> int:
        return int(self.cap_r.shape[0])


def pack_primitives(
    primitives: Sequence[Primitives],
    num_people: Sequence[int],
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> PackedPrimitives:
    """Concatenate the primitives of B images (image b has ``num_people[b]`` people)."""
    device = torch.device(device)
    real = lambda x: torch.as_tensor(np.asarray(x), dtype=dtype, device=device)  # noqa: E731
    index = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.int64, device=device)  # noqa: E731
    offsets = np.cumsum([0] + list(num_people))[:-1].astype(np.int64)
    cat = lambda name: np.concatenate([getattr(p, name) for p in primitives])  # noqa: E731
    per_image = lambda name: np.concatenate(  # noqa: E731
        [np.full(len(getattr(p, name)), i, dtype=np.int64) for i, p in enumerate(primitives)]
    )
    axes = cat("ellipsoid_axes_m").reshape(-1, 3, 3)
    return PackedPrimitives(
        cap_a=real(cat("capsule_a_m").reshape(-1, 3)),
        cap_b=real(cat("capsule_b_m").reshape(-1, 3)),
        cap_r=real(cat("capsule_radius_m")),
        cap_part=index(cat("capsule_part")),
        cap_person=index(np.concatenate(
            [p.capsule_person + o for p, o in zip(primitives, offsets)])),
        cap_image=index(per_image("capsule_part")),
        ell_c=real(cat("ellipsoid_center_m").reshape(-1, 3)),
        ell_inv=real(np.linalg.inv(axes) if len(axes) else axes),
        ell_part=index(cat("ellipsoid_part")),
        ell_person=index(np.concatenate(
            [p.ellipsoid_person + o for p, o in zip(primitives, offsets)])),
        ell_image=index(per_image("ellipsoid_part")),
        ell_radius=real(np.linalg.norm(axes, axis=1).max(axis=1) if len(axes) else np.zeros(0)),
        person_offset=index(offsets),
    )


def depth_buffer(rays_tiles: torch.Tensor, tile_bounds: torch.Tensor, packed: PackedPrimitives):
    """Nearest depth and primitive (capsules first, then ellipsoids) of every pixel.

    Args:
        rays_tiles: (B * T, TILE * TILE, 2) ray coordinates ``(x, y)`` in tile-major order.
        tile_bounds: (B, T, 4) tile boxes in normalised coordinates.

    Returns:
        ``(depth, prim)``: (B * T * TILE * TILE,) float32 depth (inf: no hit) and int64 index
        (-1: no hit) in tile-major order.
    """
    device = rays_tiles.device
    num_pixels = rays_tiles.shape[0] * rays_tiles.shape[1]
    lanes = torch.arange(rays_tiles.shape[1], device=device)
    # One scatter of 64-bit keys (depth bits, then the complement of the primitive index) finds the
    # nearest depth and, among equal depths, the higher primitive: the bits of floats >= 0 sort
    # like the floats, and an integer minimum does not depend on the order of the pairs.
    keys = torch.full((num_pixels,), _MISS_KEY, dtype=torch.int64, device=device)
    num_capsules = packed.num_capsules
    if num_capsules:
        bounds_a = _sphere_bounds(packed.cap_a, packed.cap_r)
        bounds_b = _sphere_bounds(packed.cap_b, packed.cap_r)
        low = torch.minimum(bounds_a, bounds_b)
        high = torch.maximum(bounds_a, bounds_b)
        bounds = torch.stack([low[:, 0], high[:, 1], low[:, 2], high[:, 3]], dim=-1)
        tile, prim = _tile_pairs(tile_bounds, bounds, packed.cap_image)
        t = ray_capsule_depth(
            rays_tiles[tile, :, 0], rays_tiles[tile, :, 1], packed.cap_a[prim, None],
            packed.cap_b[prim, None], packed.cap_r[prim, None],
        )
        _scatter_nearest(keys, tile[:, None] * lanes.numel() + lanes, t, prim)
    if packed.ell_c.shape[0]:
        bounds = _sphere_bounds(packed.ell_c, packed.ell_radius)
        tile, prim = _tile_pairs(tile_bounds, bounds, packed.ell_image)
        t = ray_ellipsoid_depth(
            rays_tiles[tile, :, 0], rays_tiles[tile, :, 1], packed.ell_c[prim, None],
            packed.ell_inv[prim, None],
        )
        _scatter_nearest(keys, tile[:, None] * lanes.numel() + lanes, t, prim + num_capsules)
    depth = (keys >> 32).to(torch.int32).view(torch.float32)
    winner = torch.where(torch.isfinite(depth), _PRIM_MASK - (keys & _PRIM_MASK),
                         torch.full_like(keys, -1))
    return depth, winner


_PRIM_MASK = 0xFFFFFFFF
_MISS_KEY = (0x7F800000 << 32) | _PRIM_MASK  # +inf, below every primitive


def _scatter_nearest(
    keys: torch.Tensor, pixels: torch.Tensor, t: torch.Tensor, prim: torch.Tensor
) -> None:
    """Lower ``keys`` (see :func:`depth_buffer`) at (K, L) ``pixels`` by the (K, L) depths ``t``
    (float32, >= 0 or inf) of the (K,) primitives ``prim``."""
    bits = t.view(torch.int32).to(torch.int64) << 32
    key = bits | (_PRIM_MASK - prim)[:, None]
    keys.scatter_reduce_(0, pixels.reshape(-1), key.reshape(-1), reduce="amin")


# ----------------------------------------------------------------------------- visibility


def _inside(points: torch.Tensor, packed: PackedPrimitives) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, N) and (K, M) masks: which capsules / ellipsoids contain each of (K, 3) points."""
    ba = packed.cap_b - packed.cap_a
    pa = points[:, None, :] - packed.cap_a
    s = (dot3(pa, ba) / dot3(ba, ba).clamp_min(1e-300)).clamp(0, 1)
    gap = pa - s[..., None] * ba
    in_capsule = dot3(gap, gap).sqrt() <= packed.cap_r * (1 + 1e-6) + 1e-9
    local = (packed.ell_inv @ (points[:, None, :] - packed.ell_c)[..., None])[..., 0]
    in_ellipsoid = dot3(local, local) <= (1 + 1e-6) ** 2
    return in_capsule, in_ellipsoid


def _row_min(t: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(K,) minimum over the kept entries of each row of (K, N) ``t``; inf for none."""
    masked = torch.where(keep, t, torch.full_like(t, math.inf))
    if masked.shape[1] == 0:
        return torch.full(masked.shape[:1], math.inf, dtype=t.dtype)
    return masked.amin(dim=1)


def joint_visibility(
    joints_cam_m: np.ndarray, primitives: Primitives, intr: Intrinsics
) -> np.ndarray:
    """(P, J) bool: which joints the camera sees.

    A joint is visible when it projects inside the image (``-0.5 <= u < W - 0.5``, same for v; for
    a distorted lens also inside the part of the image where the lens model is one-to-one) and the
    nearest surface along its own ray (an exact depth-buffer test at its projection) belongs to a
    primitive of the same person that contains the joint. Hidden by another person, or by another
    part of its own body (an arm behind the torso), it is not visible.

    Args:
        joints_cam_m: (P, J, 3) joints in the camera optical frame, metres.
        primitives: the solids of the same P people (person indices 0..P-1), camera frame.
        intr: the camera.
    """
    joints = np.asarray(joints_cam_m, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[-1] != 3:
        raise ValueError(f"joints_cam_m has shape {joints.shape}, expected (P, J, 3)")
    count, num_joints = joints.shape[:2]
    uv = project(joints, intr)
    z = joints[..., 2]
    with np.errstate(invalid="ignore"):
        visible = (
            np.all(np.isfinite(uv), axis=-1) & (z > 0)
            & (uv[..., 0] >= -0.5) & (uv[..., 0] < intr.width - 0.5)
            & (uv[..., 1] >= -0.5) & (uv[..., 1] < intr.height - 0.5)
        )
    if intr.distortion_model != "none" and visible.any():
        # Beyond the lens model's one-to-one range a pixel's ray is not the joint's ray.
        xy = joints[..., :2] / np.where(z > 0, z, 1.0)[..., None]
        back = pixel_rays(np.where(visible[..., None], uv, 0.0), intr)[..., :2]
        visible &= np.linalg.norm(back - xy, axis=-1) <= 1e-6 * (1 + np.linalg.norm(xy, axis=-1))
    if not visible.any():
        return visible
    packed = pack_primitives([primitives], [count], "cpu", dtype=torch.float64)
    points = torch.as_tensor(joints.reshape(-1, 3))
    x = (points[:, 0] / points[:, 2])[:, None]
    y = (points[:, 1] / points[:, 2])[:, None]
    person = torch.arange(count).repeat_interleave(num_joints)
    t_cap = ray_capsule_depth(x, y, packed.cap_a, packed.cap_b, packed.cap_r)
    t_ell = ray_ellipsoid_depth(x, y, packed.ell_c, packed.ell_inv)
    in_cap, in_ell = _inside(points, packed)
    own_cap = in_cap & (packed.cap_person == person[:, None])
    own_ell = in_ell & (packed.ell_person == person[:, None])
    t_own = torch.minimum(_row_min(t_cap, own_cap), _row_min(t_ell, own_ell))
    t_other = torch.minimum(_row_min(t_cap, ~own_cap), _row_min(t_ell, ~own_ell))
    seen = (torch.isfinite(t_own) & (t_own <= t_other)).numpy().reshape(count, num_joints)
    return visible & seen
