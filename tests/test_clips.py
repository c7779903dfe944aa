"""Video clips on the one data path: found beside images, cut into segment tasks, joined, resumed,
recorded frame by frame; bad clips fail alone (``parablur.clips``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from test_video import LEAKS, frames_of, make_clip, packets_of

from parablur import video
from parablur.cli import main
from parablur.clips import PARTS, Assembler, auto_segment_s, process_part
from parablur.config import FaceParams, RunConfig, VideoParams
from parablur.ingestion.face_clips import generate_face_clip, write_face_clip
from parablur.ingestion.faces import generate_face_image
from parablur.pipeline import plan_tasks
from parablur.records import RecordLog
from parablur.storage import LocalStore
from parablur.worker import Job
from parablur.workloads.video_faces import clip_lines

W, H, FPS, SECONDS = 320, 240, 12, 3.0


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory) -> tuple[Path, dict]:
    """A 3 s 320x240 12 fps face clip with AAC audio and keyframes every 0.75 s."""
    clip = generate_face_clip(2, W, H, seconds=SECONDS, fps=FPS, seed=11, face_min_size=48)
    path = tmp_path_factory.mktemp("clips") / "talk.mp4"
    return path, write_face_clip(clip, path, gop_s=0.75)


def _inputs(tmp_path: Path, face_clip, *extra: Path) -> Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(face_clip[0], folder / "sub" / "talk.mp4")
    for path in extra:
        shutil.copy(path, folder / path.name)
    return folder


def _run(capsys, *args: str) -> tuple[int, str]:
    code = main(["run", "--quiet", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_auto_segments_depend_on_the_clip_alone():
    assert auto_segment_s(3.0) == 6.0  # short clips: the shortest segments
    assert auto_segment_s(128.0) == 8.0  # two minutes: about 16 segments
    assert auto_segment_s(3600.0) == 10.0  # an hour: the longest


def test_a_face_clip_beside_an_image_is_anonymized_with_its_audio_frames_and_records(
        tmp_path, face_clip, face_model, capsys):
    image, _ = generate_face_image(1, 400, 300, seed=2)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
    jpgs = [photo]
    inp = _inputs(tmp_path, face_clip, *jpgs)
    code, text = _run(capsys, "--workload", "faces", "--face-model", str(face_model),
                      "--face-min-size", "32", "--segment-s", "0.75", "--input-dir", str(inp),
                      "--output-dir", str(tmp_path / "out"))
    assert code == 0, text
    out = tmp_path / "out" / "sequential"
    src, dst = inp / "sub" / "talk.mp4", out / "sub" / "talk.mp4"
    assert "frames/s" in text
    # Same container, frame count, timestamps and rate; audio copied packet for packet.
    before, after = video.probe(src), video.probe(dst)
    assert after.frames == before.frames == int(SECONDS * FPS)
    assert after.frame_pts == before.frame_pts and after.rate == before.rate
    assert (after.width, after.height) == (W, H)
    assert packets_of(dst, "audio") == packets_of(src, "audio")
    # The faces changed, and nothing far from them did.
    a, b = frames_of(src), frames_of(dst)
    truth = face_clip[1]["faces"]
    changed = [float(np.abs(x[1][int(y):int(y + h), int(x0):int(x0 + w)].astype(int)
                            - z[1][int(y):int(y + h), int(x0):int(x0 + w)]).mean())
               for x, z, boxes in zip(a, b, truth, strict=True) for x0, y, w, h in boxes
               if x0 >= 0 and y >= 0 and x0 + w <= W and y + h <= H]
    assert changed and min(changed) > 8.0
    # Nothing left of the segments.
    assert not (out / PARTS).exists()
    # Records: the image's line, and one line per clip frame with faces, in frame order.
    lines = _records(out / "detections.jsonl")
    clip_lines = [r for r in lines if r["image"] == "sub/talk.mp4"]
    assert len(clip_lines) == before.frames  # a face in every frame of this clip
    assert [r["frame"] for r in clip_lines] == list(range(before.frames))
    for r in clip_lines:
        assert r["pts"] == pytest.approx(float(before.frame_pts[r["frame"]] * before.time_base), abs=1e-6)
        for face in r["faces"]:
            assert set(face) == {"box", "score", "track", "tracked"}
    # The face seen from the first frame to the last keeps one track id across the 4 segments.
    first = {f["track"] for f in clip_lines[0]["faces"]}
    assert all(first & {f["track"] for f in r["faces"]} for r in clip_lines)
    assert {r["image"] for r in lines} == {"sub/talk.mp4", *(p.name for p in jpgs)}


def test_blur_applies_to_every_frame_and_a_rerun_skips_the_clip(tmp_path, face_clip, capsys):
    inp = _inputs(tmp_path, face_clip)
    args = ["--blur-radius", "3", "--input-dir", str(inp), "--output-dir", str(tmp_path / "out")]
    code, text = _run(capsys, *args)
    assert code == 0, text
    dst = tmp_path / "out" / "sequential" / "sub" / "talk.mp4"
    a, b = frames_of(inp / "sub" / "talk.mp4"), frames_of(dst)
    assert len(a) == len(b)
    assert all(np.abs(x[1].astype(int) - y[1]).mean() > 1.0 for x, y in zip(a, b, strict=True))
    made = dst.stat().st_mtime_ns
    code, text = _run(capsys, *args)
    assert code == 0 and "up to date" in text
    assert dst.stat().st_mtime_ns == made


def test_location_and_device_metadata_are_removed(tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    make_clip(inp / "phone.mp4")
    code, text = _run(capsys, "--blur-radius", "2", "--input-dir", str(inp),
                      "--output-dir", str(tmp_path / "out"))
    assert code == 0, text
    dst = tmp_path / "out" / "sequential" / "phone.mp4"
    raw = dst.read_bytes()
    assert b"48.8584" not in raw and b"iPhone" not in raw and b"\xa9xyz" not in raw
    with av.open(str(dst)) as c:
        assert not {k for k in c.metadata if any(leak in k for leak in LEAKS)}
    assert video.probe(dst).rotation == video.probe(inp / "phone.mp4").rotation == 90


def test_bad_clips_fail_alone_and_leave_no_file_under_a_final_name(tmp_path, face_clip, capsys):
    inp = _inputs(tmp_path, face_clip)
    data = face_clip[0].read_bytes()
    (inp / "cut.mp4").write_bytes(data[: len(data) // 2])  # truncated
    (inp / "junk.mkv").write_bytes(b"\x1aE\xdf\xa3 not really matroska" * 40)
    make_clip(inp / "song.mp4", video=False)  # audio only
    code, text = _run(capsys, "--blur-radius", "2", "--input-dir", str(inp),
                      "--output-dir", str(tmp_path / "out"), "--summary-json",
                      str(tmp_path / "s.json"))
    assert code == 1
    summary = json.loads((tmp_path / "s.json").read_text())
    reasons = {f["image"]: f["reason"] for f in summary["failures"]}
    assert set(reasons) == {"cut.mp4", "junk.mkv", "song.mp4"}, reasons
    assert "no video stream" in reasons["song.mp4"]
    assert all("\n" not in r and "Traceback" not in r for r in reasons.values())
    out = tmp_path / "out" / "sequential"
    assert (out / "sub" / "talk.mp4").is_file()
    visible = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                     if not any(part.startswith(".") for part in p.relative_to(out).parts))
    assert visible == ["sub", "sub/talk.mp4"]


def test_a_bad_video_flag_is_one_line_and_exit_2(tmp_path, face_clip, capsys):
    inp = _inputs(tmp_path, face_clip)
    for flags, words in ((["--video-codec", "nope264"], "no encoder 'nope264'"),
                         (["--video-codec", "aac"], "not a video one"),
                         (["--segment-s", "0"], "segment-s"),
                         (["--detect-every", "0"], "detect-every"),
                         (["--video-crf", "99"], "video-crf")):
        code, text = _run(capsys, *flags, "--input-dir", str(inp), "--output-dir",
                          str(tmp_path / "out"))
        assert code == 2, (flags, text)
        assert words in text and "Traceback" not in text
        assert not (tmp_path / "out").exists()


def _job(face_model: Path, **video) -> Job:
    config = RunConfig(workload="faces", faces=FaceParams(model=face_model),
                       video=VideoParams(segment_s=0.75, **video))
    return Job.for_run(config)


def test_an_interrupted_clip_keeps_its_finished_segments_and_the_rerun_gives_the_same_file(
        tmp_path, face_clip, face_model):
    """Segments made before a run stopped are skipped by the next (their records read back),
    the rest made, and the joined file is the one an uninterrupted run writes."""
    inp = LocalStore(_inputs(tmp_path, face_clip))
    job = _job(face_model)

    def tasks(out: LocalStore, assembler: Assembler):
        items = list(inp.scan_images())
        return [p for t in plan_tasks(inp, out, job, items) for p in assembler.expand(t)]

    whole = LocalStore(tmp_path / "whole")
    assembler = Assembler(inp, whole, job)
    results = [assembler.settle(process_part(t, job)) for t in tasks(whole, assembler)]
    joined = [r for r in results if r is not None]
    assert len(joined) == 1 and joined[0].ok and joined[0].frames == int(SECONDS * FPS)

    out = LocalStore(tmp_path / "resumed")
    first = Assembler(inp, out, job)
    parts = tasks(out, first)
    assert len(parts) == 4
    for task in parts[:2]:  # then the run is stopped
        assert first.settle(process_part(task, job)) is None
    again = Assembler(inp, out, job)
    redone = [process_part(t, job) for t in tasks(out, again)]
    assert [r.skipped for r in redone] == [True, True, False, False]
    final = [again.settle(r) for r in redone][-1]
    assert final is not None and final.ok and final.line == joined[0].line
    key = "sub/talk.mp4"
    assert out.read(key) == whole.read(key)
    assert not (tmp_path / "resumed" / PARTS).exists()


def test_track_ids_continue_across_a_cut():
    box = [10.0, 10.0, 40.0, 40.0]
    seg0 = {"records": [{"frame": 0, "pts": 0.0, "faces": [{"box": box, "score": 0.9, "track": 0,
                                                         "tracked": False}]},
                      {"frame": 1, "pts": 0.1, "faces": [{"box": box, "score": 0.9, "track": 0,
                                                         "tracked": False}]}]}
    seg1 = {"records": [{"frame": 2, "pts": 0.2, "faces": [
        {"box": [200.0, 10.0, 40.0, 40.0], "score": 0.8, "track": 0, "tracked": False},
        {"box": [11.0, 10.0, 40.0, 40.0], "score": 0.9, "track": 1, "tracked": False}]}]}
    lines = [json.loads(x) for x in clip_lines("c.mp4", [seg0, seg1])]
    assert [f["track"] for f in lines[2]["faces"]] == [1, 0]  # the continuing face keeps 0
    assert all(line["image"] == "c.mp4" for line in lines)


def test_a_clips_lines_round_trip_through_the_record_file(tmp_path):
    store = LocalStore(tmp_path)
    log = RecordLog(store, "detections.jsonl", keep_existing=False)
    clip = "\n".join(json.dumps({"image": "c.mp4", "frame": i, "pts": i / 10, "faces": []},
                                sort_keys=True) for i in range(3))
    log.add("c.mp4", clip)
    log.add("a.jpg", json.dumps({"image": "a.jpg", "faces": []}, sort_keys=True))
    log.save()
    back = RecordLog(store, "detections.jsonl")
    assert back.tag("c.mp4") == log.tag("c.mp4")
    assert [f["frame"] for f in back.get("c.mp4")["frames"]] == [0, 1, 2]
    assert back.get("a.jpg") == {"image": "a.jpg", "faces": []}


def test_score_outputs_counts_the_face_frames_an_output_still_shows(tmp_path, face_clip, face_model):
    """The source itself shows every face-frame; a fully blurred clip none; a missing output
    counts as the source."""
    from parablur.workloads.faces import FaceWorkload

    src = LocalStore(_inputs(tmp_path, face_clip))
    truth = {"sub/talk.mp4": face_clip[1]}
    workload = FaceWorkload(FaceParams(model=face_model))
    same = workload.score_outputs(src, src, truth)
    assert same["exposed"] == same["face_frames"] > 0 and same["exposed_face_frames"] == 1.0
    missing = workload.score_outputs(src, LocalStore(tmp_path / "none"), truth)
    assert missing["face_frames"] == same["face_frames"] and missing["exposed_face_frames"] == 1.0
    out = tmp_path / "blurred"
    (out / "sub").mkdir(parents=True)
    info = video.probe(src.path("sub/talk.mp4"))
    segment = video.plan_segments(info, 100.0)[0]
    video.encode_segment(src.path("sub/talk.mp4"), info, segment,
                         lambda img, i, t: cv2.GaussianBlur(img, (0, 0), 12), tmp_path / "s.nut")
    video.join(src.path("sub/talk.mp4"), info, [tmp_path / "s.nut"], out / "sub" / "talk.mp4")
    hidden = workload.score_outputs(src, LocalStore(out), truth)
    assert hidden["exposed"] == 0 and hidden["face_frames"] == same["face_frames"]


STEPS = """
import numpy as np

def count_dark(image):
    return 255 - image, {"dark": int((image < 64).sum())}
"""


def test_a_users_workload_with_records_keeps_one_line_per_frame(tmp_path, face_clip, capsys,
                                                                  monkeypatch):
    from conftest import user_package

    inp = _inputs(tmp_path, face_clip)
    with user_package(tmp_path / "pkg", "clipsteps", STEPS, monkeypatch):
        code, text = _run(capsys, "--workload", "clipsteps.steps:count_dark", "--segment-s", "0.75",
                          "--input-dir", str(inp), "--output-dir", str(tmp_path / "out"))
    assert code == 0, text
    out = tmp_path / "out" / "sequential"
    records = _records(next(out.glob("*.jsonl")))
    assert [r["frame"] for r in records] == list(range(int(SECONDS * FPS)))
    assert all(r["image"] == "sub/talk.mp4" and isinstance(r["dark"], int) for r in records)
    assert not (out / PARTS).exists()


def test_a_clip_made_without_faces_is_redone_when_the_record_holds_lines_for_it(
        tmp_path, face_clip, face_model, capsys):
    """An output recorded without a line is not up to date while the record file holds lines
    for it (left by another run, stopped before it saved its own)."""
    inp = tmp_path / "in"
    inp.mkdir()
    make_clip(inp / "a.mp4")  # a pattern: no face
    args = ["--workload", "faces", "--face-model", str(face_model), "--input-dir", str(inp),
            "--output-dir", str(tmp_path / "out")]
    code, text = _run(capsys, *args)
    assert code == 0, text
    record = tmp_path / "out" / "sequential" / "detections.jsonl"
    assert not record.exists() or "a.mp4" not in record.read_text()
    stale = json.dumps({"image": "a.mp4", "frame": 0, "pts": 0.0, "faces": []}, sort_keys=True)
    record.write_text(stale + "\n")
    code, text = _run(capsys, *args)
    assert code == 0 and "1/1 images anonymized" in text, text
    assert "a.mp4" not in record.read_text()


def test_draw_boxes_draws_the_images_and_passes_over_the_clips(tmp_path, face_clip, face_model,
                                                               capsys):
    image, _ = generate_face_image(1, 400, 300, seed=2)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
    inp = _inputs(tmp_path, face_clip, photo)
    args = ["--workload", "faces", "--face-model", str(face_model), "--draw-boxes",
            "--input-dir", str(inp), "--output-dir", str(tmp_path / "out")]
    for _ in range(2):  # made, then skipped as up to date: never drawn
        code, text = _run(capsys, *args)
        assert code == 0, text
    boxes = tmp_path / "out" / "sequential-boxes"
    assert (boxes / "photo.jpg").is_file() and not (boxes / "sub").exists()


def test_a_container_that_cannot_hold_the_encoder_fails_the_clip_before_any_segment(
        tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    make_clip(inp / "a.webm", codec="libvpx-vp9", audio=False, metadata=False, rotation=0)
    make_clip(inp / "b.mp4", audio=False, metadata=False, rotation=0)
    code, text = _run(capsys, "--video-codec", "libx264", "--blur-radius", "2", "--input-dir",
                      str(inp), "--output-dir", str(tmp_path / "out"))
    assert code == 1
    assert "a.webm: encode: the webm container cannot hold libx264 video" in text
    out = tmp_path / "out" / "sequential"
    assert (out / "b.mp4").is_file() and not (out / "a.webm").exists()
    assert not (out / PARTS).exists()


def test_an_encoder_that_cannot_encode_segments_is_refused_up_front(tmp_path, face_clip, capsys):
    inp = _inputs(tmp_path, face_clip)
    code, text = _run(capsys, "--video-codec", "png", "--input-dir", str(inp), "--output-dir",
                      str(tmp_path / "out"))
    assert code == 2 and "cannot encode the segments" in text and "Traceback" not in text
    assert not (tmp_path / "out").exists()


def test_segments_of_other_parameters_go_once_the_clip_is_joined(tmp_path, face_clip, face_model):
    inp = LocalStore(_inputs(tmp_path, face_clip))
    out = LocalStore(tmp_path / "out")
    old = _job(face_model)
    stale = Assembler(inp, out, old)
    parts = [p for t in plan_tasks(inp, out, old, list(inp.scan_images())) for p in stale.expand(t)]
    stale.settle(process_part(parts[0], old))  # a run with other parameters, stopped
    assert list((tmp_path / "out" / PARTS).rglob("*.nut"))
    new = _job(face_model, crf=23)
    fresh = Assembler(inp, out, new)
    results = [fresh.settle(process_part(p, new))
               for t in plan_tasks(inp, out, new, list(inp.scan_images())) for p in fresh.expand(t)]
    assert results[-1] is not None and results[-1].ok
    assert not (tmp_path / "out" / PARTS).exists()


def test_a_segment_task_carries_only_its_frames_and_makes_what_the_whole_clip_would(
        tmp_path, face_clip, face_model, monkeypatch):
    """However long the clip, a task holds its segment's pts plus the tracking overlap; the
    segment it makes is the one made from the whole clip's description."""
    from parablur.workloads import tracking
    from parablur.workloads.video_faces import anonymize_segment, overlap_frames

    # The 3 s clip is shorter than a segment plus twice the overlap that entering and leaving
    # faces need (tracking.EDGE_EXIT_S = 1 s): a shorter reach keeps a segment's slice short.
    monkeypatch.setattr(tracking, "EDGE_EXIT_S", 0.5)

    inp = LocalStore(_inputs(tmp_path, face_clip))
    job = _job(face_model)
    assembler = Assembler(inp, LocalStore(tmp_path / "out"), job)
    parts = [p for t in plan_tasks(inp, assembler.out, job, list(inp.scan_images()))
             for p in assembler.expand(t)]
    source = inp.path("sub/talk.mp4")
    full = video.probe(source)
    overlap = overlap_frames(full)
    middle = parts[1].part
    assert len(middle.info.frame_pts) <= middle.segment.frames + 2 * overlap + 1
    first = parts[0].part
    assert len(first.info.frame_pts) == first.segment.frames + overlap + 1 < full.frames
    assert middle.info.frames == full.frames
    made = [anonymize_segment(source, info, middle.segment, tmp_path / f"{n}.nut",
                              params=job.workload.params, model=face_model)
            for n, info in (("sliced", middle.info), ("whole", full))]
    assert made[0].faces == made[1].faces and made[0].window == made[1].window
    assert (tmp_path / "sliced.nut").read_bytes() == (tmp_path / "whole.nut").read_bytes()
