"""How well track ids follow people: identity switches against ground truth that carries ids.

Each frame's people are matched to its ground truth by root pixel distance (as the depth
figures are, :func:`~mp3d_ros.evaluation.depth_bias.match_roots`). For every ground-truth
identity, the track ids of its matched people in frame order give:

- **id switches** (CLEAR MOT's IDSW, Bernardin and Stiefelhagen 2008): the matched person carries
  a track id other than the last one this identity carried;
- **ids per person**: the distinct track ids an identity carried (1 = one track all along);
- **tracked share**: matched people that carried a track id at all (0 = untracked, e.g. a
  tentative track).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from mp3d_ros.evaluation.depth_bias import match_roots
from mp3d_ros.geometry.people import People

__all__ = ["IdentitySummary", "identity_summary"]


@dataclass(frozen=True)
class IdentitySummary:
    """Identity figures over a sequence; see the module docstring."""

    people: int  # ground-truth identities matched at least once
    matched: int  # matched ground-truth people over all frames
    tracked: int  # of those, how many carried a track id
    id_switches: int
    ids_per_person: float  # mean over the identities that carried an id


def identity_summary(frames: Iterable[tuple[People, People]], gate_px: float = 40.0
                     ) -> IdentitySummary | None:
    """Identity figures of ``(predicted, truth)`` frames in time order; None when the ground truth
    carries no ids (all zero) or nobody was matched."""
    last_id: dict[int, int] = {}
    ids: dict[int, set[int]] = {}
    matched = tracked = switches = 0
    has_ids = False
    for predicted, truth in frames:
        truth_ids = np.asarray(truth.track_id)
        has_ids |= bool(np.any(truth_ids > 0))
        pairs = match_roots(predicted.uv_px[:, predicted.joint_set.root],
                            truth.uv_px[:, truth.joint_set.root], gate_px)
        for row, col in pairs:
            person, track = int(truth_ids[row]), int(predicted.track_id[col])
            if person <= 0:
                continue
            matched += 1
            ids.setdefault(person, set())
            if track <= 0:
                continue
            tracked += 1
            if person in last_id and last_id[person] != track:
                switches += 1
            last_id[person] = track
            ids[person].add(track)
    if not has_ids or not matched:
        return None
    carried = [len(v) for v in ids.values() if v]
    return IdentitySummary(len(ids), matched, tracked, switches,
                           float(np.mean(carried)) if carried else 0.0)
