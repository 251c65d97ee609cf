"""Vectorised renderer of synthetic people scenes (torch; CPU, or CUDA when given a cuda device).

Every pixel casts the ray of its undistorted normalised coordinates (:mod:`mp3d_ros.synthetic.raycast`).
A distorted camera (the raw image of a real lens) gets the ray of each of its pixels from
:func:`mp3d_ros.geometry.camera.pixel_rays`, which undistorts the pixel: the image shows the world as that
lens does, and :func:`mp3d_ros.geometry.camera.project` of a 3D point lands where the point is drawn.

Shading: Lambert (ambient + diffuse from one directional light) with per-person part colours and
stripes, checks or blocky-noise textures that move with the person (anchored at the pelvis); the
head is hair except for the face (front, lower part). The ground plane ``y = 0`` is textured
(checker tiles, planks or value noise) with its contrast faded where a pixel covers more than half a
texture period (no aliasing far away), darkened under each person (blob shadow), and fogged into
the horizon colour. Above it: a vertical gradient with value noise and rectangles. Then the sensor:
white balance gains and noise. All randomness inside the renderer is an integer hash of
(position, seed) (:mod:`mp3d_ros.synthetic.noise`), so an image depends only on its inputs.

A batch is rendered with one set of tensor operations, about a thousand however many images it
holds: on a GPU the cost is then memory traffic, not kernel launches. Every pixel is computed on
its own with plain arithmetic (no exp: a CPU's vector and scalar code round it differently; no
fused multiply-adds; no sums across pixels), so a scene renders to the same image in any batch.
A GPU's arithmetic differs from the CPU's in places (a division by a constant is a multiplication
by its reciprocal there), which moves a pixel of a GPU image by a level now and then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.synthetic.body import PART_HAIR, PART_SKIN, Primitives
from mp3d_ros.synthetic.noise import (
    TABLE_SIDE,
    bilinear,
    hash_tables,
    hash_uniform,
    lattice_noise,
    lookup,
    value_noise,
)
from mp3d_ros.synthetic.raycast import (
    TILE,
    PackedPrimitives,
    depth_buffer,
    dot3,
    image_rays_batch,
    pack_primitives,
)

__all__ = [
    "Appearance",
    "Environment",
    "Scene",
    "Rendered",
    "render",
    "render_batch",
    "sample_appearance",
    "sample_environment",
    "NUM_PARTS",
]

NUM_PARTS = 5
_PATTERN_PLAIN, _PATTERN_STRIPES, _PATTERN_CHECKS, _PATTERN_NOISE = range(4)
_GROUND_CHECKER, _GROUND_PLANKS, _GROUND_NOISE = range(3)


@dataclass(frozen=True, eq=False)
class Appearance:
    """Colours and textures of P people (RGB in [0, 1]).

    Attributes:
        part_rgb: (P, NUM_PARTS, 3) base colour of each part (``body.PART_*``).
        pattern: (P, NUM_PARTS) int texture: 0 plain, 1 horizontal stripes, 2 checks, 3 noise.
        pattern_rgb: (P, NUM_PARTS, 3) second colour of the texture.
        pattern_period_m: (P, NUM_PARTS) texture period in metres.
    """

    part_rgb: np.ndarray
    pattern: np.ndarray
    pattern_rgb: np.ndarray
    pattern_period_m: np.ndarray


@dataclass(frozen=True, eq=False)
class Environment:
    """Camera pose, ground, background, light and sensor of one image.

    Attributes:
        R_cam_world: (3, 3) rotation of world vectors (Y up) into the camera optical frame.
        camera_height_m: camera height above the ground plane ``y = 0``.
        light_world: (3,) unit vector toward the light, world frame.
        ambient: ambient share of the light, in [0, 1].
        ground_pattern: 0 checker tiles, 1 planks, 2 noise.
        ground_rgb: (2, 3) the ground's two colours.
        ground_period_m: ground texture period.
        fog_m: distance over which the ground fades into the horizon colour.
        sky_rgb: (2, 3) background colours at the top and the bottom of the image.
        background_noise: amplitude of the background's value noise.
        background_scale_px: size of the background noise's cells in pixels.
        rects_px: (R, 4) background rectangles ``x0, y0, x1, y1`` in pixels (drawn in order).
        rects_rgb: (R, 3) their colours.
        shadow: darkening under each person in [0, 1].
        gain_rgb: (3,) sensor white balance / exposure gains.
        noise_sigma: standard deviation of the sensor noise (fraction of full scale).
        seed: seed of the hashed noise of this image.
    """

    R_cam_world: np.ndarray
    camera_height_m: float
    light_world: np.ndarray
    ambient: float
    ground_pattern: int
    ground_rgb: np.ndarray
    ground_period_m: float
    fog_m: float
    sky_rgb: np.ndarray
    background_noise: float
    background_scale_px: float
    rects_px: np.ndarray
    rects_rgb: np.ndarray
    shadow: float
    gain_rgb: np.ndarray
    noise_sigma: float
    seed: int


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything one image shows. P people.

    Attributes:
        intrinsics: the camera (its size is the image size; distortion is rendered).
        primitives: solids in the camera optical frame, person indices in ``0..P-1``.
        appearance: colours of the P people.
        anchors_cam_m: (P, 3) a point of each person (the pelvis) that textures move with.
        environment: ground, background, light and sensor.
        ray_grid: the distorted camera's :func:`mp3d_ros.synthetic.raycast.ray_grid`, computed where the
            scene is sampled (in a worker process, say); None: computed when rendering.
    """

    intrinsics: Intrinsics
    primitives: Primitives
    appearance: Appearance
    anchors_cam_m: np.ndarray
    environment: Environment
    ray_grid: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Rendered:
    """A batch of B rendered images (torch tensors on the render device).

    Attributes:
        image: (B, H, W, 3) uint8 RGB.
        depth_m: (B, H, W) float32 depth (z) of the nearest body surface, inf where none.
        person: (B, H, W) int64 index of the person seen at each pixel (within its scene), -1 none.
    """

    image: torch.Tensor
    depth_m: torch.Tensor
    person: torch.Tensor


# ----------------------------------------------------------------------------- shading


def _t(x, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _padded(rows: Sequence[np.ndarray], width: int) -> np.ndarray:
    """(B, N, width) of B (n_b, width) arrays padded with zeros to the longest (N)."""
    count = max((len(r) for r in rows), default=0)
    out = np.zeros((len(rows), count, width))
    for b, r in enumerate(rows):
        out[b, :len(r)] = np.reshape(r, (-1, width))
    return out


@dataclass(frozen=True)
class _SceneTensors:
    """Per-image and per-person render parameters of a batch of B images, on the render device."""

    up: torch.Tensor  # (B, 3) world up in the camera frame
    east: torch.Tensor  # (B, 3) world X in the camera frame
    north: torch.Tensor  # (B, 3) world Z in the camera frame
    light: torch.Tensor  # (B, 3) toward the light, camera frame
    ambient: torch.Tensor  # (B,)
    seed: torch.Tensor  # (B,) int64
    focal_px: torch.Tensor  # (B,) sqrt(fx fy)
    camera_height_m: torch.Tensor  # (B,)
    ground_pattern: torch.Tensor  # (B,) int64
    ground_rgb: torch.Tensor  # (B, 2, 3)
    ground_period_m: torch.Tensor  # (B,)
    fog_m: torch.Tensor  # (B,)
    ground_patterns: frozenset[int]  # the ground patterns of the batch
    shadow_anchors: torch.Tensor  # (B, P_max, 3) each image's people, padded with zeros
    shadow: torch.Tensor  # (B, P_max) darkening under each of them; 0 for the padding
    sky_rgb: torch.Tensor  # (B, 2, 3)
    background_noise: torch.Tensor  # (B,)
    background_cell_px: torch.Tensor  # (B,)
    rects_px: torch.Tensor  # (B, R_max, 4) int64; padding is empty
    rects_rgb: torch.Tensor  # (B, R_max, 3)
    gain_rgb: torch.Tensor  # (B, 3)
    noise_sigma: torch.Tensor  # (B,)
    part_rgb: torch.Tensor  # (P, NUM_PARTS, 3), P people of the whole batch
    pattern: torch.Tensor  # (P, NUM_PARTS)
    pattern_rgb: torch.Tensor  # (P, NUM_PARTS, 3)
    period: torch.Tensor  # (P, NUM_PARTS)
    anchors: torch.Tensor  # (P, 3)


def _scene_tensors(scenes: Sequence[Scene], device: torch.device) -> _SceneTensors:
    envs = [s.environment for s in scenes]
    R = np.stack([e.R_cam_world for e in envs])
    cat = lambda name: np.concatenate([getattr(s.appearance, name) for s in scenes])  # noqa: E731
    per_image = lambda name, dtype=torch.float32: _t(  # noqa: E731
        [getattr(e, name) for e in envs], device, dtype)
    anchors = _padded([s.anchors_cam_m for s in scenes], 3)
    shadow = _padded([np.full((len(s.anchors_cam_m), 1), s.environment.shadow) for s in scenes], 1)
    return _SceneTensors(
        up=_t(R[:, :, 1], device), east=_t(R[:, :, 0], device), north=_t(R[:, :, 2], device),
        light=_t(np.einsum("bij,bj->bi", R, [e.light_world for e in envs]), device),
        ambient=per_image("ambient"),
        seed=per_image("seed", torch.int64),
        focal_px=_t([math.sqrt(s.intrinsics.fx * s.intrinsics.fy) for s in scenes], device),
        camera_height_m=per_image("camera_height_m"),
        ground_pattern=per_image("ground_pattern", torch.int64),
        ground_rgb=per_image("ground_rgb"),
        ground_period_m=per_image("ground_period_m"),
        fog_m=per_image("fog_m"),
        ground_patterns=frozenset(int(e.ground_pattern) for e in envs),
        shadow_anchors=_t(anchors, device),
        shadow=_t(shadow[..., 0], device),
        sky_rgb=per_image("sky_rgb"),
        background_noise=per_image("background_noise"),
        background_cell_px=_t([max(float(e.background_scale_px), 2.0) for e in envs], device),
        rects_px=_t(_padded([e.rects_px for e in envs], 4), device, torch.int64),
        rects_rgb=_t(_padded([e.rects_rgb for e in envs], 3), device),
        gain_rgb=per_image("gain_rgb"),
        noise_sigma=per_image("noise_sigma"),
        part_rgb=_t(cat("part_rgb").reshape(-1, NUM_PARTS, 3), device),
        pattern=_t(cat("pattern").reshape(-1, NUM_PARTS), device, torch.int64),
        pattern_rgb=_t(cat("pattern_rgb").reshape(-1, NUM_PARTS, 3), device),
        period=_t(cat("pattern_period_m").reshape(-1, NUM_PARTS), device),
        anchors=_t(np.concatenate([s.anchors_cam_m for s in scenes]).reshape(-1, 3), device),
    )


def _matvec(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(K, 3) products of (K, 3, 3) matrices and (K, 3) vectors, component by component."""
    return torch.stack([dot3(m[:, i], v) for i in range(3)], dim=-1)


def _surface(points: torch.Tensor, prim: torch.Tensor, packed: PackedPrimitives):
    """Unit normals, part labels and person indices of hit ``points`` (K, 3) on primitives (K,)."""
    normal = torch.zeros_like(points)
    part = torch.zeros_like(prim)
    person = torch.zeros_like(prim)
    is_capsule = prim < packed.num_capsules
    capsules = torch.nonzero(is_capsule)[:, 0]
    ellipsoids = torch.nonzero(~is_capsule)[:, 0]
    index, p = prim[capsules], points[capsules]
    a, ba = packed.cap_a[index], packed.cap_b[index] - packed.cap_a[index]
    s = (dot3(p - a, ba) / dot3(ba, ba).clamp_min(1e-12)).clamp(0, 1)
    normal[capsules] = p - (a + s[:, None] * ba)
    part[capsules] = packed.cap_part[index]
    person[capsules] = packed.cap_person[index]
    index = prim[ellipsoids] - packed.num_capsules
    inverse = packed.ell_inv[index]
    local = _matvec(inverse, points[ellipsoids] - packed.ell_c[index])
    normal[ellipsoids] = _matvec(inverse.transpose(1, 2), local)
    label = packed.ell_part[index]
    # The head is hair but for the face: its front (local +z) below the hairline.
    face = (label == PART_HAIR) & (local[:, 2] > 0.3) & (local[:, 1] < 0.45)
    part[ellipsoids] = torch.where(face, torch.full_like(label, PART_SKIN), label)
    person[ellipsoids] = packed.ell_person[index]
    normal = normal / dot3(normal, normal).sqrt().clamp_min(1e-12)[:, None]
    return normal, part, person


def _shade_people(
    rays: torch.Tensor, depth: torch.Tensor, winner: torch.Tensor, packed: PackedPrimitives,
    tensors: _SceneTensors,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat indices of the K pixels showing a body, their (K, 3) linear RGB and (K,) scene-local
    person index, from (B, Hp, Wp, 2) rays and (B, Hp, Wp) depths and primitives."""
    pixels_per_image = depth[0].numel()
    hit = torch.nonzero(winner.reshape(-1) >= 0)[:, 0]
    xy = rays.reshape(-1, 2)[hit]
    points = depth.reshape(-1)[hit, None] * torch.cat([xy, torch.ones_like(xy[:, :1])], dim=1)
    image = hit // pixels_per_image
    normal, part, person = _surface(points, winner.reshape(-1)[hit], packed)
    relative = points - tensors.anchors[person]
    period = tensors.period[person, part]
    cells = [torch.floor(dot3(relative, axis[image]) / period)
             for axis in (tensors.up, tensors.east, tensors.north)]
    stripes = torch.remainder(cells[0], 2)
    checks = torch.remainder(cells[0] + cells[1] + cells[2], 2)
    local_person = person - packed.person_offset[image]  # the same texture in any batch
    blocks = hash_uniform(tensors.seed[image] * 97 + local_person, *cells)
    kind = tensors.pattern[person, part]
    mix = torch.where(kind == _PATTERN_NOISE, blocks, torch.zeros_like(blocks))
    mix = torch.where(kind == _PATTERN_CHECKS, checks, mix)
    mix = torch.where(kind == _PATTERN_STRIPES, stripes, mix)
    base = tensors.part_rgb[person, part]
    albedo = base + (tensors.pattern_rgb[person, part] - base) * mix[:, None]
    ambient = tensors.ambient[image]
    diffuse = dot3(normal, tensors.light[image]).clamp_min(0)
    return hit, albedo * (ambient + (1 - ambient) * diffuse)[:, None], local_person


def _per_image(values: torch.Tensor, dims: int) -> torch.Tensor:
    """(B, *) per-image values with ``dims`` trailing axes of 1, to broadcast over pixels."""
    return values.reshape(values.shape + (1,) * dims)


def _background(
    tensors: _SceneTensors, lattice: tuple[int, int], height_p: int, width_p: int, height: int
) -> torch.Tensor:
    """(B, height_p, width_p, 3) gradient, rectangles and value noise."""
    device = tensors.seed.device
    rows = torch.arange(height_p, device=device)
    cols = torch.arange(width_p, device=device)
    v = (rows.to(torch.float32) / height).clamp_max(1)[None, :, None, None]
    top, bottom = tensors.sky_rgb[:, None, None, 0], tensors.sky_rgb[:, None, None, 1]
    rgb = (top * (1 - v) + bottom * v).expand(-1, height_p, width_p, 3)
    # Rectangles are drawn in order: a pixel shows the last one that covers it.
    x0, y0, x1, y1 = tensors.rects_px.unbind(-1)  # (B, R) each
    shown = torch.zeros((len(rgb), height_p, width_p), dtype=torch.int64, device=device)
    for r in range(tensors.rects_px.shape[1]):
        in_rows = (rows >= y0[:, r, None]) & (rows < y1[:, r, None])
        in_cols = (cols >= x0[:, r, None]) & (cols < x1[:, r, None])
        shown.masked_fill_(in_rows[:, :, None] & in_cols[:, None, :], r + 1)
    if tensors.rects_px.shape[1]:
        palette = torch.cat([torch.zeros_like(tensors.rects_rgb[:, :1]), tensors.rects_rgb], 1)
        color = palette.reshape(-1, 3)[shown + _per_image(
            torch.arange(len(rgb), device=device) * palette.shape[1], 2)]
        rgb = torch.where((shown > 0)[..., None], color, rgb)
    cell = tensors.background_cell_px
    noise = 0.7 * lattice_noise(tensors.seed, cell, lattice, height_p, width_p) + 0.3 * (
        lattice_noise(tensors.seed + 1, cell / 6, (6 * lattice[0], 6 * lattice[1]), height_p,
                       width_p))
    return rgb * (1 + 2 * _per_image(tensors.background_noise, 2) * (noise - 0.5))[..., None]


def _along(xy: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """``(x, y, 1) . axis`` of (B, H, W, 2) ray coordinates and (B, 3) per-image axes."""
    axis = axis[:, None, None, :]
    return xy[..., 0] * axis[..., 0] + xy[..., 1] * axis[..., 1] + axis[..., 2]


def _ground_points(xy: torch.Tensor, tensors: _SceneTensors):
    """Depth ``t`` (inf above the horizon), world ground coordinates and ``d . up`` of
    (B, H, W, 2) rays."""
    down = _along(xy, tensors.up)
    ground = down < -1e-4
    safe_down = torch.where(ground, down, -torch.ones_like(down))
    t = torch.where(ground, -_per_image(tensors.camera_height_m, 2) / safe_down,
                    torch.full_like(down, math.inf))
    gx = torch.where(ground, t * _along(xy, tensors.east), torch.zeros_like(t))
    gz = torch.where(ground, t * _along(xy, tensors.north), torch.zeros_like(t))
    return t, gx, gz, down


def _fade(x: torch.Tensor) -> torch.Tensor:
    """``1 / (1 + x + x^2 / 2 + x^3 / 6)``, close to ``exp(-x)`` for x >= 0 (0 at inf), of plain
    arithmetic: exp differs between the vector and the scalar code of a CPU, which would make a
    pixel depend on where it lies in a tensor, hence on its batch."""
    return 1 / (1 + x * (1 + x * (0.5 + x / 6)))


# Radius of the blob shadow under each person: (1 - d^2 / R^2)^3, like a Gaussian of 0.3 m
# standard deviation near the centre, but of plain arithmetic (see _fade).
_SHADOW_RADIUS_M = 0.75


def _shadows(ground_x: torch.Tensor, ground_z: torch.Tensor, tensors: _SceneTensors) -> torch.Tensor:
    """(B, Hp, Wp) darkening of the ground under each person (a blob under the pelvis), from the
    (B, Hp, Wp) ground coordinates of the pixels.

    Soft, so computed on every 4th pixel and interpolated.
    """
    height_p, width_p = ground_x.shape[1:3]
    device = ground_x.device
    if tensors.shadow.shape[1] == 0:  # nobody in the batch
        return torch.zeros(ground_x.shape, device=device)
    gx, gz = ground_x[:, ::4, ::4], ground_z[:, ::4, ::4]
    anchors = tensors.shadow_anchors  # (B, P_max, 3)
    dx = gx[:, None] - dot3(anchors, tensors.east[:, None])[:, :, None, None]
    dz = gz[:, None] - dot3(anchors, tensors.north[:, None])[:, :, None, None]
    blob = (1 - (dx * dx + dz * dz) / _SHADOW_RADIUS_M ** 2).clamp_min(0)
    dark = (tensors.shadow[:, :, None, None] * blob * blob * blob).amax(1)
    rows = torch.arange(height_p, device=device, dtype=torch.float32).expand(len(ground_x), -1)
    cols = torch.arange(width_p, device=device, dtype=torch.float32).expand(len(ground_x), -1)
    return bilinear(dark, rows / 4, cols / 4)


def _ground(rays: torch.Tensor, tensors: _SceneTensors) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, Hp, Wp, 3) linear RGB of the ground seen along (B, Hp, Wp, 2) rays: texture, light,
    shadows, fog; and the (B, Hp, Wp) mask of the rays that point down to it."""
    t, gx, gz, down = _ground_points(rays, tensors)
    period = _per_image(tensors.ground_period_m, 2)
    pattern = _per_image(tensors.ground_pattern, 2)
    mix = torch.zeros_like(t)
    present = tensors.ground_patterns
    # Each pattern is computed where some image of the batch has it (every pixel computed alone).
    if _GROUND_CHECKER in present:
        checks = torch.remainder(torch.floor(gx / period) + torch.floor(gz / period), 2)
        mix = torch.where(pattern == _GROUND_CHECKER, checks, mix)
    if present - {_GROUND_CHECKER}:
        table = hash_tables(tensors.seed + 3, TABLE_SIDE, TABLE_SIDE)[..., 0]
    if _GROUND_PLANKS in present:  # boards of one period, six periods long
        board = torch.floor(gz / period)
        planks = lookup(table, torch.floor(gx / (6 * period) + 0.37 * board), board)
        mix = torch.where(pattern == _GROUND_PLANKS, planks, mix)
    if _GROUND_NOISE in present:
        mix = torch.where(pattern == _GROUND_NOISE, value_noise(table, gx / period, gz / period),
                          mix)
    # A pixel covers about t |d|^2 / (f |d . up|) metres of ground: fade what it cannot resolve.
    footprint = t * (rays[..., 0] * rays[..., 0] + rays[..., 1] * rays[..., 1] + 1) / (
        _per_image(tensors.focal_px, 2) * down.abs().clamp_min(1e-6))
    fade = (1 - footprint / (0.5 * period)).clamp(0, 1)
    c0, c1 = tensors.ground_rgb[:, None, None, 0], tensors.ground_rgb[:, None, None, 1]
    albedo = c0 + (c1 - c0) * (0.5 + (mix - 0.5) * fade)[..., None]
    sun = dot3(tensors.up, tensors.light).clamp_min(0)
    ambient = tensors.ambient
    shade = _per_image(ambient + (1 - ambient) * sun, 2) * (1 - _shadows(gx, gz, tensors))
    fog = _fade(t / _per_image(tensors.fog_m, 2))[..., None]
    horizon = tensors.sky_rgb[:, None, None, 1]
    return albedo * shade[..., None] * fog + horizon * (1 - fog), down < -1e-4


# ----------------------------------------------------------------------------- render


def _tiles(x: torch.Tensor, tiles_y: int, tiles_x: int) -> torch.Tensor:
    """(B, Hp, Wp, C) image layout -> (B * T, TILE * TILE, C) tile-major layout."""
    batch, channels = x.shape[0], x.shape[-1]
    x = x.reshape(batch, tiles_y, TILE, tiles_x, TILE, channels).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch * tiles_y * tiles_x, TILE * TILE, channels)


def _untiles(x: torch.Tensor, batch: int, tiles_y: int, tiles_x: int) -> torch.Tensor:
    """Inverse of :func:`_tiles`: (B * T * TILE * TILE, C) -> (B, Hp, Wp, C)."""
    x = x.reshape(batch, tiles_y, tiles_x, TILE, TILE, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, tiles_y * TILE, tiles_x * TILE, -1)


def render_batch(scenes: Sequence[Scene], device: torch.device | str = "cpu") -> Rendered:
    """Render B scenes of one image size on ``device``; see the module docstring.

    The whole batch is rendered with one set of tensor operations (about a thousand, however large
    the batch), each pixel's value computed alone: a scene renders to the same image in any
    batch (on one device with one thread, the same bytes).
    """
    if not scenes:
        raise ValueError("scenes is empty")
    device = torch.device(device)
    width, height = scenes[0].intrinsics.size
    if any(s.intrinsics.size != (width, height) for s in scenes):
        sizes = [s.intrinsics.size for s in scenes]
        raise ValueError(f"scenes have different image sizes: {sizes}")
    for i, s in enumerate(scenes):
        if len(s.appearance.part_rgb) != len(s.anchors_cam_m):
            raise ValueError(f"scene {i}: appearance has {len(s.appearance.part_rgb)} people, "
                             f"anchors_cam_m {len(s.anchors_cam_m)}")
    batch = len(scenes)
    tiles_y, tiles_x = -(-height // TILE), -(-width // TILE)
    height_p, width_p = tiles_y * TILE, tiles_x * TILE
    rays = image_rays_batch([s.intrinsics for s in scenes], height_p, width_p, device,
                            [s.ray_grid for s in scenes])
    rays_tiles = _tiles(rays, tiles_y, tiles_x)
    tile_bounds = torch.stack([
        rays_tiles[..., 0].amin(1), rays_tiles[..., 0].amax(1),
        rays_tiles[..., 1].amin(1), rays_tiles[..., 1].amax(1),
    ], dim=-1).reshape(batch, tiles_y * tiles_x, 4)
    counts = [len(s.anchors_cam_m) for s in scenes]
    packed = pack_primitives([s.primitives for s in scenes], counts, device)
    tensors = _scene_tensors(scenes, device)
    depth, winner = depth_buffer(rays_tiles, tile_bounds, packed)
    depth = _untiles(depth[:, None], batch, tiles_y, tiles_x)[..., 0]
    winner = _untiles(winner[:, None], batch, tiles_y, tiles_x)[..., 0]
    hit, people_rgb, hit_person = _shade_people(rays, depth, winner, packed, tensors)
    person = torch.full((depth.numel(),), -1, dtype=torch.int64, device=device)
    person[hit] = hit_person
    person = person.reshape(depth.shape)
    ground_rgb, ground = _ground(rays, tensors)
    cell = min(max(float(s.environment.background_scale_px), 2.0) for s in scenes)
    lattice = (int(height_p / cell) + 2, int(width_p / cell) + 2)
    linear = torch.where(ground[..., None], ground_rgb,
                         _background(tensors, lattice, height_p, width_p, height))
    linear.view(-1, 3)[hit] = people_rgb  # a fresh tensor: paint the people into it
    return Rendered(
        image=_sensor(linear, tensors)[:, :height, :width],
        depth_m=depth[:, :height, :width],
        person=person[:, :height, :width],
    )


def _sensor(linear: torch.Tensor, tensors: _SceneTensors) -> torch.Tensor:
    """(B, H, W, 3) uint8 from linear RGB: gains, uniform noise of std ``noise_sigma``, clipping.

    The noise is a 128-pixel hashed tile repeated over the image (hashing every pixel costs more
    than the rest of the sensor model).
    """
    height, width = linear.shape[1:3]
    # In units of 1/255, plus 0.5 so that the conversion to uint8 rounds.
    scale = _per_image(255 * tensors.noise_sigma * math.sqrt(12.0), 3)
    tile = (hash_tables(tensors.seed + 11, 128, 128, channels=3) - 0.5) * scale + 0.5
    noise = tile.repeat(1, -(-height // 128), -(-width // 128), 1)[:, :height, :width]
    rgb = linear * (tensors.gain_rgb[:, None, None, :] * 255) + noise  # no fused multiply-add
    return rgb.clamp_(0, 255).to(torch.uint8)


def render(
    scene: Scene, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one scene: ``(image (H, W, 3) uint8 RGB, depth_m (H, W), person (H, W))`` as numpy."""
    out = render_batch([scene], device)
    return out.image[0].cpu().numpy(), out.depth_m[0].cpu().numpy(), out.person[0].cpu().numpy()


# ----------------------------------------------------------------------------- sampling

_SKIN_RGB = np.array([
    [0.98, 0.85, 0.75], [0.95, 0.80, 0.69], [0.88, 0.68, 0.55], [0.76, 0.57, 0.42],
    [0.55, 0.38, 0.26], [0.36, 0.24, 0.16],
])
_HAIR_RGB = np.array([
    [0.05, 0.04, 0.03], [0.20, 0.12, 0.07], [0.40, 0.26, 0.13], [0.80, 0.66, 0.40],
    [0.60, 0.60, 0.60], [0.55, 0.20, 0.08],
])
_TROUSERS_RGB = np.array([  # denim, black, grey, khaki
    [0.15, 0.20, 0.35], [0.05, 0.05, 0.06], [0.35, 0.35, 0.37], [0.60, 0.55, 0.40],
])


def _hsv(
    rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]
) -> np.ndarray:
    """A random colour: uniform hue, saturation and value in the given ranges."""
    h, s, v = rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value)
    k = (np.array([5.0, 3.0, 1.0]) + 6 * h) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def sample_appearance(rng: np.random.Generator, count: int) -> Appearance:
    """Colours and textures of ``count`` people: skin tones, hair, clothes with patterns."""
    part_rgb = np.zeros((count, NUM_PARTS, 3))
    pattern = np.zeros((count, NUM_PARTS), dtype=np.int64)
    pattern_rgb = np.zeros((count, NUM_PARTS, 3))
    period = np.full((count, NUM_PARTS), 0.1)
    for i in range(count):
        skin = _SKIN_RGB[rng.integers(len(_SKIN_RGB))] * rng.uniform(0.9, 1.05)
        hair = skin * 0.9 if rng.random() < 0.05 else _HAIR_RGB[rng.integers(len(_HAIR_RGB))]
        top = _hsv(rng, (0.0, 0.9), (0.12, 0.95))
        bottom = (_TROUSERS_RGB[rng.integers(len(_TROUSERS_RGB))] * rng.uniform(0.8, 1.2)
                  if rng.random() < 0.7 else _hsv(rng, (0.0, 0.7), (0.1, 0.8)))
        shoes = np.full(3, 0.9) if rng.random() < 0.15 else _hsv(rng, (0.0, 0.5), (0.03, 0.4))
        part_rgb[i] = [skin, hair, top, bottom, shoes]
        # Tops: plain, stripes, checks or noise; trousers: plain or noise.
        pattern[i, 2] = rng.choice(4, p=[0.5, 0.2, 0.15, 0.15])
        pattern[i, 3] = 3 if rng.random() < 0.25 else 0
        for part in (2, 3):
            other = _hsv(rng, (0.0, 0.9), (0.1, 0.95))
            darker = part_rgb[i, part] * rng.uniform(0.4, 0.8)
            pattern_rgb[i, part] = other if rng.random() < 0.5 else darker
            period[i, part] = rng.uniform(0.03, 0.14)
    return Appearance(np.clip(part_rgb, 0, 1), pattern, np.clip(pattern_rgb, 0, 1), period)


def sample_environment(
    rng: np.random.Generator,
    R_cam_world: np.ndarray,
    camera_height_m: float,
    width: int,
    height: int,
) -> Environment:
    """Random light, ground, background and sensor for a camera at ``R_cam_world``, height given."""
    elevation, azimuth = np.deg2rad(rng.uniform(25, 85)), rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation),
                      np.cos(elevation) * np.cos(azimuth)])
    ground_pattern = int(rng.integers(3))
    floor = _hsv(rng, (0.0, 0.6), (0.2, 0.8))
    if ground_pattern == _GROUND_CHECKER and rng.random() < 0.5:
        second = _hsv(rng, (0.0, 0.5), (0.1, 0.9))
    else:
        second = floor * rng.uniform(0.55, 0.9)
    period = {_GROUND_CHECKER: (0.3, 1.0), _GROUND_PLANKS: (0.1, 0.25), _GROUND_NOISE: (0.2, 2.0)}
    outdoor = rng.random() < 0.4
    sky = (np.array([_hsv(rng, (0.3, 0.7), (0.6, 1.0)), _hsv(rng, (0.0, 0.2), (0.7, 1.0))])
           if outdoor else np.array([_hsv(rng, (0.0, 0.4), (0.2, 0.9)) for _ in range(2)]))
    count = int(rng.integers(0, 13))
    x0, y0 = rng.uniform(-0.1, 1.0, count) * width, rng.uniform(-0.1, 0.9, count) * height
    sizes = rng.uniform(0.03, 0.4, (count, 2)) * np.array([width, height])
    rects = np.stack([x0, y0, x0 + sizes[:, 0], y0 + sizes[:, 1]], axis=1).reshape(count, 4)
    exposure = rng.uniform(0.75, 1.25)
    return Environment(
        R_cam_world=np.asarray(R_cam_world, dtype=np.float64),
        camera_height_m=float(camera_height_m),
        light_world=light,
        ambient=float(rng.uniform(0.25, 0.6)),
        ground_pattern=ground_pattern,
        ground_rgb=np.array([floor, second]),
        ground_period_m=float(rng.uniform(*period[ground_pattern])),
        fog_m=float(rng.uniform(15, 80)),
        sky_rgb=sky,
        background_noise=float(rng.uniform(0.0, 0.25)),
        background_scale_px=float(rng.uniform(8, 120)),
        rects_px=rects.round(),
        rects_rgb=np.array([_hsv(rng, (0.0, 0.8), (0.1, 0.95)) for _ in range(count)]).reshape(
            count, 3),
        shadow=float(rng.uniform(0.2, 0.6)),
        gain_rgb=np.clip(exposure * rng.uniform(0.88, 1.12, 3), 0.6, 1.4),
        noise_sigma=float(rng.uniform(0.0, 0.03)),
        seed=int(rng.integers(0, 2**31 - 1)),
    )
