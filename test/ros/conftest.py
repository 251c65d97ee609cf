"""Tests that need ROS 2, on the *installed* mp3d_ros (the one with the generated ``mp3d_ros.msg``).

``test_launch.py`` is a launch_testing file: ``colcon test`` runs it through ``add_launch_test``
(its own runner), so plain pytest leaves it out instead of starting the launch a second time.

``python -m pytest test/ros`` from the checkout in a sourced shell puts the checkout first on
``sys.path``, and its ``mp3d_ros`` (no ``msg`` package: rosidl generates it at build time) shadows the
installed one, so collection failed with "No module named 'mp3d_ros.msg'". When an installed
mp3d_ros is on the path, :func:`installed_first` moves the checkout's entries behind it.
"""

from __future__ import annotations

import sys
from pathlib import Path

collect_ignore = ["test_launch.py"]

SOURCE_ROOT = Path(__file__).resolve().parents[2]


def _holds_installed_package(entry: str) -> bool:
    return (Path(entry or ".") / "mp3d_ros" / "msg" / "__init__.py").is_file()


def installed_first(path: list[str], source_root: Path) -> list[str]:
    """``path`` with the entries naming ``source_root`` moved just behind the first entry holding an
    installed mp3d_ros (with ``mp3d_ros/msg``); unchanged when there is none, as without ROS."""
    installed = next((i for i, entry in enumerate(path) if _holds_installed_package(entry)), None)
    if installed is None:
        return list(path)
    source = {i for i, entry in enumerate(path[:installed])
              if Path(entry or ".").resolve() == source_root.resolve()}
    kept = [entry for i, entry in enumerate(path) if i not in source]
    at = kept.index(path[installed]) + 1
    return kept[:at] + [path[i] for i in sorted(source)] + kept[at:]


def _use_the_installed_package() -> None:
    reordered = installed_first(sys.path, SOURCE_ROOT)
    if reordered == sys.path:
        return
    sys.path[:] = reordered
    for name in [n for n in sys.modules if n == "mp3d_ros" or n.startswith("mp3d_ros.")]:
        del sys.modules[name]  # imported from the checkout before this ran


_use_the_installed_package()
