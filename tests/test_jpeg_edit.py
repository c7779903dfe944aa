"""Lossless JPEG output (``parablur.jpeg_edit``) on real photos: untouched blocks keep the source's
coefficients and pixels, masked blocks are re-encoded, metadata goes, fallbacks say why."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import cv2
import jpeglib
import numpy as np
import pytest
from PIL import Image, ImageCms

from parablur import jpeg_edit
from parablur.jpeg_edit import changed_mcus, edit, read_frame
from parablur.workloads.faces import anonymize_regions

# A face-sized box in each photo, and the decoded pixels' ring that fancy chroma upsampling
# may move around a re-encoded MCU (measured: 1 px in 4:2:0 and 4:2:2; none in 4:4:4 and gray).
BOX = (101, 67, 90, 110)


def _hopper() -> bytes:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        return fh.read()


def _astronaut(params: list[int], crop=(slice(3, 500), slice(5, 506))) -> bytes:
    import skimage.data

    bgr = np.ascontiguousarray(skimage.data.astronaut()[crop][:, :, ::-1])
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85, *params])[1].tobytes()


def _camera() -> bytes:
    import skimage.data

    return cv2.imencode(".jpg", np.ascontiguousarray(skimage.data.camera()[:509, :499]),
                        [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


SF = cv2.IMWRITE_JPEG_SAMPLING_FACTOR
PHOTOS = {
    "hopper 4:2:0": (_hopper, 1),
    "astronaut 4:4:4": (lambda: _astronaut([SF, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]), 0),
    "astronaut 4:2:0": (lambda: _astronaut([SF, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]), 1),
    "astronaut 4:2:2": (lambda: _astronaut([SF, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]), 1),
    "astronaut progressive, restarts": (
        lambda: _astronaut([cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_RST_INTERVAL, 3]), 1),
    "camera gray": (_camera, 0),
}


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYCOLOR)


def _coefficients(data: bytes, tmp_path: Path) -> list[np.ndarray]:
    path = tmp_path / "c.jpg"
    path.write_bytes(data)
    jpeg = jpeglib.read_dct(str(path))
    jpeg.load()
    return [np.array(c) for c in (jpeg.Y, jpeg.Cb, jpeg.Cr) if c is not None]


def _masked(image: np.ndarray) -> np.ndarray:
    return anonymize_regions(image, [BOX], style="blur")


@pytest.mark.parametrize("name", list(PHOTOS))
def test_untouched_blocks_keep_coefficients_and_pixels(name: str, tmp_path: Path):
    make, ring = PHOTOS[name]
    source = make()
    before = _decode(source)
    after = _masked(before)
    result = edit(source, before, after, ".jpg")
    assert result.data is not None, result.note
    frame = read_frame(source)
    changed = changed_mcus(before, after, frame.mcu)
    assert result.note == {"lossless": True, "mcus_reencoded": int(changed.sum()),
                           "mcus": changed.size}
    assert 0 < changed.sum() < changed.size / 4
    # coefficients: every block of an unchanged MCU is the source's, the changed ones differ
    factors = [(1, 1)] if len(frame.sampling) == 1 else frame.sampling
    old, new = _coefficients(source, tmp_path), _coefficients(result.data, tmp_path)
    for (h, v), a, b in zip(factors, old, new, strict=True):
        blocks = np.repeat(np.repeat(changed, v, 0), h, 1)[:a.shape[0], :a.shape[1]]
        assert np.array_equal(a[~blocks], b[~blocks])
        assert not np.array_equal(a[blocks], b[blocks])
    # pixels: identical outside the changed MCUs (and the measured upsampling ring)
    out = _decode(result.data)
    mw, mh = frame.mcu
    inside = np.kron(changed, np.ones((mh, mw), bool))[:before.shape[0], :before.shape[1]]
    if ring:
        inside = cv2.dilate(inside.astype(np.uint8), np.ones((2 * ring + 1,) * 2, np.uint8)) > 0
    assert np.array_equal(out[~inside], before[~inside])
    # the masked region is anonymized: it is the workload's output, re-encoded
    x, y, w, h = BOX
    region = (slice(y + h // 4, y + 3 * h // 4), slice(x + w // 4, x + 3 * w // 4))
    assert cv2.absdiff(out[region], before[region]).mean() > 5
    assert cv2.absdiff(out[region], after[region]).mean() < 3


@pytest.mark.parametrize("sampling", [cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
                                      cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422])
def test_masks_in_partial_edge_mcus(sampling: int):
    """Masks on the corners of a 497x501 photo, whose last MCU row and column are partial."""
    source = _astronaut([SF, sampling])
    before = _decode(source)
    after = anonymize_regions(before, [(440, 430, 70, 80), (0, 0, 30, 30), (470, 0, 40, 30)])
    out = _decode(edit(source, before, after, ".jpg").data)
    frame = read_frame(source)
    changed = changed_mcus(before, after, frame.mcu)
    inside = np.kron(changed, np.ones(frame.mcu[::-1], np.uint8))[:before.shape[0], :before.shape[1]]
    assert inside[-1, -1] and inside[0, 0] and inside[0, -1]
    away = cv2.dilate(inside, np.ones((3, 3), np.uint8)) == 0
    assert np.array_equal(out[away], before[away])
    for corner in ((slice(440, None), slice(440, None)), (slice(0, 30), slice(0, 30)),
                   (slice(0, 30), slice(470, None))):
        assert cv2.absdiff(out[corner], after[corner]).mean() < 3
        assert cv2.absdiff(out[corner], before[corner]).mean() > 3


def test_ring_is_needed_with_subsampled_chroma():
    """The measured 1-pixel ring is real in 4:2:0: a decoder's upsampling reaches across MCUs."""
    source = _hopper()
    before = _decode(source)
    after = _masked(before)
    out = _decode(edit(source, before, after, ".jpg").data)
    changed = changed_mcus(before, after, (16, 16))
    inside = np.kron(changed, np.ones((16, 16), bool))[:before.shape[0], :before.shape[1]]
    assert not np.array_equal(out[~inside], before[~inside])


def _with_metadata(data: bytes) -> bytes:
    """``data`` with Exif (GPS-like maker tag), an ICC profile, XMP and a comment."""
    image = Image.open(io.BytesIO(data))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90, exif=exif, icc_profile=icc, comment=b"secret comment")
    out = buf.getvalue()
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>where</x:xmpmeta>"
    return out[:2] + b"\xff\xe1" + struct.pack(">H", len(xmp) + 2) + xmp + out[2:] + b"trailing"


@pytest.mark.parametrize("change", ["face", "nothing"])
def test_metadata_is_removed(change: str):
    source = _with_metadata(_hopper())
    before = _decode(source)
    after = _masked(before) if change == "face" else before.copy()
    result = edit(source, before, after, ".jpg")
    assert result.note["lossless"] is True
    assert (result.note["mcus_reencoded"] == 0) == (change == "nothing")
    for secret in (b"Exif", b"SecretCam", b"ICC_PROFILE", b"xmpmeta", b"secret comment", b"trailing"):
        assert secret in source and secret not in result.data
    assert not Image.open(io.BytesIO(result.data)).getexif()
    if change == "nothing":
        assert np.array_equal(_decode(result.data), before)


def test_fallbacks_say_why(tmp_path: Path):
    hopper = _hopper()
    before = _decode(hopper)
    after = _masked(before)

    png = cv2.imencode(".png", before)[1].tobytes()
    assert edit(png, before, after, ".jpg").note == {"lossless": False, "reason": "input is not a JPEG"}
    assert edit(png, before, after, ".png").note is None
    assert "not JPEG" in edit(hopper, before, after, ".png").note["reason"]
    assert edit(hopper, None, after, ".jpg").note["reason"] == "the input was decoded at reduced size"
    # a full-frame blur changes every block: encoded whole
    blurred = cv2.GaussianBlur(before, (31, 31), 8)
    assert "more than 90%" in edit(hopper, before, blurred, ".jpg").note["reason"]

    # CMYK
    buf = io.BytesIO()
    Image.open(io.BytesIO(hopper)).convert("CMYK").save(buf, "JPEG", quality=90)
    cmyk = _decode(buf.getvalue())
    result = edit(buf.getvalue(), cmyk, _masked(cmyk), ".jpg")
    assert result.data is None and "CMYK" in result.note["reason"]

    # arithmetic-coded (written by libjpeg through jpeglib)
    (tmp_path / "h.jpg").write_bytes(hopper)
    with jpeglib.version("turbo210"):  # libjpeg 6b, jpeglib's default, has no arithmetic coder
        jpeg = jpeglib.read_dct(str(tmp_path / "h.jpg"))
        jpeg.write_dct(str(tmp_path / "a.jpg"), flags=["+ARITH_CODE"])
    arith = (tmp_path / "a.jpg").read_bytes()
    decoded = _decode(arith)
    result = edit(arith, decoded, _masked(decoded), ".jpg")
    assert result.data is None and result.note["reason"] == "arithmetic-coded JPEG"


def test_rgb_coded_jpeg_falls_back_and_keeps_its_colours_when_untouched(tmp_path: Path):
    """A JPEG whose components are R, G, B (Adobe transform 0), written by libjpeg: its Adobe
    segment is kept when nothing changed; an edit would recode it as YCbCr, so it falls back."""
    image = _decode(_hopper())
    with jpeglib.version("turbo210"):
        jpeg = jpeglib.from_spatial(np.ascontiguousarray(image[:, :, ::-1]), jpeglib.JCS_RGB)
        jpeg.jpeg_color_space = jpeglib.JCS_RGB
        jpeg.write_spatial(str(tmp_path / "rgb.jpg"), qt=90)
    source = (tmp_path / "rgb.jpg").read_bytes()
    before = _decode(source)
    same = edit(source, before, before.copy(), ".jpg")
    assert same.note["lossless"] is True and np.array_equal(_decode(same.data), before)
    result = edit(source, before, _masked(before), ".jpg")
    assert result.data is None and result.note["reason"] == "RGB-coded JPEG"


def test_library_version_is_left_as_found():
    before_version = jpeglib.version.get()
    source = _hopper()
    image = _decode(source)
    edit(source, image, _masked(image), ".jpg")
    assert jpeglib.version.get() == before_version


def test_params_tag_follows_the_edit_format(monkeypatch):
    from parablur.worker import Job, params_tag

    tag = params_tag(Job())
    monkeypatch.setattr(jpeg_edit, "FORMAT_VERSION", jpeg_edit.FORMAT_VERSION + 1)
    assert params_tag(Job()) != tag


def test_worker_records_how_each_output_was_written(tmp_path: Path):
    """Through the worker: a user's workload that masks a box gets lossless output and a
    ``jpeg`` key in its record; the PNG input is encoded whole, and says so."""
    from conftest import local_task

    from parablur.worker import Job, process_image

    class Boxer:
        name, record_file = "boxer", "records.jsonl"

        def decode_factor(self, size):
            return 1

        def describe(self):
            return {}

        def __call__(self, image, full_shape=None):
            return _masked(image), {"boxes": [list(BOX)]}

    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(_with_metadata(_hopper()))
    cv2.imwrite(str(tmp_path / "in" / "b.png"), _decode(_hopper()))
    lines = {}
    for name, dst in (("a.jpg", "a.jpg"), ("b.png", "b.jpg")):
        result = process_image(local_task(tmp_path / "in" / name, tmp_path / "out" / dst), Job(Boxer()))
        assert result.ok, result.error
        lines[name] = json.loads(result.line)
    assert lines["a.jpg"]["jpeg"]["lossless"] is True and lines["a.jpg"]["boxes"] == [list(BOX)]
    assert lines["b.png"]["jpeg"] == {"lossless": False, "reason": "input is not a JPEG"}
    out = (tmp_path / "out" / "a.jpg").read_bytes()
    assert b"SecretCam" not in out
    far = (slice(400, 600), slice(300, 512))  # far from the box: the source's pixels
    assert np.array_equal(_decode(out)[far], _decode((tmp_path / "in" / "a.jpg").read_bytes())[far])


def test_faces_run_on_a_folder_of_jpegs(tmp_path: Path, face_model: Path):
    """``parablur run --workload faces``: JPEG outputs whose untouched blocks are the source's,
    each line of detections.jsonl saying how its output was written."""
    from parablur.cli import main

    inp = tmp_path / "in"
    inp.mkdir()
    sources = {"hopper.jpg": _with_metadata(_hopper()),
               "astronaut.jpg": _astronaut([cv2.IMWRITE_JPEG_PROGRESSIVE, 1], (slice(None), slice(None))),
               "camera.png": cv2.imencode(".png", _decode(_camera()))[1].tobytes()}
    for name, data in sources.items():
        (inp / name).write_bytes(data)
    assert main(["run", "--workload", "faces", "--input-dir", str(inp), "--output-dir",
                 str(tmp_path / "out"), "--face-model", str(face_model), "--quiet"]) == 0
    out = tmp_path / "out" / "sequential"
    lines = {x["image"]: x for x in map(json.loads, (out / "detections.jsonl").read_text().splitlines())}
    assert "jpeg" not in lines["camera.png"]  # PNG in, PNG out: no JPEG written, nothing to say
    for name in ("hopper.jpg", "astronaut.jpg"):
        assert len(lines[name]["faces"]) == 1
        note = lines[name]["jpeg"]
        assert note["lossless"] is True and 0 < note["mcus_reencoded"] < note["mcus"] / 4
        source, output = sources[name], (out / name).read_bytes()
        assert b"SecretCam" not in output
        before, after = _decode(source), _decode(output)
        x, y, w, h = lines[name]["faces"][0]["box"]
        assert cv2.absdiff(before[y:y + h, x:x + w], after[y:y + h, x:x + w]).mean() > 5
        # 4:2:0: an MCU is 2x2 luma blocks and one block of each chroma component
        (y0, cb0, cr0), (y1, cb1, cr1) = _coefficients(source, tmp_path), _coefficients(output, tmp_path)
        rows, cols = cb0.shape[:2]
        luma = np.pad((y0 != y1).any(axis=(2, 3)), ((0, 2 * rows - y0.shape[0]), (0, 2 * cols - y0.shape[1])))
        moved = (luma.reshape(rows, 2, cols, 2).any(axis=(1, 3)) | (cb0 != cb1).any(axis=(2, 3))
                 | (cr0 != cr1).any(axis=(2, 3)))
        assert 0 < moved.sum() <= note["mcus_reencoded"]
        # every other MCU decodes to the source's pixels, but for the 1-px upsampling ring
        inside = np.kron(moved, np.ones((16, 16), np.uint8))[:before.shape[0], :before.shape[1]]
        inside = cv2.dilate(inside, np.ones((3, 3), np.uint8)) > 0
        assert np.array_equal(before[~inside], after[~inside])


def test_a_user_function_that_masks_its_input_in_place_is_not_undone(tmp_path: Path, monkeypatch):
    """A user's function that writes into the image it is given and returns it: the JPEG edit
    must still see the masked blocks (it compares the output with the decoded input)."""
    from conftest import local_task, user_package

    from parablur.worker import Job, process_image
    from parablur.workloads.custom import CustomWorkload

    source = "def redact(image):\n    image[:200, :200] = 0\n    return image, {'redacted': 1}\n"
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(_hopper())
    with user_package(tmp_path / "pkg", "inplacesteps", source, monkeypatch):
        job = Job(CustomWorkload("inplacesteps.steps:redact"))
        result = process_image(local_task(tmp_path / "in" / "a.jpg", tmp_path / "out" / "a.jpg"), job)
    assert result.ok, result.error
    out = _decode((tmp_path / "out" / "a.jpg").read_bytes())
    assert out[:184, :184].max() < 8  # masked (JPEG noise only; chroma mixes at its edge), not the source
    note = json.loads(result.line)["jpeg"]
    assert note["lossless"] is True and note["mcus_reencoded"] > 0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_turned_photo_is_edited_in_its_stored_orientation_and_shows_as_the_source(orientation, tmp_path):
    """Every Exif orientation, on a size that is not whole MCUs (512x600, 4:2:0): the masks land
    where the upright image has them, every other block keeps its coefficients, and the output
    carries that orientation alone, so it decodes upright to the source's pixels off the masks."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x8825] = {2: 1}  # a GPS block, which must not survive
    buf = io.BytesIO()
    Image.open(io.BytesIO(_hopper())).save(buf, "JPEG", quality=90, exif=exif)
    source = buf.getvalue()
    before = _decode(source)
    assert before.shape[:2] == ((512, 600) if orientation >= 5 else (600, 512))
    after = _masked(before)
    result = edit(source, before, after, ".jpg")
    assert result.data is not None and result.note["lossless"] is True
    assert result.note.get("orientation", 1) == orientation
    out = _decode(result.data)
    assert out.shape == before.shape
    moved = np.any(out != before, axis=2)
    mask = np.any(after != before, axis=2)
    assert moved[mask].mean() > 0.5  # the mask is where the upright image has it
    far = cv2.dilate(mask.astype(np.uint8), np.ones((35, 35), np.uint8)) == 0
    assert not moved[far].any()  # blocks away from the mask decode to the source's pixels
    with Image.open(io.BytesIO(result.data)) as im:
        kept = im.getexif()
        assert kept.get(0x0112, 1) == orientation and 0x8825 not in kept
    src, dst = _coefficients(source, tmp_path), _coefficients(result.data, tmp_path)
    assert (src[0] == dst[0]).all(axis=(2, 3)).mean() > 0.9  # untouched blocks keep their coefficients


def test_a_turned_photo_over_pillows_pixel_limit_is_still_edited_upright(monkeypatch):
    """The Exif orientation is read even where Pillow refuses to open the image (over its
    pixel limit, which a caller may lower, and which ``--max-pixels`` may exceed): OpenCV turns
    such a photo, so an edit that missed the turn would put its masks in the wrong place."""
    exif = Image.Exif()
    exif[0x0112] = 3  # turned half a turn: the decoded size is the frame's
    buf = io.BytesIO()
    Image.open(io.BytesIO(_hopper())).save(buf, "JPEG", quality=90, exif=exif)
    turned = _decode(buf.getvalue())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    after = _masked(turned)
    result = edit(buf.getvalue(), turned, after, ".jpg")
    assert result.note == {"lossless": True, "mcus_reencoded": result.note["mcus_reencoded"],
                           "mcus": result.note["mcus"], "orientation": 3}
    monkeypatch.undo()
    out = _decode(result.data)
    mask = np.any(after != turned, axis=2)
    assert np.any(out != turned, axis=2)[mask].mean() > 0.5
