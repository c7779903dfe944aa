#!/usr/bin/env python3
"""How fast the store layer talks to a real S3 store: SeaweedFS started here, on 127.0.0.1.

    python benchmarks/storage_rates.py                    # 2,500 objects of 2 KB, 3 rounds
    python benchmarks/storage_rates.py --objects 10000 --size 4096 --out rates.json

Measures, through ``parablur.storage`` exactly as a worker or the client uses it:
SeaweedFS's start and stop times (tests/seaweed.py, the test fixture), PUT and GET
rates of small objects one at a time from one thread (``Store.write`` / ``Store.read``)
and from 8 threads (as the threads of Dask workers do), the listing rate of
``Store.list_images`` (pages of 1,000 keys) and the time to its first key. Speed is
never asserted: this program reports what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    import parablur  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from seaweed import BUCKET, start_seaweed  # noqa: E402

from parablur.storage import open_store  # noqa: E402


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def one_round(server, prefix: str, objects: int, size: int, threads: int) -> dict:
    store = open_store(f"s3://{BUCKET}/{prefix}", server.options())
    keys = [f"img_{i:06d}.jpg" for i in range(objects)]
    payload = os.urandom(size)
    t0 = time.perf_counter()
    for key in keys[: objects // 5]:
        store.write(key, payload)
    t1 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda k: store.write(k, payload), keys[objects // 5:]))
    t2 = time.perf_counter()
    listing = store.list_images()
    first = next(listing)
    t3 = time.perf_counter()
    count = 1 + sum(1 for _ in listing)
    t4 = time.perf_counter()
    assert first == keys[0] and count == objects, (first, count)
    for key in keys[: objects // 5]:
        store.read(key)
    t5 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(store.read, keys[objects // 5:]))
    t6 = time.perf_counter()
    rest = objects - objects // 5
    return {
        "put_per_s_1_thread": rate(objects // 5, t1 - t0),
        f"put_per_s_{threads}_threads": rate(rest, t2 - t1),
        "list_keys_per_s": rate(objects, t4 - t2),
        "list_first_key_ms": (t3 - t2) * 1000,
        "get_per_s_1_thread": rate(objects // 5, t5 - t4),
        f"get_per_s_{threads}_threads": rate(rest, t6 - t5),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=2500)
    parser.add_argument("--size", type=int, default=2048, help="bytes per object")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="parablur-seaweed-") as folder:
        server = start_seaweed(Path(folder))
        try:
            rounds = [one_round(server, f"rates-{i}", args.objects, args.size, args.threads)
                      for i in range(args.rounds)]
        finally:
            server.stop()
    figures = {"port_s": server.port_s, "start_s": server.started_s, "stop_s": server.stopped_s,
               "objects": args.objects, "size": args.size, "rounds": args.rounds}
    for name in rounds[0]:
        figures[name] = statistics.median(r[name] for r in rounds)
    print(f"SeaweedFS weed mini: S3 port open in {server.port_s:.2f} s, a listing answered in "
          f"{server.started_s:.2f} s (s3fs import included), "
          f"stopped in {server.stopped_s:.2f} s")
    print(f"{args.objects} objects of {args.size} B, median of {args.rounds} rounds:")
    for name, value in figures.items():
        if name not in ("port_s", "start_s", "stop_s", "objects", "size", "rounds"):
            print(f"  {name:24s} {value:10.1f}")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
