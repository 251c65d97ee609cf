"""Shared test settings: deterministic hypothesis profile, the location of ../shared, and a
cache folder of the session's own (the Estimator's cached ONNX exports)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import settings

from mp3d_ros.inference.onnx_cache import CACHE_ENV

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60)
settings.load_profile("ci")

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """The Estimator's exports go to a folder of this session, not the user's ~/.cache: every run
    exports afresh, so a test never depends on what an earlier run left behind."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("mp3d_ros_cache")))
        yield


@pytest.fixture
def shared_dir() -> Path:
    """``../shared`` beside the checkout (CI and developers have it; users do not)."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is absent: it holds the mocap and COCO fixtures this test reads")
    return SHARED_DIR


@pytest.fixture
def mocap_dir(shared_dir: Path) -> Path:
    """``../shared/mocap``, the CMU mocap (BVH) the lifter and the synthetic scenes read."""
    mocap = shared_dir / "mocap"
    if not (mocap / "cmu_daz").is_dir():
        pytest.skip(f"{mocap / 'cmu_daz'} is absent: the CMU mocap lives in ../shared/mocap beside the checkout")
    return mocap


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors on a shared CPU: one intra-op thread is faster than several."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
