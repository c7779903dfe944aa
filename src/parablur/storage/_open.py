"""Choosing the store for a location: a folder, or an fsspec URL."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._retry import RetryPolicy
from .base import Store

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_url(location: str | Path) -> bool:
    """True for 'scheme://...' (s3://, gs://, az://, file://, memory://, ...), False for a plain path."""
    return not isinstance(location, Path) and bool(_URL.match(str(location)))


def open_store(location: str | Path, storage_options: Mapping[str, Any] | None = None, *,
               retry: RetryPolicy | None = None) -> Store:
    """The store for ``location``: a folder (a path or file:// URL) or any other fsspec URL.

    ``storage_options`` go to the fsspec filesystem (and are ignored for folders, so one
    ``--storage-options`` can serve a URL input and a local output). Nothing is contacted
    yet: an unknown scheme or a missing extra fails here, anything else on first use.
    """
    if not is_url(location):
        from .local import LocalStore

        return LocalStore(Path(location), retry)
    text = str(location)
    if text.lower().startswith("file://"):
        # A plain folder, so that writes keep their temporary-file-and-rename atomicity
        # (fsspec's local filesystem writes in place).
        from .local import LocalStore

        return LocalStore(Path(text[len("file://"):]), retry, by_url=True)
    from .fsspec_store import FsspecStore

    return FsspecStore(text, storage_options, retry)
