"""Anonymizing one folder with one executor: tasks, batches, outputs and the run's summary."""

from __future__ import annotations

import contextlib
import math
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .config import RunConfig
from .dataset import list_images
from .errors import ConfigError, DatasetError, ImageError, ParaBlurError
from .executors import Executor, create_executor
from .files import claim_output_dir, clear_output_dir, remove_stale_temps, write_atomic
from .imageinfo import file_image_size, read_size
from .records import RecordLog
from .resume import OutputRecord
from .storage import Store, open_store
from .storage.base import PROBE_PREFIX, PROBE_READ_BYTES
from .worker import BatchResult, ImageResult, ImageTask, Job, decode, encode, params_tag

STAGES = ("read_s", "decode_s", "blur_s", "encode_s", "write_s")


@dataclass(frozen=True)
class RunSummary:
    """The outcome of anonymizing a folder with one executor."""

    executor: str
    workers: int
    batch_size: int
    images: int
    ok: int
    failed: int
    failures: tuple[dict, ...]
    wall_s: float
    startup_s: float
    task_s: float  # sum of task durations measured inside the workers
    stages: dict[str, float] = field(default_factory=dict)  # seconds summed over images
    peak_worker_rss_mb: float = 0.0
    output_dir: str = ""
    skipped: int = 0  # outputs already up to date (resume); counted in ``images``
    dashboard: str | None = None  # the Dask dashboard of the run, when there was one
    # Every task: (worker, start s, end s, images), seconds after the run began (the client's
    # wall clock against the workers': one machine, or hosts whose clocks agree).
    tasks: tuple[tuple[str, float, float, int], ...] = ()

    @property
    def idle_s(self) -> float:
        """Worker-seconds not spent inside a task: scheduling, waiting, the tail."""
        return max(self.workers * self.wall_s - self.task_s, 0.0)

    @property
    def throughput(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["failures"] = list(self.failures)
        data["tasks"] = len(self.tasks)
        data["idle_s"] = self.idle_s
        data["throughput"] = self.throughput
        return data


# The client's and the scheduler's CPU time per Dask task (submit, transitions, result),
# measured with batches of one tiny image: 2.8 ms on this project's 2-core machine
# (benchmarks/orchestration.py --batch-size 1). "auto" makes tasks long enough that the
# workers ask for at most one task per 4 of these: the scheduler stays under a quarter busy.
TASK_OVERHEAD_S = 0.003


def task_target_s(workers: int) -> float:
    """How long an "auto" task should take: a quarter second, longer on a large cluster."""
    return max(0.25, 4 * workers * TASK_OVERHEAD_S)


def auto_batch_size(images: Sequence[Path], workers: int) -> int:
    """A batch size long enough to hide per-task costs, short enough to balance the tail.

    Aim for tasks of ``task_target_s`` (a quarter second up to 20 workers, estimated from
    the first image's pixel count, read from its header), but never fewer than 8 tasks
    per worker.
    """
    if not images:
        return 1
    return _balanced(_by_cost(file_image_size(images[0]), workers=workers), len(images), workers)


def _by_cost(size: tuple[int, int] | None, io_s: float = 0.0, *, workers: int = 1) -> int:
    """Images per task of ``task_target_s``, from one image's size (2000x2000 if unknown) and
    ``io_s``, the seconds of store round trips each image costs besides its pixels."""
    width, height = size or (2000, 2000)
    per_image_s = max(width * height / 40e6, 1e-4)  # ~0.1 s for a 2000x2000 image on one core
    return max(1, math.ceil(task_target_s(workers) / (per_image_s + io_s)))


def _balanced(by_cost: int, images: int, workers: int) -> int:
    """``by_cost``, lowered so that ``images`` make at least 8 tasks per worker."""
    return max(1, min(by_cost, images // (workers * 8)))


def plan_tasks(config: RunConfig, images: Sequence[Path], out_dir: Path, *,
               digests: bool = False) -> list[ImageTask]:
    """One task per image, its output mirroring its place under the input folder.

    ``digests`` asks the workers for input and output checksums (the resume record).
    With a URL input (a benchmark of a dataset in a store), ``images`` are its keys and
    the workers read them from the store themselves.
    """
    if isinstance(config.input_dir, str):
        inp = open_store(config.input_dir, config.storage_options)
        out_root = out_dir.resolve()
        tasks = []
        for key in images:
            dst = (out_dir / key).resolve()
            if out_root not in dst.parents:
                raise DatasetError(f"refusing to write outside the output folder: {key}")
            name = Path(key).as_posix()
            tasks.append(ImageTask(name, name, str(dst), digests=digests, store_in=inp))
        return tasks
    tasks = []
    root = config.input_dir
    out_root = out_dir.resolve()
    for src in images:
        rel = src.relative_to(root)
        dst = (out_dir / rel).resolve()
        if out_root not in dst.parents:
            raise DatasetError(f"refusing to write outside the output folder: {rel}")
        tasks.append(ImageTask(rel.as_posix(), str(src.resolve()), str(dst), digests=digests))
    return tasks


def _batches(tasks: list[ImageTask], size: int, ship_bytes: bool) -> Iterator[list[ImageTask]]:
    """Batches of ``size`` tasks, made as they are needed.

    ``ship_bytes`` (``--transfer bytes``): each task carries its encoded input and
    asks for its encoded output back, read here only when its batch is submitted; an
    input in a store is read by the worker, only the output comes back.
    """
    for i in range(0, len(tasks), size):
        batch = tasks[i:i + size]
        if ship_bytes:
            batch = [replace(t, return_bytes=True) if t.store_in is not None
                     else replace(t, data=_read_or_empty(t.src), return_bytes=True) for t in batch]
        yield batch


def _read_or_empty(path: str) -> bytes:
    """A file's bytes, or none when it cannot be read (the worker then reports it empty)."""
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def output_dir_for(config: RunConfig, executor_name: str) -> Path:
    return config.output_dir / executor_name


def draw_records(config: RunConfig, job: Job, out_dir: Path, tasks: list[ImageTask]) -> int:
    """``--draw-boxes``: a debug copy of each input of ``tasks`` with its record drawn on it
    (faces: boxes, scores, landmarks) in ``OUTPUT_DIR/<executor>-boxes/``, never over an
    output; how many were written."""
    if not job.workload.record_file:
        return 0
    records = RecordLog.file(out_dir / job.workload.record_file)
    boxes_dir = claim_output_dir(out_dir.with_name(f"{out_dir.name}-boxes"))
    written = 0
    for task in tasks:
        record = records.get(task.name)
        if record is None:
            continue
        data = Path(task.src).read_bytes()
        drawn = job.workload.annotate(decode(data, Path(task.src).suffix), record)
        if drawn is not None:
            dst = boxes_dir / task.name
            write_atomic(dst, encode(drawn, dst.suffix, job), durable=False)
            written += 1
    return written


def preflight(executor: Executor, job: Job) -> None:
    """Refuse, with one line, a job that cannot run where ``executor`` runs it (e.g. a user's
    workload that its workers cannot import), before any image is touched."""
    problems = {w: r for w, r in executor.run_on_workers(job.workload.preflight).items() if r}
    if problems:
        where = ", ".join(sorted(problems)[:3]) + (" ..." if len(problems) > 3 else "")
        raise ConfigError(f"{next(iter(problems.values()))} (on {len(problems)} worker(s): {where})")


def run_tasks(
    executor: Executor,
    config: RunConfig,
    tasks: list[ImageTask],
    out_dir: Path,
    *,
    batch_size: int | None = None,
    progress: bool = False,
    clean: bool = True,
    record: OutputRecord | None = None,
) -> RunSummary:
    """Run ``tasks`` on a started executor and summarize; outputs land in ``out_dir``.

    The one way every command (``run``, each run of a benchmark round, the
    standard benchmark) runs its tasks. ``batch_size`` defaults to the
    configuration's, resolved for the executor's workers; the pool's start-up is
    added to the wall time when ``config.include_startup``. ``clean`` empties
    ``out_dir`` first (benchmark rounds: verification must never pass on a
    previous round's outputs); ``record`` notes each finished output. The
    workload's per-image records go to its record file in ``out_dir``.
    """
    job = Job.for_run(config)
    preflight(executor, job)
    if batch_size is None:
        batch_size = resolve_batch_size(config, [Path(t.src) for t in tasks], executor.workers)
    (clear_output_dir if clean else claim_output_dir)(out_dir)
    log = (RecordLog.file(out_dir / job.workload.record_file, keep_existing=not clean)
           if job.workload.record_file else None)
    ship = config.effective_transfer == "bytes" and executor.name != "sequential"
    by_name = {t.name: t for t in tasks}

    def settle(img: ImageResult) -> ImageResult:
        img = _write_returned(img, out_dir)
        if img.ok and record is not None and img.name in by_name:
            record.add(by_name[img.name], img)
        if log is not None:
            note_record(log, img)
        return img

    try:
        summary = drive(executor, config, job, _batches(tasks, batch_size, ship),
                        batch_size=batch_size, total=len(tasks), output=str(out_dir),
                        settle=settle, progress=progress)
    finally:
        # Interrupted too: the outputs recorded as done keep their lines for the next run.
        if log is not None:
            log.save()
    remove_stale_temps(out_dir)
    return summary


def note_record(log: RecordLog, img: ImageResult) -> None:
    """Keep ``img``'s line in ``log`` as its run left it: replaced when redone, kept when
    skipped as up to date, dropped when it failed or gave no record."""
    if img.skipped:
        return
    if img.ok and img.record is not None:
        log.add(img.name, img.record)
    else:
        log.drop(img.name)


def drive(executor: Executor, config: RunConfig, job: Job, batches: Iterable[list[ImageTask]], *,
          batch_size: int | None, total: int | None, output: str,
          settle: Callable[[ImageResult], ImageResult] = lambda img: img,
          progress: bool = False) -> RunSummary:
    """Feed ``batches`` through ``executor``'s bounded window and tally their results.

    ``batches`` may be a generator (a store's listing, page by page): it is read only
    as the window has room. ``batch_size`` None (batches of varying size): the summary
    gives the largest. ``settle`` finishes each image's result on the client
    (an output sent back as bytes written, the resume record noted).
    """
    from tqdm import tqdm

    failures: list[dict] = []
    stages = dict.fromkeys(STAGES, 0.0)
    task_s = 0.0
    ok = images = skipped = 0
    peak: dict[str, float] = {}
    bar = tqdm(total=total, desc=f"{executor.name:>12}", unit="img", leave=False,
               disable=not progress or None, dynamic_ncols=True)
    t0, epoch = time.perf_counter(), time.time()
    spans: list[tuple[str, float, float, int]] = []
    largest = 0
    with bar:
        result: BatchResult
        for result in executor.map(batches, job):
            task_s += result.task_s
            if result.started:
                spans.append((result.worker, result.started - epoch, result.ended - epoch,
                               len(result.images)))
            if result.worker:
                peak[result.worker] = max(peak.get(result.worker, 0.0), result.peak_rss_mb)
            for img in result.images:
                images += 1
                img = settle(img)
                for s in STAGES:
                    stages[s] += getattr(img, s)
                if img.skipped:
                    skipped += 1
                elif img.ok:
                    ok += 1
                else:
                    failures.append({"image": img.name, "reason": img.error or "unknown"})
            bar.update(len(result.images))
            largest = max(largest, len(result.images))
    wall = time.perf_counter() - t0
    if config.include_startup:
        wall += executor.startup_s
    return RunSummary(
        executor=executor.name, workers=executor.workers,
        batch_size=largest if batch_size is None else batch_size, images=images, ok=ok, failed=len(failures),
        failures=tuple(sorted(failures, key=lambda f: f["image"])), wall_s=wall,
        startup_s=executor.startup_s, task_s=task_s, stages=stages,
        peak_worker_rss_mb=max(peak.values(), default=0.0), output_dir=output,
        skipped=skipped, dashboard=executor.dashboard_link, tasks=tuple(spans),
    )


def performance_report(executors: Mapping[str, Executor],
                       path: Path | None) -> contextlib.ExitStack:
    """Dask's performance report of everything run inside, for each Dask executor.

    Opened once around a whole run (``run``, or all measured rounds of a
    benchmark) so that the file holds all of it. With several Dask executors,
    each gets its own file: ``FILE-<executor>.html``. Without a path or a Dask
    executor, nothing.
    """
    stack = contextlib.ExitStack()
    dask = {n: ex for n, ex in executors.items() if hasattr(ex, "performance_report")}
    if path is None or not dask:
        return stack
    from .files import derived_path  # the names the command line checks before any work

    with stack:  # closes what was opened if a later one fails to open
        for name, ex in dask.items():
            target = path if len(dask) == 1 else derived_path(path, name)
            stack.enter_context(ex.performance_report(target))
        return stack.pop_all()


@contextlib.contextmanager
def started(config: RunConfig, *, progress: bool = False) -> Iterator[Executor]:
    """``config``'s executor, started (its Dask dashboard announced with ``progress``) and
    inside Dask's performance report when one is asked for; closed on the way out."""
    executor = create_executor(config.executor, config)
    with executor:
        if progress and executor.dashboard_link:
            print(f"Dask dashboard: {executor.dashboard_link}", file=sys.stderr)
        with performance_report({config.executor: executor}, config.performance_report):
            yield executor


def _write_returned(img: ImageResult, out_dir: Path) -> ImageResult:
    """Write an output a remote worker sent back as bytes (``--transfer bytes``)."""
    if not img.ok or img.output is None:
        return img
    t0 = time.perf_counter()
    try:
        write_atomic(out_dir / img.name, img.output, durable=False)
    except OSError as exc:
        return replace(img, ok=False, error=f"write: {exc}", write_s=0.0, output=None)
    return replace(img, write_s=img.write_s + time.perf_counter() - t0, output=None)


def resolve_batch_size(config: RunConfig, images: Sequence[Path], workers: int) -> int:
    if config.batch_size == "auto":
        return auto_batch_size(images, workers)
    return int(config.batch_size)


def anonymize(config: RunConfig, *, progress: bool = False) -> RunSummary:
    """Anonymize every image of ``config.input_dir`` into ``output_dir/<executor>/``.

    Resumes: an image whose output is up to date (same input, same parameters,
    see ``parablur.resume``) is skipped, and the cluster is not even started when
    nothing is left. ``config.force`` empties the output folder and redoes everything.
    """
    if config.uses_store:
        return anonymize_store(config, progress=progress)
    images = list_images(config.input_dir)
    if not images:
        raise DatasetError(f"no images found in {config.input_dir}")
    out_dir = output_dir_for(config, config.executor)
    tasks = plan_tasks(config, images, out_dir, digests=True)
    boxes_dir = out_dir.with_name(f"{out_dir.name}-boxes")
    (clear_output_dir if config.force else claim_output_dir)(out_dir)
    if config.draw_boxes:  # checked (and with --force emptied) before any work
        (clear_output_dir if config.force else claim_output_dir)(boxes_dir)
    record = OutputRecord(out_dir, Job.for_run(config))
    todo, done = record.split(tasks)
    if not todo:
        remove_stale_temps(out_dir)
        if config.draw_boxes:
            draw_records(config, Job.for_run(config), out_dir, tasks)
        return RunSummary(
            executor=config.executor, workers=0, batch_size=0, images=len(tasks), ok=0,
            failed=0, failures=(), wall_s=0.0, startup_s=0.0, task_s=0.0,
            stages=dict.fromkeys(STAGES, 0.0), output_dir=str(out_dir), skipped=len(done))
    for task in todo:
        record.forget(task.name)  # its output is about to be replaced
    try:
        with started(config, progress=progress) as executor:
            summary = run_tasks(executor, config, todo, out_dir, progress=progress,
                                clean=False, record=record)
    finally:
        # After the executor is closed, so no worker is still writing a temporary file.
        record.save()
        remove_stale_temps(out_dir)
    if config.draw_boxes:
        draw_records(config, Job.for_run(config), out_dir, tasks)
    return replace(summary, images=len(tasks), skipped=len(done))


# "auto" with a store input: the listing is read this many tasks ahead of the batches, so
# that batches are balanced over the images seen so far (the count is unknown until it ends).
STORE_LOOKAHEAD = 1000


def output_location(config: RunConfig, executor_name: str) -> Path | str:
    """``OUTPUT_DIR/<executor>``: a folder, or a URL prefix."""
    if isinstance(config.output_dir, Path):
        return config.output_dir / executor_name
    return f"{config.output_dir.rstrip('/')}/{executor_name}"


def store_tasks(inp: Store, out: Store, job: Job, *, skip_done: bool = True,
                page_size: int = 1000, log: RecordLog | None = None) -> Iterator[ImageTask]:
    """One task per image of ``inp``, made as the listing's pages arrive; output: the same key in ``out``.

    Tasks carry keys and the two stores (their URLs and options, shared by every task
    of a batch when pickled), never bytes; ``skip_done`` lets the worker skip an output
    whose recorded input and parameters match (one HEAD on the worker that owns it),
    unless it was made with a record line other than ``log``'s (the existing record), and
    counts as done, not skipped, one that this run wrote (a retried batch's first attempt).
    """
    params = params_tag(job)
    run = uuid.uuid4().hex
    for item in inp.scan_images(page_size):
        tag = f"etag:{item.size}:{item.etag}" if item.etag else ""
        yield ImageTask(item.key, item.key, item.key, store_in=inp, store_out=out,
                        input_tag=tag, params=params, skip_done=skip_done,
                        line=log.tag(item.key) if log is not None else "", run=run)


def _chunks(tasks: Iterable[ImageTask], size: int) -> Iterator[list[ImageTask]]:
    """Batches of ``size`` from a stream of tasks, holding one batch at a time."""
    batch: list[ImageTask] = []
    for task in tasks:
        batch.append(task)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _auto_chunks(tasks: Iterable[ImageTask], by_cost: int, workers: int, *,
                 lookahead: int = STORE_LOOKAHEAD) -> Iterator[list[ImageTask]]:
    """``--batch-size auto`` on a stream: each batch sized as ``auto_batch_size`` would size it
    for the images listed so far, the listing being read ``lookahead`` tasks ahead.

    Batches grow with the listing up to ``by_cost`` (tasks of about a quarter second): a
    short listing gives at least 8 tasks per worker, as a folder does, and a long one
    batches big enough to keep the scheduler's per-task cost off each image. Holds at
    most ``lookahead`` + ``by_cost`` tasks.
    """
    pending = iter(tasks)
    buffer: deque[ImageTask] = deque()
    seen = 0
    ended = False

    def fill(upto: int) -> None:
        nonlocal seen, ended
        while not ended and len(buffer) < upto:
            task = next(pending, None)
            if task is None:
                ended = True
            else:
                buffer.append(task)
                seen += 1

    while True:
        fill(lookahead)
        if not buffer:
            return
        size = _balanced(by_cost, seen, workers)
        fill(size)
        yield [buffer.popleft() for _ in range(min(size, len(buffer)))]


def store_batches(config: RunConfig, inp: Store, tasks: Iterable[ImageTask], *, first: str,
                  workers: int, out: Store | None = None) -> Iterator[list[ImageTask]]:
    """The batches of a store run: ``config.batch_size``, or "auto" from ``first``'s header and
    the round trips an image costs besides its pixels (a store's can cost more than the pixels).

    The round trips are timed from the client: a GET of ``first`` and a HEAD on ``out``
    (a worker makes a HEAD, a GET and a PUT an image). A client far from a store that its
    workers sit next to overestimates them and makes shorter tasks: give ``--batch-size``.
    """
    if config.batch_size != "auto":
        return _chunks(tasks, int(config.batch_size))
    head: list[bytes] = []
    read_s = _fastest(lambda: head.append(inp.read(first, length=PROBE_READ_BYTES)))
    size = _size_or_none(head[-1]) if head else None
    head_s = _fastest(lambda: out.info(f"{PROBE_PREFIX}latency")) if out is not None else None
    read_s = read_s or 0.0
    io_s = read_s + 2 * (head_s if head_s is not None else read_s)  # HEAD and PUT ~ a round trip
    return _auto_chunks(tasks, _by_cost(size, io_s, workers=workers), workers)


def _fastest(call: Callable[[], object], tries: int = 2) -> float | None:
    """The fastest of ``tries`` calls, in seconds (the first may open a connection); None if
    the call fails."""
    best = math.inf
    for _ in range(tries):
        t0 = time.perf_counter()
        try:
            call()
        except (OSError, ParaBlurError):
            return None
        best = min(best, time.perf_counter() - t0)
    return best


def _size_or_none(head: bytes) -> tuple[int, int] | None:
    try:
        return read_size(head)
    except ImageError:
        return None


def anonymize_store(config: RunConfig, *, progress: bool = False) -> RunSummary:
    """Anonymize every image of a URL (or folder) input into a URL (or folder) ``OUTPUT/<executor>/``.

    Before any cluster starts, the input is listed and read and the output written (a
    probe object, removed after), so a wrong setup is one line. The workers read and
    write the store themselves; the client feeds the window from the paged listing and
    never holds it whole. Resume: each output carries its input's tag and the
    parameters as metadata, and the worker skips an image whose output matches;
    ``config.force`` redoes everything (overwriting outputs, deleting nothing).
    The workload's records go to its record file in ``OUTPUT/<executor>/`` (``run_stores``);
    ``--draw-boxes`` debug copies to ``OUTPUT/<executor>-boxes/``, claimed like the output.
    """
    job = Job.for_run(config)
    inp = open_store(config.input_dir, config.storage_options)
    out = open_store(output_location(config, config.executor), config.storage_options)
    boxes = (open_store(output_location(config, f"{config.executor}-boxes"), config.storage_options)
             if config.draw_boxes and job.workload.record_file else None)
    first = inp.probe_read()
    for store in (out, boxes):
        if store is not None:
            # Claimed before the probe: a probe object left by a run killed at that moment is
            # then a hidden object in ParaBlur's own prefix, not a reason to refuse the next run.
            store.claim_output()
            store.probe_write()
    return run_stores(config, inp, out, first=first, progress=progress, boxes=boxes)


def run_stores(config: RunConfig, inp: Store, out: Store, *, first: str,
               progress: bool = False, boxes: Store | None = None) -> RunSummary:
    """Run every image of ``inp`` into ``out`` on a new executor: the client's part of a store run.

    ``first`` is the first image's key (its header sizes ``--batch-size auto``). The stores
    are already probed and claimed (``anonymize_store``); ``benchmarks/orchestration.py``
    calls this with generated stores to measure the client's own cost per image.

    A workload with a record file (faces: ``detections.jsonl``) has its records gathered
    here from the results, on top of the existing record object (its lines kept for the
    images the workers skip; ``config.force`` starts afresh), and written with one PUT at
    the end, or when the run is interrupted. With ``boxes``, the workers then draw each
    record on its input into that store (``--draw-boxes``), never over an output.
    """
    job = Job.for_run(config)
    log = (RecordLog(out, job.workload.record_file, keep_existing=not config.force)
           if job.workload.record_file else None)
    seen: set[str] = set()  # this run's images with an output, for --draw-boxes

    def settle(img: ImageResult) -> ImageResult:
        if log is not None:
            note_record(log, img)
            if img.ok and boxes is not None:
                seen.add(img.name)
        return img

    try:
        with started(config, progress=progress) as executor:
            preflight(executor, job)
            tasks = store_tasks(inp, out, job, skip_done=not config.force, log=log)
            batches = store_batches(config, inp, tasks, first=first, workers=executor.workers,
                                    out=out)
            summary = drive(executor, config, job, batches, batch_size=None, total=None,
                            output=out.url, settle=settle, progress=progress)
            if boxes is not None and log is not None:
                summary = _draw_in_store(executor, config, job, inp, boxes, log, seen, summary,
                                         progress=progress)
            return summary
    finally:
        if log is not None:
            log.save()


def _draw_in_store(executor: Executor, config: RunConfig, job: Job, inp: Store, boxes: Store,
                   log: RecordLog, names: set[str], summary: RunSummary, *,
                   progress: bool) -> RunSummary:
    """``--draw-boxes`` in a store: the workers draw the record of each of ``names`` (the run's
    images, skipped ones too) on its input into ``boxes``; a copy that fails is a failure."""

    def tasks() -> Iterator[ImageTask]:
        for name in sorted(names):
            record = log.get(name)
            if record is not None:
                yield ImageTask(name, name, name, store_in=inp, store_out=boxes, annotate=record)

    drawn = drive(executor, config, job, _chunks(tasks(), summary.batch_size),
                  batch_size=summary.batch_size, total=len(names), output=boxes.url,
                  progress=progress)
    failures = summary.failures + tuple({"image": f["image"], "reason": f"draw-boxes: {f['reason']}"}
                                        for f in drawn.failures)
    return replace(summary, failures=failures, failed=len(failures))
