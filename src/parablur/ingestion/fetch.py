"""Building (or reusing) the input dataset wherever it lives: the entry of every fetch.

The dataset's location is opened as a ``Store`` (``storage.open_store``). A store that
offers a local folder for work in place (a plain folder: ``Store.local_folder``) gets its
dataset built there (``folder_fetch``); any other (an object store, a ``file://`` URL) is
filled through a temporary staging folder and uploaded, manifest last (``store_fetch``).
Either way a folder or prefix ParaBlur did not fill is the user's, used read-only.
"""

from __future__ import annotations

from ..config import FetchConfig
from ..storage import Store, open_store
from .folder_fetch import build_folder
from .plan import read_url_list
from .store_fetch import fetch_to_store
from .summary import FetchSummary

__all__ = ["FetchSummary", "fetch_dataset", "fetch_into", "read_url_list"]


def fetch_dataset(config: FetchConfig, *, progress: bool = True) -> FetchSummary:
    """Make ``config.input_dir`` a complete dataset and describe what was done."""
    return fetch_into(open_store(config.input_dir, config.storage_options), config,
                      progress=progress)


def fetch_into(store: Store, config: FetchConfig, *, progress: bool = True) -> FetchSummary:
    """Make ``store`` a complete dataset as ``config`` asks: in place in its local folder, if
    it offers one, else through a staging folder. Only a dataset ParaBlur created is written."""
    folder = store.local_folder()
    if folder is not None:
        return build_folder(config, folder, progress=progress)
    return fetch_to_store(config, store, progress=progress)
