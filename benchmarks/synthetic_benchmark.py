"""The synthetic benchmark of issue 9, end to end: splits, the ablation study, mp3d-eval, tables.

    python benchmarks/synthetic_benchmark.py --out runs/synthetic_benchmark [--mocap ../shared/mocap]
        [--stage data calibrate train evaluate] [--train-images N] [--test-images N]
        [--steps N | --deadline-s S] [--workers W] [--parallel P] [--set KEY=VALUE ...]

Stages (each skips what is already on disk, so they can run in separate calls; all by default):

1. ``data``: ``mp3d-synth --recipe config/synth/<split>.yaml`` for the training split and the three
   test splits (seen cameras, unseen short and long focal lengths) into ``data/synthetic/<split>``;
2. ``calibrate``: a 30-step study that measures the lockstep step time (``<out>/calibration``);
3. ``train``: ``mp3d-study --config config/study/synthetic_ablations.yaml``: every trained variant
   on the same batches for the same number of steps, ``--steps`` or as many as end by
   ``--deadline-s`` at the calibrated step time;
4. ``evaluate``: ``mp3d-eval`` of every released model (``<out>/study/models/*.pt``) on every test
   split, plus ``--baseline kvalue`` (RootNet's depth on the same 2D poses) for ``lite`` and
   ``full``; prints the summary tables (also written to ``<out>/summary.md``) built from the
   metrics each mp3d-eval wrote (its full output is kept in ``<out>/eval/*.log``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from mp3d_ros.config import load_config
from mp3d_ros.synthetic.scenes import SynthRecipe

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "config" / "study" / "synthetic_ablations.yaml"
TEST_SPLITS = ("test_seen", "test_unseen_short", "test_unseen_long")
BASELINE_MODELS = ("lite", "full")
CALIBRATION_STEPS = 30
STAGES = ("data", "calibrate", "train", "evaluate")
# Rows of the ablation tables: (model, what it leaves out, the paper's table).
ABLATIONS = (
    ("lite", "nothing (the shipped lite model)", ""),
    ("lite_no_offsets", "offsets (joints snap to heatmap peaks)", "MAR Table 4"),
    ("lite_no_heatmap_refinement", "heatmap refinement (offsets only)", "MAR Table 4"),
    ("lite_no_geometry_backward", "geometry backward pass", "MAR Table 4"),
    ("lite_no_adaptive_fusion", "adaptive fusion (regressed depth only)", "MAR Table 4"),
    ("lite_no_pdqm", "PDQM", "DRM Table 3"),
    ("lite_no_dapl", "DAPL", "DRM Table 3"),
    ("lite_depth_in_metres", "focal normalisation of the depth", "HDNet Eq. 7"),
)


def _run(args: list[str], log: Path | None = None) -> None:
    """Run a command (a module of this package), its output to ``log`` or to ours; raise on failure."""
    command = [sys.executable, "-m", *args]
    print("$", " ".join(command[2:]), flush=True)
    if log is None:
        subprocess.run(command, check=True, cwd=REPO)
        return
    with log.open("w") as stream:
        result = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, cwd=REPO)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command[2:])} failed ({result.returncode}); see {log}")


def _images_in(split_dir: Path) -> int:
    path = split_dir / "annotations.json"
    return len(json.loads(path.read_text())["images"]) if path.is_file() else -1


def make_data(args: argparse.Namespace) -> None:
    """Stage 1: the splits, unless already there with the asked number of images."""
    for split, images in [("train", args.train_images)] + [(s, args.test_images) for s in TEST_SPLITS]:
        out = REPO / "data" / "synthetic" / split
        recipe = REPO / "config" / "synth" / f"{split}.yaml"
        images = images or load_config(SynthRecipe, recipe).images
        if _images_in(out) == images:
            print(f"{split}: {images} images already in {out}")
            continue
        command = ["mp3d_ros.cli.synth", "--recipe", str(recipe), "--out", str(out), "--workers", str(args.workers),
                   "--images", str(images)]
        command += ["--mocap", str(args.mocap)] if args.mocap else []
        _run(command)


def _study(out: Path, overrides: list[str]) -> list[str]:
    """mp3d-study's arguments for a study in ``out`` with ``--set`` ``overrides``."""
    return ["mp3d_ros.cli.study", "--config", str(STUDY), "--out-dir", str(out),
            *[arg for override in overrides for arg in ("--set", override)]]


def calibrate(args: argparse.Namespace) -> float:
    """Stage 2: seconds per lockstep step, from a short study (its last logged interval)."""
    out = args.out / "calibration"
    metrics = out / "lite" / "metrics.jsonl"
    if not metrics.is_file():
        _run([*_study(out, args.set), "--set", f"schedule.steps={CALIBRATION_STEPS}",
              "--set", "schedule.warmup_steps=5", "--set", "log_every=10", "--set", "progress=false"])
    # A variant's images/s counts the loading and the variants stepped before it: the slowest is
    # the whole lockstep step.
    slowest = min(json.loads(path.read_text().splitlines()[-1])["images_per_s"]
                  for path in out.glob("*/metrics.jsonl"))
    batch_size = yaml.safe_load((out / "lite" / "config.yaml").read_text())["batch_size"]
    step_s = batch_size / slowest
    print(f"calibration: {step_s:.3f} s per lockstep step of every variant")
    return step_s


def train(args: argparse.Namespace, started_s: float) -> None:
    """Stage 3: the study, for ``--steps`` steps or as many as end by ``--deadline-s``."""
    study = args.out / "study"
    if (study / "models" / "lite.pt").is_file():
        print(f"the study's models are already in {study / 'models'}")
        return
    steps = args.steps
    if not steps:
        # Leave time for starting the study (loading, cuDNN autotuning) and writing its models.
        left_s = args.deadline_s - (time.perf_counter() - started_s) - 90.0
        steps = int(left_s / calibrate(args))
        print(f"{left_s:.0f} s left -> {steps} steps")
        if steps < 100:
            raise RuntimeError(f"only {steps} steps fit before the deadline: raise --deadline-s")
    _run([*_study(study, args.set), "--set", f"schedule.steps={steps}",
          "--set", f"schedule.warmup_steps={max(1, steps // 15)}", "--set", f"checkpoint_every={steps}"])


def _evaluations(args: argparse.Namespace) -> list[tuple[list[str], Path]]:
    """(mp3d-eval arguments, log) of every model x test split, then the k-value baselines."""
    models = sorted((args.out / "study" / "models").glob("*.pt"))
    if not models:
        raise RuntimeError(f"no models in {args.out / 'study' / 'models'}: run the train stage")
    runs, baselines = [], []
    for model in models:
        for split in TEST_SPLITS:
            stem = args.out / "eval" / f"{model.stem}__{split}"
            data = ["--dataset", "synthetic", "--data", str(REPO / "data" / "synthetic" / split)]
            runs.append((["mp3d_ros.cli.evaluate", "--checkpoint", str(model), *data, "--batch", "16",
                          "--out", f"{stem}.predictions.json", "--metrics-out", f"{stem}.json"],
                         Path(f"{stem}.log")))
            if model.stem in BASELINE_MODELS:
                base = args.out / "eval" / f"{model.stem}_kvalue__{split}"
                baselines.append((["mp3d_ros.cli.evaluate", "--predictions", f"{stem}.predictions.json", *data,
                                   "--baseline", "kvalue", "--metrics-out", f"{base}.json"],
                                  Path(f"{base}.log")))
    return runs + baselines


def evaluate(args: argparse.Namespace) -> None:
    """Stage 3: every mp3d-eval not yet done (``--parallel`` at a time; baselines after their model)."""
    (args.out / "eval").mkdir(parents=True, exist_ok=True)
    todo = [(command, log) for command, log in _evaluations(args) if not log.with_suffix(".json").is_file()]
    first = [job for job in todo if "--checkpoint" in job[0]]
    with ThreadPoolExecutor(args.parallel) as pool:
        for batch in (first, [job for job in todo if job not in first]):
            list(pool.map(lambda job: _run(*job), batch))


def _metrics(out: Path, name: str, split: str) -> dict:
    return json.loads((out / "eval" / f"{name}__{split}.json").read_text())


def _cells(*values: float | None) -> list[str]:
    """One decimal; ``-`` where mp3d-eval had no value (NaN, e.g. MRPE when nobody was matched)."""
    return ["-" if v is None else f"{v:.1f}" for v in values]


def _row(result: dict) -> list[str]:
    every = result["all"]
    return _cells(every["pck_rel"], every["pck_abs"], every["pck_root"], every["auc_rel"], every["pcod"],
                  result["ap_root_25"], result["mrpe_mm"]["total"])


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def summary(out: Path) -> str:
    """Markdown tables of the main results and of the ablations, from mp3d-eval's metrics files."""
    metric_names = ["PCK_rel", "PCK_abs", "PCK_root", "AUC_rel", "PCOD", "AP_root^25", "MRPE (mm)"]
    main_rows = []
    for split in TEST_SPLITS:
        for name, label in (("lite", "lite"), ("lite_kvalue", "lite, k-value depth"),
                            ("full", "full (HRNet-W32)"), ("full_kvalue", "full, k-value depth")):
            main_rows.append([split, label, *_row(_metrics(out, name, split))])
    text = "### Test splits (all people, MuPoTS-3D protocol)\n\n" + _table(["split", "model", *metric_names], main_rows)
    for split in TEST_SPLITS:
        rows = []
        for name, left_out, table in ABLATIONS:
            result = _metrics(out, name, split)
            every = result["all"]
            rows.append([name, left_out, table or "-",
                         *_cells(every["pck_rel"], every["pck_abs"], every["pck_root"], result["mrpe_mm"]["total"])])
        text += (f"\n\n### Ablations on {split} (same batches, same steps)\n\n"
                 + _table(["model", "without", "paper", "PCK_rel", "PCK_abs", "PCK_root", "MRPE (mm)"], rows))
    return text + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/synthetic_benchmark"))
    parser.add_argument("--stage", nargs="+", choices=STAGES, default=list(STAGES), help="stages to run")
    parser.add_argument("--mocap", type=Path, help="CMU BVH folder for the people's poses")
    parser.add_argument("--train-images", type=int, default=0, help="training images (0: the recipe's)")
    parser.add_argument("--test-images", type=int, default=0, help="images per test split (0: the recipes')")
    parser.add_argument("--steps", type=int, default=0, help="training steps (0: fit --deadline-s)")
    parser.add_argument("--deadline-s", type=float, default=3600.0,
                        help="seconds from the start of this command by which training must end")
    parser.add_argument("--workers", type=int, default=8, help="mp3d-synth worker processes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="training-config override for every variant of the study (mp3d-study --set)")
    parser.add_argument("--parallel", type=int, default=4, help="mp3d-eval processes at a time")
    args = parser.parse_args(argv)
    started_s = time.perf_counter()
    args.out = args.out.resolve()
    if "data" in args.stage:
        make_data(args)
    if "calibrate" in args.stage:
        calibrate(args)
    if "train" in args.stage:
        train(args, started_s)
    if "evaluate" in args.stage:
        evaluate(args)
        text = summary(args.out)
        (args.out / "summary.md").write_text(text)
        print(text)
    print(f"synthetic_benchmark: {' '.join(args.stage)} done in {time.perf_counter() - started_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
