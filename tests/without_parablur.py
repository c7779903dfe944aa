"""A `dask worker --preload` module: the worker process cannot import parablur.

As on a machine where ParaBlur was never installed, whatever this test machine's
editable install and PYTHONPATH say.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder


class _NoParaBlur(MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "parablur" or fullname.startswith("parablur."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


for _name in [n for n in sys.modules if n == "parablur" or n.startswith("parablur.")]:
    del sys.modules[_name]
sys.meta_path.insert(0, _NoParaBlur())
