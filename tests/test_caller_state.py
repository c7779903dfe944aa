"""The library leaves its caller's process as it found it (as a notebook would call it).

A fresh interpreter imports parablur, runs ``anonymize`` (sequential, threads, dask)
and ``run_benchmark`` (two Dask clusters at once), and after each call compares its
logging configuration, warnings filters, ``dask.config``, OpenCV thread count,
environment, signal handlers and default Dask client with what they were before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import copy, gc, json, logging, os, signal, socket, sys, warnings
from dataclasses import replace
from pathlib import Path

# Libraries a notebook using Dask has imported already: their own import-time
# settings (distributed's logging set-up, bokeh's warnings filters) are not ParaBlur's.
import bokeh, cv2, dask, distributed  # noqa: F401

import parablur
from parablur import BenchConfig, BlurParams, FetchConfig, RunConfig


def loggers():
    # Dask's schedulers and workers keep their recent log records in a DequeHandler
    # of their own, removed when the node is garbage-collected (which its dashboard
    # delays): Dask's in-memory log buffer, not a logging setting; left out.
    from distributed.utils import DequeHandler

    out = {}
    for name in ["", *logging.root.manager.loggerDict]:
        lg = logging.getLogger(name)
        if isinstance(lg, logging.Logger):
            out[name] = (lg.level, lg.disabled, lg.propagate,
                         [(id(h), h.level) for h in lg.handlers
                          if not isinstance(h, DequeHandler)])
    return out


def snapshot():
    return {
        "loggers": loggers(),
        "warnings": [repr(f) for f in warnings.filters],
        "dask_config": copy.deepcopy(dask.config.config),
        "cv2_threads": cv2.getNumThreads(),
        "environ": dict(os.environ),
        "signals": [repr(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM)],
        "default_client": repr(distributed.client._get_global_client()),
    }


def changes(before, after):
    found = []
    for key in before:
        a, b = before[key], after[key]
        if key in ("loggers", "environ"):
            default = (0, False, True, []) if key == "loggers" else None
            for name in sorted(set(a) | set(b)):
                if a.get(name, default) != b.get(name, default):
                    found.append(f"{key}[{name!r}]: {a.get(name, default)} -> {b.get(name, default)}")
        elif a != b:
            found.append(f"{key}: {a} -> {b}" if key != "dask_config" else
                         f"dask_config: {json.dumps(diff(a, b), default=repr)}")
    return found


def diff(a, b, path=""):
    out = {}
    for k in set(a) | set(b):
        if a.get(k) != b.get(k):
            if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
                out.update(diff(a[k], b[k], f"{path}{k}."))
            else:
                out[path + str(k)] = [a.get(k), b.get(k)]
    return out


def main():
    tmp = Path(sys.argv[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        offline = f"http://127.0.0.1:{s.getsockname()[1]}/64/64"
    fetch = FetchConfig(input_dir=tmp / "data", num_images=4, width=64, height=64,
                        source_url=offline, retries=0)
    parablur.fetch_dataset(fetch)
    run = RunConfig(input_dir=tmp / "data", output_dir=tmp / "out", workers=2, batch_size=1,
                    blur=BlurParams(sigma=2))
    steps = {
        "anonymize sequential": lambda: parablur.anonymize(run),
        "anonymize threads": lambda: parablur.anonymize(run.with_executor("threads")),
        "anonymize dask": lambda: parablur.anonymize(run.with_executor("dask")),
        "run_benchmark dask,dask-threads": lambda: parablur.run_benchmark(
            BenchConfig(fetch=fetch, run=replace(run, executor="dask", output_dir=tmp / "bench"),
                        executors=("dask", "dask-threads"), warmup=0, trials=1,
                        report_csv=tmp / "r.csv", measure_ceiling=False),
            echo=lambda line: None),
    }
    report = {}
    for label, step in steps.items():
        before = snapshot()
        result = step()
        gc.collect()  # Dask's nodes remove their log handlers when they are collected
        clean = result.ok if isinstance(result.ok, bool) else result.ok == result.images == 4
        report[label] = {"changes": changes(before, snapshot()), "clean": clean}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
'''


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_public_api_leaves_the_callers_process_as_it_found_it(tmp_path: Path) -> None:
    script = tmp_path / "notebook.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                        "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT / "src")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(report) == ["anonymize sequential", "anonymize threads", "anonymize dask",
                            "run_benchmark dask,dask-threads"]
    for label, step in report.items():
        assert step["clean"] is True, (label, step)
        assert step["changes"] == [], (label, step["changes"])
