"""The blur engines: exact is today's blur bit for bit; fast stays within the accuracy target of it."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest

from parablur import accuracy
from parablur import blur as workload_blur
from parablur.config import BlurParams
from parablur.engines import ENGINES, decode_reduced, get_engine
from parablur.engines import fast as fast_module
from parablur.ingestion.generate import generate_image
from parablur.worker import decode

EXACT = get_engine("exact")
FAST = get_engine("fast")
TARGET = fast_module.TARGET_PSNR_DB
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def exact_and_fast(image: np.ndarray, sigma: float = 10.0, passes: int = 1):
    return EXACT.blur(image, sigma, passes), FAST.blur(image, sigma, passes)


def assert_close(fast: np.ndarray, exact: np.ndarray, min_psnr: float = TARGET, max_diff: float = 4):
    assert fast.shape == exact.shape and fast.dtype == exact.dtype
    assert accuracy.psnr(fast, exact) >= min_psnr
    assert accuracy.max_abs_diff(fast, exact) <= max_diff


def photos() -> dict[str, np.ndarray]:
    """Real photographs that ship in the test dependencies' wheels, as BGR (or gray) arrays."""
    skdata = pytest.importorskip("skimage.data")
    return {"grace_hopper": cv2.imread(str(GRACE_HOPPER)),
            "astronaut": cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR),
            "coffee": cv2.cvtColor(skdata.coffee(), cv2.COLOR_RGB2BGR),
            "camera": skdata.camera()}


def jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def border_stripes(height: int, width: int) -> np.ndarray:
    """Saturated stripes 2 to 6 px wide along every border, and dark lines across them.

    Reflection decides the blur within 30 px of a border here: reflecting a
    reduced image about its own edge pixels misses by up to 37 levels.
    """
    img = np.full((height, width, 3), (255, 0, 0), np.uint8)
    img[:, :3] = (0, 0, 255)
    img[:5, :] = (0, 255, 255)
    img[:, -6:] = 255
    img[-2:, :] = (0, 255, 0)
    img[height // 3: height // 3 + 7, :] = 0
    img[:, width // 2: width // 2 + 4] = 0
    return img


# --- registry and the exact engine ---------------------------------------------------------------


def test_registry_names_both_engines_and_rejects_others():
    assert ENGINES == ("exact", "fast")
    assert [get_engine(n).name for n in ENGINES] == ["exact", "fast"]
    with pytest.raises(ValueError, match="engine must be one of exact, fast, got 'quick'"):
        get_engine("quick")


@pytest.mark.parametrize(("sigma", "passes"), [(10.0, 1), (3.0, 2), (2.5, 1), (25.0, 1)])
@pytest.mark.parametrize("kind", ["bgr", "gray", "bgra16"])
def test_exact_engine_is_bit_identical_to_the_workload_blur(sigma, passes, kind):
    rng = np.random.default_rng(4)
    image = {"bgr": lambda: rng.integers(0, 256, (61, 97, 3), dtype=np.uint8),
             "gray": lambda: rng.integers(0, 256, (53, 37), dtype=np.uint8),
             "bgra16": lambda: rng.integers(0, 65536, (40, 50, 4), dtype=np.uint16)}[kind]()
    assert np.array_equal(EXACT.blur(image, sigma, passes),
                          workload_blur(image, BlurParams(sigma=sigma, passes=passes)))


def test_exact_engine_never_asks_for_a_reduced_decode():
    assert EXACT.reduced_decode_factor(10.0, 1, (4000, 3000)) == 1
    with pytest.raises(ValueError, match="full-resolution"):
        EXACT.blur_from_reduced(np.zeros((10, 10, 3), np.uint8), (40, 40), 10.0)


# --- the factor rule -----------------------------------------------------------------------------


def test_factor_grows_with_sigma_and_passes_and_shrinks_for_small_images():
    f = fast_module.factor_for
    assert [f(s) for s in (3, 6, 7, 9, 10, 15, 16, 25)] == [1, 1, 2, 4, 4, 4, 8, 8]
    assert f(10, passes=3) == 8  # 10*sqrt(3) = 17.3: passes add variance
    assert f(5, passes=2) == 2
    side = fast_module.MIN_REDUCED_SIDE
    assert f(10, 1, (4 * side, 1000)) == 4
    assert f(10, 1, (4 * side - 1, 1000)) == 2
    assert f(10, 1, (2 * side - 1, 1000)) == 1
    assert FAST.reduced_decode_factor(10.0, 1, (2000, 2000)) == 4


def test_reduced_sigma_matches_the_exact_kernels_variance():
    for sigma, passes, factor in [(10.0, 1, 4), (25.0, 1, 8), (10.0, 2, 4)]:
        s = fast_module.reduced_sigma(sigma, passes, factor)
        # reduced blur + area average + linear interpolation = passes truncated kernels
        total = (s * factor) ** 2 + factor * factor / 4
        assert total == pytest.approx(passes * fast_module.exact_variance(sigma))
    assert fast_module.exact_variance(10.0) == pytest.approx(97.68, abs=0.01)  # 61 taps, truncated at 3 sigma


# --- fast against exact --------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [3.0, 10.0, 25.0])
def test_fast_is_within_the_target_on_real_photos(sigma):
    for name, photo in photos().items():
        exact, fast = exact_and_fast(photo, sigma)
        if fast_module.factor_for(sigma, 1, photo.shape[1::-1]) == 1:
            assert np.array_equal(fast, exact), name  # small sigma: the fast engine is the exact one
        else:
            assert_close(fast, exact, TARGET + 2)


@pytest.mark.parametrize("kind", ["scene", "noise"])
@pytest.mark.parametrize(("sigma", "passes"), [(10.0, 1), (25.0, 1), (10.0, 2), (8.0, 1)])
def test_fast_is_within_the_target_on_generated_images(kind, sigma, passes):
    image = generate_image(3, 400, 320, kind=kind)
    assert fast_module.factor_for(sigma, passes, (400, 320)) > 1
    exact, fast = exact_and_fast(image, sigma, passes)
    assert_close(fast, exact, TARGET + 1)


@pytest.mark.parametrize("kind", ["scene", "noise"])
@pytest.mark.parametrize("sigma", [10.0, 25.0])
def test_fast_has_no_systematic_bias(kind, sigma):
    # Rounding every 2x2 average (round half up) would add +1/8 per halving: 0.17 to 0.37 here.
    image = generate_image(3, 400, 320, kind=kind)
    exact, fast = exact_and_fast(image, sigma)
    assert abs(float(np.mean(fast.astype(float) - exact))) <= 0.14  # measured 0.02 to 0.10


def test_fast_on_a_large_scene_is_well_within_the_target():
    image = generate_image(0, 2000, 2000, kind="scene")
    exact, fast = exact_and_fast(image)
    assert fast_module.factor_for(10.0, 1, (2000, 2000)) == 4
    assert_close(fast, exact, TARGET + 4, max_diff=3)


@pytest.mark.parametrize(("height", "width"), [(300, 420), (301, 419)])
def test_saturated_stripes_along_the_borders_stay_close_there_too(height, width):
    image = border_stripes(height, width)
    exact, fast = exact_and_fast(image)
    assert_close(fast, exact, TARGET + 3, max_diff=4)
    frame = np.ones(image.shape[:2], bool)
    frame[35:-35, 35:-35] = False  # within the kernel's reach (30) of a border
    diff = np.abs(fast.astype(int) - exact.astype(int))[frame]
    assert diff.max() <= 3
    assert float(np.sqrt(np.mean(diff.astype(float) ** 2))) < 0.8  # measured 0.62


@pytest.mark.parametrize(("height", "width"), [(1001, 1999), (131, 67), (53, 37), (7, 300)])
def test_odd_sizes_keep_shape_and_accuracy(height, width):
    image = generate_image(2, width, height, kind="scene")
    exact, fast = exact_and_fast(image)
    assert fast.flags.c_contiguous
    if fast_module.factor_for(10.0, 1, (width, height)) == 1:
        assert np.array_equal(fast, exact)  # too small to reduce
    else:
        assert_close(fast, exact)


def test_grayscale_alpha_and_16_bit_images():
    scene = generate_image(5, 320, 240, kind="scene")
    gray = cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY)
    assert_close(*exact_and_fast(gray)[::-1])

    alpha = np.zeros(scene.shape[:2], np.uint8)
    cv2.circle(alpha, (160, 120), 90, 255, -1)
    bgra = np.dstack([scene, alpha])
    exact, fast = exact_and_fast(bgra)
    assert fast.shape == (240, 320, 4)
    assert_close(fast, exact)
    assert accuracy.psnr(fast[..., 3], exact[..., 3]) >= TARGET  # alpha is blurred, as exact does

    deep = scene.astype(np.uint16) * 257 + np.random.default_rng(0).integers(0, 257, scene.shape,
                                                                          dtype=np.uint16)
    exact, fast = exact_and_fast(deep)
    assert fast.dtype == np.uint16
    assert accuracy.psnr(fast, exact) >= TARGET + 4  # peak 65535
    assert accuracy.max_abs_diff(fast, exact) <= 4 * 257


def test_fast_blur_is_pure():
    image = generate_image(1, 200, 150)
    before = image.copy()
    out = FAST.blur(image, 10.0)
    assert np.array_equal(image, before) and out is not image
    assert np.array_equal(out, FAST.blur(image, 10.0))


# --- reduced-size decode -------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["scene", "noise", "grace_hopper", "border_stripes"])
def test_reduced_decode_blur_is_within_the_target_of_the_exact_full_decode(source):
    if source == "grace_hopper":  # a real photo, enlarged to a size that is decoded reduced
        image = cv2.resize(cv2.imread(str(GRACE_HOPPER)), (1024, 1200), interpolation=cv2.INTER_CUBIC)
    elif source == "border_stripes":
        image = border_stripes(1024, 1024)
    else:
        image = generate_image(4, 1280, 1024, kind=source)
    data = jpeg(image)
    full = decode(data, ".jpg")
    factor = FAST.reduced_decode_factor(10.0, 1, (full.shape[1], full.shape[0]))
    assert factor == 4
    reduced = decode_reduced(data, factor)
    assert reduced is not None and reduced.factor == 4
    assert reduced.full_shape == full.shape[:2]
    assert reduced.image.shape == (full.shape[0] // 4, full.shape[1] // 4, 3)
    out = FAST.blur_from_reduced(reduced.image, reduced.full_shape, 10.0)
    if source == "border_stripes":  # detail finer than a 4x4 block along a border: averaged first
        assert_close(out, EXACT.blur(full, 10.0), TARGET + 1.5, max_diff=8)
    else:
        assert_close(out, EXACT.blur(full, 10.0), TARGET + 2)


def test_reduced_decode_applies_only_to_jpegs_whose_factor_and_sides_allow_it(tmp_path):
    image = generate_image(0, 480, 352, kind="scene")
    for suffix in (".png", ".webp", ".bmp"):
        ok, buf = cv2.imencode(suffix, image)
        assert ok and decode_reduced(buf.tobytes(), 4) is None, suffix
    data = jpeg(image)
    assert decode_reduced(data, 1) is None  # the factor is too small to be worth it
    assert decode_reduced(data, 3) is None
    assert decode_reduced(data[:-20_000], 4) is None  # truncated: the full decode reports it
    assert decode_reduced(jpeg(image[:, :-2]), 4) is None  # 478 wide: not a multiple of 4
    assert decode_reduced(jpeg(image[:, :-2]), 2) is not None
    assert FAST.reduced_decode_factor(3.0, 1, (4000, 3000)) == 1  # blurs at full size: decodes so
    assert FAST.reduced_decode_factor(10.0, 1, (1024, 1024)) == 4
    # A small image blurs at 1/4 but decodes at full size, and so does one of unknown size.
    assert fast_module.factor_for(10.0, 1, (480, 352)) == 4
    assert FAST.reduced_decode_factor(10.0, 1, (480, 352)) == 1
    assert FAST.reduced_decode_factor(10.0, 1, None) == 1
    with pytest.raises(ValueError, match="needs the full-size decode"):
        FAST.blur_from_reduced(np.zeros((88, 120, 3), np.uint8), (352, 480), 10.0)
    with pytest.raises(ValueError, match="is not 1280x1024 reduced by 4"):
        FAST.blur_from_reduced(np.zeros((256, 321, 3), np.uint8), (1024, 1280), 10.0)


def test_reduced_decode_keeps_gray_gray_and_turns_cmyk_to_bgr():
    pil = pytest.importorskip("PIL.Image")
    scene = generate_image(6, 320, 256, kind="scene")
    gray = jpeg(cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY))
    reduced = decode_reduced(gray, 4)
    assert reduced is not None and reduced.image.shape == (64, 80)
    assert decode(gray, ".jpg").ndim == 2
    buf = io.BytesIO()
    pil.fromarray(scene[:, :, ::-1]).convert("CMYK").save(buf, "JPEG", quality=95)
    reduced = decode_reduced(buf.getvalue(), 4)
    full = decode(buf.getvalue(), ".jpg")
    assert reduced is not None and reduced.image.shape == (64, 80, 3) and full.shape == (256, 320, 3)
    out = fast_module.blur_reduced(reduced.image, reduced.full_shape, 4, 10.0)
    assert_close(out, EXACT.blur(full, 10.0), TARGET)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_reduced_decode_applies_exif_orientation_like_the_full_decode(orientation):
    pil = pytest.importorskip("PIL.Image")
    scene = generate_image(7, 1280, 1024, kind="scene")
    exif = pil.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    pil.fromarray(scene[:, :, ::-1]).save(buf, "JPEG", quality=92, exif=exif.tobytes())
    data = buf.getvalue()
    full = decode(data, ".jpg")
    assert full.shape[:2] == ((1024, 1280) if orientation == 3 else (1280, 1024))
    reduced = decode_reduced(data, 4)
    assert reduced is not None and reduced.full_shape == full.shape[:2]
    out = FAST.blur_from_reduced(reduced.image, reduced.full_shape, 10.0)
    assert_close(out, EXACT.blur(full, 10.0), TARGET + 2)


# --- accuracy functions --------------------------------------------------------------------------


def test_psnr_and_max_abs_diff_have_known_answers():
    ref = np.zeros((4, 5, 3), np.uint8)
    test = ref.copy()
    test[0, 0, 0] = 10
    assert accuracy.psnr(test, ref) == pytest.approx(10 * np.log10(255**2 / (100 / 60)))
    assert accuracy.max_abs_diff(test, ref) == 10
    assert accuracy.psnr(ref, ref) == float("inf")
    deep = np.zeros((2, 3), np.uint16)
    deeper = deep.copy()
    deeper[1, 2] = 65535
    assert accuracy.psnr(deeper, deep) == pytest.approx(10 * np.log10(6))
    summary = accuracy.compare([(test, ref), (ref, ref)])
    assert summary.images == 2 and summary.max_abs_diff == 10
    assert summary.worst_psnr_db == pytest.approx(accuracy.psnr(test, ref))
    assert summary.psnr_db == pytest.approx(10 * np.log10(255**2 / (100 / 120)))
    with pytest.raises(ValueError, match="differ in shape or type"):
        accuracy.psnr(test, ref[:, :4])
    with pytest.raises(ValueError, match="differ in shape or type"):
        accuracy.psnr(test.astype(np.uint16), ref)
    with pytest.raises(ValueError, match="no images"):
        accuracy.compare([])
