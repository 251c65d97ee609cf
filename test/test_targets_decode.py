"""data/targets.py + decode.py: decoding the targets of ground-truth scenes gives the ground truth back.

Scenes are random 3D people (a template pose, jittered, turned and leaned; pelvis-neck = 0.5 m)
in front of a random camera, letterboxed into the network input. The helpers here are also used by
test_losses.py and test_model.py.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
import torch

from mp3d_ros.geometry.camera import (
    Intrinsics,
    back_project,
    letterbox_transform,
    project,
    transform_intrinsics,
    transform_points_px,
)
from mp3d_ros.geometry.camera_torch import CameraBatch
from mp3d_ros.geometry.skeleton import MUPOTS_17
from mp3d_ros.model.codec.decode import DecodeConfig, decode, decode_batch, snap_to_heatmaps
from mp3d_ros.model.codec.targets import (
    SceneAnnotation,
    TargetConfig,
    TargetGenerator,
    TargetMaps,
    collate_targets,
    targets_as_outputs,
)
from mp3d_ros.model.config import ModelConfig

# MuPoTS-17 template, metres, pelvis at the origin, y down, facing the camera (-z).
_TEMPLATE = np.array([
    [0.0, -0.78, 0.0],  # head_top
    [0.0, -0.50, 0.0],  # neck
    [-0.18, -0.48, 0.0], [-0.26, -0.22, 0.02], [-0.28, 0.03, 0.0],  # right arm
    [0.18, -0.48, 0.0], [0.26, -0.22, 0.02], [0.28, 0.03, 0.0],  # left arm
    [-0.11, 0.0, 0.0], [-0.12, 0.43, 0.02], [-0.12, 0.86, 0.0],  # right leg
    [0.11, 0.0, 0.0], [0.12, 0.43, 0.02], [0.12, 0.86, 0.0],  # left leg
    [0.0, 0.0, 0.0],  # pelvis
    [0.0, -0.25, 0.02],  # spine
    [0.0, -0.64, 0.0],  # head
])
ROOT, NECK = MUPOTS_17.root, MUPOTS_17.neck


def random_pose(rng: np.random.Generator) -> np.ndarray:
    """(17, 3) body-frame pose with pelvis-neck length exactly 0.5 m."""
    pose = _TEMPLATE + rng.normal(0, 0.04, _TEMPLATE.shape) * (np.arange(17) != NECK)[:, None]
    pose[ROOT] = 0.0
    yaw, lean = rng.uniform(-np.pi, np.pi), rng.uniform(-0.2, 0.2)
    cy, sy, cl, sl = np.cos(yaw), np.sin(yaw), np.cos(lean), np.sin(lean)
    rotation = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ np.array([[1, 0, 0], [0, cl, -sl], [0, sl, cl]])
    return pose @ rotation.T


def random_camera(
    rng: np.random.Generator, size=(1280, 720), distorted: bool = False, focal_range=(700.0, 1100.0)
) -> Intrinsics:
    f = rng.uniform(*focal_range)
    K = np.array([[f, 0, size[0] / 2 + rng.uniform(-20, 20)], [0, f * rng.uniform(0.98, 1.02), size[1] / 2 + rng.uniform(-20, 20)], [0, 0, 1]])
    if distorted:
        return Intrinsics(K, *size, "plumb_bob", np.array([-0.08, 0.02, 0.001, -0.001, 0.0]))
    return Intrinsics(K, *size)


def place_people(
    rng: np.random.Generator, intr: Intrinsics, count: int, transform, min_separation_map_px: float = 4.5,
    depth_range=(3.0, 9.0), outside: bool = False, overlap: bool = False, stride: int = 4,
    joint_separation_map_px: float = 0.0,
) -> np.ndarray:
    """(P, 17, 3) people in camera metres whose centers and roots are apart on the output map.

    ``joint_separation_map_px``: also keep same-type joints of different people this far apart (two
    heatmap peaks closer than ~2 map px merge, so snapping cannot tell them apart).

    ``outside``: the first person stands partly out of the image (its pelvis left of it).
    ``overlap``: people come in pairs, the second standing 0.3-0.45 m beside and behind the first.
    """
    people: list[np.ndarray] = []
    marks: list[np.ndarray] = []
    joints: list[np.ndarray] = []
    for _ in range(10000):
        if len(people) == count:
            break
        pose = random_pose(rng)
        z = rng.uniform(*depth_range)
        if outside and not people:
            u = -0.15 * intr.fx / z  # pelvis 15 cm left of the image, the right side still seen
        else:
            u = rng.uniform(0.08, 0.92) * intr.width
        v = rng.uniform(0.45, 0.6) * intr.height
        root = back_project(np.array([u, v]), np.array(z), intr)
        if overlap and len(people) % 2 == 1:
            root = people[-1][ROOT] + np.array([rng.choice([-1, 1]) * rng.uniform(0.3, 0.45), 0.0, rng.uniform(0.3, 0.6)])
        person = pose + root
        uv = project(person, intr)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= intr.width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= intr.height - 1)
        if not inside.any():
            continue
        xy = (transform_points_px(uv, transform) + 0.5) / stride - 0.5
        center = xy[inside].mean(0)
        mark = np.stack([center, xy[ROOT]])
        if marks and min(np.linalg.norm(m - mark, axis=-1).min() for m in marks) < min_separation_map_px:
            continue
        if any(np.linalg.norm(m[:, None] - mark[None], axis=-1).min() < min_separation_map_px for m in marks):
            continue
        if any(np.linalg.norm(j - xy, axis=-1).min() < joint_separation_map_px for j in joints):
            continue
        people.append(person)
        marks.append(mark)
        joints.append(xy)
    assert len(people) == count, "could not place the people apart"
    return np.array(people).reshape(count, 17, 3)


def annotate(people: np.ndarray, intr: Intrinsics, transform, rng: np.random.Generator, occlusion: float = 0.1):
    """The scene's annotation in the network input, and the source-image ground truth."""
    uv_src = project(people, intr)
    inside = (uv_src[..., 0] >= 0) & (uv_src[..., 0] <= intr.width - 1) & (uv_src[..., 1] >= 0) & (uv_src[..., 1] <= intr.height - 1)
    occluded = rng.random(inside.shape) < occlusion
    occluded[:, ROOT] = False
    visible = inside & ~occluded
    net_camera = transform_intrinsics(intr, transform)[0]
    ann = SceneAnnotation(
        uv_px=transform_points_px(uv_src, transform).reshape(-1, 17, 2),
        labelled=np.ones(people.shape[:2], dtype=bool),
        visible=visible,
        K=net_camera.K,
        image_size=transform.out_size,
        xyz_m=people,
        distortion_model=net_camera.distortion_model,
        distortion=net_camera.D,
    )
    return ann, uv_src, visible


def scene(seed: int, count: int, **kwargs):
    rng = np.random.default_rng(seed)
    distorted = kwargs.pop("distorted", False)
    intr = random_camera(rng, distorted=distorted)
    transform = letterbox_transform(intr.size, (832, 512))
    people = place_people(rng, intr, count, transform, **kwargs) if count else np.zeros((0, 17, 3))
    ann, uv_src, visible = annotate(people, intr, transform, rng)
    return intr, transform, people, ann, uv_src, visible


def match(decoded_uv: np.ndarray, truth_uv: np.ndarray) -> np.ndarray:
    """Index of the ground-truth person nearest (mean joint distance) to each decoded one."""
    distance = np.linalg.norm(decoded_uv[:, None] - truth_uv[None], axis=-1).mean(-1)
    return distance.argmin(1)


CASES = {
    "empty": {"count": 0},
    "one": {"count": 1},
    "twenty": {"count": 20, "depth_range": (4.0, 12.0)},
    "overlapping": {"count": 6, "overlap": True},
    "partly-outside": {"count": 3, "outside": True},
    "distorted": {"count": 4, "distorted": True},
}


def _decode_targets(case: str, seed: int, joint_separation_map_px: float = 0.0, **decode_overrides):
    cfg = ModelConfig()
    kwargs = dict(CASES[case])
    if kwargs["count"]:
        kwargs["joint_separation_map_px"] = joint_separation_map_px
    intr, transform, people, ann, uv_src, visible = scene(seed, **kwargs)
    targets = collate_targets([TargetGenerator(cfg)(ann)])
    outputs = targets_as_outputs(targets)
    decode_cfg = DecodeConfig.from_model_config(cfg, **decode_overrides)
    return decode(outputs, transform, intr, decode_cfg), intr, people, uv_src, visible


@pytest.mark.parametrize("case", list(CASES))
def test_targets_decode_to_ground_truth_without_snapping(case: str) -> None:
    """Offsets carry the sub-pixel part: 2D within 0.01 px, root depth and 3D within 1 mm, with
    the geometric depth fused in (a distorted lens must be undistorted before MAR Eq. 7-8)."""
    found, _, people, uv_src, visible = _decode_targets(
        case, seed=11, heatmap_refinement=False, adaptive_fusion=True)
    expected = np.flatnonzero(visible.any(1))
    assert len(found) == len(expected)
    if not len(found):
        return
    gt = expected[match(found.uv_px, uv_src[expected])]
    assert sorted(gt.tolist()) == expected.tolist()
    np.testing.assert_allclose(found.uv_px, uv_src[gt], atol=0.01)
    np.testing.assert_allclose(found.root_m[:, 2], people[gt, ROOT, 2], atol=1e-3)
    np.testing.assert_allclose(found.keypoints_m, people[gt], atol=1e-3)
    # Seen joints are the visible ones; joints outside the image are always inferred.
    agreement = (found.inferred == ~visible[gt]).mean()
    assert agreement >= (1.0 if case in ("one", "partly-outside") else 0.97)
    assert np.all(found.inferred[~(visible[gt] | found.inferred)] == False)
    assert np.all(found.score > 0.9) and np.all(found.root_sigma_m > 0)


@pytest.mark.parametrize("case", ["one", "twenty", "overlapping", "partly-outside", "distorted"])
def test_targets_decode_with_snapping(case: str) -> None:
    """Snapped joints: 2D within 0.5 px; 3D error no larger than the 2D error back-projected."""
    found, intr, people, uv_src, visible = _decode_targets(
        case, seed=5, joint_separation_map_px=3.0, heatmap_refinement=True, adaptive_fusion=False)
    expected = np.flatnonzero(visible.any(1))
    assert len(found) == len(expected)
    gt = expected[match(found.uv_px, uv_src[expected])]
    error_2d = np.linalg.norm(found.uv_px - uv_src[gt], axis=-1)
    assert error_2d.max() < 0.5
    assert ((~found.inferred) == visible[gt]).mean() >= (1.0 if case == "one" else 0.97)  # snapped = seen
    np.testing.assert_allclose(found.root_m[:, 2], people[gt, ROOT, 2], atol=1e-3)
    depth = people[gt][..., 2]
    explained = np.linalg.norm(back_project(found.uv_px, depth, intr) - people[gt], axis=-1)
    error_3d = np.linalg.norm(found.keypoints_m - people[gt], axis=-1)
    assert np.all(error_3d <= explained + 1e-3)


def test_snapping_picks_the_nearest_confident_peak_with_subpixel_accuracy() -> None:
    h, w = 20, 30
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    peaks = [(7.3, 8.6), (11.8, 9.2)]  # (x, y)
    heat = np.maximum.reduce([np.exp(-((x - px) ** 2 + (y - py) ** 2) / 8) for px, py in peaks])
    heat[:, :, ] *= 1.0
    weak = np.exp(-((x - 22.4) ** 2 + (y - 5.1) ** 2) / 8) * 0.2  # below the threshold
    maps = torch.tensor(np.stack([np.maximum(heat, weak)]), dtype=torch.float64)[None]
    query = torch.tensor([[[[8.0, 9.0]], [[10.9, 9.4]], [[22.0, 5.0]], [[2.0, 18.0]]]], dtype=torch.float64)
    xy, conf, snapped = snap_to_heatmaps(maps, query, threshold=0.3, radius=2)
    assert snapped[0, :, 0].tolist() == [True, True, False, False]
    torch.testing.assert_close(xy[0, 0, 0], torch.tensor([7.3, 8.6], dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(xy[0, 1, 0], torch.tensor([11.8, 9.2], dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(xy[0, 2:, 0], query[0, 2:, 0])  # no confident peak: offsets kept
    assert conf[0, 2, 0] < 0.3 and conf[0, 0, 0] > 0.9


def test_targets_mask_unknowns_and_2d_only_samples() -> None:
    cfg = ModelConfig(input_size=(128, 96))
    rng = np.random.default_rng(3)
    intr = random_camera(rng, size=(256, 192))
    transform = letterbox_transform(intr.size, cfg.input_size)
    people = place_people(rng, intr, 2, transform, depth_range=(4.0, 6.0))
    ann, _, _ = annotate(people, intr, transform, rng, occlusion=0.0)
    labelled = ann.labelled.copy()
    labelled[1, 0] = False  # person 1's head_top is unknown
    coco_like = SceneAnnotation(ann.uv_px, labelled, ann.visible & labelled, ann.K, ann.image_size, xyz_m=None)
    t = TargetGenerator(cfg)(coco_like)
    assert t.heatmap_weight[0].max() == 0 and t.heatmap_weight[1:].min() == 1  # channel of the unknown joint
    assert t.root_depth_weight.max() == 0 and t.rel_depth_weight.max() == 0  # no 3D: masked, not zero-trained
    assert t.root_to_center_weight.max() == 1  # the root's 2D position is known
    owned = t.offset_weight.max(0) > 0
    assert t.offset_weight[0][owned].min() == 0 or t.offset_weight[0][owned].max() == 1
    assert not t.has_depth.any() and t.person_valid.sum() == 2
    full = TargetGenerator(cfg)(ann)
    assert full.root_depth_weight.sum() > 0 and full.has_depth[:2].all()
    # Depth targets are focal-normalised: Z * depth_scale / sqrt(fx fy) of the network input.
    z = people[full.root_owner[full.root_depth_weight[0] > 0], ROOT, 2]
    f = np.sqrt(ann.K[0, 0] * ann.K[1, 1])
    np.testing.assert_allclose(full.root_depth[0][full.root_depth_weight[0] > 0], z * 100 / f, rtol=1e-5)
    with pytest.raises(ValueError, match="uv_px"):
        TargetGenerator(cfg)(SceneAnnotation(ann.uv_px[:, :5], labelled[:, :5], labelled[:, :5], ann.K, ann.image_size))


def test_targets_match_full_map_gaussians_and_vanish_outside_the_discs() -> None:
    """The heatmaps equal the full-map max of the Gaussians within 1e-5 (they are drawn from the
    float32 person tables); offsets and depths are exactly 0, with weight 0, outside every center /
    root disc."""
    cfg, tcfg = ModelConfig(), TargetConfig()
    _, _, _, ann, _, _ = scene(7, count=6, overlap=True, outside=True)
    t = TargetGenerator(cfg, tcfg)(ann)
    w, h = cfg.output_size
    xy = (ann.uv_px + 0.5) / cfg.output_stride - 0.5
    seen = ann.visible & (xy >= -0.5).all(-1) & (xy[..., 0] <= w - 0.5) & (xy[..., 1] <= h - 0.5)
    centers = (xy * seen[..., None]).sum(1)[seen.any(1)] / seen.sum(1)[seen.any(1), None]
    roots = np.clip(xy[seen.any(1), ROOT], 0, [w - 1, h - 1])
    y, x = np.mgrid[0:h, 0:w]

    def d2(points: np.ndarray) -> np.ndarray:
        return (x - points[..., 0, None, None]) ** 2 + (y - points[..., 1, None, None]) ** 2

    heat = np.where(seen[..., None, None], np.exp(-d2(xy) / (2 * tcfg.joint_sigma**2)), 0.0).max(0)
    center = np.exp(-d2(centers) / (2 * tcfg.center_sigma**2)).max(0)
    np.testing.assert_allclose(t.heatmaps, heat, rtol=0, atol=1e-5)
    np.testing.assert_allclose(t.center[0], center, rtol=0, atol=1e-5)
    in_center_disc = (d2(centers) <= tcfg.center_radius**2).any(0)
    in_root_disc = (d2(roots) <= tcfg.root_radius**2).any(0)
    assert in_center_disc.any() and not in_center_disc.all() and in_root_disc.any()
    assert np.all(t.offset_weight.min(0)[in_center_disc] == 1)  # every joint labelled
    assert np.all(t.offsets[:, :, ~in_center_disc] == 0) and np.all(t.offset_weight[:, ~in_center_disc] == 0)
    assert np.all((t.root_owner >= 0) == in_root_disc) and np.all(t.rel_depth_weight.min(0)[in_root_disc] == 1)
    for maps, weight in ((t.rel_depth, t.rel_depth_weight), (t.root_depth, t.root_depth_weight),
                         (t.root_to_center, t.root_to_center_weight)):
        assert np.all(maps[:, ~in_root_disc] == 0) and np.all(weight[:, ~in_root_disc] == 0)


def test_maps_of_a_batch_equal_each_images_own_maps() -> None:
    """Drawn for a batch of images with 6, 0 and 2 people (tables padded to max_people), every
    image's maps equal those drawn for it alone: no person leaks into another image's maps."""
    cfg = ModelConfig()
    generator = TargetGenerator(cfg)
    annotations = [scene(seed, count, overlap=True, outside=True)[3] for seed, count in ((11, 6), (12, 0), (13, 2))]
    batch = generator.maps(collate_targets([generator.tables(ann) for ann in annotations]))
    assert batch.person_valid.sum(1).tolist() == [6, 0, 2]
    for k, ann in enumerate(annotations):
        alone = generator(ann)
        for f in fields(TargetMaps):
            np.testing.assert_array_equal(getattr(batch, f.name)[k].numpy(), getattr(alone, f.name), err_msg=f.name)


def test_decode_batch_is_fixed_size_and_device_side() -> None:
    cfg = ModelConfig(input_size=(128, 96))
    t = TargetGenerator(cfg)
    rng = np.random.default_rng(4)
    intr = random_camera(rng, size=(256, 192))
    transform = letterbox_transform(intr.size, cfg.input_size)
    anns = [annotate(place_people(rng, intr, n, transform), intr, transform, rng)[0] for n in (0, 2)]
    targets = collate_targets([t(a) for a in anns])
    cameras = CameraBatch.build([transform, transform], [intr, intr], "cpu")
    decoded = decode_batch(targets_as_outputs(targets), cameras, DecodeConfig.from_model_config(cfg))
    assert decoded.uv_px.shape == (2, 20, 17, 2) and decoded.valid.shape == (2, 20)
    assert decoded.valid.sum(1).tolist() == [0, 2]
    with pytest.raises(ValueError, match="one image"):
        decode(targets_as_outputs(targets), transform, intr, DecodeConfig.from_model_config(cfg))


@pytest.mark.parametrize("fusion", [False, True])
def test_published_sigma_is_the_std_of_the_laplace_scales(fusion: bool) -> None:
    """The heads' sigmas are Laplace scales b: the decoder fuses and publishes sigma = sqrt(2) b."""
    cfg = ModelConfig()
    intr, transform, _, ann, _, _ = scene(11, count=1)
    targets = collate_targets([TargetGenerator(cfg)(ann)])
    b_reg, b_geo = 0.2, 0.3  # network depth units
    outputs = targets_as_outputs(targets, sigma=b_reg, geo_sigma=b_geo)
    found = decode(outputs, transform, intr, DecodeConfig.from_model_config(cfg, adaptive_fusion=fusion))
    K = targets.K[0].double()
    factor = 100.0 / float(torch.sqrt(K[0, 0] * K[1, 1]))  # metres -> network units
    s_reg, s_geo = np.sqrt(2) * b_reg / factor, np.sqrt(2) * b_geo / factor
    # Eq. 12's fused sigma for standard deviations s1, s2: sqrt(2) / (1 / s1 + 1 / s2).
    expected = np.sqrt(2) / (1 / s_reg + 1 / s_geo) if fusion else s_reg
    assert len(found) == 1
    assert found.root_sigma_m[0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("fusion", [False, True])
def test_sigma_inflation_scales_the_published_sigma_and_leaves_the_depth(fusion: bool) -> None:
    """Both cues' sigmas scale by the same factor, so Eq. 12's weights (and the depth) stay put."""
    cfg = ModelConfig()
    intr, transform, _, ann, _, _ = scene(11, count=2)
    targets = collate_targets([TargetGenerator(cfg)(ann)])
    outputs = targets_as_outputs(targets, sigma=0.2, geo_sigma=0.3)
    plain, inflated = (decode(outputs, transform, intr, DecodeConfig.from_model_config(
        cfg, adaptive_fusion=fusion, sigma_inflation=k)) for k in (1.0, 1.6))
    assert len(plain) == 2
    np.testing.assert_allclose(inflated.root_sigma_m, 1.6 * plain.root_sigma_m, rtol=1e-6)
    np.testing.assert_allclose(inflated.keypoints_m, plain.keypoints_m, rtol=1e-6)
