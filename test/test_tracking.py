"""Tracker on synthetic sequences: walking people, crossings, entries and exits, dropped frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import get_joint_set
from mp3d_ros.tracking.tracker import Tracker, TrackerConfig, root_covariance_cam

SKELETON = "mupots_17"
JOINTS = get_joint_set(SKELETON)

# A trajectory maps time (s) to (position m, velocity m/s), or None while the person is out of view.
Trajectory = Callable[[float], "tuple[np.ndarray, np.ndarray] | None"]


def make_people(roots_m: np.ndarray, root_sigma_m: float = 0.15) -> People:
    """People whose joints all sit at their roots (the tracker only reads the root)."""
    roots_m = np.asarray(roots_m, dtype=np.float64).reshape(-1, 3)
    count = len(roots_m)
    keypoints = np.repeat(roots_m[:, None, :], JOINTS.num_joints, axis=1)
    return People(
        SKELETON,
        uv_px=np.zeros((count, JOINTS.num_joints, 2)),
        keypoints_m=keypoints,
        confidence=np.ones((count, JOINTS.num_joints)),
        inferred=np.zeros((count, JOINTS.num_joints), dtype=bool),
        score=np.linspace(0.9, 0.8, count) if count else np.zeros(0),
        root_sigma_m=np.full(count, root_sigma_m),
    )


def walker(start_m, velocity_mps, t_in_s: float = -np.inf, t_out_s: float = np.inf,
           sway_m: float = 0.0, sway_hz: float = 0.3) -> Trajectory:
    """Straight walk plus a slow sideways sway (a smooth curve), visible in [t_in, t_out)."""
    start_m, velocity_mps = np.asarray(start_m, float), np.asarray(velocity_mps, float)

    def at(t_s: float):
        if not t_in_s <= t_s < t_out_s:
            return None
        w = 2 * np.pi * sway_hz
        sway = np.array([sway_m * np.sin(w * t_s), 0.0, 0.0])
        sway_rate = np.array([sway_m * w * np.cos(w * t_s), 0.0, 0.0])
        return start_m + velocity_mps * t_s + sway, velocity_mps + sway_rate

    return at


@dataclass
class TrackingReport:
    """What a tracker did on a sequence with known identities."""

    id_switches: int = 0  # a person's id changed, or an id moved to another person
    fragmentations: int = 0  # a tracked person became untracked and was tracked again
    velocity_rmse_mps: float = 0.0  # over detections on tracks at least `warmup_frames` old
    tracked_fraction: float = 0.0  # detections that carried a non-zero id
    ids_per_person: dict[int, set[int]] = field(default_factory=dict)


def run_sequence(
    tracker: Tracker,
    trajectories: list[Trajectory],
    stamps_s: np.ndarray,
    rng: np.random.Generator,
    depth_sigma_m: float = 0.15,
    miss_rate: float = 0.0,
    warmup_frames: int = 15,
) -> TrackingReport:
    """Feed noisy detections of ``trajectories`` at ``stamps_s``; score identities and velocities.

    Depth noise follows the monocular model (along the viewing ray), plus 1 cm sideways.
    """
    report = TrackingReport()
    last_id: dict[int, int] = {}
    status: dict[int, str] = {}  # "tracked", or "lost" once a tracked person became untracked
    owner_of_id: dict[int, int] = {}
    velocity_errors, detections, tracked = [], 0, 0
    for stamp in stamps_s:
        truth = [(person, traj(stamp)) for person, traj in enumerate(trajectories)]
        truth = [(p, s) for p, s in truth if s is not None and rng.random() >= miss_rate]
        roots = np.array([s[0] for _, s in truth]).reshape(-1, 3)
        noisy = roots * (1 + rng.normal(0, depth_sigma_m, (len(roots), 1)) / roots[:, 2:3])
        noisy = noisy + rng.normal(0, 0.01, noisy.shape)
        order = rng.permutation(len(truth))  # detection order carries no identity
        out = tracker.update(make_people(noisy[order], depth_sigma_m), stamp)
        for k, index in enumerate(order):
            person, (_, velocity) = truth[index]
            track_id, age = int(out.track_id[k]), int(out.track_age[k])
            detections += 1
            if track_id == 0:
                if status.get(person) == "tracked":
                    status[person] = "lost"
                continue
            tracked += 1
            report.ids_per_person.setdefault(person, set()).add(track_id)
            if person in last_id and last_id[person] != track_id:
                report.id_switches += 1
            if owner_of_id.get(track_id, person) != person:
                report.id_switches += 1
            if status.get(person) == "lost":
                report.fragmentations += 1
            last_id[person], owner_of_id[track_id], status[person] = track_id, person, "tracked"
            if age >= warmup_frames:
                velocity_errors.append(out.velocity_mps[k] - velocity)
    if velocity_errors:
        report.velocity_rmse_mps = float(np.sqrt(np.mean(np.sum(np.square(velocity_errors), 1))))
    report.tracked_fraction = tracked / max(detections, 1)
    return report


def jittered_stamps(rng: np.random.Generator, duration_s: float, mean_dt_s: float,
                    jitter: float = 0.5) -> np.ndarray:
    """Irregular frame times: each interval uniform in mean * [1 - jitter, 1 + jitter]."""
    steps = rng.uniform(1 - jitter, 1 + jitter, int(duration_s / mean_dt_s) + 1) * mean_dt_s
    stamps = 100.0 + np.cumsum(steps)
    return stamps[stamps < 100.0 + duration_s]


# ---------------------------------------------------------------------------------- scenarios


def test_three_walkers_keep_their_ids_and_velocities() -> None:
    rng = np.random.default_rng(0)
    trajectories = [
        walker([-2.0, 0.3, 6.0], [0.8, 0.0, -0.3], sway_m=0.3),
        walker([1.5, 0.2, 3.0], [-0.2, 0.0, 0.9], sway_m=0.2),
        walker([0.0, 0.4, 8.0], [0.0, 0.0, -0.6], sway_m=0.4, sway_hz=0.2),
    ]
    stamps = jittered_stamps(rng, 8.0, 1 / 15) - 100.0
    report = run_sequence(Tracker(), trajectories, stamps, rng, miss_rate=0.1)
    assert report.id_switches == 0
    assert report.fragmentations == 0
    assert all(len(ids) == 1 for ids in report.ids_per_person.values())
    assert report.tracked_fraction > 0.9
    assert report.velocity_rmse_mps < 0.4, report


def test_twenty_walkers_are_updated_together_and_keep_their_ids() -> None:
    """The Kalman steps run on all tracks at once; twenty people in a 4 x 5 grid, 2 m apart,
    walking the same way at their own speeds (paths that never come within 1.4 m), keep one id
    each and their velocities."""
    rng = np.random.default_rng(7)
    trajectories = [
        walker([-4.0 + 2.0 * (k % 5), 0.3, 4.0 + 2.0 * (k // 5)],
               [0.3 + 0.1 * rng.uniform(-1, 1), 0.0, -0.2 + 0.05 * rng.uniform(-1, 1)], sway_m=0.1)
        for k in range(20)
    ]
    stamps = jittered_stamps(rng, 6.0, 1 / 15) - 100.0
    report = run_sequence(Tracker(), trajectories, stamps, rng, miss_rate=0.05)
    assert report.id_switches == 0 and report.fragmentations == 0
    assert len(report.ids_per_person) == 20 and all(len(ids) == 1 for ids in report.ids_per_person.values())
    assert report.tracked_fraction > 0.9
    assert report.velocity_rmse_mps < 0.4, report


def test_crossing_paths_do_not_swap_ids() -> None:
    switches = 0
    for seed in range(4):
        rng = np.random.default_rng(seed)
        # Two people walk towards each other and pass 0.5 m apart (one slightly behind the other).
        trajectories = [
            walker([-3.0, 0.3, 5.0], [1.2, 0.0, 0.0]),
            walker([3.0, 0.3, 5.5], [-1.2, 0.0, 0.0]),
        ]
        stamps = jittered_stamps(rng, 5.0, 1 / 20) - 100.0
        report = run_sequence(Tracker(), trajectories, stamps, rng, depth_sigma_m=0.1)
        switches += report.id_switches
        assert report.velocity_rmse_mps < 0.35, report
    assert switches == 0


def test_people_entering_and_leaving_get_new_ids_and_tracks_die() -> None:
    rng = np.random.default_rng(3)
    config = TrackerConfig(birth_hits=3, death_misses=5)
    tracker = Tracker(config)
    trajectories = [
        walker([-1.0, 0.3, 4.0], [0.5, 0.0, 0.0], t_in_s=0.0, t_out_s=3.0),
        walker([1.0, 0.3, 6.0], [-0.5, 0.0, 0.0], t_in_s=1.0, t_out_s=6.0),
        walker([-1.0, 0.3, 4.0], [0.5, 0.0, 0.0], t_in_s=4.0, t_out_s=6.0),  # a newcomer
    ]
    stamps = np.arange(0.0, 6.0, 0.1)
    report = run_sequence(tracker, trajectories, stamps, rng, depth_sigma_m=0.1)
    assert report.id_switches == 0
    ids = [report.ids_per_person[p] for p in range(3)]
    assert all(len(i) == 1 for i in ids)
    assert len(set.union(*ids)) == 3  # the newcomer at the first person's old place got a new id
    # Only the tracks of the people still in view remain, and after they leave nothing does.
    for stamp in np.arange(6.0, 6.0 + 0.1 * config.death_misses, 0.1):
        tracker.update(make_people(np.zeros((0, 3))), stamp)
    assert tracker.tracks == []


def test_far_people_with_noisy_depth_keep_one_id_each() -> None:
    # Monocular depth at 8-11 m is uncertain by about a metre along the viewing ray: jumps of more
    # than gate_m between frames are common and must not split a track.
    rng = np.random.default_rng(11)
    people = [walker([x, 0.2, z], [0.3 * np.sign(x), 0.0, 0.0], sway_m=0.2)
              for x, z in ((-4.0, 8.0), (-1.5, 9.0), (1.0, 10.0), (3.5, 11.0))]
    report = run_sequence(Tracker(), people, np.arange(0.0, 10.0, 1 / 30), rng, depth_sigma_m=0.8)
    assert report.id_switches == 0 and report.fragmentations == 0
    assert all(len(ids) == 1 for ids in report.ids_per_person.values())
    assert report.tracked_fraction > 0.95


def test_dropped_frames_keep_ids() -> None:
    rng = np.random.default_rng(4)
    trajectories = [walker([-2.0, 0.3, 5.0], [1.0, 0.0, 0.0]), walker([2.0, 0.3, 5.0], [-0.2, 0, 1.0])]
    stamps = np.arange(0.0, 6.0, 1 / 30)
    keep = np.ones(len(stamps), dtype=bool)
    keep[40:49] = False  # a 0.3 s gap (the node dropped frames while busy)
    keep[100:115] = False  # 0.5 s
    keep[rng.choice(len(stamps), 30, replace=False)] = False
    report = run_sequence(Tracker(), trajectories, stamps[keep], rng)
    assert report.id_switches == 0 and report.fragmentations == 0
    assert report.velocity_rmse_mps < 0.3


def test_velocity_is_exact_without_noise_at_irregular_intervals() -> None:
    rng = np.random.default_rng(5)
    velocity = np.array([0.7, -0.1, -1.1])
    tracker = Tracker(TrackerConfig(birth_hits=2))
    stamps = jittered_stamps(rng, 6.0, 0.08, jitter=0.9)
    for stamp in stamps:
        out = tracker.update(make_people([np.array([0.5, 0.2, 9.0]) + velocity * (stamp - 100.0)],
                                         0.05), stamp)
        if tracker.tracks[0].hits == 2:
            first_cov = out.velocity_cov[0]
    np.testing.assert_allclose(out.velocity_mps[0], velocity, atol=0.01)
    # The reported covariance shrinks with evidence and stays symmetric positive definite.
    cov = out.velocity_cov[0]
    np.testing.assert_allclose(cov, cov.T)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    assert np.trace(cov) < 0.5 * np.trace(first_cov)


def test_velocity_covariance_matches_the_actual_errors() -> None:
    """Normalised estimation error squared (NEES) of the velocity averages about 3 (3 dof)."""
    rng = np.random.default_rng(6)
    tracker = Tracker(TrackerConfig(birth_hits=1, angular_sigma_rad=0.002, min_root_sigma_m=1e-3))
    velocity = np.array([0.6, 0.0, -0.4])
    nees = []
    for k, stamp in enumerate(jittered_stamps(rng, 20.0, 0.1)):
        root = np.array([-1.0, 0.3, 7.0]) + velocity * (stamp - 100.0)
        root = root + rng.normal(0, [0.014, 0.014, 0.1])  # 0.1 m depth and 2 mrad sideways
        out = tracker.update(make_people([root], 0.1), stamp)
        if k > 20:
            error = out.velocity_mps[0] - velocity
            nees.append(error @ np.linalg.solve(out.velocity_cov[0], error))
    assert 1.5 < np.mean(nees) < 5.0, np.mean(nees)


# ---------------------------------------------------------------------------------- life cycle


def test_birth_after_n_hits_and_death_after_m_misses() -> None:
    tracker = Tracker(TrackerConfig(birth_hits=3, death_misses=4))
    person = make_people([[0.0, 0.3, 4.0]])
    ids = [int(tracker.update(person, 0.1 * k).track_id[0]) for k in range(5)]
    assert ids == [0, 0, 1, 1, 1]
    ages = tracker.update(person, 0.5).track_age
    assert ages[0] == 6
    nobody = make_people(np.zeros((0, 3)))
    for k in range(3):
        tracker.update(nobody, 0.6 + 0.1 * k)
        assert len(tracker.tracks) == 1
    tracker.update(nobody, 0.9)
    assert tracker.tracks == []
    # The next person gets a fresh id; ids are never reused.
    new_ids = [int(tracker.update(person, 1.0 + 0.1 * k).track_id[0]) for k in range(3)]
    assert new_ids == [0, 0, 2]


def test_tentative_track_dies_on_first_miss_and_coasting_is_bounded_in_time() -> None:
    tracker = Tracker(TrackerConfig(birth_hits=3, death_misses=100, max_coast_s=0.5))
    person, nobody = make_people([[0.0, 0.3, 4.0]]), make_people(np.zeros((0, 3)))
    tracker.update(person, 0.0)
    tracker.update(nobody, 0.1)
    assert tracker.tracks == []
    for k in range(3):
        tracker.update(person, 1.0 + 0.1 * k)
    tracker.update(nobody, 1.5)
    assert len(tracker.tracks) == 1
    tracker.update(nobody, 1.9)  # 0.7 s after the last detection
    assert tracker.tracks == []


def test_time_going_backwards_resets_without_reusing_ids() -> None:
    tracker = Tracker(TrackerConfig(birth_hits=1))
    person = make_people([[0.0, 0.3, 4.0]])
    assert tracker.update(person, 10.0).track_id[0] == 1
    assert tracker.update(person, 10.1).track_id[0] == 1
    assert tracker.update(person, 0.0).track_id[0] == 2  # a looping bag restarted
    assert tracker.resets == 1


def test_far_detection_is_gated_out() -> None:
    tracker = Tracker(TrackerConfig(birth_hits=1, gate_m=1.0))
    assert tracker.update(make_people([[0.0, 0.3, 4.0]]), 0.0).track_id[0] == 1
    # 1.3 m away 0.1 s later: not the same person (a new track starts instead).
    out = tracker.update(make_people([[1.3, 0.3, 4.0]], 0.5), 0.1)
    assert out.track_id[0] == 2


def test_low_scores_and_empty_frames_pass_through_untracked() -> None:
    tracker = Tracker(TrackerConfig(birth_hits=1, min_score=0.85))
    people = make_people([[0.0, 0.3, 4.0], [2.0, 0.3, 4.0]])
    out = tracker.update(people, 0.0)
    assert out.track_id.tolist() == [1, 0]  # scores 0.9 and 0.8
    np.testing.assert_array_equal(out.keypoints_m, people.keypoints_m)
    assert len(tracker.update(People.empty(SKELETON), 0.1)) == 0


@given(seed=st.integers(0, 10_000), tracks=st.integers(1, 12), detections=st.integers(1, 12))
def test_association_costs_equal_per_pair_solves(seed: int, tracks: int, detections: int) -> None:
    """The closed-form costs of all pairs against a loop of LAPACK solves, gates included."""
    rng = np.random.default_rng(seed)
    config = TrackerConfig(birth_hits=1)
    tracker = Tracker(config)
    start = rng.uniform([-3.0, -0.5, 1.0], [3.0, 0.5, 14.0], (tracks, 3))
    for k in range(3):  # walking tracks with grown, correlated covariances
        tracker.update(make_people(start + 0.05 * k + rng.normal(0, 0.02, start.shape),
                                   rng.uniform(0.05, 1.0)), 0.1 * k)
    rows = np.arange(len(tracker.tracks))
    roots = start[rng.integers(0, tracks, detections)] + rng.normal(0, 0.4, (detections, 3))
    roots[:, 2] = np.abs(roots[:, 2]) + 0.5
    covs = root_covariance_cam(roots, rng.uniform(0.02, 1.5, detections)) + 0.05 ** 2 * np.eye(3)
    expected = np.full((len(rows), detections), 1e9)
    for t in rows:
        for d in range(detections):
            innovation = roots[d] - tracker._tracks.state[t, :3]
            gate = config.gate_m ** 2 * np.eye(3) + config.gate_chi2 * covs[d]
            mahalanobis2 = innovation @ np.linalg.solve(tracker._tracks.cov[t, :3, :3] + covs[d], innovation)
            if innovation @ np.linalg.solve(gate, innovation) <= 1.0 and mahalanobis2 <= config.gate_chi2:
                expected[t, d] = mahalanobis2
    np.testing.assert_allclose(tracker._cost(rows, roots, covs), expected, rtol=1e-9)


@pytest.mark.parametrize("field_name, value", [
    ("gate_m", 0.0), ("gate_chi2", -1.0), ("birth_hits", 0), ("death_misses", 0),
    ("max_coast_s", float("nan")), ("min_score", 1.5),
])
def test_config_rejects_invalid_values(field_name: str, value: float) -> None:
    with pytest.raises(ValueError, match=field_name):
        TrackerConfig(**{field_name: value})


# ---------------------------------------------------------------------------------- covariance


@given(
    x=st.floats(-5, 5), y=st.floats(-2, 2), z=st.floats(0.5, 20), sigma=st.floats(0.01, 2.0),
)
def test_root_covariance_is_elongated_along_the_viewing_ray(x, y, z, sigma) -> None:
    root = np.array([[x, y, z]])
    cov = root_covariance_cam(root, np.array([sigma]), angular_sigma_rad=0.01)[0]
    np.testing.assert_allclose(cov, cov.T, atol=1e-12)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    assert eigenvalues.min() > 0
    unit = root[0] / np.linalg.norm(root[0])
    # Variance along the ray is the depth variance stretched by range / depth.
    along = unit @ cov @ unit
    np.testing.assert_allclose(along, (sigma * np.linalg.norm(root[0]) / z) ** 2, rtol=1e-9)
    if sigma > 0.02 * np.linalg.norm(root[0]):
        assert abs(eigenvectors[:, -1] @ unit) > 0.99


def test_a_zero_claimed_depth_uncertainty_does_not_freeze_tracks() -> None:
    rng = np.random.default_rng(8)
    tracker = Tracker(TrackerConfig(birth_hits=1))
    ids = set()
    for k in range(60):
        root = np.array([0.5 * k * 0.1, 0.3, 5.0]) + rng.normal(0, [0.02, 0.02, 0.05])
        ids.add(int(tracker.update(make_people([root], root_sigma_m=0.0), 0.1 * k).track_id[0]))
    assert ids == {1}
