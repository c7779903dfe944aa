"""benchmarks/vs_original.py: its arguments, and one tiny round against the real original script."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_images

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "benchmarks" / "vs_original.py"


def find_original() -> Path | None:
    """The study's script: $PARABLUR_ORIGINAL, or shared/reference/ beside the checkout (or its parent)."""
    candidates = [os.environ.get("PARABLUR_ORIGINAL", "")]
    candidates += [str(base / "shared" / "reference" / "ParaBlur_original.py") for base in ROOT.parents[:2]]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def run(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROGRAM), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_a_missing_original_is_refused_with_one_line_before_anything_is_made(tmp_path):
    missing = tmp_path / "nowhere" / "ParaBlur_original.py"
    proc = run(["--original", str(missing), "--input-dir", str(tmp_path / "data"),
                "--work-dir", str(tmp_path / "work")], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vs_original: error: --original") and str(missing) in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "data").exists() and not (tmp_path / "work").exists()


@pytest.mark.slow
def test_the_original_is_a_required_argument(tmp_path):
    proc = run(["--rounds", "1"], tmp_path)
    assert proc.returncode == 2
    assert "--original" in proc.stderr and "required" in proc.stderr


@pytest.mark.slow
def test_bad_numbers_and_a_used_work_dir_are_refused(tmp_path):
    original = tmp_path / "original.py"
    original.write_text("raise SystemExit(3)\n")
    proc = run(["--original", str(original), "--rounds", "0"], tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == "vs_original: error: --rounds must be >= 1, got 0"
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    proc = run(["--original", str(original), "--work-dir", str(used)], tmp_path)
    assert proc.returncode == 2 and "--work-dir must be a new or empty folder" in proc.stderr
    assert [p.name for p in used.iterdir()] == ["keep.txt"]


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))}


@pytest.mark.slow
def test_one_tiny_round_against_the_original_does_the_same_work_and_leaves_the_images_alone(tmp_path):
    original = find_original()
    if original is None:
        pytest.skip("the original script is not here: set PARABLUR_ORIGINAL to ParaBlur_original.py")
    data = tmp_path / "photos"
    make_images(data, 5, size=(120, 160))
    before = _digests(data)
    out = tmp_path / "vs.json"
    proc = run(["--original", str(original), "--input-dir", str(data), "--num-images", "5",
                "--workers", "1", "--batch-size", "2", "--rounds", "1", "--warmup", "0",
                "--work-dir", str(tmp_path / "work"), "--out", str(out)], tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _digests(data) == before  # nothing in the user's folder was written, replaced or deleted
    result = json.loads(out.read_text())
    (rnd,) = result["rounds"]
    assert rnd["original"]["images"] == rnd["original"]["seq_ok"] == rnd["original"]["par_ok"] == 5
    assert rnd["original"]["par_s"] > 0 and rnd["original"]["process_s"] > rnd["original"]["par_s"]
    # Same blur, same JPEG quality: ParaBlur's exact outputs are the original's, pixel for pixel.
    assert rnd["exact_equals_original"] is True and rnd["clean"] is True
    assert set(result["figures"]) >= {"exact / original, dask", "fast / original, dask"}
    assert result["fast_vs_exact"]["images"] == 4 and result["fast_vs_exact"]["max_abs_diff"] > 0
    assert "exact / original, dask" in proc.stdout
