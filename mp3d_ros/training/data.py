"""Training data: datasets -> augmented network inputs with their targets, mixed by ratio.

- :func:`load_sources` reads every configured dataset with its reader (``mp3d_ros.data.mppe`` /
  ``panoptic`` / ``coco``) and finds its image folder.
- :class:`MixedBatchSampler` gives every process, at every step, a batch whose composition follows
  the datasets' ratios exactly (DRM / MAR: half of each batch from COCO). Dataset ``d`` is read as
  an endless stream of epochs, each a permutation seeded by ``(seed, d, epoch)``; process ``r`` of
  ``W`` takes, at step ``s``, the ``n_d`` stream positions starting at ``(s W + r) n_d``. So the
  batches of a step depend on ``(seed, step, rank, W)`` only: ranks never share an image within an
  epoch, and a resumed run reads exactly the batches an uninterrupted one would have.
- :class:`TrainingDataset` turns a :class:`SampleKey` into an augmented image and its targets. The
  augmentation's random generator is seeded by ``(seed, dataset, stream position)``, never by the
  worker it runs in, so the number of loader workers does not change the data.
- A ``scenes`` dataset (:mod:`mp3d_ros.training.scene_stream`) is an endless stream with no epochs:
  position ``n`` is scene ``n``, not augmented (every scene is new), its image rendered on the
  training device (:attr:`Batch.render`).
- Workers send each image's person tables (:meth:`TargetGenerator.tables`, kilobytes); the trainer
  draws the dense target maps from them on its device (:meth:`TargetGenerator.maps`).

Joints are mapped into the network's joint set (:func:`mp3d_ros.geometry.skeleton.convert_joints`): joints a
dataset lacks are unlabelled (masked in the losses), and 2D-only datasets (COCO) get no 3D targets.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mp3d_ros.data.augment import AugmentConfig, Sample, augment
from mp3d_ros.data.coco import read_coco_keypoints
from mp3d_ros.data.mppe import AnnotatedImage, read_3dmppe_json
from mp3d_ros.data.panoptic import read_panoptic_smap_json
from mp3d_ros.geometry.skeleton import convert_flags, convert_joints, get_joint_set
from mp3d_ros.model.codec.targets import (
    PersonTables,
    SceneAnnotation,
    TargetConfig,
    TargetGenerator,
    collate_targets,
)
from mp3d_ros.model.config import ModelConfig
from mp3d_ros.synthetic.scenes import ANNOTATION_FILE
from mp3d_ros.training.scene_stream import (
    RenderJob,
    SceneStream,
    letterboxed_scene,
    load_scene_stream,
)

__all__ = [
    "Batch",
    "MixedBatchSampler",
    "SampleKey",
    "Source",
    "TrainingItem",
    "TrainingDataset",
    "annotated_sample",
    "batch_counts",
    "collate_batch",
    "load_source",
    "load_sources",
    "read_annotations",
    "read_rgb",
]

# Joint set of each 3DMPPE-layout kind.
_MPPE_JOINT_SETS = {"muco": "muco_21", "synthetic": "muco_21", "mupots": "mupots_17", "h36m": "h36m_17"}


@dataclass(frozen=True, eq=False)
class Source:
    """One loaded dataset.

    Attributes:
        name: ``kind (file name)``, for messages and logs.
        kind: reader kind (``DatasetConfig.kind``).
        images: the annotated images trained on.
        image_root: folder their ``file_name`` is relative to.
    """

    name: str
    kind: str
    images: tuple[AnnotatedImage, ...]
    image_root: Path

    @property
    def size(self) -> int:
        """Images per epoch."""
        return len(self.images)


def _annotation_path(kind: str, path: str) -> Path:
    """The annotation file of one configured path (a synthetic dataset may name its folder)."""
    resolved = Path(path)
    if kind == "synthetic" and resolved.is_dir():
        resolved = resolved / ANNOTATION_FILE
    if not resolved.is_file():
        raise ValueError(f"{kind} dataset: annotation file {resolved} does not exist")
    return resolved


def read_annotations(kind: str, paths: Sequence[str]) -> tuple[list[AnnotatedImage], Path]:
    """The images of a dataset kind's annotation file(s) and the default image root (the first
    file's folder)."""
    files = [_annotation_path(kind, p) for p in paths]
    images: list[AnnotatedImage] = []
    for path in files:
        if kind in _MPPE_JOINT_SETS:
            images += read_3dmppe_json(path, _MPPE_JOINT_SETS[kind])
        elif kind == "panoptic":
            images += read_panoptic_smap_json(path)
        elif kind == "coco":
            images += read_coco_keypoints(path)
        else:
            raise ValueError(f"unknown dataset kind {kind!r}")
    return images, files[0].parent


def load_source(kind: str, paths: Sequence[str], image_root: str = "", skip_empty: bool = True) -> Source:
    """Read one dataset; ``skip_empty`` leaves out images where nobody has a labelled joint.

    Raises:
        ValueError: a missing or malformed file (naming it), a missing image folder, or no images.
    """
    images, default_root = read_annotations(kind, paths)
    root = Path(image_root) if image_root else default_root
    if not root.is_dir():
        raise ValueError(f"{kind} dataset {paths[0]}: image folder {root} does not exist")
    if skip_empty:
        images = [im for im in images if len(im) and im.labelled.any()]
    if not images:
        raise ValueError(f"{kind} dataset {paths[0]} has no images with labelled people")
    return Source(f"{kind} ({Path(paths[0]).name})", kind, tuple(images), root)


def load_sources(datasets: Sequence, seed: int) -> list[Source | SceneStream]:
    """:func:`load_source` of every ``DatasetConfig`` (:func:`load_scene_stream` for ``scenes``,
    its stream drawn with the run's ``seed``)."""
    return [load_scene_stream(d.path[0], d.mocap, seed) if d.kind == SceneStream.kind
            else load_source(d.kind, d.path, d.image_root, d.skip_empty) for d in datasets]


# ----------------------------------------------------------------------------- batch composition


def batch_counts(ratios: Sequence[float], batch_size: int) -> tuple[int, ...]:
    """Images per dataset in a batch of ``batch_size``: the ratios' shares, rounded by largest
    remainder (ties to the earlier dataset) so they sum to ``batch_size``.

    Raises:
        ValueError: a dataset would get no image in any batch.
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    if ratios.ndim != 1 or not len(ratios) or not (ratios > 0).all():
        raise ValueError(f"dataset ratios must be positive, got {ratios.tolist()}")
    exact = ratios / ratios.sum() * batch_size
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: batch_size - counts.sum()]] += 1
    if (counts == 0).any():
        empty = int(np.flatnonzero(counts == 0)[0])
        raise ValueError(f"dataset {empty} (ratio {ratios[empty]:g}) gets no image in a batch of "
                         f"{batch_size}: raise batch_size or its ratio")
    return tuple(int(c) for c in counts)


class SampleKey(NamedTuple):
    """What one batch slot holds: image ``index`` of dataset ``source``, drawn at stream
    ``position`` of that dataset (which also seeds its augmentation)."""

    source: int
    index: int
    position: int


class MixedBatchSampler:
    """Batches of :class:`SampleKey` for steps ``start_step .. total_steps - 1`` of one process.

    Args:
        sizes: number of images of each dataset; None for an endless stream (position ``n`` is
            image ``n``, never repeated).
        counts: images of each dataset per batch of this process (:func:`batch_counts`).
        seed: the run's seed.
        rank, world_size: this process and the number of processes.
        start_step, total_steps: the steps to give batches for.
    """

    def __init__(self, sizes: Sequence[int], counts: Sequence[int], seed: int, rank: int,
                 world_size: int, start_step: int, total_steps: int) -> None:
        if len(sizes) != len(counts) or any(size is not None and size < 1 for size in sizes):
            raise ValueError(f"need one count per non-empty dataset, got sizes {sizes}, counts {counts}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.sizes, self.counts = tuple(sizes), tuple(counts)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.start_step, self.total_steps = start_step, total_steps
        self._permutations: dict[tuple[int, int], np.ndarray] = {}

    def _permutation(self, source: int, epoch: int) -> np.ndarray:
        key = (source, epoch)
        if key not in self._permutations:
            if len(self._permutations) > 4 * len(self.sizes):
                self._permutations.clear()
            rng = np.random.default_rng([self.seed, source, epoch])
            self._permutations[key] = rng.permutation(self.sizes[source])
        return self._permutations[key]

    def keys(self, step: int) -> list[SampleKey]:
        """The batch of this process at ``step``."""
        keys = []
        for source, (size, count) in enumerate(zip(self.sizes, self.counts)):
            first = (step * self.world_size + self.rank) * count
            for position in range(first, first + count):
                if size is None:
                    keys.append(SampleKey(source, position, position))
                    continue
                epoch, offset = divmod(position, size)
                keys.append(SampleKey(source, int(self._permutation(source, epoch)[offset]), position))
        return keys

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for step in range(self.start_step, self.total_steps):
            yield self.keys(step)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)


# ----------------------------------------------------------------------------- samples


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB image; ``ValueError`` naming the file when it is missing or unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"image not found or unreadable: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def annotated_sample(image: AnnotatedImage, pixels: np.ndarray, joint_set: str) -> Sample:
    """An annotated image with its pixels as a :class:`Sample` in ``joint_set`` (the network's).

    Raises:
        ValueError: the pixels' size differs from the annotation's.
    """
    height, width = pixels.shape[:2]
    if (width, height) != tuple(image.intrinsics.size):
        raise ValueError(f"image {image.file_name} is {width}x{height} pixels but its annotation "
                         f"says {image.intrinsics.size[0]}x{image.intrinsics.size[1]}")
    source, target = get_joint_set(image.joint_set), get_joint_set(joint_set)
    xyz, _ = convert_joints(image.keypoints_cam_m, source, target)
    uv, _ = convert_joints(image.keypoints_img_px, source, target)
    labelled = convert_flags(image.labelled, source, target) & np.isfinite(uv).all(-1)
    return Sample(
        image=pixels, intrinsics=image.intrinsics, joint_set=joint_set, keypoints_cam_m=xyz,
        keypoints_img_px=uv, keypoints_vis=convert_flags(image.keypoints_vis, source, target) & labelled,
        labelled=labelled, has_3d=image.has_3d,
    )


def scene_annotation(sample: Sample, input_size: tuple[int, int]) -> SceneAnnotation:
    """The targets' view of a network-input sample (3D only where the dataset has it)."""
    labelled_3d = sample.labelled & np.isfinite(sample.keypoints_cam_m).all(-1)
    return SceneAnnotation(
        uv_px=sample.keypoints_img_px, labelled=sample.labelled, visible=sample.keypoints_vis,
        K=sample.intrinsics.K, image_size=input_size,
        xyz_m=sample.keypoints_cam_m if sample.has_3d else None,
        labelled_3d=labelled_3d if sample.has_3d else None,
        distortion_model=sample.intrinsics.distortion_model, distortion=sample.intrinsics.D,
    )


class TrainingItem(NamedTuple):
    """One training image: (H, W, 3) uint8 network input, its person tables, its dataset index,
    and the scene to render into the image on the training device (``image`` is then None)."""

    image: np.ndarray | None
    targets: PersonTables
    source: int
    render: RenderJob | None = None


class TrainingDataset(Dataset):
    """:class:`SampleKey` -> :class:`TrainingItem` (read, map joints, augment, person tables)."""

    def __init__(self, sources: Sequence[Source | SceneStream], model_cfg: ModelConfig,
                 augment_cfg: AugmentConfig, target_cfg: TargetConfig, seed: int,
                 pad_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        """``pad_rgb``: the padding of the augmented images, 0-255; the trainer passes its input
        normalisation's mean, with which the estimator pads its letterbox."""
        self.sources = list(sources)
        self.model_cfg, self.augment_cfg, self.seed, self.pad_rgb = model_cfg, augment_cfg, seed, pad_rgb
        self.generator = TargetGenerator(model_cfg, target_cfg)

    def sample(self, key: SampleKey) -> Sample:
        """The augmented network-input sample of ``key`` (deterministic in seed and key)."""
        source = self.sources[key.source]
        image = source.images[key.index]
        path = source.image_root / image.file_name
        try:
            sample = annotated_sample(image, read_rgb(path), self.model_cfg.joint_set)
        except ValueError as error:
            raise ValueError(f"{source.name}: {error}") from None
        rng = np.random.default_rng([self.seed, key.source, key.position])
        return augment(sample, self.model_cfg.input_size, self.augment_cfg, rng, self.pad_rgb)

    def __getitem__(self, key: SampleKey) -> TrainingItem:
        source = self.sources[key.source]
        if isinstance(source, SceneStream):
            job, annotation = letterboxed_scene(source, key.position, self.model_cfg.input_size,
                                                self.model_cfg.joint_set)
            return TrainingItem(None, self.generator.tables(annotation), key.source, job)
        sample = self.sample(key)
        tables = self.generator.tables(scene_annotation(sample, self.model_cfg.input_size))
        return TrainingItem(sample.image, tables, key.source)


@dataclass
class Batch:
    """A collated batch (B images).

    Attributes:
        images: (B, H, W, 3) uint8 RGB network inputs (normalised on the device); (B, 0, 0, 3)
            when every image is still to be rendered.
        targets: batched :class:`PersonTables` tensors, or the :class:`TargetMaps` drawn from
            them on the device (``Trainer.prepared``).
        source: (B,) int64 dataset index of each image.
        render: per image, the scene to render into it on the device (None: ``images`` has it).
    """

    images: torch.Tensor
    targets: PersonTables
    source: torch.Tensor
    render: tuple[RenderJob | None, ...] = ()

    def _map(self, fn) -> Batch:
        targets = type(self.targets)(**{f.name: fn(getattr(self.targets, f.name)) for f in fields(self.targets)})
        return replace(self, images=fn(self.images), targets=targets, source=fn(self.source))

    def pin_memory(self) -> Batch:
        """Page-locked copy (the DataLoader calls this with ``pin_memory=True``)."""
        return self._map(lambda t: t.pin_memory())

    def to(self, device: torch.device) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=True))


def collate_batch(items: Sequence[TrainingItem]) -> Batch:
    """Stack :class:`TrainingItem` s into a :class:`Batch` (CPU tensors); images to render are
    zeros, and left out altogether when the batch has no other image."""
    shown = [item.image for item in items if item.image is not None]
    blank = np.zeros_like(shown[0]) if shown else None
    images = (np.stack([blank if item.image is None else item.image for item in items]) if shown
              else np.zeros((len(items), 0, 0, 3), dtype=np.uint8))
    return Batch(
        images=torch.from_numpy(images),
        targets=collate_targets([item.targets for item in items]),
        source=torch.tensor([item.source for item in items], dtype=torch.int64),
        render=tuple(item.render for item in items),
    )
