#!/usr/bin/env python3
"""The original study's entry point, kept for its users: ``python ParaBlur.py [flags]``.

It runs ``parablur bench`` with the same flags (--num-images, --batch-size,
--workers, --trials, --warmup, --source-url, --input-dir, --output-dir,
--blur-radius, --timeout-s, --retries, --force-download, --width, --height,
--threads-per-worker, --passes, --open-dashboard, --report-csv,
--include-dask-startup, and every other flag of ``parablur bench``).
"""

import sys
from pathlib import Path

try:
    from parablur.cli import main
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
    from parablur.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
