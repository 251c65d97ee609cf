"""Vectorised renderer of synthetic people scenes (torch; CPU, or CUDA when given a cuda device).

Every pixel casts the ray of its undistorted normalised coordinates (:mod:`mp3d_ros.data.raycast`).
A distorted camera (the raw image of a real lens) gets the ray of each of its pixels from
:func:`mp3d_ros.camera.pixel_rays`, which undistorts the pixel: the image shows the world as that
lens does, and :func:`mp3d_ros.camera.project` of a 3D point lands where the point is drawn.

Shading: Lambert (ambient + diffuse from one directional light) with per-person part colours and
stripes, checks or blocky-noise textures that move with the person (anchored at the pelvis); the
head is hair except for the face (front, lower part). The ground plane ``y = 0`` is textured
(checker tiles, planks or value noise) with its contrast faded where a pixel covers more than half a
texture period (no aliasing far away), darkened under each person (blob shadow), and fogged into
the horizon colour. Above it: a vertical gradient with value noise and rectangles. Then the sensor:
white balance gains and noise. All randomness inside the renderer is an integer hash of
(position, seed), so an image depends only on its inputs, on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from mp3d_ros.camera import Intrinsics
from mp3d_ros.data.body import PART_HAIR, PART_SKIN, Primitives
from mp3d_ros.data.raycast import TILE, PackedPrimitives, depth_buffer, image_rays, pack_primitives

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
    """

    intrinsics: Intrinsics
    primitives: Primitives
    appearance: Appearance
    anchors_cam_m: np.ndarray
    environment: Environment


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


# ----------------------------------------------------------------------------- noise


def _hash(seed: torch.Tensor, *keys: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) float32 from integer keys (32-bit PCG-style mixing in int64, exact)."""
    x = seed.to(torch.int64) & 0xFFFFFFFF
    for key in keys:
        x = (x ^ (key.to(torch.int64) & 0xFFFFFFFF)) * 747796405 + 2891336453
        x = x & 0xFFFFFFFF
        x = ((x >> ((x >> 28) + 4)) ^ x) * 277803737 & 0xFFFFFFFF
        x = (x >> 22) ^ x
    return (x & 0xFFFFFF).to(torch.float32) / float(1 << 24)


_TABLE = 64  # side of the hashed value tables that textures read (they repeat every 64 cells)


def _table(
    seed: int | torch.Tensor, side: int, device: torch.device, channels: int = 1
) -> torch.Tensor:
    """(side, side, channels) hashed values in [0, 1): noise read by index instead of hashing."""
    iy, ix = torch.meshgrid(torch.arange(side, device=device), torch.arange(side, device=device),
                            indexing="ij")
    seed = torch.as_tensor(seed, device=device)
    return torch.stack([_hash(seed + 7919 * c, ix, iy) for c in range(channels)], dim=-1)


def _lookup(table: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
    """``table[iy mod side, ix mod side, 0]`` for integer-valued float tensors."""
    side = table.shape[0]
    row = torch.remainder(iy.to(torch.int64), side)
    flat = row * side + torch.remainder(ix.to(torch.int64), side)
    return table[..., 0].reshape(-1)[flat]


def _value_noise(table: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Smooth value noise in [0, 1) at continuous lattice coordinates ``x``, ``y``."""
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    v00, v10 = _lookup(table, x0, y0), _lookup(table, x0 + 1, y0)
    v01, v11 = _lookup(table, x0, y0 + 1), _lookup(table, x0 + 1, y0 + 1)
    return (v00 * (1 - fx) + v10 * fx) * (1 - fy) + (v01 * (1 - fx) + v11 * fx) * fy


def _lattice_noise(
    seed: int, height: int, width: int, cell_px: float, device: torch.device
) -> torch.Tensor:
    """(height, width) smooth noise in [0, 1): hashed lattice values upsampled bilinearly."""
    rows, cols = int(height / cell_px) + 2, int(width / cell_px) + 2
    iy, ix = torch.meshgrid(
        torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij"
    )
    lattice = _hash(torch.tensor(seed, device=device), ix, iy)
    return torch.nn.functional.interpolate(
        lattice[None, None], size=(height, width), mode="bilinear", align_corners=False
    )[0, 0]


# ----------------------------------------------------------------------------- shading


def _t(x, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


@dataclass(frozen=True)
class _SceneTensors:
    """Per-image and per-person render parameters of a batch, on the render device."""

    up: torch.Tensor  # (B, 3) world up in the camera frame
    east: torch.Tensor  # (B, 3) world X in the camera frame
    north: torch.Tensor  # (B, 3) world Z in the camera frame
    light: torch.Tensor  # (B, 3) toward the light, camera frame
    ambient: torch.Tensor  # (B,)
    seed: torch.Tensor  # (B,) int64
    part_rgb: torch.Tensor  # (P, NUM_PARTS, 3), P people of the whole batch
    pattern: torch.Tensor  # (P, NUM_PARTS)
    pattern_rgb: torch.Tensor  # (P, NUM_PARTS, 3)
    period: torch.Tensor  # (P, NUM_PARTS)
    anchors: torch.Tensor  # (P, 3)


def _scene_tensors(scenes: Sequence[Scene], device: torch.device) -> _SceneTensors:
    R = np.stack([s.environment.R_cam_world for s in scenes])
    cat = lambda name: np.concatenate([getattr(s.appearance, name) for s in scenes])  # noqa: E731
    return _SceneTensors(
        up=_t(R[:, :, 1], device), east=_t(R[:, :, 0], device), north=_t(R[:, :, 2], device),
        light=_t(np.einsum("bij,bj->bi", R, [s.environment.light_world for s in scenes]), device),
        ambient=_t([s.environment.ambient for s in scenes], device),
        seed=_t([s.environment.seed for s in scenes], device, torch.int64),
        part_rgb=_t(cat("part_rgb").reshape(-1, NUM_PARTS, 3), device),
        pattern=_t(cat("pattern").reshape(-1, NUM_PARTS), device, torch.int64),
        pattern_rgb=_t(cat("pattern_rgb").reshape(-1, NUM_PARTS, 3), device),
        period=_t(cat("pattern_period_m").reshape(-1, NUM_PARTS), device),
        anchors=_t(np.concatenate([s.anchors_cam_m for s in scenes]).reshape(-1, 3), device),
    )


def _surface(points: torch.Tensor, prim: torch.Tensor, packed: PackedPrimitives):
    """Unit normals, part labels and person indices of hit ``points`` (K, 3) on primitives (K,)."""
    normal = torch.zeros_like(points)
    part = torch.zeros_like(prim)
    person = torch.zeros_like(prim)
    is_capsule = prim < packed.num_capsules
    if is_capsule.any():
        index, p = prim[is_capsule], points[is_capsule]
        a, ba = packed.cap_a[index], packed.cap_b[index] - packed.cap_a[index]
        s = (((p - a) * ba).sum(-1) / (ba * ba).sum(-1).clamp_min(1e-12)).clamp(0, 1)
        normal[is_capsule] = p - (a + s[:, None] * ba)
        part[is_capsule] = packed.cap_part[index]
        person[is_capsule] = packed.cap_person[index]
    if (~is_capsule).any():
        index = prim[~is_capsule] - packed.num_capsules
        inverse = packed.ell_inv[index]
        local = (inverse @ (points[~is_capsule] - packed.ell_c[index])[..., None])[..., 0]
        normal[~is_capsule] = (inverse.transpose(1, 2) @ local[..., None])[..., 0]
        label = packed.ell_part[index]
        # The head is hair but for the face: its front (local +z) below the hairline.
        face = (label == PART_HAIR) & (local[:, 2] > 0.3) & (local[:, 1] < 0.45)
        part[~is_capsule] = torch.where(face, torch.full_like(label, PART_SKIN), label)
        person[~is_capsule] = packed.ell_person[index]
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return normal, part, person


def _shade_people(
    rays_flat: torch.Tensor, depth: torch.Tensor, winner: torch.Tensor, packed: PackedPrimitives,
    tensors: _SceneTensors, pixels_per_image: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat indices of the K pixels showing a body, their (K, 3) linear RGB and (K,) scene-local
    person index."""
    hit = torch.nonzero(winner >= 0).squeeze(1)
    xy = rays_flat[hit]
    points = depth[hit, None] * torch.cat([xy, torch.ones_like(xy[:, :1])], dim=1)
    image = hit // pixels_per_image
    normal, part, person = _surface(points, winner[hit], packed)
    relative = points - tensors.anchors[person]
    period = tensors.period[person, part]
    cells = [torch.floor((relative * axis[image]).sum(-1) / period)
             for axis in (tensors.up, tensors.east, tensors.north)]
    stripes = torch.remainder(cells[0], 2)
    checks = torch.remainder(cells[0] + cells[1] + cells[2], 2)
    local_person = person - packed.person_offset[image]  # the same texture in any batch
    blocks = _hash(tensors.seed[image] * 97 + local_person, *cells)
    kind = tensors.pattern[person, part]
    mix = torch.where(kind == _PATTERN_NOISE, blocks, torch.zeros_like(blocks))
    mix = torch.where(kind == _PATTERN_CHECKS, checks, mix)
    mix = torch.where(kind == _PATTERN_STRIPES, stripes, mix)
    base = tensors.part_rgb[person, part]
    albedo = base + (tensors.pattern_rgb[person, part] - base) * mix[:, None]
    ambient = tensors.ambient[image]
    diffuse = (normal * tensors.light[image]).sum(-1).clamp_min(0)
    return hit, albedo * (ambient + (1 - ambient) * diffuse)[:, None], local_person


def _background(
    env: Environment, height_p: int, width_p: int, height: int, device: torch.device
) -> torch.Tensor:
    """(height_p, width_p, 3) gradient, rectangles and value noise."""
    rows = torch.arange(height_p, device=device, dtype=torch.float32)
    v = (rows / height).clamp_max(1)[:, None, None]
    top, bottom = _t(env.sky_rgb[0], device), _t(env.sky_rgb[1], device)
    rgb = (top * (1 - v) + bottom * v).expand(height_p, width_p, 3).clone()
    for (x0, y0, x1, y1), color in zip(np.asarray(env.rects_px, dtype=np.int64), env.rects_rgb):
        rgb[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = _t(color, device)
    cell = max(float(env.background_scale_px), 2.0)
    noise = _lattice_noise(env.seed, height_p, width_p, cell, device)
    noise = 0.7 * noise + 0.3 * _lattice_noise(env.seed + 1, height_p, width_p, cell / 6, device)
    return rgb * (1 + 2 * env.background_noise * (noise - 0.5))[..., None]


def _along(xy: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """``(x, y, 1) . axis`` for (*, 2) ray coordinates."""
    return xy[..., 0] * axis[0] + xy[..., 1] * axis[1] + axis[2]


def _ground_points(xy: torch.Tensor, env: Environment, tensors: _SceneTensors, b: int):
    """Depth ``t`` (inf above the horizon) and world ground coordinates of (*, 2) rays."""
    down = _along(xy, tensors.up[b])
    ground = down < -1e-4
    safe_down = torch.where(ground, down, -torch.ones_like(down))
    t = torch.where(ground, -env.camera_height_m / safe_down, torch.full_like(down, math.inf))
    gx = torch.where(ground, t * _along(xy, tensors.east[b]), torch.zeros_like(t))
    gz = torch.where(ground, t * _along(xy, tensors.north[b]), torch.zeros_like(t))
    return t, gx, gz, down


def _ground(
    xy: torch.Tensor, env: Environment, focal_px: float, dark: torch.Tensor, b: int,
    tensors: _SceneTensors,
) -> torch.Tensor:
    """(K, 3) linear RGB of K rays (K, 2) that hit the ground: texture, light, shadow ``dark``
    (K,), fog."""
    device = xy.device
    t, gx, gz, down = _ground_points(xy, env, tensors, b)
    period = float(env.ground_period_m)
    if env.ground_pattern == _GROUND_CHECKER:
        mix = torch.remainder(torch.floor(gx / period) + torch.floor(gz / period), 2)
    else:
        table = _table(env.seed + 3, _TABLE, device)
        if env.ground_pattern == _GROUND_PLANKS:  # boards of one period, six periods long
            board = torch.floor(gz / period)
            mix = _lookup(table, torch.floor(gx / (6 * period) + 0.37 * board), board)
        else:
            mix = _value_noise(table, gx / period, gz / period)
    # A pixel covers about t |d|^2 / (f |d . up|) metres of ground: fade what it cannot resolve.
    footprint = t * (xy * xy).sum(-1).add(1) / (focal_px * down.abs().clamp_min(1e-6))
    fade = (1 - footprint / (0.5 * period)).clamp(0, 1)
    c0, c1 = _t(env.ground_rgb[0], device), _t(env.ground_rgb[1], device)
    albedo = c0 + (c1 - c0) * (0.5 + (mix - 0.5) * fade)[..., None]
    sun = (tensors.up[b] * tensors.light[b]).sum().clamp_min(0)
    shade = (tensors.ambient[b] + (1 - tensors.ambient[b]) * sun) * (1 - dark)
    fog = torch.exp(-t / env.fog_m)[..., None]
    return albedo * shade[..., None] * fog + _t(env.sky_rgb[1], device) * (1 - fog)


def _shadows(
    xy: torch.Tensor, anchors: torch.Tensor, env: Environment, tensors: _SceneTensors, b: int
) -> torch.Tensor:
    """(H, W) darkening of the ground under each person (Gaussian blob of 0.3 m under the pelvis).

    Soft, so computed on every 4th pixel of the (H, W, 2) rays and upsampled.
    """
    _, gx, gz, _ = _ground_points(xy[::4, ::4], env, tensors, b)
    dark = torch.zeros_like(gx)
    for anchor in anchors:
        ax, az = (anchor * tensors.east[b]).sum(), (anchor * tensors.north[b]).sum()
        distance2 = (gx - ax) ** 2 + (gz - az) ** 2
        dark = torch.maximum(dark, env.shadow * torch.exp(-distance2 / (2 * 0.3 ** 2)))
    return torch.nn.functional.interpolate(
        dark[None, None], size=xy.shape[:2], mode="bilinear", align_corners=False
    )[0, 0]


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
    """Render B scenes of one image size on ``device``; see the module docstring."""
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
    rays = torch.stack([image_rays(s.intrinsics, height_p, width_p, device) for s in scenes])
    rays_tiles = _tiles(rays, tiles_y, tiles_x)
    tile_bounds = torch.stack([
        rays_tiles[..., 0].amin(1), rays_tiles[..., 0].amax(1),
        rays_tiles[..., 1].amin(1), rays_tiles[..., 1].amax(1),
    ], dim=-1).reshape(batch, tiles_y * tiles_x, 4)
    counts = [len(s.anchors_cam_m) for s in scenes]
    packed = pack_primitives([s.primitives for s in scenes], counts, device)
    tensors = _scene_tensors(scenes, device)
    depth, winner = depth_buffer(rays_tiles, tile_bounds, packed)
    hit, people_rgb, hit_person = _shade_people(
        rays_tiles.reshape(-1, 2), depth, winner, packed, tensors, tiles_y * tiles_x * TILE * TILE)
    color = torch.zeros((depth.shape[0], 3), device=device)
    color[hit] = people_rgb
    person = torch.full_like(winner, -1)
    person[hit] = hit_person
    color = _untiles(color, batch, tiles_y, tiles_x)
    person = _untiles(person[:, None], batch, tiles_y, tiles_x)[..., 0]
    depth = _untiles(depth[:, None], batch, tiles_y, tiles_x)[..., 0]
    images = []
    offsets = np.cumsum([0] + [len(s.anchors_cam_m) for s in scenes])
    for b, scene in enumerate(scenes):
        env = scene.environment
        linear = _background(env, height_p, width_p, height, device).reshape(-1, 3)
        xy = rays[b].reshape(-1, 2)
        # Ground where the ray points down and no body is in front.
        free = (_along(xy, tensors.up[b]) < -1e-4) & (person[b].reshape(-1) < 0)
        ground = torch.nonzero(free)[:, 0]
        if ground.numel():
            dark = _shadows(rays[b], tensors.anchors[offsets[b]:offsets[b + 1]], env, tensors, b)
            focal = math.sqrt(scene.intrinsics.fx * scene.intrinsics.fy)
            linear[ground] = _ground(xy[ground], env, focal, dark.reshape(-1)[ground], b, tensors)
        body = person[b] >= 0
        linear = torch.where(body[..., None], color[b], linear.reshape(height_p, width_p, 3))
        images.append(_sensor(linear, env, device))
    return Rendered(
        image=torch.stack(images)[:, :height, :width],
        depth_m=depth[:, :height, :width],
        person=person[:, :height, :width],
    )


def _sensor(linear: torch.Tensor, env: Environment, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 from linear RGB: gains, uniform noise of std ``noise_sigma``, clipping.

    The noise is a 128-pixel hashed tile repeated over the image (hashing every pixel costs more
    than the rest of the sensor model).
    """
    height, width = linear.shape[:2]
    # In units of 1/255, plus 0.5 so that the conversion to uint8 rounds.
    tile = (_table(env.seed + 11, 128, device, channels=3) - 0.5) * (
        255 * env.noise_sigma * math.sqrt(12.0)) + 0.5
    noise = tile.repeat(-(-height // 128), -(-width // 128), 1)[:height, :width]
    rgb = torch.addcmul(noise, linear, _t(env.gain_rgb, device) * 255)
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
