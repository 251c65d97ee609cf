"""What the models find on real images: 2D people on the COCO fixtures (``../shared/fixtures/coco``).

    python benchmarks/coco_fixtures_2d.py [--fixtures ../shared/fixtures/coco]
        [--models movenet-lift,models/synthetic_lite.pt]

COCO has no 3D and no calibration, so this scores only the 2D skeletons the estimator returns
(``People.uv_px``), with the image's placeholder camera (``fx = fy = width``). Both skeletons share
COCO's 12 body joints (shoulders, elbows, wrists, hips, knees, ankles); every annotated person with
at least 5 of them labelled is matched greedily to the prediction of highest object keypoint
similarity (COCO's OKS over those joints, with COCO's per-joint constants and the box area as the
scale). Printed per model: people found at OKS >= 0.5 and >= 0.75, and the mean OKS over all
annotated people (0 for a missed one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mp3d_ros.data.coco import read_coco_keypoints
from mp3d_ros.evaluation.evaluate import format_table
from mp3d_ros.geometry.skeleton import COCO_17, convert_flags, convert_joints, get_joint_set
from mp3d_ros.inference import Estimator
from mp3d_ros.training.data import read_rgb

# COCO's OKS constants (cocoapi) of the 12 body joints, by joint name.
OKS_CONSTANTS = {"shoulder": 0.079, "elbow": 0.072, "wrist": 0.062, "hip": 0.107, "knee": 0.087,
                 "ankle": 0.089}
MIN_JOINTS = 5


def oks(predicted_px: np.ndarray, truth_px: np.ndarray, labelled: np.ndarray, constants: np.ndarray,
        area_px2: float) -> float:
    """COCO's object keypoint similarity of one prediction (J, 2) with one annotation (J, 2) over
    its ``labelled`` joints."""
    d2 = np.sum((predicted_px - truth_px) ** 2, axis=-1)
    similarity = np.exp(-d2 / (2.0 * max(area_px2, 1.0) * (2.0 * constants) ** 2))
    return float(similarity[labelled].mean())


def greedy_oks(predicted_px: np.ndarray, truth_px: np.ndarray, labelled: np.ndarray,
               constants: np.ndarray, areas_px2: np.ndarray) -> np.ndarray:
    """(G,) OKS of each annotated person with the prediction matched to it (0 if none), pairs
    taken by decreasing OKS, each prediction at most once."""
    table = np.array([[oks(p, t, lab, constants, a) for p in predicted_px]
                      for t, lab, a in zip(truth_px, labelled, areas_px2)]).reshape(len(truth_px), -1)
    matched = np.zeros(len(truth_px))
    while table.size and table.max() > 0:
        g, p = np.unravel_index(int(table.argmax()), table.shape)
        matched[g] = table[g, p]
        table[g, :], table[:, p] = -1.0, -1.0
    return matched


def score_model(model: str, fixtures: Path) -> tuple[int, np.ndarray]:
    """(annotated people scored, their matched OKS) of one model over the fixtures."""
    mupots = get_joint_set("mupots_17")
    estimator = Estimator(model, device="cpu")
    joint_names = [name for name in mupots.joints if name.split("_")[-1] in OKS_CONSTANTS]
    joints = [mupots.joints.index(name) for name in joint_names]
    constants = np.array([OKS_CONSTANTS[name.split("_")[-1]] for name in joint_names])
    scores = []
    for image in read_coco_keypoints(fixtures / "test_coco.json"):
        truth, _ = convert_joints(image.keypoints_img_px, COCO_17, mupots)
        labelled = convert_flags(image.labelled, COCO_17, mupots)
        keep = labelled[:, joints].sum(-1) >= MIN_JOINTS
        if not keep.any():
            continue
        people = estimator.estimate(read_rgb(fixtures / image.file_name), image.intrinsics)
        areas = image.bbox_px[keep, 2] * image.bbox_px[keep, 3]
        scores.append(greedy_oks(people.uv_px[:, joints], truth[keep][:, joints],
                                 labelled[keep][:, joints], constants, areas))
    matched = np.concatenate(scores)
    return len(matched), matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", type=Path, default=Path("../shared/fixtures/coco"))
    parser.add_argument("--models", default="movenet-lift,models/synthetic_lite.pt")
    args = parser.parse_args()
    rows = []
    for model in args.models.split(","):
        count, matched = score_model(model, args.fixtures)
        rows.append([model, str(count), str(int((matched >= 0.5).sum())), str(int((matched >= 0.75).sum())),
                     f"{matched.mean():.3f}"])
    print(f"COCO fixtures ({args.fixtures}), people with >= {MIN_JOINTS} of the 12 body joints labelled")
    print(format_table(["model", "people", "OKS >= 0.5", "OKS >= 0.75", "mean OKS"], rows))


if __name__ == "__main__":
    main()
