"""Lossless JPEG output: keep the source's 8x8 blocks that the workload did not change.

When a JPEG input is written as JPEG, only the MCUs (the minimum coded units: 16x16 pixels
in 4:2:0, 16x8 in 4:2:2, 8x8 in 4:4:4 and grayscale) in which the workload changed a pixel
are re-encoded, with the source's quantization tables and chroma subsampling; every other
block keeps the source's DCT coefficients, so it decodes to the source's pixels (a decoder's
fancy chroma upsampling can move the one row or column of pixels that borders a re-encoded
MCU: see docs/faces.md, "Lossless JPEG output"). No forward DCT of the whole image is made:

1. the changed MCUs are found by comparing the workload's output with the decoded input;
2. each connected group of them is cut from the output (MCU-aligned) and encoded by libjpeg
   (jpeglib) with the source's tables and sampling factors; its coefficients are read back;
3. those coefficients replace the source's in the changed MCUs, and the coefficients are
   written (Huffman coding only: lossless) with no metadata segment.

An output with no changed MCU is the source's own coded data with its metadata segments
dropped. A photo with an Exif orientation is edited in its stored orientation (the decoded
image turned back), and its output keeps an Exif segment with that orientation alone, so it
shows as the source does: no turn in the DCT domain is needed, whatever its size. Where the
edit cannot apply (``edit`` says why) the caller encodes the output whole.
Workload-agnostic: nothing here knows what changed the pixels.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from .imageinfo import SCAN_END, jpeg_end

# Part of every output's parameters tag (``worker.params_tag``): raise it when the bytes this
# module writes for the same input and parameters change.
FORMAT_VERSION = 2
# Above this share of changed MCUs the output is encoded whole (a full-frame blur): the edit
# would re-encode nearly everything anyway, at a higher cost than one encode.
MAX_CHANGED_SHARE = 0.9
# libjpeg build of jpeglib used for coefficient reading and writing (the fastest measured).
LIBJPEG = "turbo210"

_LIBRARY = threading.Lock()
_JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})
# Segments kept in an output made from the source's coded data: tables, frame, scans, restart
# interval, and Adobe APP14 (its colour transform flag says how to read the components).
_KEEP = frozenset({0xC4, 0xDB, 0xDD, 0xDA, 0xCC})
_SOF_HUFFMAN = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}
_SOF_OTHER = {0xC3: "lossless (SOF3)", 0xC5: "hierarchical", 0xC6: "hierarchical",
              0xC7: "hierarchical", 0xC9: "arithmetic-coded", 0xCA: "arithmetic-coded",
              0xCB: "arithmetic-coded (lossless)", 0xCD: "hierarchical arithmetic-coded",
              0xCE: "hierarchical arithmetic-coded", 0xCF: "hierarchical arithmetic-coded"}


@dataclass(frozen=True)
class Frame:
    """What a JPEG's start-of-frame segment says: the coding, precision, size and components."""

    sof: int
    precision: int
    width: int
    height: int
    sampling: tuple[tuple[int, int], ...]  # (horizontal, vertical) factor of each component

    @property
    def mcu(self) -> tuple[int, int]:
        """The MCU's (width, height) in pixels (one 8x8 block for a single component)."""
        if len(self.sampling) == 1:
            return 8, 8
        return 8 * max(h for h, _ in self.sampling), 8 * max(v for _, v in self.sampling)


@dataclass(frozen=True)
class Edited:
    """``edit``'s answer: the output bytes (None: encode the output whole) and the record of
    how it was written (None: neither the input nor the output is a JPEG)."""

    data: bytes | None
    note: dict | None


def _fallback(reason: str) -> Edited:
    return Edited(None, {"lossless": False, "reason": reason})


def edit(source: bytes | None, before: np.ndarray | None, after: np.ndarray,
         out_suffix: str) -> Edited:
    """The output for ``after`` (the workload's result on ``before``, the decoded ``source``)
    as the JPEG edit of ``source``, or why it cannot be one.

    ``before`` is None when the input was decoded smaller than the output (nothing to compare).
    """
    source_jpeg = source is not None and source[:3] == b"\xff\xd8\xff"
    out_jpeg = out_suffix.lower() in _JPEG_SUFFIXES
    if not out_jpeg:
        return _fallback(f"output is {out_suffix or 'not a file type'}, not JPEG") if source_jpeg \
            else Edited(None, None)
    if not source_jpeg:
        return _fallback("input is not a JPEG")
    assert source is not None
    frame = read_frame(source)
    orientation = exif_orientation(source)
    why = _unsupported(frame, orientation)
    if why is not None:
        return _fallback(why)
    assert frame is not None
    if before is None:
        return _fallback("the input was decoded at reduced size")
    if before.shape != after.shape or before.dtype != np.uint8 or after.dtype != np.uint8:
        return _fallback("the output's size or depth differs from the decoded input's")
    before, after = stored(before, orientation), stored(after, orientation)
    if (before.shape[1], before.shape[0]) != (frame.width, frame.height):
        return _fallback("the decoded input's size differs from the JPEG frame's")
    if _mostly_changed(before, after, frame.mcu):
        return _fallback(f"the workload changed more than {MAX_CHANGED_SHARE:.0%} of the MCUs")
    changed = changed_mcus(before, after, frame.mcu)
    count = int(changed.sum())
    if count > MAX_CHANGED_SHARE * changed.size:
        return _fallback(f"the workload changed more than {MAX_CHANGED_SHARE:.0%} of the MCUs")
    note = {"lossless": True, "mcus_reencoded": count, "mcus": int(changed.size)}
    if orientation not in (None, 1):
        note["orientation"] = orientation
    if count == 0:
        return Edited(_with_orientation(strip_metadata(source), orientation), note)
    try:
        data = _rewrite(source, after, changed, frame)
    except Exception as exc:  # libjpeg refused what OpenCV decoded (corrupt data): encode it whole
        return _fallback(f"libjpeg could not edit it: {str(exc).strip() or type(exc).__name__}")
    if isinstance(data, str):
        return _fallback(data)
    return Edited(_with_orientation(data, orientation), note)


def _header_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) of the payload of each segment of JPEG ``data`` with a length, up
    to its first scan (``end`` as the length field says, which may pass the data's end)."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF or data[i + 1] == 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xDA, 0xD9):
            return
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 2
            continue
        end = i + 2 + ((data[i + 2] << 8) | data[i + 3])
        yield marker, i + 4, end
        i = end


def read_frame(data: bytes) -> Frame | None:
    """The start-of-frame segment of JPEG ``data`` (None when there is none before a scan)."""
    for marker, start, end in _header_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            seg = data[start:end]
            if len(seg) < 6:
                return None
            count = seg[5]
            sampling = tuple((seg[7 + 3 * k] >> 4, seg[7 + 3 * k] & 15) for k in range(count)
                             if 8 + 3 * k < len(seg))
            return Frame(marker, seg[0], (seg[3] << 8) | seg[4], (seg[1] << 8) | seg[2], sampling)
    return None


def _unsupported(frame: Frame | None, orientation: int | None) -> str | None:
    """Why a JPEG with this ``frame`` and Exif ``orientation`` cannot be edited block by block
    (None: it can)."""
    if frame is None:
        return "no frame header found before the image data"
    if frame.sof not in _SOF_HUFFMAN:
        return f"{_SOF_OTHER.get(frame.sof, 'unknown coding')} JPEG"
    if frame.precision != 8:
        return f"{frame.precision}-bit JPEG"
    if len(frame.sampling) not in (1, 3):
        count = len(frame.sampling)
        return f"{count}-component JPEG" + (" (CMYK or YCCK)" if count == 4 else "")
    if any((h, v) != (1, 1) for h, v in frame.sampling[1:]):
        return "chroma sampled at more than one sample per MCU"
    if orientation not in (None, *_STORED):
        return f"Exif orientation {orientation} (not one of 1 to 8)"
    return None


# How each Exif orientation's upright image (as OpenCV decodes it) goes back to the stored one.
_STORED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, -1),
}


def stored(image: np.ndarray, orientation: int | None) -> np.ndarray:
    """The upright ``image`` (Exif ``orientation`` applied, as decoded) in the file's stored
    orientation, where its blocks are: no turn in the DCT domain is needed."""
    return np.ascontiguousarray(_STORED[orientation or 1](image))


def _with_orientation(data: bytes, orientation: int | None) -> bytes:
    """JPEG ``data`` (no metadata) with an Exif segment holding only ``orientation`` when it is
    not 1, so that the output shows as the source does."""
    if orientation in (None, 1):
        return data
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()  # "Exif\0\0" and the TIFF structure, as an APP1 segment holds them
    return data[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:]


def exif_orientation(data: bytes) -> int | None:
    """The Exif orientation tag of JPEG ``data`` (None without one): its first Exif APP1
    segment before the image data, read by Pillow's Exif parser alone (opening the image
    would refuse one over Pillow's pixel limit, and its turn would go unseen)."""
    from PIL import Image

    for marker, start, end in _header_segments(data):
        if marker == 0xE1 and data[start:start + 6] == b"Exif\x00\x00":
            exif = Image.Exif()
            try:
                exif.load(data[start:end])
            except Exception:  # unreadable Exif: the decoder ignores it too
                return None
            value = exif.get(0x0112)
            return int(value) if isinstance(value, int) else None
    return None


def changed_mcus(before: np.ndarray, after: np.ndarray, mcu: tuple[int, int]) -> np.ndarray:
    """A (rows, cols) bool map of the MCUs in which ``after`` differs from ``before``.

    The difference (channels side by side on each row, zero-padded to whole MCUs) is
    max-pooled over each MCU's rows, then over its columns.
    """
    h, w = before.shape[:2]
    mw, mh = mcu
    channels = 1 if before.ndim == 2 else before.shape[2]
    diff = cv2.absdiff(before, after).reshape(h, w * channels)
    rows, cols = -(-h // mh), -(-w // mw)
    if rows * mh != h or cols * mw != w:
        diff = cv2.copyMakeBorder(diff, 0, rows * mh - h, 0, (cols * mw - w) * channels,
                                  cv2.BORDER_CONSTANT, value=0)
    band = diff.reshape(rows, mh, cols * mw * channels).max(axis=1)
    return band.reshape(rows, cols, mw * channels).max(axis=2) > 0


def _mostly_changed(before: np.ndarray, after: np.ndarray, mcu: tuple[int, int]) -> bool:
    """A cheap look first (every 8th MCU row): nearly every MCU changed, as by a full-frame blur."""
    rows = np.arange(0, before.shape[0], 8 * mcu[1])
    bands = [slice(r, min(r + mcu[1], before.shape[0])) for r in rows]
    sample = changed_mcus(np.concatenate([before[b] for b in bands]),
                          np.concatenate([after[b] for b in bands]), mcu)
    return bool(sample.mean() > MAX_CHANGED_SHARE) and sample.size > 0


def strip_metadata(source: bytes) -> bytes:
    """``source`` with only its tables, frame, scans and Adobe segment: no Exif, XMP, ICC,
    comment, thumbnail or bytes after its end."""
    end = jpeg_end(source) or len(source)
    out = [b"\xff\xd8"]
    i = 2
    while i + 4 <= end:
        if source[i] != 0xFF or source[i + 1] == 0xFF:
            i += 1
            continue
        marker = source[i + 1]
        if marker == 0xD9:
            break
        length = (source[i + 2] << 8) | source[i + 3]
        seg_end = i + 2 + length
        if marker == 0xDA:  # a scan: its data runs to the next marker that is not RST or stuffing
            found = SCAN_END.search(source, seg_end, end)
            j = end - 2 if found is None else found.start()
            out.append(source[i:j])
            i = j
            continue
        keep = (marker in _KEEP or 0xC0 <= marker <= 0xCF
                or (marker == 0xEE and source[i + 4:i + 9] == b"Adobe"))
        if keep:
            out.append(source[i:seg_end])
        i = seg_end
    out.append(b"\xff\xd9")
    return b"".join(out)


def _components(jpeg) -> list[np.ndarray]:
    return [c for c in (jpeg.Y, jpeg.Cb, jpeg.Cr) if c is not None]


def _rewrite(source: bytes, after: np.ndarray, changed: np.ndarray, frame: Frame) -> bytes | str:
    """The source's coefficients with the ``changed`` MCUs re-encoded from ``after``; a reason
    string when the library reads the source otherwise than ``frame`` says."""
    import jpeglib

    mw, mh = frame.mcu
    factors = [(1, 1)] if len(frame.sampling) == 1 else list(frame.sampling)
    # jpeglib's library choice is the process's: one edit at a time sets it, and restores it.
    with _LIBRARY, tempfile.TemporaryDirectory(prefix="parablur-jpeg-") as tmp, jpeglib.version(LIBJPEG):
        src_path, crop_path, out_path = (os.path.join(tmp, n) for n in ("s.jpg", "c.jpg", "o.jpg"))
        with open(src_path, "wb") as fh:
            fh.write(source)
        src = jpeglib.read_dct(src_path)
        src.load()
        gray = len(factors) == 1
        space = str(src.jpeg_color_space)  # jpeglib's colour spaces compare equal by channel count
        if space != ("JCS_GRAYSCALE" if gray else "JCS_YCbCr"):
            return f"{space.removeprefix('JCS_')}-coded JPEG"
        coefs = _components(src)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(changed.astype(np.uint8), connectivity=8)
        boxes = [tuple(int(v) for v in stats[label, :4]) for label in range(1, count)]
        # Every group's crop (whole MCUs, edges replicated as libjpeg pads an image) stacked in
        # one image: one encode and one read for all of them.
        width = max(cw for _, _, cw, _ in boxes) * mw
        crops, tops, top = [], [], 0
        for cx, cy, cw, ch in boxes:
            crop = after[cy * mh:min(frame.height, (cy + ch) * mh), cx * mw:min(frame.width, (cx + cw) * mw)]
            crops.append(cv2.copyMakeBorder(crop, 0, ch * mh - crop.shape[0], 0, width - crop.shape[1],
                                            cv2.BORDER_REPLICATE))
            tops.append(top)
            top += ch
        stack = np.concatenate(crops)
        pixels = stack[:, :, None] if gray else cv2.cvtColor(stack, cv2.COLOR_BGR2RGB)
        part = jpeglib.from_spatial(np.ascontiguousarray(pixels),
                                    jpeglib.JCS_GRAYSCALE if gray else jpeglib.JCS_RGB)
        part.samp_factor = src.samp_factor
        part.write_spatial(crop_path, qt=src.qt, quant_tbl_no=src.quant_tbl_no)
        new = jpeglib.read_dct(crop_path)
        new.load()
        for label, (cx, cy, cw, ch), at in zip(range(1, count), boxes, tops, strict=True):
            mask = labels[cy:cy + ch, cx:cx + cw] == label
            for (h, v), old, fresh in zip(factors, coefs, _components(new), strict=True):
                r0, c0 = cy * v, cx * h
                r1, c1 = min(old.shape[0], (cy + ch) * v), min(old.shape[1], (cx + cw) * h)
                blocks = np.repeat(np.repeat(mask, v, axis=0), h, axis=1)[:r1 - r0, :c1 - c0]
                region = fresh[at * v:at * v + r1 - r0, :c1 - c0]
                if region.shape[:2] != blocks.shape:
                    return "the library's block layout differs from the frame's"
                target = old[r0:r1, c0:c1]
                target[blocks] = region[blocks]
        # Written from the arrays alone (no source file: libjpeg would decode it all again),
        # with the source's tables and sampling factors and no marker segment.
        src.content, src.markers = None, []
        src.write_dct(out_path)
        with open(out_path, "rb") as fh:
            return fh.read()
