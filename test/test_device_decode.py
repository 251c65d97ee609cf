"""Device-side decoding equals the host reference: camera_torch, source_people, movenet-lift's
people_tensors, letterbox_tensors; and it is capturable (no host traffic) as a CUDA graph needs.

The references are :mod:`mp3d_ros.geometry.camera` (numpy, OpenCV) and, for movenet-lift, known
answers: exact detections of bodies whose pose an oracle lifter returns must give those bodies back
(root depth, 3D joints, pixels). The per-image host implementation people_tensors replaced is kept
as a second reference for the batching and masking only: it calls the same lifter and depth
functions, so it cannot catch an error in them.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_absolute_depth import random_pose
from torch.overrides import TorchFunctionMode

from mp3d_ros.geometry.absolute_depth import estimate_root_depth
from mp3d_ros.geometry.camera import (
    ImageTransform,
    Intrinsics,
    back_project,
    distort_normalized,
    letterbox_transform,
    pixel_rays,
    project,
    transform_points_px,
)
from mp3d_ros.geometry.camera_torch import CameraBatch, camera_rows
from mp3d_ros.geometry.camera_torch import pixel_rays as device_rays
from mp3d_ros.geometry.camera_torch import project as device_project
from mp3d_ros.geometry.skeleton import COCO_17, MUPOTS_17, index_map
from mp3d_ros.inference.estimator import Estimator
from mp3d_ros.inference.movenet_lift import _SUPPORT
from mp3d_ros.inference.pipelines import PaperPipeline, load_pipeline
from mp3d_ros.inference.preprocess import IMAGENET, letterbox_tensors
from mp3d_ros.model.codec.decode import DecodedPoses, source_people, unpack_people
from mp3d_ros.model.config import lite_mobilenet_fpn_config
from mp3d_ros.inference.movenet_lift import MoveNetLift
from mp3d_ros.model.lifter import Lifter, lift, prepare_lifter_input
from mp3d_ros.model.movenet import MoveNetPeople
from mp3d_ros.model.network import build_network

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZES = [(640, 480), (1280, 720), (320, 240)]


def random_camera(rng: np.random.Generator, model: str, size: tuple[int, int]) -> Intrinsics:
    """A camera of ``model`` whose lens is one-to-one over the image (wide lenses included)."""
    from mp3d_ros.synthetic.scenes import _sample_distortion

    width, height = size
    f = rng.uniform(0.45, 1.2) * width
    K = np.array([[f, rng.uniform(-2, 2), width / 2 + rng.uniform(-20, 20)],
                  [0, f * rng.uniform(0.95, 1.05), height / 2 + rng.uniform(-20, 20)], [0, 0, 1]])
    if model == "none":
        return Intrinsics(K, width, height)
    if model != "rational_polynomial":
        return Intrinsics(K, width, height, model, _sample_distortion(rng, model, K, size))
    border = np.array([[u, v] for u in np.linspace(0, width - 1, 9) for v in np.linspace(0, height - 1, 9)])
    while True:  # redrawn until one-to-one over the image, as _sample_distortion does
        D = [rng.uniform(-0.3, 0.1), rng.uniform(-0.05, 0.1), rng.normal(0, 1e-3), rng.normal(0, 1e-3),
             rng.uniform(-0.01, 0.01), rng.uniform(-0.1, 0.1), rng.uniform(-0.02, 0.02), 0.0]
        intr = Intrinsics(K, width, height, model, D)
        rays = pixel_rays(border, intr)
        r = np.linspace(1e-3, 1.1 * np.linalg.norm(rays[:, :2], axis=1).max(), 200)
        radius = np.linalg.norm(distort_normalized(np.stack([r, 0 * r], 1), model, intr.D), axis=1)
        if np.abs(project(rays, intr) - border).max() < 1e-6 and np.all(np.diff(radius) > 0):
            return intr


def random_cameras(seed: int, count: int) -> list[Intrinsics]:
    """Cameras of every lens family, in one batch."""
    rng = np.random.default_rng(seed)
    models = ["none", "plumb_bob", "rational_polynomial", "equidistant"]
    return [random_camera(rng, models[(seed + i) % 4], SIZES[(seed + i) % 3]) for i in range(count)]


def pixels_inside(rng: np.random.Generator, intrinsics: Intrinsics, shape: tuple[int, ...]) -> np.ndarray:
    return rng.uniform(0, 1, shape + (2,)) * (np.array(intrinsics.size) - 1)


def cameras_of(intrinsics: list[Intrinsics], input_size=(416, 256)) -> CameraBatch:
    return CameraBatch.build([letterbox_transform(i.size, input_size) for i in intrinsics], intrinsics, "cpu")


@given(seed=st.integers(0, 2**31 - 1))
def test_rays_and_projection_equal_the_reference(seed: int) -> None:
    """Per image of a mixed batch: rays within 1e-9 (px-equivalent 1e-6) of OpenCV's undistortion,
    projections within 1e-9 px."""
    intrinsics = random_cameras(seed, 4)
    rng = np.random.default_rng(seed)
    uv = np.stack([pixels_inside(rng, intr, (30,)) for intr in intrinsics])
    cameras = cameras_of(intrinsics)
    rays = device_rays(torch.from_numpy(uv), cameras).numpy()
    points = rays * rng.uniform(0.5, 20.0, (4, 30, 1))
    projected = device_project(torch.from_numpy(points), cameras).numpy()
    for i, intr in enumerate(intrinsics):
        np.testing.assert_allclose(rays[i], pixel_rays(uv[i], intr), atol=1e-9 * (1 + np.abs(rays[i]).max()))
        np.testing.assert_allclose(projected[i], project(points[i], intr), atol=1e-9)
        np.testing.assert_allclose(projected[i], uv[i], atol=1e-6)  # round trip
    behind = device_project(-torch.from_numpy(points), cameras)
    assert torch.isnan(behind).all()


def test_lens_families_are_static_and_identity_without_coefficients() -> None:
    pinhole = Intrinsics.pinhole(500, 500, 320, 240, 640, 480)
    zero_plumb = Intrinsics(pinhole.K, 640, 480, "plumb_bob", np.zeros(5))
    fisheye = Intrinsics(pinhole.K, 640, 480, "equidistant", [0.01, 0, 0, 0])
    transforms = [letterbox_transform((640, 480), (256, 256))] * 3
    assert camera_rows(transforms[:2], [pinhole, zero_plumb])[1] == ()
    rows, lenses = camera_rows(transforms, [pinhole, zero_plumb, fisheye])
    assert lenses == ("equidistant",) and rows.shape == (3, 35)
    uv = torch.rand(3, 7, 2, dtype=torch.float64) * 400
    rays = device_rays(uv, CameraBatch.from_rows(torch.from_numpy(rows), lenses)).numpy()
    for i, intr in enumerate([pinhole, zero_plumb, fisheye]):
        np.testing.assert_allclose(rays[i], pixel_rays(uv[i].numpy(), intr), atol=1e-12)


def _random_decoded(rng: np.random.Generator, intrinsics: list[Intrinsics], transforms, slots: int,
                    valid_counts: list[int]) -> DecodedPoses:
    """Decoded poses of people inside each image (network-input pixels) with random depths."""
    b, j = len(intrinsics), 17
    uv_input = np.stack([transform_points_px(pixels_inside(rng, intr, (slots, j)), t)
                         for intr, t in zip(intrinsics, transforms)])
    valid = np.zeros((b, slots), dtype=bool)
    for i, count in enumerate(valid_counts):
        valid[i, rng.choice(slots, count, replace=False)] = True
    values = {
        "uv_px": uv_input, "rel_depth_m": rng.normal(0, 0.2, (b, slots, j)),
        "root_depth_m": rng.uniform(1, 15, (b, slots)), "root_sigma_m": rng.uniform(0.05, 1, (b, slots)),
        "confidence": rng.uniform(0, 1, (b, slots, j)), "inferred": rng.random((b, slots, j)) < 0.3,
        "score": np.sort(rng.uniform(0, 1, (b, slots)))[:, ::-1].copy(), "valid": valid,
        "reg_depth_m": np.zeros((b, slots)), "geo_depth_m": np.zeros((b, slots)),
        "geo_valid": np.zeros((b, slots), dtype=bool),
    }
    tensors = {k: torch.from_numpy(v) if v.dtype == bool else torch.from_numpy(v).float()
               for k, v in values.items()}
    return DecodedPoses(**tensors)


@given(seed=st.integers(0, 2**31 - 1))
def test_source_people_equal_the_host_back_projection(seed: int) -> None:
    """The papers' decoding: inverse letterbox and back-projection of several images with their
    own (distorted) cameras, empty images included, equal the numpy path of mp3d_ros.geometry.camera."""
    intrinsics = random_cameras(seed, 3)
    transforms = [letterbox_transform(i.size, (832, 512)) for i in intrinsics]
    rng = np.random.default_rng(seed)
    decoded = _random_decoded(rng, intrinsics, transforms, 6, [int(rng.integers(0, 7)), 0, 6])
    people = unpack_people(source_people(decoded, CameraBatch.build(transforms, intrinsics, "cpu"))
                           .pack().numpy(), "mupots_17")
    for i, (found, intr, transform) in enumerate(zip(people, intrinsics, transforms)):
        valid = decoded.valid[i].numpy()
        assert len(found) == valid.sum()
        inverse = ImageTransform(np.linalg.inv(transform.A), intr.size)
        uv = transform_points_px(decoded.uv_px[i].double().numpy()[valid], inverse)
        depth = (decoded.root_depth_m[i].double().numpy()[valid, None]
                 + decoded.rel_depth_m[i].double().numpy()[valid])
        np.testing.assert_allclose(found.uv_px, uv, atol=1e-9)
        np.testing.assert_allclose(found.keypoints_m, back_project(uv, depth, intr), atol=1e-8)
        np.testing.assert_array_equal(found.inferred, decoded.inferred[i].numpy()[valid])
        np.testing.assert_allclose(found.score, decoded.score[i].double().numpy()[valid])
        np.testing.assert_allclose(found.root_sigma_m, decoded.root_sigma_m[i].double().numpy()[valid])


# ----------------------------------------------------------------------------- movenet-lift

_COCO_TO_MUPOTS = index_map(COCO_17, MUPOTS_17)


def reference_movenet_people(model, detections: MoveNetPeople, index: int, transform: ImageTransform,
                             intrinsics: Intrinsics) -> dict[str, np.ndarray]:
    """The host implementation people_tensors replaced: one image, kept people only, numpy."""
    cfg = model.cfg
    keep = (detections.scores[index] >= cfg.min_person_score).numpy()
    uv_input, scores, person_score = (t[index].double().numpy()[keep] for t in (
        detections.keypoints_px, detections.keypoint_scores, detections.scores))
    uv_coco = (uv_input - transform.A[:2, 2]) @ np.linalg.inv(transform.A[:2, :2]).T
    inside = ((uv_coco >= -0.5) & (uv_coco <= np.array(intrinsics.size) - 0.5)).all(-1)
    seen_coco = (scores >= cfg.min_keypoint_score) & inside
    rays_coco = pixel_rays(np.where(seen_coco[..., None], uv_coco, 0.0), intrinsics)
    pose = lift(model.lifter, torch.from_numpy(rays_coco).float(),
                torch.from_numpy(np.where(seen_coco, scores, 0.0)).float()).double().numpy()
    present = _COCO_TO_MUPOTS >= 0
    count, joints = len(pose), MUPOTS_17.num_joints
    seen, rays, uv, confidence = (np.zeros((count, joints) + s, dtype=d) for s, d in
                                  (((), bool), ((3,), float), ((2,), float), ((), float)))
    seen[:, present] = seen_coco[:, _COCO_TO_MUPOTS[present]]
    rays[:, present] = rays_coco[:, _COCO_TO_MUPOTS[present]]
    uv[:, present] = uv_coco[:, _COCO_TO_MUPOTS[present]]
    confidence[:, present] = scores[:, _COCO_TO_MUPOTS[present]]
    for name, support in _SUPPORT.items():
        confidence[:, MUPOTS_17.index(name)] = scores[:, [COCO_17.index(n) for n in support]].mean(1)
    depth = estimate_root_depth(
        torch.from_numpy(rays), torch.from_numpy(seen), torch.from_numpy(pose), MUPOTS_17,
        math.sqrt(intrinsics.fx * intrinsics.fy), model.lifter.cfg.canonical_height_m, cfg.prior,
        cfg.keypoint_sigma_input_px / math.sqrt(abs(np.linalg.det(transform.A[:2, :2]))))
    valid = depth.valid.numpy()
    depth_m, pose, rays, seen = depth.depth_m.numpy()[valid], pose[valid], rays[valid], seen[valid]
    offsets = (pose - pose[:, MUPOTS_17.root:MUPOTS_17.root + 1]) * (
        cfg.prior.height_m / model.lifter.cfg.canonical_height_m)
    on_rays = (depth_m[:, None, None] + offsets[..., 2:]) * rays
    lateral = ((on_rays - offsets)[..., :2] * seen[..., None]).sum(1) / seen.sum(1, keepdims=True)
    root = np.concatenate([lateral, depth_m[:, None]], axis=-1)
    joints_m = np.where(seen[..., None], on_rays, root[:, None] + offsets)
    uv = np.where(seen[..., None], uv[valid], project(joints_m, intrinsics))
    order = np.argsort(-person_score[valid], kind="stable")
    return {"uv_px": uv[order], "keypoints_m": joints_m[order], "inferred": ~seen[order],
            "confidence": confidence[valid][order].clip(0, 1), "score": person_score[valid][order],
            "root_sigma_m": depth.sigma_m.numpy()[valid][order]}


def random_detections(rng: np.random.Generator, intrinsics: list[Intrinsics], transforms,
                      slots: int, people: list[int]) -> MoveNetPeople:
    """MoveNet-like detections of projected random bodies (noisy, some keypoints weak or outside)."""
    b = len(intrinsics)
    keypoints = np.zeros((b, slots, 17, 2))
    keypoint_scores = rng.uniform(0, 0.2, (b, slots, 17))
    person_scores = rng.uniform(0, 0.15, (b, slots))
    coco = [MUPOTS_17.index(n) if n in MUPOTS_17.joints else MUPOTS_17.index("head") for n in COCO_17.joints]
    for i, (intr, transform) in enumerate(zip(intrinsics, transforms)):
        keypoints[i] = transform_points_px(pixels_inside(rng, intr, (slots, 17)), transform)
        for p in range(people[i]):
            pose = random_pose(int(rng.integers(1 << 30)))
            root = np.array([rng.uniform(-1, 1), rng.uniform(-0.3, 0.3), 1]) * rng.uniform(3, 9)
            uv = project((pose + root)[coco], intr) + rng.normal(0, 1.5, (17, 2))
            keypoints[i, p] = transform_points_px(uv, transform)
            keypoint_scores[i, p] = rng.uniform(0.1, 0.9, 17)
            person_scores[i, p] = rng.uniform(0.1, 0.8)
    return MoveNetPeople(*(torch.from_numpy(a).float() for a in (
        keypoints, keypoint_scores, np.zeros((b, slots, 4)), person_scores, person_scores)))


@pytest.fixture(scope="module")
def movenet_lift():
    return load_pipeline("movenet-lift", max_people=8).model


@given(seed=st.integers(0, 2**31 - 1))
def test_movenet_lift_people_equal_the_host_implementation(movenet_lift, seed: int) -> None:
    """All slots of a batch at once, masked, equal the per-image host path: mixed lenses, up to 8
    people, empty images; within 1e-4 m and 1e-3 px."""
    intrinsics = random_cameras(seed, 3)
    transforms = [letterbox_transform(i.size, (256, 256)) for i in intrinsics]
    rng = np.random.default_rng(seed)
    detections = random_detections(rng, intrinsics, transforms, 8,
                                   [int(rng.integers(0, 9)), 0, int(rng.integers(1, 5))])
    with torch.no_grad():
        found = unpack_people(movenet_lift.people_tensors(
            detections, CameraBatch.build(transforms, intrinsics, "cpu")).pack().numpy(), "mupots_17")
        for i, (people, intr, transform) in enumerate(zip(found, intrinsics, transforms)):
            expected = reference_movenet_people(movenet_lift, detections, i, transform, intr)
            assert len(people) == len(expected["score"])
            np.testing.assert_allclose(people.keypoints_m, expected["keypoints_m"], atol=1e-4)
            np.testing.assert_allclose(people.uv_px, expected["uv_px"], atol=1e-3)
            np.testing.assert_array_equal(people.inferred, expected["inferred"])
            for name in ("confidence", "score", "root_sigma_m"):
                np.testing.assert_allclose(getattr(people, name), expected[name], rtol=1e-5, atol=1e-7)
    assert len(found[1]) == 0


def oracle_lifter(cfg, pose_cam: np.ndarray, rays_coco: torch.Tensor, confidence: torch.Tensor) -> Lifter:
    """A lifter whose output is ``pose_cam`` (17, 3) for these inputs: zero head weights, the pose
    (in the inputs' virtual camera, sized for ``cfg.canonical_height_m``) as the head's bias."""
    lifter = Lifter(cfg).eval()
    _, rotation = prepare_lifter_input(rays_coco[None].float(), confidence[None].float())
    virtual = torch.from_numpy(pose_cam).float() @ rotation[0].transpose(0, 1)  # lift() applies @ R
    with torch.no_grad():
        lifter.head.weight.zero_()
        lifter.head.bias.copy_(virtual.flatten())
    return lifter


@pytest.mark.parametrize("lens", ["none", "plumb_bob", "equidistant"])
def test_movenet_lift_gives_back_the_body_of_exact_detections(movenet_lift, lens: str) -> None:
    """Known answer: the COCO keypoints are the exact projections of a body and the lifter returns
    its pose; the root depth, all 17 joints (the 5 COCO lacks placed from the seen ones) and the
    pixels then equal the body's within 1 mm and 0.01 px, through the camera's lens."""
    rng = np.random.default_rng(7)
    intr = random_camera(rng, lens, (640, 480))
    transform = letterbox_transform(intr.size, (256, 256))
    # Exact joint projections, not a 2D model's outline marks: the torso is the joints' own.
    prior = replace(movenet_lift.cfg.prior, torso_keypoint_scale=1.0)
    body = random_pose(11) * 1.1 + np.array([0.4, 0.2, 1.0]) * 5.0  # MuPoTS-17, camera metres
    coco = [MUPOTS_17.index(n) if n in MUPOTS_17.joints else MUPOTS_17.index("head") for n in COCO_17.joints]
    uv_coco = project(body[coco], intr)
    detections = MoveNetPeople(*(torch.from_numpy(a).float()[None, None] for a in (
        transform_points_px(uv_coco, transform), np.full(17, 0.9), np.zeros(4), np.array(0.8), np.array(0.8))))
    cameras = CameraBatch.build([transform], [intr], "cpu")
    # The rays the lifter sees: the float32 detections mapped back and undistorted.
    uv_seen = transform_points_px(detections.keypoints_px[0, 0].double().numpy(),
                                  ImageTransform(np.linalg.inv(transform.A), intr.size))
    rays_coco = torch.from_numpy(pixel_rays(uv_seen, intr))
    root = MUPOTS_17.root
    canonical = movenet_lift.lifter.cfg
    pose = (body - body[root]) * canonical.canonical_height_m / prior.height_m
    lifter = oracle_lifter(canonical, pose, rays_coco, torch.full((17,), 0.9))
    # Nor is there 2D noise whose expected lengthening of segments the bone fit would subtract.
    model = MoveNetLift(movenet_lift.movenet, lifter,
                        replace(movenet_lift.cfg, prior=prior, keypoint_sigma_input_px=0.0)).eval()
    with torch.no_grad():
        people = unpack_people(model.people_tensors(detections, cameras).pack().numpy(), "mupots_17")[0]
    assert len(people) == 1
    np.testing.assert_allclose(people.keypoints_m[0, root, 2], body[root, 2], atol=1e-3)
    np.testing.assert_allclose(people.keypoints_m[0], body, atol=1e-3)
    np.testing.assert_allclose(people.uv_px[0], project(body, intr), atol=1e-2)
    lacking = [MUPOTS_17.index(n) for n in ("pelvis", "neck", "spine", "head", "head_top")]
    assert people.inferred[0].tolist() == [j in lacking for j in range(17)]


# ----------------------------------------------------------------------------- capturability


class HostTraffic(TorchFunctionMode):
    """Records calls that copy host data to the device or wait for the device (both break CUDA
    graph capture): tensors from Python data, list / CPU / boolean-mask indices, host reads,
    and linear-algebra calls that check their results on the host."""

    CREATE = {torch.tensor, torch.as_tensor, torch.from_numpy, torch.Tensor.new_tensor}
    SYNC = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy,
            torch.Tensor.nonzero, torch.nonzero, torch.Tensor.__bool__, torch.masked_select,
            torch.linalg.solve, torch.linalg.inv, torch.linalg.det, torch.det, torch.Tensor.det}

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.CREATE or func in self.SYNC:
            self.calls.append(getattr(func, "__name__", str(func)))
        elif func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__):
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            self.calls += [f"{func.__name__}[{type(i).__name__}]" for i in index
                           if isinstance(i, (list, np.ndarray)) or (isinstance(i, torch.Tensor) and (
                               i.device.type == "cpu" or i.dtype == torch.bool))]
        return func(*args, **(kwargs or {}))


def test_host_traffic_is_detected() -> None:
    traffic = HostTraffic()
    x = torch.zeros(3, 17, 3, device="meta")
    with traffic:
        x[:, [1, 2]]
        x.new_tensor([0.0, 1.0])
    assert traffic.calls == ["__getitem__[list]", "new_tensor"]


@pytest.mark.parametrize("model", ["paper", "movenet-lift"])
def test_device_path_has_no_host_traffic(model: str) -> None:
    """Pre-processing, network and decoding of every lens family on the 'meta' device (where any
    host data would stay on the CPU): nothing is copied from the host or read back."""
    if model == "paper":
        config = lite_mobilenet_fpn_config(input_size=(128, 96))
        pipeline = PaperPipeline(config, IMAGENET, build_network(config).state_dict(), max_people=5)
    else:
        pipeline = load_pipeline("movenet-lift", input_size=(128, 96), max_people=5)
    network = pipeline.network().to("meta")
    pipeline.to(torch.device("meta"))
    intrinsics = random_cameras(0, 4)
    rows, lenses = camera_rows([letterbox_transform(i.size, pipeline.input_size) for i in intrinsics],
                               intrinsics)
    rows = torch.from_numpy(rows).to("meta")
    images = [torch.zeros(i.height, i.width, 3, dtype=torch.uint8, device="meta") for i in intrinsics]
    traffic = HostTraffic()
    with torch.inference_mode(), traffic:
        batch = letterbox_tensors(images, pipeline.input_size, pipeline.normalization, torch.float32)
        packed = pipeline.device_decode(network(batch), CameraBatch.from_rows(rows, lenses)).pack()
    assert lenses == ("equidistant", "polynomial")
    assert packed.shape == (4, 5, 7 * 17 + 3) and traffic.calls == []


# ----------------------------------------------------------------------------- CUDA

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_decoding_on_the_gpu_equals_the_cpu(movenet_lift) -> None:
    """Both pipelines' device decoding (mixed lenses, empty images) gives the CPU's values."""
    intrinsics = random_cameras(3, 4)
    transforms = [letterbox_transform(i.size, (256, 256)) for i in intrinsics]
    rng = np.random.default_rng(3)
    detections = random_detections(rng, intrinsics, transforms, 8, [5, 0, 8, 2])
    decoded = _random_decoded(rng, intrinsics, transforms, 6, [3, 0, 6, 1])
    found = []
    with torch.no_grad():
        for device in ("cpu", "cuda"):
            cameras = CameraBatch.build(transforms, intrinsics, device)
            movenet_lift.to(device)
            on_device = MoveNetPeople(*(getattr(detections, f).to(device)
                                        for f in MoveNetPeople.__dataclass_fields__))
            packed = [movenet_lift.people_tensors(on_device, cameras).pack(),
                      source_people(DecodedPoses(*(t.to(device) for t in decoded)), cameras).pack()]
            found.append([people for p in packed for people in unpack_people(p.cpu().numpy(), "mupots_17")])
        movenet_lift.to("cpu")
    assert sum(map(len, found[0])) > 10
    for cpu, gpu in zip(*found):  # the lifter's float32 products differ in the last bits
        assert len(cpu) == len(gpu)
        np.testing.assert_allclose(gpu.keypoints_m, cpu.keypoints_m, atol=1e-4)
        np.testing.assert_allclose(gpu.uv_px, cpu.uv_px, atol=1e-3)
        np.testing.assert_array_equal(gpu.inferred, cpu.inferred)
        np.testing.assert_allclose(gpu.root_sigma_m, cpu.root_sigma_m, atol=1e-4)


@needs_cuda
def test_cuda_graph_equals_eager() -> None:
    """Captured pre-processing + network + decoding replays give the eager results (fp32), for
    frames after the first (static buffers refilled) and both lens families."""
    from mp3d_ros.cli.bench import scene_images

    eager, graphed = (Estimator(device="cuda", precision="fp32", input_size=(416, 256), cuda_graph=graph)
                      for graph in (False, True))
    for lens in ("plumb_bob", "equidistant"):
        for seed in range(2):
            images, cameras = scene_images(3 + seed, (640, 480), 2, lens)
            expected, found = eager.estimate_batch(images, cameras), graphed.estimate_batch(images, cameras)
            for a, b in zip(expected, found):
                assert len(a) == len(b)
                np.testing.assert_allclose(b.keypoints_m, a.keypoints_m, atol=1e-4)
                np.testing.assert_allclose(b.uv_px, a.uv_px, atol=1e-3)
    assert set(graphed.last_timings_ms) == {"preprocess", "network", "decode"}
