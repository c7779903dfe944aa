"""The review page at scale, and in a real browser.

1. A synthetic faces output of N images (default 10,000 small real-photo JPEGs, 0 to 4 faces
   each, scores spread over the threshold, some found by a second look or past the edge),
   its thumbnails written as ``run --review``'s workers write them (``review.write_assets``).
   ``parablur review`` on it is timed (median of ``--rounds``) and the page's size reported.
2. ``parablur review`` making every thumbnail itself on ``--missing`` images of
   ``--missing-width`` pixels (a run without ``--review``): milliseconds per image.
3. The workers' extra cost with ``--review``: ``write_assets`` on a 2000x2000 output, against the
   faces workload on the same image (median of 5 each).
4. Chromium (``chromium --headless --screenshot``) opens the page: the wall time of the whole
   screenshot (browser start included), and the screenshot saved for a look.

    python benchmarks/review_page.py [--images 10000] [--shot /tmp/review-shot.png]
    python benchmarks/review_page.py --page OUT/sequential/review.html --shot /tmp/shot.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def photos(width: int = 320) -> list[np.ndarray]:
    """Real photos from wheels (scikit-image, matplotlib), ``width`` pixels wide."""
    import matplotlib
    from skimage import data

    hopper = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
    found = [hopper] + [cv2.cvtColor(getattr(data, n)(), cv2.COLOR_RGB2BGR)
                        for n in ("astronaut", "coffee", "chelsea", "rocket")]
    return [cv2.resize(img, (width, round(width * img.shape[0] / img.shape[1])),
                       interpolation=cv2.INTER_CUBIC) for img in found]


def synthetic_output(folder: Path, n: int, *, assets: bool, seed: int = 0, width: int = 320) -> None:
    """A folder laid out as ``run --workload faces`` leaves it (outputs, records, marker), with
    the thumbnails of ``--review`` when ``assets``."""
    from parablur.files import OUTPUT_MARKER, marker_text
    from parablur.records import line_tag, record_line
    from parablur.review import write_assets
    from parablur.storage import LocalStore

    rng = np.random.default_rng(seed)
    store = LocalStore(folder)
    folder.mkdir(parents=True)
    (folder / OUTPUT_MARKER).write_text(marker_text("run"))
    images = photos(width)
    encoded = [cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes() for im in images]
    lines = []
    for i in range(n):
        k = i % len(images)
        h, w = images[k].shape[:2]
        faces = []
        for _ in range(int(rng.integers(0, 5))):
            side = float(rng.uniform(16, 80)) * width / 320
            x, y = float(rng.uniform(0, w - side)), float(rng.uniform(0, h - side))
            face = {"box": [round(x, 1), round(y, 1), round(side, 1), round(side * 1.2, 1)],
                    "score": round(float(rng.uniform(0.5, 0.99)), 4), "mask_scale": 1.3,
                    "look": str(rng.choice(["pyramid"] * 18 + ["close-up", "edge"]))}
            faces.append(face)
        record = {"faces": faces, "size": [w, h], "params": {"threshold": 0.5, "mask_scale": 1.3}}
        name = f"d{i // 1000:02d}/img_{i:05d}.jpg"
        line = record_line(name, record)
        lines.append(line)
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(encoded[k])
        if assets:
            write_assets(store, name, images[k], record, line_tag(line))
    (folder / "detections.jsonl").write_text("".join(sorted(line + "\n" for line in lines)))


def cli(*args: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "parablur", *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    return time.perf_counter() - t0


def worker_cost(reps: int = 5) -> dict:
    """``write_assets`` on a 2000x2000 output against the faces workload on the same image."""
    from parablur.config import FaceParams
    from parablur.review import write_assets
    from parablur.storage import LocalStore
    from parablur.workloads.faces import FaceWorkload

    cv2.setNumThreads(1)  # as on a worker (worker.prepare_process)
    hopper = photos()[0]
    image = cv2.resize(hopper, (2000, 2000), interpolation=cv2.INTER_CUBIC)
    work = FaceWorkload(FaceParams())
    faces_s, assets_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        for _ in range(reps):  # interleaved
            t0 = time.perf_counter()
            out, record = work(image)
            t1 = time.perf_counter()
            write_assets(store, "a.jpg", out, record, "tag")
            t2 = time.perf_counter()
            faces_s.append(t1 - t0)
            assets_s.append(t2 - t1)
    return {"faces_ms": statistics.median(faces_s) * 1e3,
            "write_assets_ms": statistics.median(assets_s) * 1e3, "faces_found": len(record["faces"])}


def screenshot(page: Path, shot: Path, size: str = "1400,2000") -> float:
    """Chromium's headless screenshot of ``page``: the wall seconds (browser start included)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    t0 = time.perf_counter()
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    f"--window-size={size}", page.resolve().as_uri()], capture_output=True, timeout=120,
                   check=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--missing", type=int, default=100, help="images whose thumbnails review makes")
    p.add_argument("--missing-width", type=int, default=2000, help="their width in pixels")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--shot", type=Path, default=Path("/tmp/review-shot.png"))
    p.add_argument("--page", type=Path, default=None, help="only screenshot this page")
    a = p.parse_args()
    if a.page is not None:
        print(json.dumps({"screenshot_s": round(screenshot(a.page, a.shot), 2), "shot": str(a.shot)}))
        return
    with tempfile.TemporaryDirectory(prefix="parablur-review-bench-") as tmp:
        big = Path(tmp) / "big" / "sequential"
        t0 = time.perf_counter()
        synthetic_output(big, a.images, assets=True)
        made_s = time.perf_counter() - t0
        times = [cli("review", str(big), "--quiet") for _ in range(a.rounds)]
        page = big / "review.html"
        browser = [screenshot(page, a.shot) for _ in range(a.rounds)]
        bare = Path(tmp) / "bare" / "sequential"
        synthetic_output(bare, a.missing, assets=False, seed=1, width=a.missing_width)
        missing_s = cli("review", str(bare), "--quiet")
        result = {
            "images": a.images, "setup_s": round(made_s, 1),
            "review_s_median": round(statistics.median(times), 2), "review_s": [round(t, 2) for t in times],
            "page_bytes": page.stat().st_size,
            "page_bytes_per_image": round(page.stat().st_size / a.images),
            "chromium_screenshot_s_median": round(statistics.median(browser), 2),
            "missing_images": a.missing, "missing_width": a.missing_width,
            "review_making_thumbnails_s": round(missing_s, 2),
            "per_missing_image_ms": round(missing_s / a.missing * 1e3, 1),
            "worker": {k: round(v, 1) if isinstance(v, float) else v for k, v in worker_cost().items()},
            "shot": str(a.shot),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
