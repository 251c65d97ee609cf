"""Inference latency table (same as the ``mp3d-bench`` console script).

    python benchmarks/bench_inference.py [--device cuda] [--models full,lite,movenet-lift] [--runs 50]

See :mod:`mp3d_ros.cli.bench` for what is timed and how.
"""

import sys

from mp3d_ros.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
