"""Hashed noise on any device: an integer hash, tables of hashed values, value noise and
lattice noise, and separable bilinear interpolation. Torch, batched over B images.

Every value is a function of its integer position and a seed alone (the hash is exact integer
arithmetic; the rest is plain float arithmetic, element by element), so a texture does not depend
on the batch it is computed in.
"""

from __future__ import annotations

import torch

__all__ = [
    "TABLE_SIDE",
    "hash_uniform",
    "hash_tables",
    "lookup",
    "value_noise",
    "bilinear",
    "lattice_noise",
]


def hash_uniform(seed: torch.Tensor, *keys: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) float32 from integer keys (32-bit PCG-style mixing in int64, exact)."""
    x = seed.to(torch.int64) & 0xFFFFFFFF
    for key in keys:
        x = (x ^ (key.to(torch.int64) & 0xFFFFFFFF)) * 747796405 + 2891336453
        x = x & 0xFFFFFFFF
        x = ((x >> ((x >> 28) + 4)) ^ x) * 277803737 & 0xFFFFFFFF
        x = (x >> 22) ^ x
    return (x & 0xFFFFFF).to(torch.float32) / float(1 << 24)


TABLE_SIDE = 64  # side of the hashed value tables that textures read (they repeat every 64 cells)


def hash_tables(seeds: torch.Tensor, rows: int, cols: int, channels: int = 1) -> torch.Tensor:
    """(B, rows, cols, channels) hashed values in [0, 1) of B seeds: noise read by index instead
    of hashing every pixel."""
    iy = torch.arange(rows, device=seeds.device)[None, :, None]
    ix = torch.arange(cols, device=seeds.device)[None, None, :]
    seeds = seeds[:, None, None]
    return torch.stack([hash_uniform(seeds + 7919 * c, ix, iy) for c in range(channels)], dim=-1)


def _gather(table: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """``table[b, row, col]`` of a (B, R, C) table for (B, ...) integer index tensors."""
    batch, rows, cols = table.shape
    image = torch.arange(batch, device=table.device).reshape((batch,) + (1,) * (row.dim() - 1))
    return table.reshape(-1)[(image * rows + row) * cols + col]


def lookup(table: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
    """``table[b, iy mod side, ix mod side]`` of (B, side, side) tables for integer-valued float
    tensors (B, ...)."""
    side = table.shape[1]
    return _gather(table, torch.remainder(iy.to(torch.int64), side),
                   torch.remainder(ix.to(torch.int64), side))


def value_noise(table: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Smooth value noise in [0, 1) at continuous lattice coordinates ``x``, ``y`` (B, ...)."""
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    v00, v10 = lookup(table, x0, y0), lookup(table, x0 + 1, y0)
    v01, v11 = lookup(table, x0, y0 + 1), lookup(table, x0 + 1, y0 + 1)
    return (v00 * (1 - fx) + v10 * fx) * (1 - fy) + (v01 * (1 - fx) + v11 * fx) * fy


def _lerp_along(values: torch.Tensor, positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Linear interpolation of (B, ...) ``values`` along ``dim`` at (B, N) ``positions`` in grid
    units, clamped to the grid (of 2 samples or more)."""
    size = values.shape[dim]
    positions = positions.clamp(0, size - 1)
    low = positions.floor().clamp_max(size - 2)
    shape = [len(values)] + [1] * (values.dim() - 1)
    shape[dim] = -1
    weight = (positions - low).reshape(shape)
    index = low.to(torch.int64).reshape(shape).expand(
        *values.shape[:dim], positions.shape[1], *values.shape[dim + 1:])
    first = torch.gather(values, dim, index)
    return first + (torch.gather(values, dim, index + 1) - first) * weight


def bilinear(grid: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bilinear samples of (B, R, C) grids at rows ``y`` (B, H) and columns ``x``
    (B, W), in grid units, clamped to the grid (R, C >= 2): rows first, then columns."""
    return _lerp_along(_lerp_along(grid, y, 1), x, 2)


def lattice_noise(
    seeds: torch.Tensor, cell_px: torch.Tensor, lattice: tuple[int, int], height_p: int,
    width_p: int,
) -> torch.Tensor:
    """(B, height_p, width_p) smooth noise in [0, 1): hashed values on a lattice of ``cell_px``
    (B,) pixels interpolated bilinearly; ``lattice`` (rows, cols) covers the smallest cell."""
    device = seeds.device
    values = hash_tables(seeds, *lattice)[..., 0]
    rows = torch.arange(height_p, device=device, dtype=torch.float32)
    cols = torch.arange(width_p, device=device, dtype=torch.float32)
    cell = cell_px[:, None]
    return bilinear(values, (rows + 0.5) / cell - 0.5, (cols + 0.5) / cell - 0.5)
