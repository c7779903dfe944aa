"""The machine and software a measurement was taken on, recorded beside every result."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import socket
import sys
from functools import lru_cache

from . import __version__


@lru_cache(maxsize=1)
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    import cv2
    import dask

    return {
        "python_version": platform.python_version(),
        "opencv_version": cv2.__version__,
        "dask_version": dask.__version__,
        "parablur_version": __version__,
    }


def snapshot() -> dict[str, object]:
    """Timestamp, CPU, cores, frequency, load and versions, keyed as in the results CSV."""
    import psutil

    freq = None
    with contextlib.suppress(Exception):
        f = psutil.cpu_freq()
        freq = round(f.current, 1) if f else None
    load = None
    with contextlib.suppress(OSError, AttributeError):
        load = round(os.getloadavg()[0], 2)
    return {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu_freq_mhz": freq,
        "load_avg_1m": load,
        "hostname": socket.gethostname(),
        "platform": f"{platform.system()}-{platform.machine()}-{sys.implementation.name}",
        **_versions(),
    }
