"""config.py: YAML into nested dataclasses, overrides, and clear refusals."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mp3d_ros.config import config_to_dict, load_config


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class Root:
    name: str = "lite"
    steps: int = 10
    optim: Optim = field(default_factory=Optim)
    datasets: tuple[str, ...] = ("synthetic",)
    checkpoint: str | None = None


def test_yaml_and_overrides_round_trip(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: full\noptim:\n  lr: 3\n  betas: [0.5, 0.6]\ndatasets: [muco, coco]\n")
    config = load_config(Root, path, ["steps=20", "optim.lr=2e-4", "checkpoint=runs/a.pt"])
    assert config == Root("full", 20, Optim(2e-4, (0.5, 0.6)), ("muco", "coco"), "runs/a.pt")
    assert isinstance(config.optim.lr, float)
    again = tmp_path / "again.yaml"
    import yaml

    again.write_text(yaml.safe_dump(config_to_dict(config)))
    assert load_config(Root, again) == config
    assert load_config(Root) == Root()


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("nmae: x\n", [], r"c\.yaml: unknown key\(s\) \['nmae'\]"),
        ("optim:\n  lr: fast\n", [], r"c\.yaml: optim\.lr: expected float, got 'fast'"),
        ("steps: 1.5\n", [], r"c\.yaml: steps: expected int, got 1\.5"),
        ("", ["optim.betas=[1]"], r"optim\.betas: expected 2 values"),
        ("", ["steps"], "must look like key.sub=value"),
        ("- 1\n", [], "top level must be a mapping"),
    ],
)
def test_refusals_name_file_and_key(tmp_path, text, overrides, message) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(Root, path, overrides)


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        load_config(Root, "nowhere.yaml")
