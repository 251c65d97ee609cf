"""config/synth/*.yaml: the benchmark's splits load, and the unseen cameras really are unseen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mp3d_ros.cli.synth import main
from mp3d_ros.config import load_config
from mp3d_ros.synthetic.scenes import SynthRecipe

RECIPES = Path(__file__).resolve().parents[1] / "config" / "synth"


def recipe(name: str) -> SynthRecipe:
    return load_config(SynthRecipe, RECIPES / f"{name}.yaml")


def test_unseen_focal_lengths_lie_up_to_25_percent_beyond_the_training_range() -> None:
    train = recipe("train").scene
    short, long = recipe("test_unseen_short").scene, recipe("test_unseen_long").scene
    assert short.focal_range_px == (0.75 * train.focal_range_px[0], train.focal_range_px[0])
    assert long.focal_range_px == (train.focal_range_px[1], 1.25 * train.focal_range_px[1])
    for scene in (short, long):
        assert scene.distortion != "none" and scene.size is not None
        assert train.principal_offset_range is None and scene.principal_offset_range[0] >= 0.08
    seeds = [recipe(n).seed for n in ("train", "val", "test_seen", "test_unseen_short",
                                      "test_unseen_long")]
    assert len(set(seeds)) == len(seeds)


def test_recipe_drives_the_generator(tmp_path) -> None:
    assert main(["--recipe", str(RECIPES / "test_unseen_long.yaml"), "--images", "1",
                 "--out", str(tmp_path)]) == 0
    image = json.loads((tmp_path / "annotations.json").read_text())["images"][0]
    assert (image["width"], image["height"]) == (600, 800)
    assert 1200 <= image["f"][0] <= 1500 and image["distortion_model"] == "plumb_bob"
    assert abs(image["c"][0] - 299.5) >= 0.08 * 600 - 1e-9


def test_recipe_and_scene_options_do_not_mix(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--recipe", str(RECIPES / "val.yaml"), "--size", "64x64", "--out", str(tmp_path)])
    assert "--recipe fixes the scene settings" in capsys.readouterr().err
