"""Shared helpers for the extract/store benchmarks: machine info, test videos, timing."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def machine() -> str:
    import h5py
    import numpy as np

    try:
        import cv2
        cvv = cv2.__version__
    except ImportError:  # pragma: no cover
        cvv = "-"
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores visible; Python {platform.python_version()}, numpy {np.__version__}, "
            f"h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}), OpenCV {cvv}")


def set_threads(n: int = 1) -> None:
    """One thread everywhere: the numbers are per core and comparable."""
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        import cv2
        cv2.setNumThreads(n)
    except ImportError:  # pragma: no cover
        pass


def real_videos() -> list[Path]:
    """The UCF-101 AVIs (MPEG-4 part 2) and the Kinetics h264 mp4s of ../shared/data."""
    names = ["ucf101__Basketball__v_Basketball_g01_c01.avi", "ucf101__ApplyEyeMakeup__mmaction2_tests_test.avi",
             "k400__abseiling__abseiling_k400.mp4", "k400__cutting_watermelon__mmaction2_demo_old.mp4"]
    out = [SHARED / "videos" / "real" / n for n in names]
    missing = [p for p in out if not p.exists()]
    if missing:
        raise SystemExit(f"benchmark data missing: {missing[0]} (needs ../shared/data)")
    return out


class Timer:
    def __enter__(self):
        self.t = time.perf_counter()
        return self

    def __exit__(self, *a):
        self.s = time.perf_counter() - self.t
