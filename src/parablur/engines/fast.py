"""The fast engine: a multirate Gaussian that stays within 50 dB PSNR of the exact engine.

A Gaussian of sigma 10 passes almost nothing above 1/60 cycles per pixel, so the
image is averaged down by a factor ``f`` (or decoded at 1/f by libjpeg's DCT
scaling), blurred there, and interpolated back (INTER_LINEAR). What it takes to
stay close to the exact engine, measured against it:

- variance, not sigma, is matched: the exact kernel is truncated at 3 sigma
  (variance 0.977 sigma^2), ``passes`` passes add their variances, and the area
  average ((f^2-1)/12) and the linear interpolation (f^2/6 + 1/12, averaged over
  output phases) add f^2/4 between them, which the reduced blur leaves out;
- borders: the exact engine reflects about its first and last pixel
  (BORDER_REFLECT_101). A full image is reflected at full resolution (only its
  border strips are gathered) before it is averaged down; a reduced decode is
  reflected about those pixels' fractional positions at 1/f (they lie inside the
  first and last reduced pixel, not on a reduced pixel centre). Reflecting the
  reduced image about its own edge pixels instead gave differences of 14 to 39
  at the borders;
- alignment: reduced pixel ``i`` is the average of full pixels [i*f, (i+1)*f);
  sides that are not multiples of ``f`` are completed by reflection and the
  interpolated image is cut back, never stretched;
- rounding: only the first 2x2 average is rounded (OpenCV's fast path); the
  rest runs in float32 up to one rounding before the interpolation. Rounding
  every halving biased the result by +1/8 per halving (-0.5 to -2 dB).

The factor is chosen from sigma, passes and the image's size: the largest of
8, 4, 2 whose calibrated minimum sigma (``MIN_SIGMA``) the blur reaches, on an
image at least ``MIN_REDUCED_SIDE`` reduced pixels across; otherwise 1, and the
fast engine is the exact one. A JPEG is decoded at that 1/f when it is at least
``MIN_REDUCED_DECODE_SIDE`` reduced pixels across (1024 px for 1/4).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..config import kernel_size
from .exact import gaussian_blur

#: What the fast engine is held to: PSNR against the exact engine's output of the same input.
TARGET_PSNR_DB = 50.0
#: Headroom kept on the hardest content measured (uniform white noise, the study's "noise"
#: images, and photos' sharp edges at 1/8); photos and scenes at 1/2 and 1/4 stay higher.
MARGIN_DB = 2.0
#: Smallest total blur, sigma * sqrt(passes), per factor: the hardest content stays at
#: TARGET_PSNR_DB + MARGIN_DB with max abs diff <= 4 (``benchmarks/engines.py --calibrate``).
#: White noise binds 2 and 4 (at 1/2 and sigma 6, 64-px-wide noise falls to 51.2 dB); photos
#: bind 8 (at sigma 12, 51.2 dB and max abs diff 6 to 9 at edges, from the interpolation).
MIN_SIGMA = {8: 16.0, 4: 9.0, 2: 7.0}
#: Narrower images, in reduced pixels, are mostly border: they use a smaller factor.
MIN_REDUCED_SIDE = 16
#: A reduced decode only for images at least this many reduced pixels across: detail finer
#: than a block along a border is averaged before it can be reflected (saturated stripes
#: 1 to 5 px wide along every border: >= 51.5 dB at this side, 47.8 dB at 75 reduced px).
MIN_REDUCED_DECODE_SIDE = 256
#: The reduced kernel reaches this many sigmas each side.
_TRUNCATE = 4.0


@functools.lru_cache(maxsize=64)
def exact_variance(sigma: float) -> float:
    """Variance (px^2) of the exact engine's kernel: a Gaussian truncated to ``kernel_size(sigma)``."""
    k = kernel_size(sigma)
    g = cv2.getGaussianKernel(k, sigma, cv2.CV_64F).ravel()
    x = np.arange(k) - (k - 1) / 2
    return float(np.sum(g * x * x))


def factor_for(sigma: float, passes: int = 1, size: tuple[int, int] | None = None) -> int:
    """The reduction factor for this blur, for an image of ``size`` (width, height) if known."""
    total = sigma * math.sqrt(passes)
    for f, least in MIN_SIGMA.items():
        if total >= least and (size is None or min(size) >= MIN_REDUCED_SIDE * f):
            return f
    return 1


def decode_factor_for(sigma: float, passes: int, size: tuple[int, int] | None) -> int:
    """The 1/f size at which an image of ``size`` (width, height) may be decoded: 1 unless it is large."""
    f = factor_for(sigma, passes, size)
    return f if size is not None and min(size) >= MIN_REDUCED_DECODE_SIDE * f else 1


def reduced_sigma(sigma: float, passes: int, factor: int) -> float:
    """Sigma (reduced pixels) that brings the whole chain to the exact engine's variance."""
    return math.sqrt((passes * exact_variance(sigma) - factor * factor / 4) / (factor * factor))


def _kernel(sigma: float, passes: int, factor: int) -> np.ndarray:
    s = reduced_sigma(sigma, passes, factor)
    radius = math.ceil(_TRUNCATE * s)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / s) ** 2)
    return (g / g.sum()).astype(np.float32)


def _work_type(dtype: np.dtype) -> type:
    return np.float64 if dtype == np.float64 else np.float32


def _to_dtype(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint8:  # rounds and saturates in one pass (the values are never negative)
        return cv2.convertScaleAbs(a)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        a = np.clip(np.rint(a), info.min, info.max)
    return a.astype(dtype)


def reflect_index(n: np.ndarray, length: int) -> np.ndarray:
    """Indices of ``n`` in an axis of ``length`` extended by BORDER_REFLECT_101, as often as needed."""
    if length == 1:
        return np.zeros_like(n)
    m = np.mod(n, 2 * (length - 1))
    return np.where(m < length, m, 2 * (length - 1) - m)


def _halve(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` x ``factor`` blocks (sides multiples of ``factor``), in float after the first 2x2.

    OpenCV averages 2x2 blocks on a fast path, several times faster than a direct
    1/4 or 1/8 INTER_AREA; only that first, full-size step is rounded.
    """
    work = _work_type(image.dtype)
    while factor > 1:
        h, w = image.shape[:2]
        image = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA).astype(work, copy=False)
        factor //= 2
    return image


def _decimate_padded(image: np.ndarray, factor: int, pad: int) -> np.ndarray:
    """``image`` reflected (BORDER_REFLECT_101) by ``pad * factor`` pixels, averaged down by ``factor``.

    The interior is averaged in place and only the four border strips are
    reflected and averaged apart: no full-size padded copy is made (unless a side
    is not a multiple of ``factor``).
    """
    h, w = image.shape[:2]
    rp, cp = -h % factor, -w % factor
    edge = pad * factor
    if h <= rp + edge or w <= cp + edge:  # narrower than the padding: reflect it whole, repeatedly
        rows = reflect_index(np.arange(-edge, h + rp + edge), h)
        cols = reflect_index(np.arange(-edge, w + cp + edge), w)
        return _halve(image[rows][:, cols], factor)
    reflect = cv2.BORDER_REFLECT_101
    inner = cv2.copyMakeBorder(image, 0, rp, 0, cp, reflect) if rp or cp else image
    top = cv2.copyMakeBorder(image[:edge + 1], edge, 0, edge, edge + cp, reflect)[:edge]
    bottom = cv2.copyMakeBorder(image[h - 1 - rp - edge:], 0, rp + edge, edge, edge + cp, reflect)[-edge:]
    left = cv2.copyMakeBorder(image[:, :edge + 1], 0, rp, edge, 0, reflect)[:, :edge]
    right = cv2.copyMakeBorder(image[:, w - 1 - cp - edge:], 0, rp, 0, cp + edge, reflect)[:, -edge:]
    small = _halve(inner, factor)
    sh, sw = small.shape[:2]
    out = np.empty((sh + 2 * pad, sw + 2 * pad) + small.shape[2:], small.dtype)
    out[pad:pad + sh, pad:pad + sw] = small
    out[:pad] = _halve(top, factor)
    out[pad + sh:] = _halve(bottom, factor)
    out[pad:pad + sh, :pad] = _halve(left, factor)
    out[pad:pad + sh, pad + sw:] = _halve(right, factor)
    return out


def _fold(n: np.ndarray, small: int, full: int, factor: int) -> np.ndarray:
    """Reduced positions that pad index ``n``: the full image reflected about its end pixels.

    Full pixel x sits at reduced position (x - (f-1)/2) / f; reflecting about full
    pixels 0 and full-1 (repeatedly, with period 2*(full-1)) and clamping to the
    reduced samples gives where to interpolate.
    """
    lo = -(factor - 1) / (2 * factor)
    span = (full - 1) / factor
    if span == 0:
        return np.zeros(n.shape)
    t = np.mod(n - lo, 2 * span)
    t = np.where(t > span, 2 * span - t, t)
    return np.clip(lo + t, 0, small - 1)


def _pad_reduced(small: np.ndarray, pad: int, full_shape: tuple[int, int], factor: int) -> np.ndarray:
    """A reduced image padded by ``pad``, each pad pixel interpolated linearly at its ``_fold`` position."""
    h, w = small.shape[:2]
    out = np.empty((h + 2 * pad, w + 2 * pad) + small.shape[2:], _work_type(small.dtype))
    out[pad:pad + h, pad:pad + w] = small
    n = np.concatenate([np.arange(-pad, 0), np.arange(pad)])
    for axis, size, full in ((1, w, full_shape[1]), (0, h, full_shape[0])):
        n[pad:] = np.arange(size, size + pad)
        q = _fold(n, size, full, factor)
        i0 = np.floor(q).astype(np.intp)
        i1 = np.minimum(i0 + 1, size - 1)
        t = np.expand_dims((q - i0).astype(out.dtype), tuple(range(1, out.ndim - axis)))
        dst = n + pad
        if axis == 1:
            rows = out[pad:pad + h]
            rows[:, dst] = rows[:, i0 + pad] * (1 - t) + rows[:, i1 + pad] * t
        else:
            out[dst] = out[i0 + pad] * (1 - t) + out[i1 + pad] * t
    return out


def reduced_shape(full_shape: tuple[int, int], factor: int) -> tuple[int, int]:
    """(height, width) of a ``full_shape`` image reduced by ``factor`` (partial blocks count)."""
    return -(-full_shape[0] // factor), -(-full_shape[1] // factor)


def _blur_up(padded: np.ndarray, kernel: np.ndarray, full_shape: tuple[int, int], factor: int,
             dtype: np.dtype) -> np.ndarray:
    """Blur a padded reduced image, drop the padding and interpolate back to ``full_shape``."""
    pad = kernel.size // 2
    blurred = cv2.sepFilter2D(padded, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT_101)
    blurred = _to_dtype(blurred[pad:blurred.shape[0] - pad, pad:blurred.shape[1] - pad], dtype)
    sh, sw = blurred.shape[:2]
    out = cv2.resize(blurred, (sw * factor, sh * factor), interpolation=cv2.INTER_LINEAR)
    h, w = full_shape[:2]
    if out.shape[:2] != (h, w):
        out = np.ascontiguousarray(out[:h, :w])
    return out


def blur_full(image: np.ndarray, factor: int, sigma: float, passes: int = 1) -> np.ndarray:
    """Blur a full-resolution image at 1/``factor`` scale, its borders reflected at full resolution."""
    kernel = _kernel(sigma, passes, factor)
    padded = _decimate_padded(image, factor, kernel.size // 2)
    return _blur_up(padded, kernel, image.shape[:2], factor, image.dtype)


def blur_reduced(small: np.ndarray, full_shape: tuple[int, int], factor: int, sigma: float,
                 passes: int = 1) -> np.ndarray:
    """Blur a 1/``factor`` image of a ``full_shape`` one and interpolate it back to full size."""
    h, w = full_shape[:2]
    if small.shape[:2] != reduced_shape((h, w), factor):
        raise ValueError(f"a {small.shape[1]}x{small.shape[0]} image is not {w}x{h} reduced by {factor}")
    kernel = _kernel(sigma, passes, factor)
    pad = kernel.size // 2
    padded = _pad_reduced(small, pad, (h, w), factor)
    return _blur_up(padded, kernel, (h, w), factor, small.dtype)


@dataclass(frozen=True)
class FastEngine:
    """Multirate Gaussian: average down, blur at the reduced scale, interpolate back."""

    name: str = "fast"

    def blur(self, image: np.ndarray, sigma: float, passes: int = 1) -> np.ndarray:
        """The blur of ``image`` within the accuracy target (the exact blur itself when the factor is 1)."""
        f = factor_for(sigma, passes, (image.shape[1], image.shape[0]))
        if f == 1:
            return gaussian_blur(image, sigma, passes)
        return blur_full(image, f, sigma, passes)

    def reduced_decode_factor(self, sigma: float, passes: int = 1,
                              size: tuple[int, int] | None = None) -> int:
        """The 1/f size at which an image of ``size`` (width, height) may be decoded; 1: full size."""
        return decode_factor_for(sigma, passes, size)

    def blur_from_reduced(self, small: np.ndarray, full_shape: tuple[int, int], sigma: float,
                          passes: int = 1) -> np.ndarray:
        """The blur of a ``full_shape`` (height, width) image from its decode at 1/reduced_decode_factor."""
        f = decode_factor_for(sigma, passes, (full_shape[1], full_shape[0]))
        if f == 1:
            raise ValueError(f"a blur of sigma {sigma} x{passes} on a {full_shape[1]}x{full_shape[0]} image "
                             "needs the full-size decode")
        return blur_reduced(small, full_shape, f, sigma, passes)
