"""What a fetch asks for: the URL of each image, and the metadata a new dataset records."""

from __future__ import annotations

from pathlib import Path

from ..config import CLIP_FALLBACK, FetchConfig
from ..errors import DatasetError


def read_url_list(path: Path) -> list[str]:
    """The URLs of a url-list file: one per line, blank lines and '#' comments ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read url list {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise DatasetError(f"cannot read url list {path}: it is not UTF-8 text") from None
    urls = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            urls.append(line)
    if not urls:
        raise DatasetError(f"url list {path} has no URLs")
    return urls


CLIP_SOURCE = "faces-video (generated, never downloaded)"


def plan(config: FetchConfig) -> tuple[list[str | None], str]:
    """The URL of each image (image *i* from ``urls[i]``) and the source they are named by.

    faces-video clips are never downloaded (the image source gives photos): no URL at all.
    """
    if config.fallback == CLIP_FALLBACK:
        return [None] * config.num_images, CLIP_SOURCE
    if config.url_list is not None:
        urls = read_url_list(config.url_list)[: config.num_images]
        return urls, f"url list {config.url_list}"
    return [config.source_url] * config.num_images, config.source_url


def fetch_meta(config: FetchConfig) -> dict:
    """The settings a new dataset is made with, as its manifest's metadata records them."""
    return new_meta(config, *plan(config))


def new_meta(config: FetchConfig, urls: list[str | None], source: str) -> dict:
    """``fetch_meta`` of a plan already made (``plan(config)``)."""
    meta = {"source": source, "num_images": len(urls), "width": config.width,
            "height": config.height, "seed": config.seed, "fallback": config.fallback}
    if config.fallback == CLIP_FALLBACK:
        meta.update(clip_seconds=config.clip_seconds, clip_fps=config.clip_fps)
    return meta
