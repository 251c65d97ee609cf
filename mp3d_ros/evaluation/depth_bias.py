"""Depth bias and uncertainty coverage by distance: does the pipeline put people too near or too far?

Predicted people are matched to ground truth by their root pixels (Hungarian assignment, within a
gate), and for each match the ratio ``Z_pred / Z_true`` of root depths and the normalised error
``|Z_pred - Z_true| / sigma`` are kept with the true distance. Reported per distance band: the
median ratio and the fraction of errors inside 1 and 2 reported sigmas (68 % and 95 % for an honest
Gaussian sigma).

Who is found: when the image size is known, each true person also records whether its torso (both
shoulders and both hips) projects inside the image; :func:`found_summary` counts the people within
a distance whose torso is in view and how many of them were matched, so a missed person is counted,
never silently dropped (a person cut off at the torso is reported apart).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from mp3d_ros.geometry.people import People

__all__ = ["DepthMatches", "DISTANCE_BANDS_M", "depth_bias_table", "found_summary", "gated_assignment",
           "match_roots",
           "torso_in_image"]

DISTANCE_BANDS_M = ((0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.0), (8.0, 10.0), (10.0, np.inf))
TORSO_JOINTS = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")


def torso_in_image(uv_px: np.ndarray, joints: Sequence[str], image_size: tuple[int, int]) -> np.ndarray:
    """(P,) whether each person's shoulders and hips, (P, J, 2) pixels of joints named ``joints``,
    all lie inside an image of ``image_size`` (W, H)."""
    uv = np.asarray(uv_px, dtype=np.float64)[:, [list(joints).index(name) for name in TORSO_JOINTS]]
    width, height = image_size
    with np.errstate(invalid="ignore"):
        inside = (uv[..., 0] >= -0.5) & (uv[..., 0] <= width - 0.5) & (uv[..., 1] >= -0.5) & (
            uv[..., 1] <= height - 0.5)
    return inside.all(axis=-1)


def match_roots(predicted_uv_px: np.ndarray, truth_uv_px: np.ndarray,
                gate_px: float = 40.0) -> list[tuple[int, int]]:
    """Pairs ``(truth, predicted)`` of root pixels (T, 2) and (P, 2): Hungarian assignment on their
    distances, pairs further apart than ``gate_px`` dropped; sorted by truth index."""
    predicted_uv = np.asarray(predicted_uv_px, dtype=np.float64).reshape(-1, 2)
    truth_uv = np.asarray(truth_uv_px, dtype=np.float64).reshape(-1, 2)
    return gated_assignment(np.linalg.norm(truth_uv[:, None] - predicted_uv[None], axis=-1), gate_px)


def gated_assignment(cost: np.ndarray, gate: float) -> list[tuple[int, int]]:
    """(row, column) pairs of the Hungarian assignment on a (R, C) cost, pairs costing more than
    ``gate`` (or not finite: NaN or inf never pair) dropped; sorted by row."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e9))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] <= gate]


@dataclass
class DepthMatches:
    """Matched people of many frames: true root depth, predicted depth, predicted sigma (metres)."""

    true_m: list[float] = field(default_factory=list)
    predicted_m: list[float] = field(default_factory=list)
    sigma_m: list[float] = field(default_factory=list)
    missed_m: list[float] = field(default_factory=list)  # true depths of unmatched ground truth
    # Every true person whose torso visibility is known: (true depth, torso in image, matched).
    people: list[tuple[float, bool, bool]] = field(default_factory=list)

    def add(self, predicted: People, truth: People, gate_px: float = 40.0,
            image_size: tuple[int, int] | None = None) -> None:
        """Match one frame's people by root pixel distance and keep the pairs; with the image
        size, also who of them shows the torso."""
        torso = None if image_size is None else torso_in_image(truth.uv_px, truth.joint_set.joints, image_size)
        self.add_roots(predicted, truth.uv_px[:, truth.joint_set.root], truth.root_m[:, 2], gate_px, torso)

    def add_roots(self, predicted: People, truth_uv_px: np.ndarray, truth_z_m: np.ndarray,
                  gate_px: float = 40.0, torso_seen: np.ndarray | None = None) -> None:
        """:meth:`add` with the ground truth given as root pixels (P, 2), root depths (P,) and
        optionally (P,) whether each torso is in the image."""
        truth_z = np.asarray(truth_z_m, dtype=np.float64).reshape(-1)
        pairs = match_roots(predicted.uv_px[:, predicted.joint_set.root], truth_uv_px, gate_px)
        for row, col in pairs:
            self.true_m.append(float(truth_z[row]))
            self.predicted_m.append(float(predicted.root_m[col, 2]))
            self.sigma_m.append(float(predicted.root_sigma_m[col]))
        matched = {row for row, _ in pairs}
        self.missed_m.extend(float(z) for i, z in enumerate(truth_z) if i not in matched)
        if torso_seen is not None:
            self.people.extend((float(z), bool(seen), i in matched)
                               for i, (z, seen) in enumerate(zip(truth_z, torso_seen)))


def found_summary(matches: DepthMatches, max_depth_m: float = 8.0) -> dict | None:
    """Of the true people within ``max_depth_m`` whose torso is in the image: how many, how many
    found, their share; and how many nearer people were cut off at the torso (None without
    torso records)."""
    if not matches.people:
        return None
    depth, torso, found = (np.asarray(column) for column in zip(*matches.people))
    near = depth <= max_depth_m
    shown = near & torso
    return {"max_depth_m": max_depth_m, "people": int(shown.sum()), "found": int((shown & found).sum()),
            "share": float((shown & found).sum() / shown.sum()) if shown.any() else float("nan"),
            "torso_cut_off": int((near & ~torso).sum()),
            "torso_cut_off_found": int((near & ~torso & found).sum())}


def depth_bias_table(matches: DepthMatches, bands: Sequence[tuple[float, float]] = DISTANCE_BANDS_M) -> list[dict]:
    """Per distance band: people (matched, missed), median depth ratio, sigma coverage at 1 and 2."""
    true = np.asarray(matches.true_m)
    ratio = np.asarray(matches.predicted_m) / np.maximum(true, 1e-9)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = np.abs(np.asarray(matches.predicted_m) - true) / np.asarray(matches.sigma_m)
    missed = np.asarray(matches.missed_m)
    rows = []
    for low, high in list(bands) + [(0.0, np.inf)]:
        inside = (true >= low) & (true < high)
        count = int(inside.sum())
        rows.append({
            "band_m": f"{low:g}-{high:g}" if np.isfinite(high) else (f">{low:g}" if low else "all"),
            "matched": count, "missed": int(((missed >= low) & (missed < high)).sum()),
            "median_ratio": float(np.median(ratio[inside])) if count else float("nan"),
            "within_1_sigma": float(np.mean(normalised[inside] <= 1.0)) if count else float("nan"),
            "within_2_sigma": float(np.mean(normalised[inside] <= 2.0)) if count else float("nan"),
        })
    return rows
