"""The fast path is the default one: CUDA graphs chosen on CUDA, one per layout, at most 8 kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mp3d_ros.inference.estimator import (MAX_GRAPH_LAYOUTS, Estimator, LayoutCache, layout_key,
                                          use_cuda_graph)

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_auto_replays_graphs_on_cuda_only() -> None:
    assert use_cuda_graph("auto", CUDA) is True
    assert use_cuda_graph("auto", CPU) is False
    assert use_cuda_graph(False, CUDA) is False
    assert use_cuda_graph(True, CUDA) is True
    with pytest.raises(ValueError, match="needs device='cuda'"):
        use_cuda_graph(True, CPU)
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        use_cuda_graph("yes", CUDA)


def test_a_new_image_size_or_lens_gets_its_own_layout() -> None:
    vga, hd = np.zeros((480, 640, 3), np.uint8), np.zeros((720, 1280, 3), np.uint8)
    keys = {layout_key([vga], ("pinhole",)), layout_key([hd], ("pinhole",)),
            layout_key([vga], ("fisheye",)), layout_key([vga, hd], ("pinhole", "pinhole")),
            layout_key([hd, vga], ("pinhole", "pinhole"))}
    assert len(keys) == 5
    assert layout_key([vga.copy()], ("pinhole",)) == layout_key([vga], ("pinhole",))


def test_layout_cache_keeps_the_most_recently_used() -> None:
    built: list[int] = []
    cache = LayoutCache()

    def get(key: int) -> int:
        return cache.get_or_build((key,), lambda: built.append(key) or key)

    for key in range(MAX_GRAPH_LAYOUTS):
        get(key)
    get(0)  # now the most recent: 1 is the oldest
    get(100)
    assert len(cache) == MAX_GRAPH_LAYOUTS
    assert (1,) not in cache and (0,) in cache and (100,) in cache
    get(0)
    assert built == [*range(MAX_GRAPH_LAYOUTS), 100]  # 0 was built once, then reused
    with pytest.raises(ValueError, match="capacity"):
        LayoutCache(0)


def test_default_estimator_on_the_cpu_runs_eagerly_and_warms_up() -> None:
    estimator = Estimator(device="cpu", threads=1)  # onnxruntime when installed, else torch eager
    assert not getattr(estimator.runner, "cuda_graph", False) and "cuda-graph" not in estimator.backend_name
    assert estimator.warmup((320, 240), runs=1) >= estimator.load_s > 0
    assert set(estimator.last_timings_ms) == {"preprocess", "network", "decode"}
    with pytest.raises(ValueError, match="needs device='cuda'"):
        Estimator(device="cpu", cuda_graph=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_graph_path_equals_eager_path_on_cuda() -> None:
    from mp3d_ros.synthetic.scenes import SceneConfig, generate_image

    frames = [generate_image(SceneConfig(size=size, people=(3, 3), depth_range_m=(2.0, 6.0)), 0, 0)
              for size in ((640, 480), (320, 240))]
    graph, eager = Estimator(device="cuda"), Estimator(device="cuda", cuda_graph=False)
    assert graph.runner.cuda_graph
    for frame in frames * 2:
        a, b = graph.estimate(frame.image, frame.intrinsics), eager.estimate(frame.image, frame.intrinsics)
        assert len(a) == len(b)
        np.testing.assert_allclose(a.keypoints_m, b.keypoints_m, atol=1e-3)
    assert len(graph.runner._graphs) == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("cuda_graph", [True, False])
def test_stage_timing_changes_no_result_on_cuda(cuda_graph: bool) -> None:
    from mp3d_ros.synthetic.scenes import SceneConfig, generate_image

    frame = generate_image(SceneConfig(size=(640, 480), people=(3, 3), depth_range_m=(2.0, 6.0)), 0, 0)
    estimator = Estimator(device="cuda", cuda_graph=cuda_graph)
    timed = [estimator.estimate(frame.image, frame.intrinsics) for _ in range(2)]
    assert set(estimator.last_timings_ms) == {"preprocess", "network", "decode"}
    estimator.stage_timing = False
    untimed = [estimator.estimate(frame.image, frame.intrinsics) for _ in range(2)]
    assert estimator.last_timings_ms == {}
    for a, b in zip(timed, untimed):
        assert len(a) == len(b) >= 1
        np.testing.assert_array_equal(a.keypoints_m, b.keypoints_m)
        np.testing.assert_array_equal(a.score, b.score)
