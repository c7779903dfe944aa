"""The results CSV: one row per measured round and parallel executor.

The format is versioned by its ``schema_version`` column. Columns are only
ever added at the end, so an older file is a prefix of the newer layout: when
the header on disk differs from ``COLUMNS``, the file is upgraded by rewriting
it (atomically) with the new header, old rows padded with blanks. Appends are
written as one ``write`` of one complete line followed by ``fsync``, and a
trailing partial line left by an interrupted writer is repaired before the
next append, so an interrupted append never corrupts earlier rows.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from .errors import ResultsError
from .files import write_atomic

SCHEMA_VERSION = 2  # 2: overlap_io and the round's noise (outside_load_cores, steal_cores, noisy)

COLUMNS: tuple[str, ...] = (
    "schema_version",
    "timestamp",
    "run_id",
    "mode",  # bench | scale-strong | scale-weak
    "round",
    "executor",
    "num_images",
    "width",
    "height",
    "batch_size",
    "workers",
    "threads_per_worker",
    "blur_radius",
    "kernel_size",
    "passes",
    "transfer",
    "cluster",
    "seq_s",
    "par_s",
    "speedup",
    "efficiency",
    "serial_fraction",
    "seq_throughput",
    "par_throughput",
    "ok",
    "failed",
    "identical",
    "clean",
    "startup_s",
    "include_startup",
    "ceiling",
    "read_s",
    "decode_s",
    "blur_s",
    "encode_s",
    "write_s",
    "idle_s",
    "peak_worker_rss_mb",
    "dataset_checksum",
    "cpu_model",
    "logical_cores",
    "physical_cores",
    "cpu_freq_mhz",
    "load_avg_1m",
    "hostname",
    "platform",
    "python_version",
    "opencv_version",
    "dask_version",
    "parablur_version",
    "overlap_io",
    "outside_load_cores",  # CPU other programs took while the round ran, in cores
    "steal_cores",  # CPU the hypervisor gave to other virtual machines, in cores
    "noisy",  # the outside load was over noise.NOISY_LOAD_CORES beyond the idle cores
    "workload",  # blur | faces | MODULE:FUNCTION
    "engine",  # exact | fast
    "workload_params",  # JSON: the parameters the outputs depend on
    "psnr_db",  # a non-exact engine's blur against the exact one on a sample (pooled PSNR)
    "max_abs_diff",  # ... and the largest difference there
    "recall",  # faces on a dataset with true boxes: share found (IoU >= 0.3, at least 16 px tall)
    "false_positives_per_image",
    "frames",  # frames of the outputs (an image: 1; a video clip: all of its frames)
    "seq_frame_rate",  # frames per second; differs from the throughput when there are clips
    "par_frame_rate",
    "exposed_face_frames",  # clips with true boxes: share of face-frames still visible after
    "seq_img_per_core",  # images/s per core: the sequential leg's throughput (one core)
    "par_img_per_core",  # ... the parallel leg's over its worker slots (analysis.images_per_core)
    # Recall by the true face's height (face_quality.BANDS; faces under 16 px tall count nowhere).
    "recall_by_height_16_to_20px",
    "recall_by_height_20_to_30px",
    "recall_by_height_30_to_45px",
    "recall_by_height_45px_up",
)

#: The columns a workload's figures (``Workload.score``, ``score_outputs``) fill: a nested
#: figure's keys are joined by "_" (``quality_cells``).
QUALITY_COLUMNS: tuple[str, ...] = (
    "recall", "false_positives_per_image", "exposed_face_frames",
    *(c for c in COLUMNS if c.startswith("recall_by_height_")))


def quality_cells(figures: Mapping[str, object] | None) -> dict[str, object]:
    """The values of ``QUALITY_COLUMNS`` in a workload's figures (None where it has none)."""
    flat: dict[str, object] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}_{k}" if prefix else str(k), v)
        else:
            flat[prefix] = value

    walk("", figures or {})
    return {c: flat.get(c) for c in QUALITY_COLUMNS}


def cell(value: object) -> str:
    """A value as the CSV stores it (and as ``read_rows`` gives it back)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _line(values: Iterable[object]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([cell(v) for v in values])
    return buf.getvalue()


def _read_text(path: Path, what: str, limit: int = -1) -> str:
    """The text of a CSV the user named (its first line only with ``limit``, at most that
    many bytes); ResultsError with one line when it cannot be read."""
    if not path.exists():
        raise ResultsError(f"{what} not found: {path}")
    if not path.is_file():
        raise ResultsError(f"{path} is not a ParaBlur {what}: it is not a file")
    try:
        with path.open("rb") as fh:
            data = fh.readline(limit) if limit >= 0 else fh.read()
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ResultsError(f"{path} is not a ParaBlur {what}: it is not text") from None
    except OSError as exc:
        raise ResultsError(f"{path} cannot be read: {exc.strerror or exc}") from None


def _results_header(header: Iterable[str]) -> bool:
    """True for the header of a results CSV of any version (what every version has)."""
    return "speedup" in header or "seq_s" in header


def read_rows(path: Path) -> list[dict[str, str]]:
    """All rows of a results CSV, or of its task timeline, as dicts (missing columns absent).

    ResultsError (one line) for a file that is missing, unreadable, or neither.
    """
    path = Path(path)
    text = _read_text(path, "results file")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # drop a torn last line
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return []
    header = list(reader.fieldnames)
    if not (_results_header(header) or tuple(header) == TASK_COLUMNS):
        raise ResultsError(f"{path} is not a ParaBlur results CSV (header: "
                           f"{','.join(header)[:80]})")
    return [{k: v for k, v in row.items() if k is not None} for row in reader]


def _atomic_write(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def _prepare(path: Path) -> str | None:
    """Make ``path`` ready for appending; return a note for the user when it was upgraded."""
    if not path.exists() or path.stat().st_size == 0:
        _atomic_write(path, _line(COLUMNS))
        return None
    with path.open(newline="", encoding="utf-8") as fh:
        text = fh.read()
    note = None
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        note = f"{path}: dropped a torn last line left by an interrupted write"
    first = text.splitlines()[0] if text else ""
    header = next(csv.reader([first])) if first else []
    if tuple(header) == COLUMNS:
        if note:
            _atomic_write(path, text)
        return note
    if header and "speedup" not in header and "seq_s" not in header:
        raise ResultsError(f"{path} is not a ParaBlur results CSV (header: {first[:80]})")
    rows = list(csv.DictReader(io.StringIO(text)))
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise ResultsError(
            f"{path} has columns this version does not know ({', '.join(unknown[:5])}); "
            "it was written by a newer ParaBlur: use another --report-csv"
        )
    out = [_line(COLUMNS)]
    for row in rows:
        out.append(_line(row.get(c, "") or "" for c in COLUMNS))
    _atomic_write(path, "".join(out))
    return f"{path}: upgraded {len(rows)} rows to results schema v{SCHEMA_VERSION}"


def _checked(rows: Iterable[Mapping[str, object]], columns: tuple[str, ...], what: str
             ) -> list[Mapping[str, object]]:
    """``rows`` as a list; a key that is not one of ``columns`` is an error naming it."""
    rows = list(rows)
    unknown = sorted({k for row in rows for k in row if k not in columns})
    if unknown:
        raise ResultsError(f"not columns of {what}: {', '.join(unknown)}")
    return rows


def append_rows(path: Path, rows: Iterable[Mapping[str, object]]) -> str | None:
    """Append rows (dicts keyed by ``COLUMNS``) to ``path``; return an upgrade note or None.

    A key that is not a column is an error (ResultsError naming it), never dropped.
    """
    path = Path(path)
    rows = _checked(rows, COLUMNS, "the results CSV")
    path.parent.mkdir(parents=True, exist_ok=True)
    note = _prepare(path)
    payload = "".join(
        _line({"schema_version": SCHEMA_VERSION, **row}.get(c) for c in COLUMNS) for row in rows
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, payload.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return note


# -- the task timeline beside the results CSV ----------------------------------------

#: Columns of ``<results>-tasks.csv``: every task of every measured round, for the report's
#: timeline of where each worker's time went (idle gaps, stragglers, the tail).
TASK_COLUMNS: tuple[str, ...] = (
    "run_id",
    "round",
    "executor",  # the leg: sequential, dask, processes, ...
    "workload",
    "engine",
    "batch_size",
    "workers",
    "worker",  # host:pid of the process (or thread pool) that ran the task
    "start_s",  # seconds after the leg started (the client's clock)
    "end_s",
    "images",
)


def check_appendable(results_csv: Path) -> None:
    """Refuse, before a benchmark's first round, a results CSV or task timeline that is not
    ParaBlur's (rows are appended to both after every round)."""
    for path, columns, what in ((Path(results_csv), COLUMNS, "results CSV"),
                                (tasks_path(results_csv), TASK_COLUMNS, "task timeline")):
        if not path.exists() and not path.is_symlink():
            continue
        first = _read_text(path, what, limit=1 << 16)
        if not first:
            continue
        header = next(csv.reader([first.rstrip("\r\n")]), [])
        ok = tuple(header) == columns or (columns is COLUMNS and not set(header) - set(COLUMNS)
                                          and _results_header(header))
        if not ok:
            raise ResultsError(f"{path} is not a ParaBlur {what} (header: "
                               f"{','.join(header)[:80]}); use another --report-csv")


def tasks_path(results_csv: Path) -> Path:
    """Where the task timeline of ``results_csv`` is kept: ``NAME-tasks.csv`` beside it."""
    results_csv = Path(results_csv)
    return results_csv.with_name(f"{results_csv.stem}-tasks.csv")


def append_tasks(results_csv: Path, rows: Iterable[Mapping[str, object]]) -> None:
    """Append task rows (dicts keyed by ``TASK_COLUMNS``) to the timeline of ``results_csv``."""
    path = tasks_path(results_csv)
    rows = _checked(rows, TASK_COLUMNS, "the task timeline")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.stat().st_size == 0:
        _atomic_write(path, _line(TASK_COLUMNS))
    else:
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader([fh.readline()]), [])
        if tuple(header) != TASK_COLUMNS:
            raise ResultsError(f"{path} is not a ParaBlur task timeline (header: "
                               f"{','.join(header)[:80]}); use another --report-csv")
    payload = "".join(_line(row.get(c) for c in TASK_COLUMNS) for row in rows)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, payload.encode("utf-8"))
    finally:
        os.close(fd)
