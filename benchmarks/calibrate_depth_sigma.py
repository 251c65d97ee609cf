"""Measure what movenet-lift's root-depth sigma is made of on rendered scenes, and check the prior
those measurements give on held-out scenes (issue 16, item 3: uncertainty that means what it says).

    python benchmarks/calibrate_depth_sigma.py --mocap ../shared/mocap [--images 150]
        [--seed 21] [--held-out-seed 22] [--max-depth-m 10]

Scenes are ``depth_by_distance.py``'s (640 x 480, people 2-10 m, cameras 0.8-1.8 m high, mocap
poses); ``--max-depth-m`` places people farther, to check the sigmas beyond the 10 m the defaults
were measured to. On the calibration seed the script measures, against the ground truth of
matched people:

1. MoveNet's 2D keypoint error in network-input pixels against the projected joints (robust sd per
   axis, 1.4826 MAD), for the 12 COCO keypoints the depth uses, and the ankles' own; the part of
   it independent of the person's mean error; and the error of each limb and width segment's
   image length, by distance and length (what the bones fit reads of the 2D noise);
2. the lifter's relative-depth error per joint and segment-length error, both at the 1.70 m scale
   of the prior (the truth rescaled by the person's drawn stature), and the statures;
3. each cue's root-depth error against the sigma it reports, with the measured noise levels.

Where the measured levels alone leave a cue overconfident, one inflation factor per cue
(``BodyPrior.sigma_inflation``, ``FloorConfig.sigma_inflation``) is chosen on the calibration seed:
the factor at which 68.3 % of that cue's own errors (all matched people; the floor cue alone,
before its fusion) fall within 1 sigma, never below 1. Everything is then checked on the held-out
seed, against the guessed prior of before and through the shipped ``Estimator`` with the floor.
The floor plane of a render is exact, so it carries no tilt or height sigma here.
Deterministic: the scenes come from their seeds, the networks run in eval mode on the CPU.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from mp3d_ros.config import load_config
from mp3d_ros.evaluation.depth_bias import DISTANCE_BANDS_M, match_roots
from mp3d_ros.evaluation.depth_calibration import (
    inflation_for_coverage,
    match_keypoints,
    rms_over_joints,
    robust_sd,
    within_sigma,
)
from mp3d_ros.evaluation.evaluate import format_table
from mp3d_ros.geometry.absolute_depth import SEGMENTS, BodyPrior
from mp3d_ros.geometry.camera import letterbox_transform
from mp3d_ros.geometry.floor import FloorConfig, FloorPlane, apply_floor, floor_depth
from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import COCO_17, MUCO_21, MUPOTS_17
from mp3d_ros.inference import Estimator
from mp3d_ros.inference.estimator import ANKLE_SIGMA_INPUT_PX
from mp3d_ros.inference.movenet_lift import MoveNetLift, MoveNetLiftConfig
from mp3d_ros.messages.synthetic_bag import ground_truth_people
from mp3d_ros.resources import find_share_path
from mp3d_ros.synthetic import scenes
from mp3d_ros.synthetic.bvh import load_mocap_poses
from mp3d_ros.synthetic.scenes import (
    SceneConfig,
    SyntheticFrame,
    SynthRecipe,
    generate_image,
    ground_from_camera,
)

SCENES = load_config(SynthRecipe, find_share_path("config/synth/depth_scenes.yaml")).scene
BANDS_M = tuple(band for band in DISTANCE_BANDS_M if band[0] >= 2.0)  # 2-4 ... 8-10, beyond 10
ADULT_M = 1.5  # renders draw a quarter children at 1.0-1.5 m, adults from survey statures
KEYPOINT_GATE_PX = 40.0  # median keypoint distance of a detection to its true person
# The 12 COCO keypoints with a joint of the rendered skeleton (the ones the depth uses).
COCO_WITH_JOINT = tuple(name for name in COCO_17.joints if name in MUCO_21.joints)
ANKLES = ("left_ankle", "right_ankle")
TORSO = ("left_hip", "right_hip", "left_shoulder", "right_shoulder")


@dataclass(frozen=True)
class Priors:
    """Everything the root sigma is computed from: the body-size prior, MoveNet's keypoint sigma
    (network-input px), the floor cue's settings and its ankle sigma (network-input px, what
    ``Estimator`` divides by the letterbox zoom)."""

    body: BodyPrior
    keypoint_sigma_input_px: float
    floor: FloorConfig
    ankle_sigma_input_px: float


# The guessed values issue 16 found (before this script measured them).
GUESSED = Priors(BodyPrior(height_m=1.70, height_sigma_m=0.09, segment_rel_sigma=0.08, rel_depth_sigma_m=0.05,
                           keypoint_sigma_px=3.0, sigma_inflation=1.0),
                 1.5, FloorConfig(sigma_px=6.4, ankle_height_sigma_m=0.02, sigma_inflation=1.0), 2.56)


def code_defaults() -> Priors:
    """The defaults the package ships now (``Estimator`` takes the ankle's from its constant)."""
    config = MoveNetLiftConfig()
    return Priors(config.prior, config.keypoint_sigma_input_px, FloorConfig(), ANKLE_SIGMA_INPUT_PX)


@dataclass
class Scene:
    """One rendered image, its ground truth, the statures drawn, the exact floor, the letterbox zoom."""

    frame: SyntheticFrame
    truth: People
    statures_m: np.ndarray
    plane: FloorPlane
    zoom: float


def statures_m(config: SceneConfig, seed: int, index: int, mocap, frame: SyntheticFrame) -> np.ndarray:
    """(P,) stature of each annotated person of image ``index``: the frame does not record it, so
    the scene's plan is drawn again from the same generator (``generate_image``'s) and checked."""
    plan = scenes._sample_plan(np.random.default_rng([seed, index]), config, mocap, 0.0)
    people = [plan.people[track - 1] for track in frame.track_ids]
    roots = np.array([plan.camera.to_camera(p.joints_at(0.0))[MUCO_21.root] for p in people]).reshape(-1, 3)
    if not np.allclose(roots, frame.keypoints_cam_m[:, MUCO_21.root], atol=1e-9):
        raise RuntimeError(f"the plan of image {index} does not reproduce its people")
    return np.array([p.shape.height_m for p in people])


def render_split(seed: int, images: int, mocap, input_size: tuple[int, int],
                 config: SceneConfig = SCENES) -> list[Scene]:
    """The ``images`` scenes of ``seed``, rendered on the CPU."""
    out = []
    for index in range(images):
        frame = generate_image(config, seed, index, mocap)
        pose = ground_from_camera(frame.R_cam_world, frame.camera_height_m)
        plane = FloorPlane.from_camera_pose(*pose, tilt_sigma_rad=0.0, height_sigma_m=0.0)
        letterbox = letterbox_transform(frame.intrinsics.size, input_size).A[:2, :2]
        out.append(Scene(frame, ground_truth_people(frame), statures_m(config, seed, index, mocap, frame),
                         plane, float(np.sqrt(abs(np.linalg.det(letterbox))))))
    return out


# ----------------------------------------------------------------------------- ingredients


@dataclass
class Ingredients:
    """Measured errors of matched people, one entry per seen keypoint / joint / segment / person."""

    error_input_px: list = field(default_factory=list)  # (2,) detected - true, network-input px
    # (2,) the same less the person's mean error over its seen keypoints, scaled by sqrt(n / (n - 1))
    # for the mean's own noise: the part that changes segment lengths, which a shift of the whole
    # person does not.
    independent_input_px: list = field(default_factory=list)
    # Detected less true image length of each seen limb and width segment, network-input px, and
    # its true length: what the bones fit reads of the 2D noise.
    segment_length_error_px: list = field(default_factory=list)
    segment_length_px: list = field(default_factory=list)
    segment_length_depth_m: list = field(default_factory=list)
    segment_person_px: list = field(default_factory=list)  # the person's true image height, input px
    error_joint: list = field(default_factory=list)  # COCO_WITH_JOINT index of each 2D error
    error_depth_m: list = field(default_factory=list)  # true root depth of each 2D error
    rel_error_m: list = field(default_factory=list)  # lifted - true relative depth at 1.70 m
    rel_joint: list = field(default_factory=list)
    rel_depth_m: list = field(default_factory=list)
    segment_rel_error: list = field(default_factory=list)  # lifted / true length - 1
    segment_depth_m: list = field(default_factory=list)
    statures_m: list = field(default_factory=list)
    ankle_height_m: list = field(default_factory=list)  # lowest true ankle over the floor

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(value, dtype=np.float64) for name, value in vars(self).items()}


def _segment_lengths(points: np.ndarray, joints) -> np.ndarray:
    """(S,) lengths of :data:`SEGMENTS` plus the torso (hip midpoint -> shoulder midpoint), (J, 3)."""
    at = {name: points[joints.index(name)] for name in COCO_WITH_JOINT}
    lengths = [np.linalg.norm(at[a] - at[b]) for a, b in SEGMENTS]
    hips, shoulders = (at[TORSO[0]] + at[TORSO[1]]) / 2, (at[TORSO[2]] + at[TORSO[3]]) / 2
    return np.array(lengths + [np.linalg.norm(shoulders - hips)])


def _segment_seen(seen_coco: np.ndarray) -> np.ndarray:
    """(S,) both ends of each segment of :func:`_segment_lengths` seen, from (17,) COCO flags."""
    seen = {name: bool(seen_coco[COCO_17.index(name)]) for name in COCO_WITH_JOINT}
    return np.array([seen[a] and seen[b] for a, b in SEGMENTS] + [all(seen[n] for n in TORSO)])


def measure_ingredients(model: MoveNetLift, split: list[Scene], height_m: float) -> Ingredients:
    """2D, relative-depth and segment errors of detections matched to true people by keypoints."""
    out = Ingredients()
    coco = [COCO_17.index(n) for n in COCO_WITH_JOINT]
    muco = [MUCO_21.index(n) for n in COCO_WITH_JOINT]
    for scene in split:
        frame = scene.frame
        lifted, _, _ = model.lift_image(frame.image, frame.intrinsics)
        uv, seen, pose = (t.numpy() for t in (lifted.uv_px, lifted.seen, lifted.pose_m))
        pose = pose * (height_m / model.lifter.cfg.canonical_height_m)
        for p, t in match_keypoints(uv[:, coco], seen[:, coco], frame.keypoints_img_px[:, muco],
                                    KEYPOINT_GATE_PX):
            _add_person(out, scene, uv[p], seen[p], pose[p], t, height_m)
    return out


def _add_person(out: Ingredients, scene: Scene, uv: np.ndarray, seen: np.ndarray, pose_m: np.ndarray,
                t: int, height_m: float) -> None:
    """Detection (COCO uv, seen; lifted MuPoTS pose at ``height_m``) of true person ``t`` into ``out``;
    the truth rescaled to ``height_m`` by its stature."""
    frame = scene.frame
    truth = frame.keypoints_cam_m[t]
    depth = float(truth[MUCO_21.root, 2])
    truth_scale = height_m / scene.statures_m[t]
    coco = [COCO_17.index(name) for name in COCO_WITH_JOINT]
    used = seen[coco]
    errors = (uv[coco] - frame.keypoints_img_px[t, [MUCO_21.index(n) for n in COCO_WITH_JOINT]]) * scene.zoom
    count = int(used.sum())
    independent = ((errors - errors[used].mean(axis=0)) * np.sqrt(count / (count - 1)) if count > 1
                   else np.full_like(errors, np.nan))
    for k, name in enumerate(COCO_WITH_JOINT):
        c, m, j = COCO_17.index(name), MUCO_21.index(name), MUPOTS_17.index(name)
        if not seen[c]:
            continue
        out.error_input_px.append(errors[k])
        out.independent_input_px.append(independent[k])
        lifted_rel = pose_m[j, 2] - pose_m[MUPOTS_17.root, 2]
        out.rel_error_m.append(lifted_rel - (truth[m, 2] - truth[MUCO_21.root, 2]) * truth_scale)
        out.error_joint.append(k)
        out.rel_joint.append(k)
        out.error_depth_m.append(depth)
        out.rel_depth_m.append(depth)
    both = _segment_seen(seen)
    true_px = frame.keypoints_img_px[t, [MUCO_21.index(n) for n in COCO_WITH_JOINT]] * scene.zoom
    focal_px = float(np.sqrt(frame.intrinsics.fx * frame.intrinsics.fy))
    person_px = focal_px * float(scene.statures_m[t]) / depth * scene.zoom
    detected_px = true_px + errors
    limbs = both[:len(SEGMENTS)]
    for (a, b), seen_both in zip(SEGMENTS, limbs):
        if seen_both:
            ia, ib = COCO_WITH_JOINT.index(a), COCO_WITH_JOINT.index(b)
            length = float(np.linalg.norm(true_px[ia] - true_px[ib]))
            out.segment_length_error_px.append(float(np.linalg.norm(detected_px[ia] - detected_px[ib])) - length)
            out.segment_length_px.append(length)
            out.segment_length_depth_m.append(depth)
            out.segment_person_px.append(person_px)
    ratio = _segment_lengths(pose_m, MUPOTS_17) / (_segment_lengths(truth, MUCO_21) * truth_scale)
    out.segment_rel_error.extend((ratio[both] - 1).tolist())
    out.segment_depth_m.extend([depth] * int(both.sum()))
    out.statures_m.append(float(scene.statures_m[t]))
    up = (truth @ frame.R_cam_world)[:, 1] + frame.camera_height_m  # world y: height over the floor
    out.ankle_height_m.append(float(min(up[MUCO_21.index(n)] for n in ANKLES)))


def priors_from(measured: dict[str, np.ndarray], base: Priors, zoom: float) -> Priors:
    """``base`` with the measured noise levels (no inflation); the means stay as they are.
    ``FloorConfig.sigma_px`` is the ankle's sigma in source pixels of images of letterbox ``zoom``."""
    ankles = np.isin(measured["error_joint"], [COCO_WITH_JOINT.index(n) for n in ANKLES])
    adults = measured["statures_m"][measured["statures_m"] >= ADULT_M]
    rel_depth = rms_over_joints(measured["rel_error_m"], measured["rel_joint"])
    body = replace(base.body, height_sigma_m=_round(float(np.std(adults)), 0.005),
                   segment_rel_sigma=_round(robust_sd(measured["segment_rel_error"]), 0.005),
                   rel_depth_sigma_m=_round(rel_depth, 0.005), sigma_inflation=1.0)
    # One sigma for both axes: the RMS of the two axes' robust sds.
    keypoint = _round(_axes_sd(measured["error_input_px"]), 0.05)
    # The floor cue's ankle error is across the ray, nearly the image's vertical axis.
    ankle = _round(robust_sd(measured["error_input_px"][ankles, 1]), 0.05)
    floor = replace(base.floor, sigma_px=round(ankle / zoom, 2), sigma_inflation=1.0)
    return Priors(body, keypoint, floor, ankle)


def segment_noise_line(measured: dict[str, np.ndarray], bins: int = 8) -> tuple[float, float]:
    """``(a, b)`` of the segment lengths' 2D error sd ``a + b h`` (input px) against the person's
    image height ``h`` (input px): robust sds in ``bins`` quantile bins of ``h``, a line through
    them weighted by their counts."""
    heights, errors = measured["segment_person_px"], measured["segment_length_error_px"]
    edges = np.quantile(heights, np.linspace(0.0, 1.0, bins + 1))
    which = np.clip(np.searchsorted(edges, heights, side="right") - 1, 0, bins - 1)
    centres = np.array([np.median(heights[which == k]) for k in range(bins)])
    sds = np.array([robust_sd(errors[which == k]) for k in range(bins)])
    counts = np.array([np.sum(which == k) for k in range(bins)])
    slope, intercept = np.polyfit(centres, sds, 1, w=np.sqrt(counts))
    return float(intercept), float(slope)


def _round(value: float, step: float) -> float:
    return round(round(value / step) * step, 6)


# ----------------------------------------------------------------------------- the cues' errors


@dataclass
class CueErrors:
    """Per matched true person: true depth, stature, and each cue's depth and sigma (NaN where the
    cue did not apply); ``missed_m`` the true depths of people no detection matched."""

    true_m: list = field(default_factory=list)
    stature_m: list = field(default_factory=list)
    body_m: list = field(default_factory=list)
    body_sigma_m: list = field(default_factory=list)
    body_stature_sigma_m: list = field(default_factory=list)  # the part of body_sigma_m from height_sigma_m
    floor_m: list = field(default_factory=list)
    floor_sigma_m: list = field(default_factory=list)
    fused_m: list = field(default_factory=list)
    fused_sigma_m: list = field(default_factory=list)
    missed_m: list = field(default_factory=list)
    estimate_ms: list = field(default_factory=list)  # per image, Estimator.estimate without the floor

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(value, dtype=np.float64) for name, value in vars(self).items()}


def use_priors(estimator: Estimator, priors: Priors) -> None:
    """Make ``estimator`` compute with ``priors``: its MoveNetLift reads its config at every call,
    its floor cue ``floor_config`` (with ``ANKLE_SIGMA_INPUT_PX`` for the ankle, which only
    :func:`floor_config` replaces)."""
    model = estimator.pipeline.model
    model.cfg = replace(model.cfg, prior=priors.body, keypoint_sigma_input_px=priors.keypoint_sigma_input_px)
    estimator.floor_config = priors.floor


def floor_config(priors: Priors, zoom: float) -> FloorConfig:
    """The floor settings ``Estimator`` uses for an image of letterbox ``zoom``."""
    return replace(priors.floor, sigma_px=priors.ankle_sigma_input_px / zoom)


def cue_errors(estimator: Estimator, split: list[Scene], priors: Priors, shipped: bool = False) -> CueErrors:
    """Every cue's depth and sigma for the true people of ``split`` (matched by root pixels).

    The floor is applied to the people found without it, as ``Estimator.estimate`` does; with
    ``shipped`` (``priors`` must then be :func:`code_defaults`) ``estimate`` also runs with the
    floor, and its people must equal those."""
    use_priors(estimator, priors)
    out = CueErrors()
    for scene in split:
        frame, truth = scene.frame, scene.truth
        start = time.perf_counter()
        found = estimator.estimate(frame.image, frame.intrinsics)
        out.estimate_ms.append(1e3 * (time.perf_counter() - start))
        config = floor_config(priors, scene.zoom)
        floor = floor_depth(found, frame.intrinsics, scene.plane, config)
        fused = apply_floor(found, frame.intrinsics, scene.plane, config)
        if shipped:
            _check_same(fused, estimator.estimate(frame.image, frame.intrinsics, floor=scene.plane))
        pairs = match_roots(found.uv_px[:, MUPOTS_17.root], truth.uv_px[:, MUPOTS_17.root])
        for t, p in pairs:
            z = found.root_m[p, 2]
            out.true_m.append(truth.root_m[t, 2])
            out.stature_m.append(scene.statures_m[t])
            out.body_m.append(z)
            out.body_sigma_m.append(found.root_sigma_m[p])
            out.body_stature_sigma_m.append(z * priors.body.height_sigma_m / priors.body.height_m)
            out.floor_m.append(floor.scale[p] * z if floor.valid[p] else np.nan)
            out.floor_sigma_m.append(floor.scale_sigma[p] * z if floor.valid[p] else np.nan)
            out.fused_m.append(fused.root_m[p, 2])
            out.fused_sigma_m.append(fused.root_sigma_m[p])
        matched = {t for t, _ in pairs}
        out.missed_m.extend(truth.root_m[t, 2] for t in range(len(truth)) if t not in matched)
    return out


def _check_same(replica: People, shipped: People) -> None:
    same = len(replica) == len(shipped) and all(
        np.allclose(getattr(replica, name), getattr(shipped, name), rtol=1e-9, atol=1e-9)
        for name in ("keypoints_m", "root_sigma_m"))
    if not same:
        raise RuntimeError("the floor applied here differs from Estimator.estimate's")


def choose_inflation(errors: dict[str, np.ndarray]) -> tuple[float, float]:
    """Body-size factor (the stature part kept as it is) and floor factor (the floor cue alone) at
    which 68.3 % of the calibration errors fall within 1 sigma; at least 1 (an inflation only)."""
    own = np.sqrt(np.maximum(errors["body_sigma_m"] ** 2 - errors["body_stature_sigma_m"] ** 2, 1e-18))
    body = inflation_for_coverage(errors["body_m"] - errors["true_m"], own, errors["body_stature_sigma_m"])
    used = np.isfinite(errors["floor_m"])
    floor = inflation_for_coverage((errors["floor_m"] - errors["true_m"])[used], errors["floor_sigma_m"][used])
    return max(1.0, body), max(1.0, floor)


def inflated(priors: Priors, body: float, floor: float) -> Priors:
    return replace(priors, body=replace(priors.body, sigma_inflation=round(body, 2)),
                   floor=replace(priors.floor, sigma_inflation=round(floor, 2)))


# ----------------------------------------------------------------------------- tables


def _band_names() -> list[tuple[str, float, float]]:
    return [(f"{low:g}-{high:g}" if np.isfinite(high) else f"> {low:g}", low, high)
            for low, high in BANDS_M] + [("all > 2", 2.0, np.inf)]


def _in_band(depth_m: np.ndarray, name: str) -> np.ndarray:
    low, high = next((low, high) for n, low, high in _band_names() if n == name)
    return (depth_m >= low) & (depth_m < high)


def _bands(depth_m: np.ndarray):
    """(name, mask) of each distance band and of all people beyond 2 m."""
    for name, _, _ in _band_names():
        yield name, _in_band(depth_m, name)


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def _axes_sd(errors: np.ndarray) -> float:
    """One sd for (N, 2) errors: the RMS of the two axes' robust sds (rows with NaN left out)."""
    errors = errors[np.isfinite(errors).all(axis=1)]
    return float(np.sqrt(np.mean(robust_sd(errors, axis=0) ** 2))) if len(errors) else float("nan")


def _rms(values: np.ndarray) -> float:
    """Root mean square over all entries (all axes), outliers included."""
    return float(np.sqrt(np.mean(np.square(values)))) if len(values) else float("nan")


def ingredient_table(m: dict[str, np.ndarray]) -> str:
    """2D error (input px), lifted relative depth and segment length errors per distance band."""
    ankles = np.isin(m["error_joint"], [COCO_WITH_JOINT.index(n) for n in ANKLES])
    rows = []
    for name, e in _bands(m["error_depth_m"]):
        r, s = _in_band(m["rel_depth_m"], name), _in_band(m["segment_depth_m"], name)
        err, ankle_v = m["error_input_px"][e], m["error_input_px"][e & ankles, 1]
        independent = m["independent_input_px"][e]
        independent = independent[np.isfinite(independent).all(axis=1)]
        rows.append([name, int(e.sum()), robust_sd(err[:, 0]), robust_sd(err[:, 1]), _median(err[:, 1]),
                     _rms(err), _axes_sd(independent), robust_sd(ankle_v), _median(ankle_v),
                     rms_over_joints(m["rel_error_m"][r], m["rel_joint"][r]), _rms(m["rel_error_m"][r]),
                     robust_sd(m["segment_rel_error"][s]), _median(m["segment_rel_error"][s])])
    return format_table(["band (m)", "2D errors", "sd u px", "sd v px", "median v px", "rms px",
                         "independent sd px", "ankle sd v px", "ankle median v px", "rel depth sd m", "rel depth rms m",
                         "segment sd", "segment median"], rows, digits=3)


def segment_2d_table(m: dict[str, np.ndarray]) -> str:
    """Per band and per true image length: the 2D length error of limb and width segments (input
    px), against what independent keypoint errors of the measured sd would give (sqrt 2 times it)."""
    rows = []
    lengths = m["segment_length_px"]
    for name, band in _bands(m["segment_length_depth_m"]):
        for low, high in ((0.0, 8.0), (8.0, 16.0), (16.0, np.inf)):
            pick = band & (lengths >= low) & (lengths < high)
            errors = m["segment_length_error_px"][pick]
            rows.append([name, f"{low:g}-{high:g}" if np.isfinite(high) else f"> {low:g}", int(pick.sum()),
                         _median(lengths[pick]), _median(errors), robust_sd(errors)])
    return format_table(["band (m)", "true length px", "segments", "median length px",
                         "median error px", "error sd px"], rows, digits=3)


def joint_table(m: dict[str, np.ndarray]) -> str:
    """Per keypoint: 2D robust sd and median (input px), lifted relative-depth robust sd."""
    rows = []
    for k, name in enumerate(COCO_WITH_JOINT):
        e, r = m["error_input_px"][m["error_joint"] == k], m["rel_error_m"][m["rel_joint"] == k]
        rows.append([name, len(e), robust_sd(e[:, 0]), robust_sd(e[:, 1]), _median(e[:, 0]), _median(e[:, 1]),
                     robust_sd(r), _median(r)])
    return format_table(["keypoint", "seen", "sd u px", "sd v px", "median u px", "median v px",
                         "rel depth sd m", "rel depth median m"], rows, digits=3)


PRIOR_FIELDS = (
    ("BodyPrior.height_m", lambda p: p.body.height_m),
    ("BodyPrior.height_sigma_m", lambda p: p.body.height_sigma_m),
    ("BodyPrior.segment_rel_sigma", lambda p: p.body.segment_rel_sigma),
    ("BodyPrior.rel_depth_sigma_m", lambda p: p.body.rel_depth_sigma_m),
    ("BodyPrior.sigma_inflation", lambda p: p.body.sigma_inflation),
    ("MoveNetLiftConfig.keypoint_sigma_input_px", lambda p: p.keypoint_sigma_input_px),
    ("ankle sigma, input px (Estimator)", lambda p: p.ankle_sigma_input_px),
    ("FloorConfig.sigma_px (640 x 480)", lambda p: p.floor.sigma_px),
    ("FloorConfig.ankle_height_m", lambda p: p.floor.ankle_height_m),
    ("FloorConfig.ankle_height_sigma_m", lambda p: p.floor.ankle_height_sigma_m),
    ("FloorConfig.sigma_inflation", lambda p: p.floor.sigma_inflation),
)


def prior_table(columns: dict[str, Priors]) -> str:
    return format_table(["setting"] + list(columns),
                        [[name] + [f"{get(p):g}" for p in columns.values()] for name, get in PRIOR_FIELDS])


def _cell(errors: np.ndarray, sigmas: np.ndarray) -> str:
    if errors.size == 0:
        return "-"
    return f"{100 * within_sigma(errors, sigmas):.0f} / {100 * within_sigma(errors, sigmas, 2):.0f}"


def _cue_cell(e: dict[str, np.ndarray], cue: str, mask: np.ndarray) -> str:
    return _cell(e[f"{cue}_m"][mask] - e["true_m"][mask], e[f"{cue}_sigma_m"][mask])


def cue_table(e: dict[str, np.ndarray]) -> str:
    """Per band: each cue's median Z/Z_true and % of errors within 1 / 2 sigma."""
    rows = []
    adult = e["stature_m"] >= ADULT_M
    floor = np.isfinite(e["floor_m"])
    for name, b in _bands(e["true_m"]):
        a, f = b & adult, b & floor
        rows.append([name, int(b.sum()), int(_in_band(e["missed_m"], name).sum()), int(a.sum()),
                     _median(e["body_m"][b] / e["true_m"][b]), _cue_cell(e, "body", b), _cue_cell(e, "body", a),
                     int(f.sum()), _median(e["floor_m"][f] / e["true_m"][f]), _cue_cell(e, "floor", f),
                     _cue_cell(e, "fused", b)])
    return format_table(["band (m)", "matched", "missed", "adults", "body Z/Z_true", "body", "body, adults",
                         "floor used", "floor Z/Z_true", "floor alone", "with floor (fused)"], rows, digits=3)


def coverage_table(runs: dict[str, dict[str, np.ndarray]]) -> str:
    """Per band: % within 1 / 2 sigma without and with the floor, one column per prior and cue."""
    first = next(iter(runs.values()))
    rows = []
    for name, band in _bands(first["true_m"]):
        row = [name, int(band.sum())]
        for cue in ("body", "fused"):
            row += [_cue_cell(e, cue, _in_band(e["true_m"], name)) for e in runs.values()]
        rows.append(row)
    header = ["band (m)", "matched"] + [f"{cue}: {label}" for cue in ("no floor", "floor") for label in runs]
    return format_table(header, rows)


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=150, help="images per split")
    parser.add_argument("--seed", type=int, default=21, help="calibration seed")
    parser.add_argument("--held-out-seed", type=int, default=22)
    parser.add_argument("--mocap", default=None, help="BVH folder (../shared/mocap); else walking people")
    parser.add_argument("--max-depth-m", type=float, default=SCENES.depth_range_m[1],
                        help="farthest people, metres (the scenes' recipe: 10)")
    args = parser.parse_args()
    if not args.max_depth_m > SCENES.depth_range_m[0]:
        parser.error(f"--max-depth-m must exceed {SCENES.depth_range_m[0]:g} m, got {args.max_depth_m}")
    config = replace(SCENES, depth_range_m=(SCENES.depth_range_m[0], args.max_depth_m))
    started = time.perf_counter()
    mocap = load_mocap_poses(args.mocap, MUCO_21, fps=SCENES.fps) if args.mocap else None
    estimator = Estimator("movenet-lift", device="cpu")
    model = estimator.pipeline.model
    calibration = render_split(args.seed, args.images, mocap, model.cfg.input_size, config)
    measured = measure_ingredients(model, calibration, GUESSED.body.height_m).arrays()
    priors = priors_from(measured, GUESSED, calibration[0].zoom)
    calibration_errors = cue_errors(estimator, calibration, priors).arrays()
    factors = choose_inflation(calibration_errors)
    final = inflated(priors, *factors)
    calibration_final = cue_errors(estimator, calibration, final).arrays()
    held_out = render_split(args.held_out_seed, args.images, mocap, model.cfg.input_size, config)
    runs = {name: cue_errors(estimator, held_out, p).arrays()
            for name, p in (("guessed", GUESSED), ("measured", priors), ("measured+inflation", final))}
    runs["shipped defaults"] = cue_errors(estimator, held_out, code_defaults(), shipped=True).arrays()
    use_priors(estimator, code_defaults())
    print(f"movenet-lift at {model.cfg.input_size[0]} x {model.cfg.input_size[1]} on 640 x 480 renders of people "
          f"{config.depth_range_m[0]:g}-{config.depth_range_m[1]:g} m, {args.images} images per split, calibration "
          f"seed {args.seed}, held-out seed {args.held_out_seed}, mocap {'yes' if args.mocap else 'no'}")
    _print_measured(measured)
    print("\n## Calibration seed, measured noise levels, no inflation\n")
    print(cue_table(calibration_errors))
    print(f"\ninflation for 68.3 % within 1 sigma (at least 1): body size {factors[0]:.3f}, "
          f"floor alone {factors[1]:.3f}")
    print("\n## Calibration seed, measured + inflation\n")
    print(cue_table(calibration_final))
    _print_held_out(args, priors, final, runs, time.perf_counter() - started)


def _print_measured(measured: dict[str, np.ndarray]) -> None:
    statures = measured["statures_m"]
    adults = statures[statures >= ADULT_M]
    print("\n## Measured on the calibration seed: 2D error (network-input px), lifter errors, by true depth\n")
    print(ingredient_table(measured))
    print("\n" + joint_table(measured))
    print(f"\nlimb and width segments' image length, detected - true (independent keypoint errors of "
          f"the measured sd would give a length sd of {np.sqrt(2) * _axes_sd(measured['error_input_px']):.2f} px)\n")
    print(segment_2d_table(measured))
    base_px, per_height = segment_noise_line(measured)
    print(f"\nsegment length 2D sd against the person's image height h (input px): {base_px:.3f} + "
          f"{per_height:.4f} h px")
    print(f"\nmatched people {len(statures)}: adults (>= {ADULT_M} m) {len(adults)}, stature "
          f"{np.mean(adults):.3f} +- {np.std(adults):.3f} m; lowest true ankle over the floor median "
          f"{np.median(measured['ankle_height_m']):.3f} m, robust sd {robust_sd(measured['ankle_height_m']):.3f} m")


def _print_held_out(args, priors: Priors, final: Priors, runs: dict, seconds: float) -> None:
    print("\n## Held-out seed, each cue with measured + inflation\n")
    print(cue_table(runs["measured+inflation"]))
    print("\n## Held-out seed, % within 1 / 2 sigma with each prior\n")
    print(coverage_table(runs))
    print("\n## Priors\n")
    print(prior_table({"guessed (issue 16)": GUESSED, "code defaults": code_defaults(), "measured": priors,
                       "measured+inflation": final}))
    ms = np.concatenate([run["estimate_ms"] for run in runs.values()])
    print(f"\n{seconds:.0f} s in all; median {np.median(ms):.0f} ms per estimate "
          f"({torch.get_num_threads()} torch threads)")
    print(f"\n## Held-out seed {args.held_out_seed}: % of root-depth errors within 1 / 2 sigma, "
          f"guessed -> shipped defaults\n")
    print(coverage_table({name: runs[name] for name in ("guessed", "shipped defaults")}))


if __name__ == "__main__":
    main()
