"""The shipped sample bag is exactly what README's mp3d-synth command makes today."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from rosbags.rosbag2 import Reader

from mp3d_ros.cli.synth import main as synth_main

ROOT = Path(__file__).resolve().parents[1]


def readme_sample_bag_command() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- sample-bag-command -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no sample-bag-command block"
    words = shlex.split(block.group(1).replace("\\\n", " "))
    assert words[0] == "mp3d-synth"
    return words[1:]


def messages(bag: Path) -> list[tuple[str, int, bytes]]:
    with Reader(bag) as reader:
        return [(connection.topic, stamp, bytes(raw)) for connection, stamp, raw in reader.messages()]


def test_readme_command_remakes_the_shipped_sample_bag(tmp_path, mocap_dir, one_torch_thread) -> None:
    args = readme_sample_bag_command()
    args[args.index("--bag") + 1] = str(tmp_path / "sample_bag")
    args[args.index("--mocap") + 1] = str(mocap_dir)
    assert synth_main(args) == 0
    shipped, remade = messages(ROOT / "models" / "sample_bag"), messages(tmp_path / "sample_bag")
    assert len(shipped) == len(remade)
    different = [(topic, stamp) for (topic, stamp, a), (_, _, b) in zip(shipped, remade) if a != b]
    assert [m[:2] for m in shipped] == [m[:2] for m in remade] and not different, different[:5]
    assert any(topic == "/tf_static" for topic, _, _ in shipped)

