"""Video clips over real clusters and stores: a Dask run equals the sequential one frame for frame
and byte for byte; a SIGKILLed run resumes to the same file; clips in S3 are read by ranges and
large outputs go up in parts (SeaweedFS)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from dask_cluster import child_env
from seaweed import BUCKET

from parablur import cli, video
from parablur.clips import PARTS
from parablur.ingestion.face_clips import generate_face_clip, write_face_clip
from parablur.storage import base as store_base
from parablur.storage import open_store
from parablur.verify import compare_dirs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Two face clips (6 s and 3 s, 320x240, 12 fps, keyframes every 0.75 s) in a folder."""
    folder = tmp_path_factory.mktemp("clips")
    for i, seconds in enumerate((6.0, 3.0)):
        clip = generate_face_clip(i, 320, 240, seconds=seconds, fps=12, seed=21, face_min_size=48)
        write_face_clip(clip, folder / f"clip_{i}.mp4", gop_s=0.75)
    return folder


def _args(src: str, dst: str, model: Path, *extra: str) -> list[str]:
    return ["run", "--quiet", "--workload", "faces", "--face-model", str(model), "--segment-s", "0.75",
            "--input-dir", src, "--output-dir", dst, *extra]


def _default_signals() -> None:
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_dask_run_equals_the_sequential_one_frame_for_frame(clips, tmp_path, face_model, capsys):
    assert cli.main(_args(str(clips), str(tmp_path / "out"), face_model)) == 0
    assert cli.main(_args(str(clips), str(tmp_path / "out"), face_model, "--executor", "dask",
                          "--workers", "2", "--no-dashboard")) == 0
    capsys.readouterr()
    seq, par = tmp_path / "out" / "sequential", tmp_path / "out" / "dask"
    check = compare_dirs(seq, par)
    assert check.ok and check.compared == 2, check
    for name in ("clip_0.mp4", "clip_1.mp4"):
        assert (seq / name).read_bytes() == (par / name).read_bytes()
        assert video.probe(par / name).frames == video.probe(clips / name).frames
    assert (seq / "detections.jsonl").read_text() == (par / "detections.jsonl").read_text()
    # Workers that cannot reach the folders: the client ships each segment its clip, and
    # writes the segments they send back.
    assert cli.main(_args(str(clips), str(tmp_path / "shipped"), face_model, "--executor", "dask",
                          "--workers", "2", "--no-dashboard", "--transfer", "bytes")) == 0
    capsys.readouterr()
    shipped = tmp_path / "shipped" / "dask"
    for name in ("clip_0.mp4", "clip_1.mp4", "detections.jsonl"):
        assert (shipped / name).read_bytes() == (seq / name).read_bytes(), name
    assert not (shipped / PARTS).exists()


def test_a_sigkilled_run_keeps_its_segments_and_the_rerun_gives_the_same_files(
        clips, tmp_path, face_model):
    argv = _args(str(clips), str(tmp_path / "out"), face_model, "--executor", "processes",
                 "--workers", "1")
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-m", "parablur", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_signals)
    parts = tmp_path / "out" / "processes" / PARTS
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(parts.rglob("*.json"))) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    kept = {p: p.stat().st_mtime_ns for p in parts.rglob("*.nut")}
    assert kept, "no finished segment was left"
    assert not (tmp_path / "out" / "processes" / "clip_0.mp4").exists()
    rerun = subprocess.run([sys.executable, "-m", "parablur", *argv], env=env,
                           capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    assert not parts.exists()
    assert cli.main(_args(str(clips), str(tmp_path / "ref"), face_model)) == 0
    for name in ("clip_0.mp4", "clip_1.mp4", "detections.jsonl"):
        assert (tmp_path / "out" / "processes" / name).read_bytes() == \
            (tmp_path / "ref" / "sequential" / name).read_bytes(), name


def test_clips_in_s3_give_the_files_of_a_folder_run(clips, tmp_path, face_model, seaweed, capsys):
    prefix = f"clips-{uuid.uuid4().hex[:10]}"
    seaweed.client().pipe({f"{BUCKET}/{prefix}/in/{p.name}": p.read_bytes() for p in clips.iterdir()})
    options = tmp_path / "s3.json"
    options.write_text(json.dumps(seaweed.options()))
    src, dst = f"s3://{BUCKET}/{prefix}/in", f"s3://{BUCKET}/{prefix}/out"
    assert cli.main(_args(src, dst, face_model, "--executor", "dask", "--workers", "2",
                          "--no-dashboard", "--storage-options", f"@{options}")) == 0
    assert cli.main(_args(str(clips), str(tmp_path / "ref"), face_model)) == 0
    capsys.readouterr()
    client = seaweed.client()
    for name in ("clip_0.mp4", "clip_1.mp4", "detections.jsonl"):
        assert client.cat_file(f"{BUCKET}/{prefix}/out/dask/{name}") == \
            (tmp_path / "ref" / "sequential" / name).read_bytes(), name
    assert not [k for k in seaweed.keys(f"{prefix}/out") if PARTS in k]


def test_a_store_reads_a_clip_by_ranges_and_uploads_a_large_output_in_parts(
        tmp_path, seaweed, monkeypatch):
    prefix = f"ranges-{uuid.uuid4().hex[:10]}"
    store = open_store(f"s3://{BUCKET}/{prefix}", seaweed.options())
    big = os.urandom(12 * 2**20)
    local = tmp_path / "big.bin"
    local.write_bytes(big)
    monkeypatch.setattr(store_base, "MULTIPART_CHUNK_BYTES", 5 * 2**20)
    from parablur.storage import fsspec_store

    monkeypatch.setattr(fsspec_store, "MULTIPART_CHUNK_BYTES", 5 * 2**20)
    store.upload("out/big.mp4", local, metadata={"parablur-params": "x"})
    info = store.info("out/big.mp4")
    assert info.size == len(big) and info.metadata == {"parablur-params": "x"}
    assert info.etag.endswith("-3")  # a multipart upload of 3 parts (S3's ETag says so)
    store.upload("out/small.mp4", _small(tmp_path))
    assert "-" not in store.info("out/small.mp4").etag  # one PUT
    with store.open("out/big.mp4") as handle:
        handle.seek(7 * 2**20)
        assert handle.read(1000) == big[7 * 2**20: 7 * 2**20 + 1000]
        fetched = handle.cache.total_requested_bytes
    assert 0 < fetched < len(big) // 2  # only the ranges read


def _small(tmp_path: Path) -> Path:
    path = tmp_path / "small.bin"
    path.write_bytes(b"x" * 1000)
    return path


def test_bench_on_face_clips_reports_frames_per_second_and_the_face_frames_hidden(
        tmp_path, face_model, capsys):
    code = cli.main(["bench", "--workload", "faces", "--face-model", str(face_model),
                     "--fallback", "faces-video", "--num-images", "2", "--clip-seconds", "2",
                     "--width", "320", "--height", "240", "--input-dir", str(tmp_path / "clips"),
                     "--output-dir", str(tmp_path / "out"), "--trials", "1", "--warmup", "0",
                     "--no-ceiling", "--no-report", "--no-dashboard", "--workers", "2",
                     "--report-csv", str(tmp_path / "r.csv"), "--summary-json",
                     str(tmp_path / "s.json")])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "frames/s sequential" in text and "exposed face frames" in text
    summary = json.loads((tmp_path / "s.json").read_text())
    quality = summary["detection_quality"]
    assert quality["clips"] == 2 and quality["face_frames"] > 0
    assert 0 <= quality["exposed_face_frames"] <= 1
    with open(tmp_path / "r.csv", newline="") as handle:
        cells = next(csv.DictReader(handle))
    assert int(cells["frames"]) == 2 * 2 * 30  # two clips of 2 s at 30 fps
    assert float(cells["seq_frame_rate"]) > float(cells["seq_throughput"])
    assert float(cells["exposed_face_frames"]) == pytest.approx(quality["exposed_face_frames"], rel=1e-4)


DYING = """
import os

def die_on_small(image):
    if image.shape[1] == 96:  # the small clip: its worker dies
        os._exit(3)
    return image
"""


def test_segments_whose_worker_dies_fail_their_clip_once(tmp_path, clips, capsys, monkeypatch):
    from conftest import user_package
    from test_video import make_clip

    inp = tmp_path / "in"
    inp.mkdir()
    make_clip(inp / "a.mp4", audio=False, metadata=False, rotation=0)  # 96x64, 2 s
    (inp / "b.mp4").write_bytes((clips / "clip_1.mp4").read_bytes())
    with user_package(tmp_path / "pkg", "dyingsteps", DYING, monkeypatch) as path:
        monkeypatch.setenv("PYTHONPATH", f"{path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        code = cli.main(["run", "--quiet", "--workload", "dyingsteps.steps:die_on_small",
                         "--segment-s", "0.5", "--executor", "processes", "--workers", "2",
                         "--max-task-retries", "0", "--input-dir", str(inp), "--output-dir",
                         str(tmp_path / "out"), "--summary-json", str(tmp_path / "s.json")])
    capsys.readouterr()
    assert code == 1
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["images"], summary["ok"], summary["failed"]) == (2, 1, 1)
    assert [f["image"] for f in summary["failures"]] == ["a.mp4"]
    out = tmp_path / "out" / "processes"
    assert (out / "b.mp4").is_file() and not (out / "a.mp4").exists()
    assert not (out / PARTS).exists()
