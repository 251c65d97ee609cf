"""Multi-person tracking on 3D roots: stable ids and velocities for human-aware navigation.

Each person's root (pelvis) is tracked with a constant-velocity Kalman filter (state
``[x, y, z, vx, vy, vz]`` in metres and m/s, white-noise acceleration process model). Every frame:

1. all tracks are predicted to the frame's stamp (``dt`` from stamps, so irregular frame intervals and
   dropped frames are handled; a stamp that goes back in time, e.g. a looping bag, resets the tracker);
2. detections are assigned to tracks with the Hungarian algorithm on the squared Mahalanobis distance
   of the innovation, gated by a chi-square threshold and by a distance (``gate_m`` beyond the
   detection's own uncertainty); confirmed tracks are matched first, so a fresh tentative track
   never steals a person from a confirmed one;
3. matched tracks are updated, unmatched detections start tentative tracks, and tracks
   without a detection count a miss.

A tentative track is confirmed after ``birth_hits`` detections and only then gets an id (1, 2, ...;
never reused, 0 means untracked); it is deleted on its first miss. A confirmed track dies after
``death_misses`` consecutive misses or ``max_coast_s`` seconds without a detection.

The measurement covariance of a root comes from the estimator's depth uncertainty: the depth error of
a monocular estimate moves the root along its viewing ray (``P = Z * ray``), the 2D error moves it
sideways by a small angle, see :func:`root_covariance_cam`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
from scipy.optimize import linear_sum_assignment

from mp3d_ros.geometry.people import People

__all__ = ["TrackerConfig", "Tracker", "TrackSummary", "root_covariance_cam"]

# Cost given to gated-out pairs so the Hungarian solver never prefers them; such pairs are discarded
# after the assignment.
_INFEASIBLE_COST = 1e9

# Upper triangle of a symmetric 3 x 3 matrix, row by row: [a, b, c, d, e, f] is
# [[a, b, c], [b, d, e], [c, e, f]].
_UPPER_ROWS = np.array([0, 0, 0, 1, 1, 2])
_UPPER_COLS = np.array([0, 1, 2, 1, 2, 2])
_PACKED_TO_FULL = np.array([0, 1, 2, 1, 3, 4, 2, 4, 5])
_PACKED_IDENTITY = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
# The adjugate's upper triangle in the same order, each entry ``m[p] m[q] - m[r] m[s]``.
_ADJUGATE_TERMS = np.array([[3, 2, 1, 0, 1, 0], [5, 4, 4, 5, 2, 3], [4, 1, 2, 2, 0, 1], [4, 5, 3, 2, 4, 1]])
# v^T A v over A's upper triangle: the off-diagonal products count twice.
_OFF_DIAGONAL_TWICE = np.array([1.0, 2.0, 2.0, 1.0, 2.0, 1.0])


def _packed_symmetric(matrices: np.ndarray) -> np.ndarray:
    """(..., 6) upper triangles of (..., 3, 3) symmetric matrices."""
    return matrices[..., _UPPER_ROWS, _UPPER_COLS]


def _packed_outer(vectors: np.ndarray) -> np.ndarray:
    """(..., 6) weighted upper triangles of ``v v^T`` for (..., 3) vectors, so that ``v^T A v`` is
    their dot product with the packed ``A``."""
    return vectors[..., _UPPER_ROWS] * vectors[..., _UPPER_COLS] * _OFF_DIAGONAL_TWICE


def _adjugate(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Packed adjugates (..., 6) and determinants (...,) of packed symmetric 3 x 3 matrices
    (..., 6): ``M^-1 = adj(M) / det(M)`` as elementwise arithmetic, which for a few hundred small
    matrices costs less than one batched LAPACK call."""
    terms = packed[..., _ADJUGATE_TERMS]
    adjugate = terms[..., 0, :] * terms[..., 1, :] - terms[..., 2, :] * terms[..., 3, :]
    return adjugate, np.einsum("...i,...i->...", packed[..., :3], adjugate[..., :3])


def root_covariance_cam(
    root_m: np.ndarray, root_sigma_m: np.ndarray, angular_sigma_rad: float = 0.01
) -> np.ndarray:
    """Covariance (m^2) of root positions in the camera optical frame.

    A depth error ``dZ`` moves ``P = Z * [x, y, 1]`` by ``dZ * P / Z``, so the depth part is
    ``sigma_z^2 (P/Z)(P/Z)^T`` (elongated along the viewing ray); the 2D localisation error adds
    ``(angular_sigma * |P|)^2`` across the ray.

    Args:
        root_m: (P, 3) roots in metres, z > 0.
        root_sigma_m: (P,) standard deviation of the root depth z, metres.
        angular_sigma_rad: standard deviation of the viewing direction, radians.

    Returns:
        (P, 3, 3) symmetric positive definite covariances.
    """
    root_m = np.asarray(root_m, dtype=np.float64).reshape(-1, 3)
    sigma_z = np.asarray(root_sigma_m, dtype=np.float64).reshape(-1)
    z = np.maximum(root_m[:, 2:3], 1e-6)
    ray = root_m / z
    range_m = np.linalg.norm(root_m, axis=1)
    unit = root_m / np.maximum(range_m, 1e-9)[:, None]
    along = sigma_z[:, None, None] ** 2 * ray[:, :, None] * ray[:, None, :]
    across = (angular_sigma_rad * np.maximum(range_m, 1e-3))[:, None, None] ** 2 * (
        np.eye(3) - unit[:, :, None] * unit[:, None, :]
    )
    return along + across


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker settings; the defaults suit walking people seen at 5-30 Hz from 1-15 m.

    Attributes:
        gate_chi2: Mahalanobis gate on the innovation, chi-square with 3 dof (16.27 = 99.9 %: a
            tighter gate splits tracks on ordinary outliers of monocular depth).
        gate_m: hard gate on the distance between a predicted root and a detection, metres, beyond
            what the detection's own covariance ``R`` explains (the pair must lie inside the
            ellipsoid ``gate_m^2 I + gate_chi2 R``); caps the Mahalanobis gate when a track's
            uncertainty has grown large, while a far person's depth noise along its viewing ray
            does not split its track.
        birth_hits: detections needed to confirm a track and give it an id (1 = at once).
        death_misses: consecutive frames without a detection after which a confirmed track dies.
        max_coast_s: a track without a detection for longer than this dies, whatever its misses.
        accel_sigma_mps2: standard deviation of the white-noise acceleration (process noise), m/s^2;
            larger follows turns and stops faster, smaller gives smoother velocities.
        init_velocity_sigma_mps: prior standard deviation of a new track's velocity, m/s.
        angular_sigma_rad: sideways measurement noise of a root as an angle, radians.
        min_root_sigma_m: isotropic standard deviation, metres, added to every root covariance: a
            floor on the certainty an estimator may claim (a zero depth sigma would freeze tracks).
        min_score: people below this score are passed through untracked (id 0).
    """

    gate_chi2: float = 16.27
    gate_m: float = 1.5
    birth_hits: int = 3
    death_misses: int = 10
    max_coast_s: float = 2.0
    accel_sigma_mps2: float = 1.0
    init_velocity_sigma_mps: float = 1.5
    angular_sigma_rad: float = 0.01
    min_root_sigma_m: float = 0.05
    min_score: float = 0.0

    def __post_init__(self) -> None:
        positive = {
            "gate_chi2": self.gate_chi2, "gate_m": self.gate_m, "max_coast_s": self.max_coast_s,
            "accel_sigma_mps2": self.accel_sigma_mps2,
            "init_velocity_sigma_mps": self.init_velocity_sigma_mps,
            "angular_sigma_rad": self.angular_sigma_rad, "min_root_sigma_m": self.min_root_sigma_m,
        }
        for name, value in positive.items():
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"TrackerConfig.{name} must be a finite number > 0, got {value}")
        if int(self.birth_hits) < 1:
            raise ValueError(f"TrackerConfig.birth_hits must be >= 1, got {self.birth_hits}")
        if int(self.death_misses) < 1:
            raise ValueError(f"TrackerConfig.death_misses must be >= 1, got {self.death_misses}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"TrackerConfig.min_score must be in [0, 1], got {self.min_score}")


@dataclass(frozen=True)
class TrackSummary:
    """Read-only view of one live track (for diagnostics and tests)."""

    track_id: int  # 0 while tentative
    age_frames: int
    hits: int
    misses: int
    position_m: np.ndarray
    velocity_mps: np.ndarray


@dataclass(frozen=True)
class _Tracks:
    """All live tracks as arrays, one row a track (T rows), so no step loops over tracks.

    The tracker's steps update the arrays in place; :meth:`rows` and :meth:`then` make new ones.
    """

    state: np.ndarray  # (T, 6) [x, y, z, vx, vy, vz]
    cov: np.ndarray  # (T, 6, 6)
    track_id: np.ndarray  # (T,) int64, 0 while tentative
    hits: np.ndarray  # (T,) int64
    misses: np.ndarray  # (T,) int64
    age_frames: np.ndarray  # (T,) int64
    last_hit_s: np.ndarray  # (T,) float64

    @classmethod
    def empty(cls) -> "_Tracks":
        counts = (np.zeros(0, dtype=np.int64) for _ in range(4))
        return cls(np.zeros((0, 6)), np.zeros((0, 6, 6)), *counts, np.zeros(0))

    def __len__(self) -> int:
        return len(self.track_id)

    def rows(self, index: np.ndarray) -> "_Tracks":
        """The tracks at ``index`` (integer array), in that order; copies."""
        return _Tracks(*(getattr(self, f.name)[index] for f in fields(self)))

    def then(self, other: "_Tracks") -> "_Tracks":
        """These tracks followed by ``other``'s."""
        return _Tracks(*(np.concatenate([getattr(self, f.name), getattr(other, f.name)])
                         for f in fields(self)))


class Tracker:
    """Multi-person root tracker; feed it every processed frame in stamp order.

    The tracks live in arrays (:class:`_Tracks`) and every step works on all of them at once, so a
    crowd costs about what one person does. Not thread-safe: one worker owns it. ``resets`` counts
    the resets caused by time going backwards.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks = _Tracks.empty()
        self._next_id = 1
        self._last_stamp_s: float | None = None
        self.resets = 0

    def reset(self) -> None:
        """Forget all tracks (ids keep counting up, so an id is never given to two people)."""
        self._tracks = _Tracks.empty()
        self._last_stamp_s = None

    @property
    def tracks(self) -> list[TrackSummary]:
        t = self._tracks
        return [TrackSummary(int(t.track_id[i]), int(t.age_frames[i]), int(t.hits[i]), int(t.misses[i]),
                             t.state[i, :3].copy(), t.state[i, 3:].copy()) for i in range(len(t))]

    def update(
        self, people: People, stamp_s: float, root_cov_m2: np.ndarray | None = None
    ) -> People:
        """Track the people of one frame and return them with track fields filled.

        Args:
            people: detections of the frame; their roots are in the frame the tracks live in.
            stamp_s: capture time of the frame, seconds.
            root_cov_m2: (P, 3, 3) root covariances in that frame; by default
                :func:`root_covariance_cam` (the people are in the camera optical frame). Either way
                ``min_root_sigma_m^2 * I`` is added.

        Returns:
            ``people`` with ``track_id``, ``track_age``, ``velocity_mps`` and ``velocity_cov`` set for
            detections on confirmed tracks (zeros for the others). Keypoints are not changed.
        """
        stamp_s = float(stamp_s)
        if not np.isfinite(stamp_s):
            raise ValueError(f"stamp_s must be finite, got {stamp_s}")
        if self._last_stamp_s is not None and stamp_s < self._last_stamp_s:
            # Time went backwards (a looping bag, a restarted camera): old tracks are meaningless.
            self.reset()
            self.resets += 1
        dt_s = 0.0 if self._last_stamp_s is None else stamp_s - self._last_stamp_s
        self._last_stamp_s = stamp_s
        self._predict(dt_s)

        roots = np.asarray(people.root_m, dtype=np.float64)
        if root_cov_m2 is None:
            root_cov_m2 = root_covariance_cam(roots, people.root_sigma_m, self.config.angular_sigma_rad)
        root_cov_m2 = np.asarray(root_cov_m2, dtype=np.float64).reshape(len(people), 3, 3)
        root_cov_m2 = root_cov_m2 + self.config.min_root_sigma_m ** 2 * np.eye(3)
        usable = (np.asarray(people.score) >= self.config.min_score) & np.all(
            np.isfinite(roots), axis=1) & np.all(np.isfinite(root_cov_m2), axis=(1, 2))
        candidates = np.flatnonzero(usable)

        track_rows, detections = self._associate(roots, root_cov_m2, candidates)
        self._correct(track_rows, roots[detections], root_cov_m2[detections], stamp_s)
        t = self._tracks
        unmatched = np.ones(len(t), dtype=bool)
        unmatched[track_rows] = False
        t.misses[unmatched] += 1
        coasting = unmatched & (t.track_id > 0) & (t.misses < self.config.death_misses) & (
            stamp_s - t.last_hit_s <= self.config.max_coast_s)
        unseen = np.ones(len(people), dtype=bool)
        unseen[detections] = False
        unseen = candidates[unseen[candidates]]
        by_detection = np.argsort(detections, kind="stable")
        kept = np.flatnonzero(coasting)
        # Order of the survivors: matched tracks by detection, coasting tracks, new tracks by detection.
        order = np.concatenate([track_rows[by_detection], kept, len(t) + np.arange(len(unseen))])
        if len(unseen):
            t = t.then(self._new_tracks(roots[unseen], root_cov_m2[unseen], stamp_s))
        # In a steady scene the order does not change, and copying every track array is skipped.
        self._tracks = t if np.array_equal(order, np.arange(len(t))) else t.rows(order)
        filled = np.concatenate([detections[by_detection], unseen])
        first_new = len(detections) + len(kept)
        rows = np.concatenate([np.arange(len(detections)), first_new + np.arange(len(unseen))])
        return self._fill(people, filled, rows)

    # ------------------------------------------------------------------ filter steps

    def _predict(self, dt_s: float) -> None:
        """Constant-velocity prediction of every track by ``dt_s`` (all tracks at once)."""
        t = self._tracks
        t.age_frames[:] += 1
        if dt_s <= 0 or not len(t):
            return
        F = np.eye(6)
        F[:3, 3:] = dt_s * np.eye(3)
        q = self.config.accel_sigma_mps2 ** 2
        Q = np.zeros((6, 6))
        Q[:3, :3] = q * dt_s ** 3 / 3 * np.eye(3)
        Q[:3, 3:] = Q[3:, :3] = q * dt_s ** 2 / 2 * np.eye(3)
        Q[3:, 3:] = q * dt_s * np.eye(3)
        t.state[:] = t.state @ F.T
        t.cov[:] = F @ t.cov @ F.T + Q

    def _correct(self, track_rows: np.ndarray, roots_m: np.ndarray, covs_m2: np.ndarray,
                 stamp_s: float) -> None:
        """Kalman update of the tracks at ``track_rows`` with their (M, 3) roots and (M, 3, 3)
        covariances, all at once; then hits, misses and confirmation, ids given in the order of
        ``track_rows``."""
        if not len(track_rows):
            return
        t = self._tracks
        states, covs = t.state[track_rows], t.cov[track_rows]
        innovation = roots_m - states[:, :3]
        adjugate, determinant = _adjugate(_packed_symmetric(covs[:, :3, :3] + covs_m2))
        gain = covs[:, :, :3] @ (adjugate[:, _PACKED_TO_FULL].reshape(-1, 3, 3)
                                 / determinant[:, None, None])  # P H^T S^-1
        # The Joseph form guards against an inexact gain; this gain is exact in float64, the two
        # forms' velocities agreed within 1e-12 m/s on the people-scaling benchmark's crowds, and
        # the Joseph form's four batched 6 x 6 products cost more than this one.
        covs = covs - gain @ covs[:, :3, :]  # (I - K H) P
        t.state[track_rows] = states + (gain @ innovation[..., None])[..., 0]
        t.cov[track_rows] = 0.5 * (covs + covs.transpose(0, 2, 1))
        t.hits[track_rows] += 1
        t.misses[track_rows] = 0
        t.last_hit_s[track_rows] = stamp_s
        born = track_rows[(t.track_id[track_rows] == 0) & (t.hits[track_rows] >= self.config.birth_hits)]
        t.track_id[born] = self._issue_ids(len(born))

    def _new_tracks(self, roots_m: np.ndarray, covs_m2: np.ndarray, stamp_s: float) -> _Tracks:
        """Tentative tracks (confirmed at once when ``birth_hits`` is 1) at (N, 3) roots."""
        count = len(roots_m)
        cov = np.zeros((count, 6, 6))
        cov[:, :3, :3] = covs_m2
        cov[:, 3:, 3:] = self.config.init_velocity_sigma_mps ** 2 * np.eye(3)
        track_id = self._issue_ids(count) if self.config.birth_hits <= 1 else np.zeros(count, np.int64)
        ones = np.ones(count, dtype=np.int64)
        return _Tracks(np.concatenate([roots_m, np.zeros((count, 3))], axis=1), cov, track_id, ones,
                       np.zeros(count, dtype=np.int64), ones.copy(), np.full(count, stamp_s))

    def _issue_ids(self, count: int) -> np.ndarray:
        """The next ``count`` ids, never given before."""
        ids = np.arange(self._next_id, self._next_id + count, dtype=np.int64)
        self._next_id += count
        return ids

    # ------------------------------------------------------------------ association

    def _associate(
        self, roots: np.ndarray, covs: np.ndarray, candidates: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Matched (track rows, detection indices): confirmed tracks first, then tentative ones."""
        track_rows, detections = [], []
        free = candidates
        confirmed = self._tracks.track_id > 0
        for tracks in (np.flatnonzero(confirmed), np.flatnonzero(~confirmed)):
            if not len(tracks) or not len(free):
                continue
            cost = self._cost(tracks, roots[free], covs[free])
            rows, cols = linear_sum_assignment(cost)
            feasible = cost[rows, cols] < _INFEASIBLE_COST
            track_rows.append(tracks[rows[feasible]])
            detections.append(free[cols[feasible]])
            still_free = np.ones(len(free), dtype=bool)
            still_free[cols[feasible]] = False
            free = free[still_free]
        if not track_rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(track_rows), np.concatenate(detections)

    def _cost(self, track_rows: np.ndarray, roots: np.ndarray, covs: np.ndarray) -> np.ndarray:
        """(T, D) squared Mahalanobis distances, gated pairs set to ``_INFEASIBLE_COST``.

        A pair must also lie inside the distance gate's ellipsoid ``gate_m^2 I + gate_chi2 R`` of
        the detection's covariance ``R``: ``gate_m`` bounds what a track's own uncertainty may add,
        and a detection's own noise (a monocular depth's, along its viewing ray) widens the gate
        only as far as the Mahalanobis gate would accept it.
        """
        innovation = roots[None, :, :] - self._tracks.state[track_rows, None, :3]  # (T, D, 3)
        outer = _packed_outer(innovation)  # (T, D, 6)
        detection_covs = _packed_symmetric(covs)  # (D, 6)
        track_covs = self._tracks.cov[track_rows[:, None], _UPPER_ROWS, _UPPER_COLS]  # (T, 6)
        gate_adjugate, gate_determinant = _adjugate(
            self.config.gate_m ** 2 * _PACKED_IDENTITY + self.config.gate_chi2 * detection_covs)
        pair_adjugate, pair_determinant = _adjugate(track_covs[:, None, :] + detection_covs)
        # Every pair in closed form, in a fixed number of elementwise NumPy calls: a crowd's few
        # hundred pairs cost little more than one person's pair, where per-pair LAPACK solves grew
        # with the pairs (issue 19, benchmarks/RESULTS.md).
        near = np.einsum("tdi,di->td", outer, gate_adjugate) <= gate_determinant
        mahalanobis2 = np.einsum("tdi,tdi->td", outer, pair_adjugate) / pair_determinant
        return np.where(near & (mahalanobis2 <= self.config.gate_chi2), mahalanobis2, _INFEASIBLE_COST)

    # ------------------------------------------------------------------ output

    def _fill(self, people: People, detections: np.ndarray, rows: np.ndarray) -> People:
        """``people`` with the track fields of detection ``detections[i]`` from track ``rows[i]``."""
        count = len(people)
        t = self._tracks
        confirmed = t.track_id[rows] > 0
        detections, rows = detections[confirmed], rows[confirmed]
        track_id = np.zeros(count, dtype=np.int64)
        track_age = np.zeros(count, dtype=np.int64)
        velocity = np.zeros((count, 3))
        velocity_cov = np.zeros((count, 3, 3))
        track_id[detections] = t.track_id[rows]
        track_age[detections] = t.age_frames[rows]
        velocity[detections] = t.state[rows, 3:]
        velocity_cov[detections] = t.cov[rows, 3:, 3:]
        return replace(people, track_id=track_id, track_age=track_age, velocity_mps=velocity,
                       velocity_cov=velocity_cov)
