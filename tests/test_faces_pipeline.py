"""The face workload through the pipeline: CLI, Dask, detections.jsonl, debug copies, metadata."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from parablur import results
from parablur.cli import main
from parablur.config import FaceParams, RunConfig
from parablur.pipeline import anonymize
from parablur.verify import compare_dirs
from parablur.workloads import face_quality

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory) -> Path:
    """Four generated 640x640 frames of the face set, true boxes in the manifest."""
    folder = tmp_path_factory.mktemp("faces") / "faces"
    assert main(["fetch", "--fallback", "faces", "--num-images", "4", "--width", "640",
                 "--height", "640", "--input-dir", str(folder), "--quiet",
                 "--source-url", "http://127.0.0.1:9/x"]) == 0
    return folder


@pytest.mark.slow
def test_faces_run_sequential_and_dask_identical_with_detections(faces_dir: Path, face_model: Path,
                                                                 tmp_path: Path):
    manifest = json.loads((faces_dir / "manifest.json").read_text())
    truths = {e["file"]: e["faces"] for e in manifest["images"]}
    assert all(truths.values())
    for executor in ("sequential", "dask"):
        code = main(["run", "--workload", "faces", "--input-dir", str(faces_dir), "--output-dir",
                     str(tmp_path / "anon"), "--executor", executor, "--workers", "2",
                     "--batch-size", "1", "--face-model", str(face_model), "--draw-boxes",
                     "--quiet", "--no-dashboard"])
        assert code == 0
    ver = compare_dirs(tmp_path / "anon" / "sequential", tmp_path / "anon" / "dask")
    assert ver.ok and ver.identical == 4
    for executor in ("sequential", "dask"):
        lines = [json.loads(x) for x in
                 (tmp_path / "anon" / executor / "detections.jsonl").read_text().splitlines()]
        assert [x["image"] for x in lines] == sorted(truths)
        for line in lines:
            assert line["size"] == [640, 640] and line["model_sha256"].startswith("8f2383e4")
            assert line["params"]["threshold"] == 0.5 and line["params"]["style"] == "blur"
            found = face_quality.score_image(line["faces"], truths[line["image"]], min_height=32)
            assert found.found >= found.faces - 1  # the faces of 32 px and over, but one at most
            for face in line["faces"]:
                assert len(face["box"]) == 4 and 0 < face["score"] <= 1
                assert len(face["landmarks"]) == 5
        # the debug copies sit beside the outputs, never over them
        boxes = tmp_path / "anon" / f"{executor}-boxes"
        assert sorted(p.name for p in boxes.glob("*.jpg")) == sorted(truths)
        out = cv2.imread(str(tmp_path / "anon" / executor / "img_0000.jpg"))
        drawn = cv2.imread(str(boxes / "img_0000.jpg"))
        assert not np.array_equal(out, drawn)
    # the anonymized outputs differ from the inputs only near the faces
    src = cv2.imread(str(faces_dir / "img_0000.jpg")).astype(int)
    out = cv2.imread(str(tmp_path / "anon" / "dask" / "img_0000.jpg")).astype(int)
    far = np.ones(src.shape[:2], bool)
    for x, y, w, h in truths["img_0000.jpg"]:
        far[max(y - h, 0):y + 2 * h, max(x - w, 0):x + 2 * w] = False
    assert np.abs(src - out)[far].mean() < 2.0  # JPEG re-encoding only


@pytest.mark.slow
def test_bench_faces_reports_recall_false_positives_and_speedup(faces_dir: Path, face_model: Path,
                                                                tmp_path: Path, capsys):
    code = main(["bench", "--workload", "faces", "--input-dir", str(faces_dir), "--output-dir",
                 str(tmp_path / "p"), "--num-images", "4", "--width", "640", "--height", "640",
                 "--trials", "1", "--warmup", "0", "--workers", "2", "--batch-size", "1",
                 "--face-model", str(face_model), "--quiet", "--no-dashboard", "--no-report",
                 "--source-url", "http://127.0.0.1:9/x", "--report-csv", str(tmp_path / "r.csv"),
                 "--summary-json", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "quality: recall" in out and "false positives per image" in out
    assert "recall by height (16 to 20px" in out and "per core" in out
    assert "vs ceiling" in out and "speedup" in out
    quality = json.loads((tmp_path / "s.json").read_text())["detection_quality"]
    assert quality["images"] == 4 and quality["recall"] >= 0.8
    (row,) = results.read_rows(tmp_path / "r.csv")
    assert row["workload"] == "faces"
    assert float(row["recall"]) == pytest.approx(quality["recall"], rel=1e-5)
    for band, recall in quality["recall_by_height"].items():
        assert row[f"recall_by_height_{band}"] == results.cell(recall)
    assert float(row["par_img_per_core"]) > 0 and float(row["seq_img_per_core"]) > 0
    assert json.loads(row["workload_params"])["model_sha256"].startswith("8f2383e4")


def _exif_with_gps_and_thumbnail(thumbnail: bytes) -> bytes:
    """An APP1 Exif payload: IFD0 -> GPS IFD (latitude), IFD1 -> an embedded JPEG thumbnail."""
    entries0 = [(0x8825, 4, 1, 0)]  # GPSInfo -> offset filled below
    # layout: header(8) | IFD0 | GPS IFD | lat rationals | IFD1 | thumbnail
    ifd0 = 8
    ifd0_len = 2 + 12 * len(entries0) + 4
    gps = ifd0 + ifd0_len
    gps_len = 2 + 12 * 2 + 4
    lat = gps + gps_len
    ifd1 = lat + 24
    ifd1_len = 2 + 12 * 2 + 4
    thumb = ifd1 + ifd1_len
    out = b"II*\x00" + struct.pack("<I", ifd0)
    out += struct.pack("<H", 1) + struct.pack("<HHII", 0x8825, 4, 1, gps) + struct.pack("<I", ifd1)
    out += struct.pack("<H", 2) + struct.pack("<HHI4s", 1, 2, 2, b"N\x00\x00\x00")
    out += struct.pack("<HHII", 2, 5, 3, lat) + struct.pack("<I", 0)
    out += struct.pack("<6I", 48, 1, 51, 1, 30, 1)
    out += struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, thumb)
    out += struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail)) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + out + thumbnail


def _segments(data: bytes) -> list[int]:
    """The marker bytes of a JPEG's header segments, up to its first scan."""
    found, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        found.append(marker)
        if marker == 0xDA:
            break
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return found


@pytest.mark.slow
def test_outputs_carry_no_exif_gps_xmp_or_thumbnail(tmp_path: Path, face_model: Path):
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        photo = Image.open(io.BytesIO(fh.read())).convert("RGB")
    small = io.BytesIO()
    photo.resize((64, 80)).save(small, "JPEG")
    exif = _exif_with_gps_and_thumbnail(small.getvalue())
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><GPSLatitude>48</GPSLatitude></x:xmpmeta>"
    src = tmp_path / "in" / "hopper.jpg"
    src.parent.mkdir()
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=92, exif=exif)
    data = buf.getvalue()
    data = data[:2] + b"\xff\xe1" + struct.pack(">H", len(xmp) + 2) + xmp + data[2:]
    src.write_bytes(data)
    assert Image.open(src).getexif().get_ifd(0x8825), "the input has GPS tags"
    assert small.getvalue()[:200] in data and b"xmpmeta" in data
    summary = anonymize(RunConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "out",
                                  workload="faces", faces=FaceParams(model=face_model)))
    assert summary.ok == 1
    out = (tmp_path / "out" / "sequential" / "hopper.jpg").read_bytes()
    assert 0xE1 not in _segments(out)  # no APP1: neither Exif nor XMP
    assert not Image.open(io.BytesIO(out)).getexif()
    assert b"xmpmeta" not in out and b"Exif" not in out and small.getvalue()[:200] not in out
    record = json.loads((tmp_path / "out" / "sequential" / "detections.jsonl").read_text())
    assert len(record["faces"]) == 1  # and the face in it was found
    assert record["jpeg"]["lossless"] is True  # written as an edit of the source (jpeg_edit)


@pytest.mark.slow
def test_draw_boxes_is_checked_first_redrawn_by_force_and_drawn_on_a_resumed_run(
        faces_dir: Path, face_model: Path, tmp_path: Path, capsys):
    import shutil

    inp = tmp_path / "in"
    shutil.copytree(faces_dir, inp, ignore=shutil.ignore_patterns("manifest.json"))
    args = ["run", "--workload", "faces", "--input-dir", str(inp), "--output-dir",
            str(tmp_path / "anon"), "--face-model", str(face_model), "--quiet"]
    assert main(args) == 0
    boxes = tmp_path / "anon" / "sequential-boxes"
    assert not boxes.exists()
    # everything is up to date: the debug copies are still drawn
    assert main([*args, "--draw-boxes"]) == 0
    assert len(list(boxes.glob("*.jpg"))) == 4
    # an input removed, then a forced run: the others redrawn, nothing deleted (--force
    # redoes every image, it never deletes)
    (inp / "img_0003.jpg").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in boxes.glob("*.jpg")}
    assert main([*args, "--draw-boxes", "--force"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in boxes.glob("*.jpg")}
    assert sorted(after) == sorted(before) == [f"img_000{i}.jpg" for i in range(4)]
    assert all(after[f"img_000{i}.jpg"] > before[f"img_000{i}.jpg"] for i in range(3))
    # a boxes folder of the user's is refused before any image is processed
    theirs = tmp_path / "other" / "sequential-boxes"
    theirs.mkdir(parents=True)
    (theirs / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main([*args[:5], "--output-dir", str(tmp_path / "other"), *args[7:],
                 "--draw-boxes"]) == 2
    assert "ParaBlur did not make" in capsys.readouterr().err
    assert not (tmp_path / "other" / "sequential").exists() or not list(
        (tmp_path / "other" / "sequential").glob("*.jpg"))
