"""Files the package ships beside its Python code: message definitions, configs, models.

They live at the repository root in a source checkout (``msg/``, ``config/``, ``models/``) and in
``<prefix>/share/mp3d_ros/`` once installed (pip's data files and colcon's install use the same
layout), so every lookup tries those places in that order.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["share_candidates", "find_share_path"]


def share_candidates(relative: str) -> list[Path]:
    """Where ``relative`` (e.g. ``"models/lifter.safetensors"``) may be, most specific first."""
    package_dir = Path(__file__).resolve().parent
    candidates = [package_dir.parent / relative, Path(sys.prefix) / "share" / "mp3d_ros" / relative]
    # colcon: <prefix>/lib/pythonX.Y/site-packages/mp3d_ros -> <prefix>/share/mp3d_ros
    if len(package_dir.parents) > 3:
        candidates.append(package_dir.parents[3] / "share" / "mp3d_ros" / relative)
    return candidates


def find_share_path(relative: str) -> Path:
    """The first existing ``relative`` among :func:`share_candidates`; FileNotFoundError listing them."""
    candidates = share_candidates(relative)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"{relative} not found; looked in " + ", ".join(str(c) for c in candidates)
    )
