"""parablur review: the page's structure (parsed with html.parser) after real faces runs on real
photos and a real clip; what it refuses; what it never touches."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import cv2
import matplotlib
import pytest
from skimage import data as skdata

from parablur.cli import main
from parablur.review import (
    CROP_SIDE,
    NEAR_THRESHOLD,
    ORIGINALS_PREFIX,
    PAGE_ENTRIES,
    PAGE_NAME,
    REVIEW_PREFIX,
    STRIP_FRAMES,
    make_entry,
    ordered,
    render,
)

GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


class Page(HTMLParser):
    """The figures of a review page: each one's attributes, images and track strips, and the
    first text of the body."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.figures: list[dict] = []
        self.sections: list[dict] = []
        self.first_text: str | None = None
        self._in_body = False
        self._track: dict | None = None
        self._crops: list | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self._in_body = True
        elif tag == "section":
            self.sections.append({"hidden": "hidden" in a, "figures": 0})
        elif tag == "figure":
            if self.sections:
                self.sections[-1]["figures"] += 1
            self.figures.append({"attrs": a, "thumbs": [], "marks": [], "crops": [], "originals": [],
                                 "tracks": []})
        elif not self.figures:
            return
        fig = self.figures[-1] if self.figures else None
        if tag == "div" and "data-track" in a:
            self._track = {"id": a["data-track"], "original": " o" in f" {a.get('class', '')}", "imgs": []}
            fig["tracks"].append(self._track)
        elif tag == "div" and "c" in a.get("class", "").split():
            self._crops = fig["originals" if "o" in a["class"].split() else "crops"]
        elif tag == "i" and "m" in a.get("class", "").split():
            fig["marks"].append(a)
        elif tag == "img":
            if self._track is not None:
                self._track["imgs"].append(a)
            elif self._crops is not None:
                self._crops.append(a)
            else:
                fig["thumbs"].append(a)

    def handle_endtag(self, tag):
        if tag == "div":
            if self._crops is not None:
                self._crops = None
            elif self._track is not None and self._track.get("_inner"):
                self._track = None
            elif self._track is not None:
                self._track["_inner"] = True
        if tag == "figure":
            self._track = self._crops = None

    def handle_data(self, text):
        if self._in_body and self.first_text is None and text.strip():
            self.first_text = text.strip()

    def by_name(self) -> dict[str, dict]:
        return {f["attrs"]["data-image"]: f for f in self.figures}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Two real photos with a face (grace_hopper, astronaut), one without (coffee) and a tiny
    real clip with faces under a moving camera."""
    from parablur.ingestion.face_clips import generate_face_clip, write_face_clip

    folder = tmp_path_factory.mktemp("review") / "photos"
    folder.mkdir()
    shutil.copy(GRACE_HOPPER, folder / "grace_hopper.jpg")
    cv2.imwrite(str(folder / "astronaut.jpg"), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "coffee.jpg"), cv2.cvtColor(skdata.coffee(), cv2.COLOR_RGB2BGR))
    clip = generate_face_clip(1, 320, 240, seconds=1.5, fps=12, seed=5, face_min_size=40)
    write_face_clip(clip, folder / "clip.mp4", gop_s=0.75)
    return folder


def _run(photos: Path, out: Path, model: Path, *extra: str) -> None:
    assert main(["run", "--workload", "faces", "--input-dir", str(photos), "--output-dir", str(out),
                 "--face-model", str(model), "--quiet", *extra]) == 0


@pytest.fixture(scope="module")
def reviewed(photos, face_model, tmp_path_factory) -> Path:
    """A faces run with --review (the workers write the images' thumbnails)."""
    out = tmp_path_factory.mktemp("review-out") / "anon"
    _run(photos, out, face_model, "--review")
    return out / "sequential"


def _hidden(folder: Path, prefix: str) -> list[str]:
    root = folder / prefix
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg")) if root.is_dir() else []


def test_run_review_has_the_workers_write_the_thumbnails_of_images(reviewed: Path):
    made = _hidden(reviewed, REVIEW_PREFIX)
    for name in ("grace_hopper.jpg", "astronaut.jpg", "coffee.jpg"):
        assert any(m.startswith(name + ".") and not m.endswith(".crops.jpg") for m in made), name
    assert any(m.startswith("grace_hopper.jpg.") and m.endswith(".crops.jpg") for m in made)
    assert not any(m.startswith("coffee.jpg.") and m.endswith(".crops.jpg") for m in made)  # no face


def test_review_page_every_output_doubtful_first_crops_and_strips(reviewed: Path, capsys):
    before = set(_hidden(reviewed, REVIEW_PREFIX))
    assert main(["review", str(reviewed.parent), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "review.html: 4 outputs" in out and "1 thumbnailed here" in out  # the clip alone
    made = set(_hidden(reviewed, REVIEW_PREFIX)) - before
    assert made and all(m.startswith("clip.mp4.") for m in made)
    page = Page((reviewed / PAGE_NAME).read_text(encoding="utf-8"))
    figures = page.by_name()
    assert set(figures) == {"grace_hopper.jpg", "astronaut.jpg", "coffee.jpg", "clip.mp4"}
    doubtful = [f["attrs"]["data-image"] for f in page.figures if "d" in f["attrs"]["class"].split()]
    order = [f["attrs"]["data-image"] for f in page.figures]
    assert order[:len(doubtful)] == doubtful and "coffee.jpg" in doubtful  # no face found
    assert "no face found" in figures["coffee.jpg"]["attrs"]["data-doubts"]
    assert page.first_text.startswith("ParaBlur review")  # no warning: no faces shown
    records: dict[str, list] = {}
    for line in (reviewed / "detections.jsonl").read_text().splitlines():
        item = json.loads(line)
        records.setdefault(item["image"], []).append(item)
    for name in ("grace_hopper.jpg", "astronaut.jpg"):
        fig, faces = figures[name], records[name][0]["faces"]
        assert len(faces) >= 1
        assert len(fig["marks"]) == len(faces) == len(fig["crops"])  # each mask outlined and cropped
        assert fig["originals"] == []
        for i, crop in enumerate(fig["crops"]):
            src = reviewed / crop["src"]
            assert src.is_file()
            assert f"-{i * CROP_SIDE}px" in crop["style"]
            assert cv2.imread(str(src)).shape[:2] == (CROP_SIDE, CROP_SIDE * len(faces))
        thumb = fig["thumbs"][0]
        assert (reviewed / thumb["src"]).is_file() and thumb["loading"] == "lazy"
    clip = figures["clip.mp4"]
    tracks = {f["track"] for item in records["clip.mp4"] for f in item["faces"]}
    assert [int(t["id"]) for t in clip["tracks"]] == sorted(tracks)
    for strip in clip["tracks"]:
        assert 1 <= len(strip["imgs"]) <= STRIP_FRAMES and not strip["original"]
        assert all((reviewed / img["src"]).is_file() for img in strip["imgs"])


def test_show_originals_warns_first_and_its_crops_go_with_the_next_page(reviewed: Path, photos: Path,
                                                                        capsys):
    assert main(["review", str(reviewed), "--show-originals", "--input-dir", str(photos),
                 "--quiet"]) == 0
    page = Page((reviewed / PAGE_NAME).read_text(encoding="utf-8"))
    assert page.first_text.startswith("This page shows faces")
    figures = page.by_name()
    for name in ("grace_hopper.jpg", "astronaut.jpg"):
        fig = figures[name]
        assert len(fig["originals"]) == len(fig["crops"]) >= 1
        assert all(img["src"].startswith(ORIGINALS_PREFIX + "/") and (reviewed / img["src"]).is_file()
                   for img in fig["originals"])
    assert figures["coffee.jpg"]["originals"] == []
    assert any(t["original"] for t in figures["clip.mp4"]["tracks"])
    assert _hidden(reviewed, ORIGINALS_PREFIX)
    # Made again without the flag: no originals on the page, and none left in the output folder.
    assert main(["review", str(reviewed), "--quiet"]) == 0
    page = Page((reviewed / PAGE_NAME).read_text(encoding="utf-8"))
    assert page.first_text.startswith("ParaBlur review")
    assert all(f["originals"] == [] and not any(t["original"] for t in f["tracks"]) for f in page.figures)
    assert not (reviewed / ORIGINALS_PREFIX).exists()


def test_review_makes_the_missing_thumbnails_after_a_run_without_review(photos, face_model, tmp_path,
                                                                        reviewed, capsys):
    _run(photos, tmp_path / "anon", face_model)
    out = tmp_path / "anon" / "sequential"
    assert not (out / REVIEW_PREFIX).exists()
    for name in ("grace_hopper.jpg", "astronaut.jpg", "coffee.jpg", "clip.mp4"):  # --review changes no byte
        assert (out / name).read_bytes() == (reviewed / name).read_bytes()
    capsys.readouterr()
    _run(photos, tmp_path / "anon", face_model, "--review")  # nor what a rerun skips
    assert "all 4 images" in capsys.readouterr().out
    assert main(["review", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "making the thumbnails of 4 of 4 outputs here" in captured.err
    page = Page((out / PAGE_NAME).read_text(encoding="utf-8"))
    for fig in page.figures:
        for img in fig["thumbs"] + fig["crops"]:
            assert (out / img["src"]).is_file()


def test_review_refuses_what_is_not_a_parablur_output_and_a_page_it_did_not_write(
        reviewed: Path, photos: Path, tmp_path: Path, capsys):
    assert main(["review", str(photos)]) == 2  # the user's own photos: refused, nothing written
    err = capsys.readouterr().err
    assert "is not a ParaBlur output" in err and len(err.strip().splitlines()) == 1
    assert not (photos / PAGE_NAME).exists() and not (photos / REVIEW_PREFIX).exists()
    assert main(["review", str(tmp_path / "missing")]) == 2
    assert main(["review", str(reviewed), "--show-originals"]) == 2  # no --input-dir
    assert "give both" in capsys.readouterr().err
    mine = reviewed.parent.parent / "mine"
    mine.mkdir()
    (mine / "sequential").mkdir()
    shutil.copy(reviewed / ".parablur-output", mine / "sequential" / ".parablur-output")
    shutil.copy(reviewed / "detections.jsonl", mine / "sequential" / "detections.jsonl")
    (mine / "sequential" / PAGE_NAME).write_text("<html>my own notes</html>")
    capsys.readouterr()
    assert main(["review", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err and len(err.strip().splitlines()) == 1
    assert (mine / "sequential" / PAGE_NAME).read_text() == "<html>my own notes</html>"
    assert not (mine / "sequential" / REVIEW_PREFIX).exists()


def test_review_needs_a_workload_with_records(photos: Path, tmp_path: Path, capsys):
    assert main(["run", "--review", "--input-dir", str(photos), "--output-dir", str(tmp_path / "x"),
                 "--quiet"]) == 2
    assert "needs --workload faces" in capsys.readouterr().err


def test_doubtful_faces_by_score_look_tracking_and_none():
    params = {"threshold": 0.5}
    face = {"box": [0, 0, 10, 10], "score": 0.9}
    near = {"box": [0, 0, 10, 10], "score": 0.5 + NEAR_THRESHOLD - 0.01}
    ordinary = make_entry("a.jpg", {"faces": [face, dict(face, look="pyramid")], "params": params}, "t")
    assert ordinary.doubts == []
    assert make_entry("b.jpg", {"faces": [near], "params": params}, "t").doubts == ["near threshold"]
    assert make_entry("c.jpg", {"faces": [dict(face, look="close-up")], "params": params}, "t").doubts \
        == ["second look"]
    assert make_entry("d.jpg", {"faces": [dict(face, look="edge")], "params": params}, "t").doubts \
        == ["found past the edge"]
    assert make_entry("e.jpg", {"faces": [], "params": params}, "t").doubts == ["no face found"]
    clip = {"frames": [{"frame": 0, "faces": [dict(face, track=1, tracked=False)]},
                       {"frame": 1, "faces": [dict(face, track=1, tracked=True)]}]}
    entry = make_entry("f.mp4", clip, "t")
    assert entry.doubts == ["kept by tracking"] and [t.id for t in entry.tracks] == [1]
    names = [e.name for e in ordered([ordinary, make_entry("e.jpg", {"faces": []}, "t"), entry])]
    assert names == ["e.jpg", "f.mp4", "a.jpg"]


@pytest.mark.slow
def test_review_after_a_processes_run_as_a_new_user_would(photos: Path, face_model: Path, tmp_path: Path):
    """``parablur run --workload faces --review`` in its own process, with pool workers writing the
    thumbnails, then ``parablur review``: the page names every output and needs only the clip's."""
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "parablur", *args], capture_output=True, text=True,
                              timeout=300)

    run = cli("run", "--workload", "faces", "--review", "--executor", "processes", "--workers", "2",
              "--input-dir", str(photos), "--output-dir", str(tmp_path / "anon"), "--face-model",
              str(face_model), "--quiet")
    assert run.returncode == 0, run.stderr
    out = tmp_path / "anon" / "processes"
    assert len([m for m in _hidden(out, REVIEW_PREFIX) if not m.startswith("clip.mp4.")]) == 5
    done = cli("review", str(tmp_path / "anon"), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "making the thumbnails of 1 of 4 outputs" in done.stderr
    assert set(Page((out / PAGE_NAME).read_text(encoding="utf-8")).by_name()) == {
        "grace_hopper.jpg", "astronaut.jpg", "coffee.jpg", "clip.mp4"}


def test_a_large_page_is_paged_and_only_the_first_page_loads_its_images():
    """10,000 entries: every one on the page once, the doubtful first across the pages; the
    pages after the first are hidden and name their images by data-src (the script loads them)."""
    face = {"box": [10, 10, 40, 40], "score": 0.9, "mask_scale": 1.3}
    entries = ordered(make_entry(f"img_{i:05d}.jpg", {"faces": [dict(face, score=0.55 if i % 7 == 0 else 0.9)]
                                                      if i % 5 else [], "size": [200, 100],
                                                      "params": {"threshold": 0.5}}, "t")
                      for i in range(10_000))
    text = render(entries, title="big", show_originals=False, made_at="now")
    page = Page(text)
    names = [f["attrs"]["data-image"] for f in page.figures]
    assert sorted(names) == [f"img_{i:05d}.jpg" for i in range(10_000)]
    doubtful = sum(1 for f in page.figures if "d" in f["attrs"]["class"].split())
    assert doubtful == sum(1 for i in range(10_000) if i % 5 == 0 or i % 7 == 0)
    assert all("d" in f["attrs"]["class"].split() for f in page.figures[:doubtful])
    assert [s["figures"] for s in page.sections] == [PAGE_ENTRIES] * (10_000 // PAGE_ENTRIES) + (
        [10_000 % PAGE_ENTRIES] if 10_000 % PAGE_ENTRIES else [])
    assert [s["hidden"] for s in page.sections] == [False] + [True] * (len(page.sections) - 1)
    first = page.figures[:PAGE_ENTRIES]
    later = page.figures[PAGE_ENTRIES:]
    assert all("src" in img and "data-src" not in img for f in first for img in f["thumbs"] + f["crops"])
    assert all("data-src" in img and "src" not in img for f in later for img in f["thumbs"] + f["crops"])
    assert len(text) / 10_000 < 1500  # bytes per entry


def test_review_waits_for_no_run_it_refuses_one_under_way(reviewed: Path, capsys):
    """A run holding the output's lock: review is one line, exit 2, and writes nothing."""
    from parablur.storage import LocalStore

    page = (reviewed / PAGE_NAME).read_bytes() if (reviewed / PAGE_NAME).exists() else None
    with LocalStore(reviewed).lock("parablur run"):
        assert main(["review", str(reviewed), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "parablur run" in err
    assert ((reviewed / PAGE_NAME).read_bytes() if (reviewed / PAGE_NAME).exists() else None) == page
