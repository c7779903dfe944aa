#!/usr/bin/env python3
"""The blur engines measured: speed and accuracy per method, end to end per image, codecs per format.

    python benchmarks/engines.py                     # 2000x2000 images, 7 interleaved repetitions
    python benchmarks/engines.py --reps 9 --out engines.json
    python benchmarks/engines.py --calibrate         # the curves behind the fast engine's constants

On one thread (cv2.setNumThreads(1)), in interleaved repetitions (the order of
the methods rotates every repetition, so drift in the machine's speed favours
none), on generated scene and noise images and on real photos (a mosaic of
500x500 crops of the photos that ship in matplotlib's and scikit-image's
wheels, at their native detail), all 2000x2000:

1. blur methods on decoded images: median time, PSNR and max abs diff against
   the exact engine's output of the same input (the fast engine from a reduced
   JPEG decode against the exact engine on the full decode of the same file);
2. end to end per image (read the file, decode - reduced where the engine
   allows -, blur, encode JPEG quality 92, write), exact against fast, with the
   stage medians and images per second per core;
3. decode per format (JPEG, PNG, WebP inputs) and encoder settings for a
   blurred output: size, time, and whether the decoded pixels equal today's
   setting's (JPEG 92 baseline, PNG compression 1, WebP 92).

Times are medians of wall-clock seconds (CPU seconds beside them: the machine is
shared); ratios are computed within one run. Speed is never asserted here.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import lru_cache, partial
from pathlib import Path

try:
    import parablur  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cv2
import matplotlib
import numpy as np

from parablur import accuracy
from parablur.config import BlurParams, kernel_size
from parablur.engines import decode_reduced, get_engine
from parablur.engines import fast as fast_module
from parablur.environment import snapshot
from parablur.files import write_atomic
from parablur.imageinfo import image_size
from parablur.ingestion.generate import generate_image
from parablur.worker import decode, encode

SIGMA = 10.0
EXACT = get_engine("exact")
FAST = get_engine("fast")
STAGES = ("read", "decode", "blur", "encode", "write")


def real_photos() -> list[np.ndarray]:
    """The photos that ship in matplotlib's wheel and (test extra) scikit-image's, as BGR."""
    photos = [cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))]
    try:
        from skimage import data as skdata

        photos += [cv2.cvtColor(getattr(skdata, n)(), cv2.COLOR_RGB2BGR)
                   for n in ("astronaut", "coffee", "chelsea", "rocket")]
    except ImportError:  # scikit-image is in the test extra; without it only one photo
        pass
    return photos


def photo_mosaic(size: int, seed: int) -> np.ndarray:
    """A size x size BGR mosaic of 500x500 crops of real photos, at their native detail."""
    photos = real_photos()
    rng = np.random.default_rng(seed)
    tile = 500
    out = np.empty((size, size, 3), np.uint8)
    for y in range(0, size, tile):
        for x in range(0, size, tile):
            p = photos[int(rng.integers(len(photos)))]
            p = cv2.resize(p, (max(p.shape[1], tile), max(p.shape[0], tile)), interpolation=cv2.INTER_CUBIC)
            oy, ox = int(rng.integers(p.shape[0] - tile + 1)), int(rng.integers(p.shape[1] - tile + 1))
            h, w = min(tile, size - y), min(tile, size - x)
            out[y:y + h, x:x + w] = p[oy:oy + h, ox:ox + w]
    return out


def make_image(kind: str, index: int, size: int) -> np.ndarray:
    return photo_mosaic(size, index) if kind == "photos" else generate_image(index, size, size, kind=kind)


def jpeg_bytes(image: np.ndarray, quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(wall s, CPU s, result) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def med(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


# --- 1. blur methods -----------------------------------------------------------------------------


def naive_multirate(factor: int, interpolation: int) -> Callable[[np.ndarray], np.ndarray]:
    """The issue's first measurements: area 1/f, blur sigma/f, interpolate; no border or variance care."""
    def run(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        small = cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), SIGMA / factor, borderType=cv2.BORDER_REFLECT_101)
        return cv2.resize(small, (w, h), interpolation=interpolation)
    return run


def sep_filter_f32(image: np.ndarray) -> np.ndarray:
    """Stretch candidate: the exact engine's 61-tap kernel in float32 through cv2.sepFilter2D."""
    k = cv2.getGaussianKernel(61, SIGMA, cv2.CV_32F)
    return cv2.sepFilter2D(image, -1, k, k, borderType=cv2.BORDER_REFLECT_101)


@lru_cache(maxsize=4)
def exact_kernel(sigma: float) -> np.ndarray:
    """The exact engine's own 1-D kernel (OpenCV quantizes it to 1/256 for 8-bit images), from an impulse."""
    k = kernel_size(sigma)
    impulse = np.zeros((3, 2 * k + 1), np.uint8)
    impulse[:, k] = 255
    taps = cv2.GaussianBlur(impulse, (k, 1), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)[1]
    taps = np.rint(taps[k - k // 2: k + k // 2 + 1].astype(np.float64) * 256 / 255)  # 255*m/256 -> m
    assert taps.sum() == 256, taps.sum()
    return (taps / 256).astype(np.float32).reshape(-1, 1)


def sep_filter_exact_kernel(image: np.ndarray) -> np.ndarray:
    """Stretch candidate: the exact engine's quantized kernel, in float32 through cv2.sepFilter2D."""
    k = exact_kernel(SIGMA)
    return cv2.sepFilter2D(image, -1, k, k, borderType=cv2.BORDER_REFLECT_101)


def scipy_correlate(image: np.ndarray) -> np.ndarray:
    """Stretch candidate: the same kernel through scipy.ndimage (mode 'mirror' is BORDER_REFLECT_101)."""
    from scipy import ndimage

    k = cv2.getGaussianKernel(61, SIGMA, cv2.CV_64F).ravel()
    out = ndimage.correlate1d(image.astype(np.float32), k, axis=0, mode="mirror")
    out = ndimage.correlate1d(out, k, axis=1, mode="mirror")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def blur_methods(with_scipy: bool) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    methods = {
        "exact (cv2.GaussianBlur 61x61)": lambda im: EXACT.blur(im, SIGMA),
        "fast engine": lambda im: FAST.blur(im, SIGMA),
        "cv2.stackBlur 41": lambda im: cv2.stackBlur(im, (41, 41)),
        "naive area/2 + sigma 5 + linear": naive_multirate(2, cv2.INTER_LINEAR),
        "naive area/4 + sigma 2.5 + linear": naive_multirate(4, cv2.INTER_LINEAR),
        "naive area/8 + sigma 1.25 + cubic": naive_multirate(8, cv2.INTER_CUBIC),
        "stretch: sepFilter2D float32 kernel": sep_filter_f32,
        "stretch: sepFilter2D exact's 8-bit kernel": sep_filter_exact_kernel,
    }
    if with_scipy:
        methods["stretch: scipy.ndimage correlate1d"] = scipy_correlate
    return methods


def measure_blurs(images: dict[str, np.ndarray], reps: int, with_scipy: bool) -> dict:
    """Median blur times and accuracy against exact, per dataset and method."""
    methods = blur_methods(with_scipy)
    reduced_name = "fast engine from a 1/4 JPEG decode"
    inputs = {}
    for kind, image in images.items():
        data = jpeg_bytes(image)
        full = decode(data, ".jpg")
        factor = FAST.reduced_decode_factor(SIGMA, 1, image_size(data))
        red = decode_reduced(data, factor)
        inputs[kind] = (full, red)
    names = [*methods, reduced_name]
    times = {(k, m): ([], []) for k in images for m in names}
    acc: dict[tuple[str, str], tuple[float, float]] = {}
    reference = {k: EXACT.blur(full, SIGMA) for k, (full, _) in inputs.items()}
    for r in range(reps):
        for kind, (full, red) in inputs.items():
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                if name == reduced_name and red is None:  # too small for a reduced decode
                    continue
                if name == reduced_name:
                    call = partial(FAST.blur_from_reduced, red.image, red.full_shape, SIGMA)
                else:
                    call = partial(methods[name], full)
                wall, cpu, out = timed(call)
                times[(kind, name)][0].append(wall)
                times[(kind, name)][1].append(cpu)
                if (kind, name) not in acc:
                    acc[(kind, name)] = (accuracy.psnr(out, reference[kind]),
                                         accuracy.max_abs_diff(out, reference[kind]))
    rows = []
    for kind in images:
        ex = med(times[(kind, names[0])][0])
        for name in names:
            if (kind, name) not in acc:
                continue
            w, c = times[(kind, name)]
            p, d = acc[(kind, name)]
            rows.append({"dataset": kind, "method": name, "wall_ms": 1e3 * med(w), "cpu_ms": 1e3 * med(c),
                         "speed_vs_exact": ex / med(w), "psnr_db": p, "max_abs_diff": d})
    return {"rows": rows, "factor": fast_module.factor_for(SIGMA, 1, (2000, 2000)),
            "reduced_sigma": fast_module.reduced_sigma(SIGMA, 1, fast_module.factor_for(SIGMA))}


# --- 2. end to end -------------------------------------------------------------------------------


def process(engine_name: str, src: Path, dst: Path) -> dict[str, tuple[float, float]]:
    """One image through read, decode, blur, encode (JPEG 92), write; (wall, CPU) per stage."""
    engine = get_engine(engine_name)
    params = BlurParams(sigma=SIGMA)
    stages: dict[str, tuple[float, float]] = {}
    w, c, data = timed(src.read_bytes)
    stages["read"] = (w, c)

    def dec():
        factor = engine.reduced_decode_factor(params.sigma, params.passes, image_size(data))
        red = decode_reduced(data, factor)
        return red if red is not None else decode(data, src.suffix)

    w, c, image = timed(dec)
    stages["decode"] = (w, c)
    if isinstance(image, np.ndarray):
        w, c, out = timed(lambda: engine.blur(image, params.sigma, params.passes))
    else:
        w, c, out = timed(lambda: engine.blur_from_reduced(image.image, image.full_shape, params.sigma,
                                                           params.passes))
    stages["blur"] = (w, c)
    w, c, encoded = timed(lambda: encode(out, dst.suffix, params))
    stages["encode"] = (w, c)
    w, c, _ = timed(lambda: write_atomic(dst, encoded, durable=False))
    stages["write"] = (w, c)
    return stages


def measure_end_to_end(files: dict[str, list[Path]], out_dir: Path, reps: int) -> dict:
    engines = ("exact", "fast")
    samples = {(k, e): {s: ([], []) for s in STAGES} for k in files for e in engines}
    totals = {(k, e): ([], []) for k in files for e in engines}
    for r in range(reps):
        for kind, paths in files.items():
            for e in (engines if r % 2 == 0 else engines[::-1]):
                for src in paths:
                    st = process(e, src, out_dir / e / src.name)
                    for s, (w, c) in st.items():
                        samples[(kind, e)][s][0].append(w)
                        samples[(kind, e)][s][1].append(c)
                    totals[(kind, e)][0].append(sum(w for w, _ in st.values()))
                    totals[(kind, e)][1].append(sum(c for _, c in st.values()))
    rows = []
    for kind in files:
        ref = {}
        for e in engines:
            wall, cpu = med(totals[(kind, e)][0]), med(totals[(kind, e)][1])
            ref[e] = (wall, cpu)
            rows.append({"dataset": kind, "engine": e, "wall_ms": 1e3 * wall, "cpu_ms": 1e3 * cpu,
                         "images_per_s_per_core": 1 / wall,
                         "stages_wall_ms": {s: 1e3 * med(samples[(kind, e)][s][0]) for s in STAGES},
                         "stages_cpu_ms": {s: 1e3 * med(samples[(kind, e)][s][1]) for s in STAGES}})
        rows[-1]["ratio_wall"] = ref["exact"][0] / ref["fast"][0]
        rows[-1]["ratio_cpu"] = ref["exact"][1] / ref["fast"][1]
    return {"rows": rows}


def fast_array(data: bytes) -> np.ndarray:
    """The fast engine's output for encoded input ``data``, the way ``process`` makes it."""
    red = decode_reduced(data, FAST.reduced_decode_factor(SIGMA, 1, image_size(data)))
    if red is None:
        return FAST.blur(decode(data, ".jpg"), SIGMA)
    return FAST.blur_from_reduced(red.image, red.full_shape, SIGMA)


def output_accuracy(files: dict[str, list[Path]], out_dir: Path) -> dict:
    """Fast against exact: as arrays before encoding, and as the written JPEGs decoded.

    The written files also differ by JPEG's own error, measured here as the exact
    engine's decoded file against the array it encoded.
    """
    res = {}
    for kind, paths in files.items():
        arrays, written, own = [], [], []
        for p in paths:
            data = p.read_bytes()
            exact = EXACT.blur(decode(data, ".jpg"), SIGMA)
            arrays.append((fast_array(data), exact))
            exact_file = decode((out_dir / "exact" / p.name).read_bytes(), ".jpg")
            written.append((decode((out_dir / "fast" / p.name).read_bytes(), ".jpg"), exact_file))
            own.append((exact_file, exact))
        res[kind] = {name: vars(accuracy.compare(pairs))
                     for name, pairs in (("arrays", arrays), ("written_files", written),
                                         ("jpeg_own_error", own))}
    return res


# --- 3. codecs -----------------------------------------------------------------------------------

ENCODER_SETTINGS = {
    ".jpg": {
        "quality 92 (today)": [cv2.IMWRITE_JPEG_QUALITY, 92],
        "quality 92 optimize": [cv2.IMWRITE_JPEG_QUALITY, 92, cv2.IMWRITE_JPEG_OPTIMIZE, 1],
        "quality 92 progressive": [cv2.IMWRITE_JPEG_QUALITY, 92, cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
        "quality 92 optimize+progressive": [cv2.IMWRITE_JPEG_QUALITY, 92, cv2.IMWRITE_JPEG_OPTIMIZE, 1,
                                            cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
    },
    ".png": {
        "compression 1 (today)": [cv2.IMWRITE_PNG_COMPRESSION, 1],
        "compression 0": [cv2.IMWRITE_PNG_COMPRESSION, 0],
        "compression 3": [cv2.IMWRITE_PNG_COMPRESSION, 3],
        "compression 6": [cv2.IMWRITE_PNG_COMPRESSION, 6],
        "compression 1, strategy RLE": [cv2.IMWRITE_PNG_COMPRESSION, 1,
                                        cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE],
        "compression 1, strategy FILTERED": [cv2.IMWRITE_PNG_COMPRESSION, 1,
                                             cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_FILTERED],
        "compression 1, strategy HUFFMAN_ONLY": [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
                                                 cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY],
        "compression 3, strategy RLE": [cv2.IMWRITE_PNG_COMPRESSION, 3,
                                        cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE],
    },
    ".webp": {  # OpenCV exposes only the quality (and lossless mode) of libwebp
        "quality 92 (today)": [cv2.IMWRITE_WEBP_QUALITY, 92],
        "quality 90": [cv2.IMWRITE_WEBP_QUALITY, 90],
    },
}
if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.10: choose libpng's row filters
    ENCODER_SETTINGS[".png"].update({
        "compression 1, filter SUB": [cv2.IMWRITE_PNG_COMPRESSION, 1,
                                      cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB],
        "compression 1, strategy RLE, filter SUB": [
            cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
            cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB],
    })


def encode_with(suffix: str, image: np.ndarray, options: list[int]) -> np.ndarray:
    ok, buf = cv2.imencode(suffix, image, options)
    assert ok
    return buf


def measure_codecs(images: dict[str, np.ndarray], reps: int) -> dict:
    """Decode time per input format; encode size and time per setting for a blurred output."""
    decode_rows, encode_rows = [], []
    for kind, image in images.items():
        blurred = FAST.blur(image, SIGMA)
        inputs = {".jpg": jpeg_bytes(image), ".png": cv2.imencode(".png", image)[1].tobytes(),
                  ".webp": cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 92])[1].tobytes()}
        jpg = inputs[".jpg"]
        variants = {f"{s} full": partial(decode, d, s) for s, d in inputs.items()}
        for f in (2, 4, 8):
            variants[f".jpg 1/{f} (DCT scaling)"] = partial(decode_reduced, jpg, f)
        enc = {(s, n): partial(encode_with, s, blurred, o)
               for s, settings in ENCODER_SETTINGS.items() for n, o in settings.items()}
        dt = {k: ([], []) for k in variants}
        et = {k: ([], []) for k in enc}
        for r in range(reps):
            for k in list(variants)[r % len(variants):] + list(variants)[:r % len(variants)]:
                w, c, _ = timed(variants[k])
                dt[k][0].append(w)
                dt[k][1].append(c)
            for k in list(enc)[r % len(enc):] + list(enc)[:r % len(enc)]:
                w, c, _ = timed(enc[k])
                et[k][0].append(w)
                et[k][1].append(c)
        for k, (w, c) in dt.items():
            size = len(inputs[k.split()[0]]) if k.endswith("full") else len(jpg)
            decode_rows.append({"dataset": kind, "input": k, "bytes": size, "wall_ms": 1e3 * med(w),
                                "cpu_ms": 1e3 * med(c)})
        for s, settings in ENCODER_SETTINGS.items():
            base = None
            for n in settings:
                buf = enc[(s, n)]()
                pixels = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
                if base is None:
                    base = (len(buf), pixels)
                w, c = et[(s, n)]
                encode_rows.append({"dataset": kind, "format": s, "setting": n, "bytes": len(buf),
                                    "size_vs_today": len(buf) / base[0], "wall_ms": 1e3 * med(w),
                                    "cpu_ms": 1e3 * med(c),
                                    "same_pixels_as_today": bool(np.array_equal(pixels, base[1])),
                                    "psnr_vs_input_db": accuracy.psnr(pixels, blurred)})
    return {"decode": decode_rows, "encode": encode_rows}


# --- calibration ---------------------------------------------------------------------------------


def border_stripes(height: int, width: int) -> np.ndarray:
    img = np.full((height, width, 3), (255, 0, 0), np.uint8)
    img[:, :3], img[:5, :], img[:, -6:], img[-2:, :] = (0, 0, 255), (0, 255, 255), 255, (0, 255, 0)
    img[height // 3: height // 3 + 7, :] = 0
    img[:, width // 2: width // 2 + 4] = 0
    return img


def calibrate() -> None:
    """The curves behind MIN_SIGMA and MIN_REDUCED_DECODE_SIDE, printed."""
    print("\nfast against exact by factor and total sigma, worst PSNR dB / max abs diff on white noise "
          "(600x600, seeds 5 and 6) | on the real photos at their own size:")
    noise = [generate_image(s, 600, 600, kind="noise") for s in (5, 6)]
    photos = real_photos()
    for f, sigmas in {2: (5, 6, 7, 8), 4: (8, 9, 10, 12), 8: (12, 14, 16, 20, 25)}.items():
        cells = []
        for s in sigmas:
            res = []
            for group in (noise, photos):
                pairs = [(fast_module.blur_full(v, f, s), EXACT.blur(v, s)) for v in group]
                a = accuracy.compare(pairs)
                res.append(f"{a.worst_psnr_db:.2f}/{a.max_abs_diff:.0f}")
            cells.append(f"sigma {s}: {' | '.join(res)}")
        print(f"  factor {f} (chosen from sigma >= {fast_module.MIN_SIGMA[f]}): " + ", ".join(cells))
    print("\nreduced JPEG decode of saturated stripes along every border, by side (reduced pixels):")
    for f, sigma in ((2, 7.0), (4, 10.0), (8, 16.0)):
        cells = []
        for reduced_side in (96, 128, 192, 256):
            side = reduced_side * f
            data = jpeg_bytes(border_stripes(side, side))
            full = decode(data, ".jpg")
            red = decode_reduced(data, f)
            out = fast_module.blur_reduced(red.image, red.full_shape, f, sigma)
            ref = EXACT.blur(full, sigma)
            cells.append(f"{reduced_side}: {accuracy.psnr(out, ref):.2f} dB "
                         f"max {accuracy.max_abs_diff(out, ref):.0f}")
        print(f"  factor {f}, sigma {sigma}: " + ", ".join(cells))


# --- report --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--images", type=int, default=2, help="input files per dataset for end to end")
    ap.add_argument("--no-scipy", action="store_true", help="skip the scipy.ndimage candidate")
    ap.add_argument("--calibrate", action="store_true", help="print the calibration curves and stop")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args()
    cv2.setNumThreads(1)  # one core: images per second per core
    env = snapshot()
    print(f"machine: {env['cpu_model']}, {env['logical_cores']} logical cores, {platform.platform()}")
    print(f"software: Python {env['python_version']}, OpenCV {env['opencv_version']}, numpy {np.__version__}")
    if args.calibrate:
        calibrate()
        return 0
    try:
        import scipy  # noqa: F401
        with_scipy = not args.no_scipy
    except ImportError:
        with_scipy = False
    kinds = ("scene", "noise", "photos")
    images = {k: make_image(k, 0, args.size) for k in kinds}
    print(f"\nsigma {SIGMA}, {args.size}x{args.size}, {args.reps} interleaved repetitions, one thread; "
          f"fast factor {fast_module.factor_for(SIGMA, 1, (args.size, args.size))}, "
          f"reduced decode factor {FAST.reduced_decode_factor(SIGMA, 1, (args.size, args.size))}")

    blurs = measure_blurs(images, args.reps, with_scipy)
    print("\n1. blur (decoded input in memory); accuracy against exact on the same input")
    print(f"  {'dataset':7} {'method':42} {'wall ms':>8} {'cpu ms':>8} {'x exact':>8} "
          f"{'PSNR dB':>8} {'max':>5}")
    for r in blurs["rows"]:
        p = "-" if r["method"].startswith("exact") else f"{r['psnr_db']:.2f}"
        d = "-" if r["method"].startswith("exact") else f"{r['max_abs_diff']:.0f}"
        print(f"  {r['dataset']:7} {r['method']:42} {r['wall_ms']:8.1f} {r['cpu_ms']:8.1f} "
              f"{r['speed_vs_exact']:8.2f} {p:>8} {d:>5}")

    with tempfile.TemporaryDirectory(prefix="parablur-engines-") as tmp:
        root = Path(tmp)
        files = {}
        for k in kinds:
            files[k] = []
            for i in range(args.images):
                path = root / "in" / f"{k}_{i}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(jpeg_bytes(images[k] if i == 0 else make_image(k, i, args.size)))
                files[k].append(path)
        e2e = measure_end_to_end(files, root / "out", args.reps)
        out_acc = output_accuracy(files, root / "out")
    print("\n2. end to end per image (read, decode, blur, encode JPEG 92, write), median ms")
    print(f"  {'dataset':7} {'engine':6} {'total':>7} {'cpu':>7} " + " ".join(f"{s:>7}" for s in STAGES)
          + f" {'img/s/core':>10} {'ratio':>6}")
    for r in e2e["rows"]:
        ratio = f"{r['ratio_wall']:6.2f}" if "ratio_wall" in r else ""
        print(f"  {r['dataset']:7} {r['engine']:6} {r['wall_ms']:7.1f} {r['cpu_ms']:7.1f} "
              + " ".join(f"{r['stages_wall_ms'][s]:7.1f}" for s in STAGES)
              + f" {r['images_per_s_per_core']:10.2f} {ratio}")
    print("  fast against exact, PSNR dB (worst image) / max abs diff:")
    labels = {"arrays": "blurred arrays, before encoding", "written_files": "the written JPEGs, decoded",
              "jpeg_own_error": "JPEG 92's own error (exact file vs its array)"}
    for k, groups in out_acc.items():
        for g, label in labels.items():
            a = groups[g]
            print(f"    {k:7} {label:46} {a['psnr_db']:6.2f} ({a['worst_psnr_db']:.2f}) / "
                  f"{a['max_abs_diff']:.0f}  [{a['images']} images]")

    codecs = measure_codecs(images, args.reps)
    print(f"\n3a. decode per input format ({args.size}x{args.size}), median ms")
    for r in codecs["decode"]:
        print(f"  {r['dataset']:7} {r['input']:26} {r['bytes'] / 1e6:7.2f} MB {r['wall_ms']:7.1f} "
              f"(cpu {r['cpu_ms']:6.1f})")
    print("\n3b. encoding a blurred output per setting: size, time, same pixels as today's setting")
    for r in codecs["encode"]:
        print(f"  {r['dataset']:7} {r['format']:5} {r['setting']:34} {r['bytes'] / 1e6:7.3f} MB "
              f"({r['size_vs_today']:5.3f}x) {r['wall_ms']:7.1f} ms (cpu {r['cpu_ms']:6.1f}) "
              f"same pixels: {'yes' if r['same_pixels_as_today'] else 'no'}  "
              f"PSNR vs its input {r['psnr_vs_input_db']:.1f} dB")
    if args.out:
        payload = {"environment": env, "sigma": SIGMA, "size": args.size, "reps": args.reps,
                   "blur": blurs, "end_to_end": e2e, "output_accuracy": out_acc, "codecs": codecs}
        write_atomic(args.out, json.dumps(payload, indent=2, default=str).encode())
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
