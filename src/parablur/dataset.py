"""Finding the images of a dataset folder."""

from __future__ import annotations

from pathlib import Path

from .errors import DatasetError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
# Video clips, found beside images by every command that takes images (``parablur.clips``).
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"})
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


def is_video_key(key: str) -> bool:
    """True for a key or file name with a video suffix."""
    name = key.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in VIDEO_SUFFIXES


def is_image_name(path: Path) -> bool:
    """True for a visible file whose suffix is an image or video suffix ParaBlur reads."""
    return path.suffix.lower() in MEDIA_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Every image file below ``folder``, recursively, in a stable (sorted) order.

    Hidden files and folders (temporary downloads are hidden) are skipped.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DatasetError(f"input folder not found: {folder}")
    if not folder.is_dir():
        raise DatasetError(f"input path is not a folder: {folder}")
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and is_image_name(path):
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())
