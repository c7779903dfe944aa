"""Open a real review page in a real browser: Chromium's headless screenshot, to look at.

Real photos from wheels (grace_hopper, astronaut, coffee: no face) and a generated clip with
real faces go through ``parablur run --workload faces --review`` and ``parablur review``
(then again with ``--show-originals``); Chromium (``apt-get install -y chromium``) takes a
screenshot of each page. Look at the PNGs: masks outlined on the thumbnails, a crop under
each mask, a strip per track of the clip, the doubtful ones first, and with the originals a
red first line saying the page shows faces.

    python scripts/check_review_page.py [--out /tmp/review-check]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import cv2


def photos(folder: Path) -> None:
    import matplotlib
    from skimage import data

    from parablur.ingestion.face_clips import generate_face_clip, write_face_clip

    folder.mkdir(parents=True)
    shutil.copy(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg", folder)
    for name in ("astronaut", "coffee"):
        cv2.imwrite(str(folder / f"{name}.jpg"), cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR))
    write_face_clip(generate_face_clip(1, 640, 360, seconds=3.0, fps=12, seed=5, face_min_size=40),
                    folder / "clip.mp4", gop_s=1.0)


def parablur(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "parablur", *args], capture_output=True, text=True)
    print(done.stdout.strip(), done.stderr.strip(), sep="\n")
    if done.returncode:
        raise SystemExit(f"parablur {args[0]} exited {done.returncode}")


def screenshot(page: Path, shot: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1400,2000", page.resolve().as_uri()], capture_output=True,
                   timeout=120, check=True)
    print(f"screenshot: {shot} ({shot.stat().st_size} bytes)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("/tmp/review-check"))
    a = p.parse_args()
    if a.out.exists():
        raise SystemExit(f"{a.out} exists: choose a new --out")
    photos(a.out / "photos")
    parablur("run", "--workload", "faces", "--review", "--input-dir", str(a.out / "photos"),
             "--output-dir", str(a.out / "anon"), "--quiet")
    page = a.out / "anon" / "sequential" / "review.html"
    parablur("review", str(a.out / "anon"), "--quiet")
    screenshot(page, a.out / "review.png")
    parablur("review", str(a.out / "anon"), "--show-originals", "--input-dir", str(a.out / "photos"),
             "--quiet")
    screenshot(page, a.out / "review-originals.png")


if __name__ == "__main__":
    main()
