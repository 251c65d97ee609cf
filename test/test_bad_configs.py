"""Bad config files end with an error naming the file, the dotted key (or line) and what was
expected; the console scripts print it as one ``PROG: error: ...`` line and exit with status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from mp3d_ros.config import ConfigError
from mp3d_ros.training.config import load_train_config

REPO = Path(__file__).resolve().parents[1]
# A valid training config, with {extra} placed in its optim section.
CONFIG = """datasets: [{{kind: synthetic, path: scenes}}]
schedule: {{steps: 10}}
optim:
  name: adam
{extra}
"""


@pytest.mark.parametrize("extra, message", [
    ("  lr: true", r"optim\.lr: expected float, got True"),
    ("  lr: [0.001]", r"optim\.lr: expected float, got \[0\.001\]"),
    ("  lr: {value: 0.001}", r"optim\.lr: expected float, got \{'value': 0\.001\}"),
    ("  lr: fast", r"optim\.lr: expected float, got 'fast'"),
    ("  betas: [0.9, true]", r"optim\.betas\[1\]: expected float, got True"),
    ("  lr: 1.0e-3\n  lr: 5.0e-4", r"invalid YAML at line 6, column 3: duplicate key 'lr' \(first on line 5\)"),
    ("  lr: [1e-3", r"invalid YAML at line 6, column 1: while parsing a flow sequence expected ',' or ']'"),
    ("  lr: !!python/object/apply:os.system ['echo hacked']",
     r"invalid YAML at line 5, column 7: .*constructor for the tag 'tag:yaml\.org,2002:python/object/apply"),
    ("  grad_clip_norm: -1.0", r"optim\.lr must be > 0, optim\.weight_decay and optim\.grad_clip_norm >= 0"),
])
def test_bad_values_name_file_key_and_type(tmp_path, extra, message) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(CONFIG.format(extra=extra))
    with pytest.raises(ConfigError, match=rf"^{path}: {message}"):
        load_train_config(path)


def test_top_level_and_override_problems(tmp_path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(CONFIG.format(extra="  lr: 1.0e-3"))
    assert load_train_config(path).optim.lr == 1e-3
    with pytest.raises(ConfigError, match=rf"^{path}: batch_size: expected int, got True"):
        load_train_config(path, ["batch_size=true"])
    with pytest.raises(ConfigError, match=r"override 'optim\.lr=\[1': invalid YAML"):
        load_train_config(path, ["optim.lr=[1"])
    with pytest.raises(ConfigError, match=r"model: expected a mapping, got \[1, 2\]"):
        load_train_config(path, ["model=[1, 2]"])
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes("batch_size: 4 # gr\xf6\xdfe\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"^{binary}: not UTF-8 text \(byte 18\)"):
        load_train_config(binary)


def bad_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text("images: 4\nseed: [1\n")
    return path


def run_cli(main, argv: list[str], capsys) -> tuple[int, list[str]]:
    code = main(argv)
    return code, capsys.readouterr().err.splitlines()


def test_training_study_and_synth_scripts_print_one_line_and_exit_2(tmp_path, capsys) -> None:
    from mp3d_ros.cli import study, synth, train

    path = bad_yaml(tmp_path)
    for prog, main, argv in [
        ("mp3d-train", train.main, ["--config", str(path)]),
        ("mp3d-study", study.main, ["--config", str(path)]),
        ("mp3d-synth", synth.main, ["--recipe", str(path), "--out", str(tmp_path / "out")]),
    ]:
        code, err = run_cli(main, argv, capsys)
        assert code == 2 and len(err) == 1, (prog, err)
        assert err[0].startswith(f"{prog}: error: {path}: invalid YAML at line 3"), err


def test_export_script_prints_one_line_and_exits_2(tmp_path, capsys) -> None:
    from mp3d_ros.cli import export

    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x80\x02 not a checkpoint")
    code, err = run_cli(export.main, ["--checkpoint", str(broken), "--out", str(tmp_path / "m.onnx")],
                        capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"mp3d-export: error: checkpoint {broken} is corrupt"), err
    code, err = run_cli(export.main, ["--model", "movenet-lift", "--input-size", "100x100",
                                      "--out", str(tmp_path / "m.onnx")], capsys)
    assert code == 2 and err == ["mp3d-export: error: input_size must be (width, height), positive "
                                 "multiples of 32, got (100, 100)"]
