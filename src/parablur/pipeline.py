"""Anonymizing every image of one store into another with one executor: tasks, batches, outputs
and the run's summary.

There is one data path. The input and the output are ``Store``s (a local folder is one more
store, as fsspec treats it); the client lists the input a page at a time, makes one task per
image (keys, never bytes), batches them, and feeds them through the executor's bounded
window. Workers read, compute and write each output with its resume record
(``parablur.worker``); the client gathers the workload's record lines (``RecordLog``) and
writes them whole at the end, or when the run is interrupted. ``run``, each leg of a
benchmark round and the standard benchmark all go through ``run_images``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .clips import Assembler
from .config import RunConfig
from .errors import ConfigError, ImageError, ParaBlurError
from .executors import Executor, create_executor
from .imageinfo import read_size
from .records import RecordLog
from .storage import ObjectInfo, Store, open_store
from .storage.base import PROBE_PREFIX, PROBE_READ_BYTES
from .worker import (
    STAGES,
    BatchResult,
    ImageResult,
    ImageTask,
    Job,
    failure_reason,
    input_tag,
    params_tag,
    up_to_date,
)


@dataclass(frozen=True)
class RunSummary:
    """The outcome of anonymizing a store's images with one executor."""

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
    frames: int = 0  # frames of the outputs made (an image is one frame; a clip, all of its)

    @property
    def idle_s(self) -> float:
        """Worker-seconds not spent inside a task: scheduling, waiting, the tail."""
        return max(self.workers * self.wall_s - self.task_s, 0.0)

    @property
    def throughput(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def frame_rate(self) -> float:
        """Frames of the outputs made per second of the run (images count one frame each)."""
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["failures"] = list(self.failures)
        data["tasks"] = len(self.tasks)
        data["idle_s"] = self.idle_s
        data["throughput"] = self.throughput
        data["frame_rate"] = self.frame_rate
        return data


# -- batches --------------------------------------------------------------------------------

# The client's and the scheduler's CPU time per Dask task (submit, transitions, result),
# measured with batches of one tiny image: 2.8 ms on this project's 2-core machine
# (benchmarks/orchestration.py --batch-size 1). "auto" makes tasks long enough that the
# workers ask for at most one task per 4 of these: the scheduler stays under a quarter busy.
TASK_OVERHEAD_S = 0.003
# "auto": the listing is read this many tasks ahead of the batches, so that batches are
# balanced over the images seen so far (the count is unknown until the listing ends).
LOOKAHEAD = 1000


def task_target_s(workers: int) -> float:
    """How long an "auto" task should take: a quarter second, longer on a large cluster."""
    return max(0.25, 4 * workers * TASK_OVERHEAD_S)


def images_per_task(size: tuple[int, int] | None, io_s: float = 0.0, *, workers: int = 1) -> int:
    """Images per task of ``task_target_s``, from one image's size (2000x2000 if unknown) and
    ``io_s``, the seconds of store round trips each image costs besides its pixels."""
    width, height = size or (2000, 2000)
    per_image_s = max(width * height / 40e6, 1e-4)  # ~0.1 s for a 2000x2000 image on one core
    return max(1, math.ceil(task_target_s(workers) / (per_image_s + io_s)))


def balanced(by_cost: int, images: int, workers: int) -> int:
    """``by_cost``, lowered so that ``images`` make at least 8 tasks per worker."""
    return max(1, min(by_cost, images // (workers * 8)))


def fixed_batches(tasks: Iterable[ImageTask], size: int) -> Iterator[list[ImageTask]]:
    """Batches of ``size`` from a stream of tasks, holding one batch at a time (a task that is
    ``alone``, a batch of its own)."""
    batch: list[ImageTask] = []
    for task in tasks:
        if task.alone:
            yield [task]
            continue
        batch.append(task)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def auto_batches(tasks: Iterable[ImageTask], by_cost: int, workers: int, *,
                 lookahead: int = LOOKAHEAD) -> Iterator[list[ImageTask]]:
    """``--batch-size auto`` on a stream: each batch sized by ``balanced`` for the images listed
    so far, the listing being read ``lookahead`` tasks ahead.

    Batches grow with the listing up to ``by_cost`` (tasks of about a quarter second): a
    short listing gives at least 8 tasks per worker, and a long one batches big enough to
    keep the scheduler's per-task cost off each image. Holds at most ``lookahead`` +
    ``by_cost`` tasks.
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
        if buffer[0].alone:
            yield [buffer.popleft()]
            continue
        size = balanced(by_cost, seen, workers)
        fill(size)
        batch: list[ImageTask] = []
        while buffer and len(batch) < size and not buffer[0].alone:
            batch.append(buffer.popleft())
        yield batch


def batches(config: RunConfig, inp: Store, out: Store, tasks: Iterable[ImageTask], *, first: str,
            workers: int) -> Iterator[list[ImageTask]]:
    """The batches of a run: ``config.batch_size``, or "auto" from ``first``'s header and the
    round trips an image costs besides its pixels (a store's can cost more than the pixels).

    The round trips are timed from the client: a GET of ``first`` and a HEAD on ``out``
    (a worker makes a HEAD, a GET and a PUT an image). A client far from a store that its
    workers sit next to overestimates them and makes shorter tasks: give ``--batch-size``.
    """
    if config.batch_size != "auto":
        return fixed_batches(tasks, int(config.batch_size))
    head: list[bytes] = []
    read_s = _fastest(lambda: head.append(inp.read(first, length=PROBE_READ_BYTES)))
    size = _size_or_none(head[-1]) if head else None
    head_s = _fastest(lambda: out.info(f"{PROBE_PREFIX}latency"))
    read_s = read_s or 0.0
    io_s = read_s + 2 * (head_s if head_s is not None else read_s)  # HEAD and PUT ~ a round trip
    return auto_batches(tasks, images_per_task(size, io_s, workers=workers), workers)


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


# -- tasks ----------------------------------------------------------------------------------

def plan_tasks(inp: Store, out: Store, job: Job, items: Iterable[ObjectInfo], *,
               skip_done: bool = True, log: RecordLog | None = None) -> Iterator[ImageTask]:
    """One task per image of ``items`` (a listing of ``inp``, read as it arrives); its output
    is the same key in ``out``.

    ``skip_done`` lets the worker skip an output whose recorded input and parameters match
    (one HEAD on the worker that owns it), unless it was made with a record line other than
    ``log``'s (the existing record), and count as done, not skipped, one that this run wrote
    (a retried batch's first attempt).
    """
    params = params_tag(job)
    run = uuid.uuid4().hex
    for item in items:
        yield ImageTask(item.key, item.key, item.key, inp, out, input_tag=input_tag(item), params=params,
                        skip_done=skip_done, line=log.tag(item.key) if log is not None else "",
                        run=run)


def _shipped(batches: Iterable[list[ImageTask]], inp: Store, out: Store
             ) -> Iterator[list[ImageTask]]:
    """``--transfer bytes``: inputs that the workers cannot reach are read here and sent with
    their task, as each batch is submitted; outputs that they cannot reach come back, and
    are checked here for resume (an output up to date ships nothing)."""
    for batch in batches:
        yield [_ship(t, inp, out) for t in batch]


def _ship(task: ImageTask, inp: Store, out: Store) -> ImageTask:
    if task.done or task.error is not None:
        return task
    data = None if inp.shared else _read_or_empty(inp, task.src)
    if task.part is not None:  # a segment: made again where only the client reaches its output
        return replace(task, data=data, return_bytes=not out.shared,
                       skip_done=task.skip_done and out.shared)
    if not out.shared and task.skip_done and task.annotate is None:
        try:
            if up_to_date(task, data if data is not None else inp.read(task.src)):
                return replace(task, done=True)
        except (OSError, ParaBlurError):
            pass  # the worker reports what is wrong with the image
        task = replace(task, skip_done=False)
    return replace(task, data=data, return_bytes=not out.shared)


def _read_or_empty(store: Store, key: str) -> bytes:
    """An object's bytes, or none when it cannot be read (the worker then reports it empty)."""
    try:
        return store.read(key)
    except (OSError, ParaBlurError):
        return b""


def preflight(executor: Executor, job: Job) -> None:
    """Refuse, with one line, a job that cannot run where ``executor`` runs it (e.g. a user's
    workload that its workers cannot import), before any image is touched."""
    problems = {w: r for w, r in executor.run_on_workers(job.workload.preflight).items() if r}
    if problems:
        where = ", ".join(sorted(problems)[:3]) + (" ..." if len(problems) > 3 else "")
        raise ConfigError(f"{next(iter(problems.values()))} (on {len(problems)} worker(s): {where})")


# -- running --------------------------------------------------------------------------------

def run_images(executor: Executor, config: RunConfig, inp: Store, out: Store, *,
               items: Iterable[ObjectInfo] | None = None, first: str | None = None,
               force: bool = False,
               boxes: Store | None = None, progress: bool = False) -> RunSummary:
    """Run every image of ``items`` (default: ``inp``'s listing) into ``out`` on a started
    executor, and summarize: the one way every command runs its images.

    ``first`` is the first image's key (its header sizes ``--batch-size auto``; default: the
    first of ``inp``'s listing). ``force``
    redoes every image (outputs rewritten in place, nothing deleted); otherwise the
    workers skip the images whose outputs are up to date. A workload with a record file
    (faces: ``detections.jsonl``) has its lines gathered from the results on top of the
    existing record (its lines kept for the images the workers skip) and written whole
    when the run ends or is interrupted. With ``boxes``, the workers then draw each record
    on its input into that store (``--draw-boxes``), never over an output.
    """
    job = Job.for_run(config)
    preflight(executor, job)
    log = (RecordLog(out, job.workload.record_file, keep_existing=not force)
           if job.workload.record_file else None)
    ship = config.effective_transfer == "bytes" and executor.name != "sequential"
    seen: set[str] = set()  # this run's images with an output, for --draw-boxes
    parts = Assembler(inp, out, job)

    def settle(img: ImageResult) -> ImageResult | None:
        img = parts.settle(_write_returned(img, out))
        if img is None:  # a part of an output whose other parts are still under way
            return None
        if log is not None:
            note_record(log, img)
        if img.ok and boxes is not None and img.name not in parts.assembled:  # images only
            seen.add(img.name)
        return img

    try:
        first = first or inp.probe_read()
        tasks = (part for task in plan_tasks(inp, out, job, inp.scan_images() if items is None
                                             else items, skip_done=not force, log=log)
                 for part in parts.expand(task))
        batched = batches(config, inp, out, tasks, first=first, workers=executor.workers)
        summary = drive(executor, config, job, _shipped(batched, inp, out) if ship else batched,
                        batch_size=None, output=out.url, settle=settle, progress=progress)
        if boxes is not None and log is not None:
            log.save()  # the run's lines first: a kill while drawing loses no record
            summary = _draw_boxes(executor, config, job, inp, boxes, log, seen, summary,
                                  ship=ship, progress=progress)
        return summary
    finally:
        if log is not None:
            log.save()


def note_record(log: RecordLog, img: ImageResult) -> None:
    """Keep ``img``'s line in ``log`` as its run left it: replaced when redone, kept when
    skipped as up to date, dropped when it failed or gave no record."""
    if img.skipped:
        return
    if img.ok and img.line is not None:
        log.add(img.name, img.line)
    else:
        log.drop(img.name)


def _write_returned(img: ImageResult, store: Store) -> ImageResult:
    """Write an output a remote worker sent back (``--transfer bytes``), with its resume record."""
    if not img.ok or img.output is None:
        return img
    t0 = time.perf_counter()
    try:
        store.write(img.dst or img.name, img.output, metadata=img.meta)
    except (OSError, ParaBlurError) as exc:
        return replace(img, ok=False, error=f"write: {failure_reason(exc)}", output=None)
    return replace(img, write_s=img.write_s + time.perf_counter() - t0, output=None)


def _draw_boxes(executor: Executor, config: RunConfig, job: Job, inp: Store, boxes: Store,
                log: RecordLog, names: set[str], summary: RunSummary, *, ship: bool,
                progress: bool) -> RunSummary:
    """``--draw-boxes``: the workers draw the record of each of ``names`` (the run's images,
    skipped ones too) on its input into ``boxes``; a copy that fails is a failure."""

    def tasks() -> Iterator[ImageTask]:
        for name in sorted(names):
            record = log.get(name)
            if record is not None:
                yield ImageTask(name, name, name, inp, boxes, annotate=record)

    batched = fixed_batches(tasks(), max(summary.batch_size, 1))
    drawn = drive(executor, config, job, _shipped(batched, inp, boxes) if ship else batched,
                  batch_size=summary.batch_size, total=len(names), output=boxes.url,
                  settle=lambda img: _write_returned(img, boxes), progress=progress)
    failures = summary.failures + tuple({"image": f["image"], "reason": f"draw-boxes: {f['reason']}"}
                                        for f in drawn.failures)
    return replace(summary, failures=failures, failed=len(failures))


def drive(executor: Executor, config: RunConfig, job: Job, batches: Iterable[list[ImageTask]], *,
          batch_size: int | None, output: str, total: int | None = None,
          settle: Callable[[ImageResult], ImageResult | None] = lambda img: img,
          progress: bool = False) -> RunSummary:
    """Feed ``batches`` through ``executor``'s bounded window and tally their results.

    ``batches`` may be a generator (a listing, page by page): it is read only as the
    window has room. ``batch_size`` None (batches of varying size): the summary gives the
    largest. ``settle`` finishes each image's result on the client (an output sent back
    as bytes written, its record line noted; None for a part of an output still under way,
    counted when its output is).
    """
    from tqdm import tqdm

    failures: list[dict] = []
    stages = dict.fromkeys(STAGES, 0.0)
    task_s = 0.0
    ok = images = skipped = frames = 0
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
                img = settle(img)
                if img is None:
                    continue
                images += 1
                for s in STAGES:
                    stages[s] += getattr(img, s)
                if img.skipped:
                    skipped += 1
                elif img.ok:
                    ok += 1
                    frames += img.frames
                else:
                    failures.append({"image": img.name, "reason": img.error or "unknown"})
            bar.update(len(result.images))
            largest = max(largest, len(result.images))
    wall = time.perf_counter() - t0
    if config.include_startup:
        wall += executor.startup_s
    return RunSummary(
        executor=executor.name, workers=executor.workers,
        batch_size=largest if batch_size is None else batch_size, images=images, ok=ok,
        failed=len(failures), failures=tuple(sorted(failures, key=lambda f: f["image"])),
        wall_s=wall, startup_s=executor.startup_s, task_s=task_s, stages=stages,
        peak_worker_rss_mb=max(peak.values(), default=0.0), output_dir=output,
        skipped=skipped, dashboard=executor.dashboard_link, tasks=tuple(spans), frames=frames,
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


@contextlib.contextmanager
def claimed(stores: Iterable[Store], command: str, *,
            echo: Callable[[str], None] = lambda line: None) -> Iterator[None]:
    """Output locations made ready for ``command`` and held while it runs.

    Each is claimed (new or empty, then marked with ``command``; refused if it holds a
    user's objects or another command's outputs), locked (one writer per output), and
    written once (a probe object, removed after), before any cluster starts, so that a
    wrong setup is one line. A command refused before it wrote anything leaves nothing of
    the locations it made.
    """
    with contextlib.ExitStack() as stack:
        ready = False  # every location claimed, locked and probed
        made: list[Store] = []
        try:
            for store in stores:
                # Claimed before the probe: a probe object left by a run killed at that moment
                # is then a hidden object in ParaBlur's own prefix, not a reason to refuse the
                # next run.
                if store.claim_output(command):
                    made.append(store)
                try:
                    stack.enter_context(store.lock(f"parablur {command}", echo=echo))
                except ParaBlurError:
                    if store in made:  # another command holds it: what it uses stays
                        made.remove(store)
                    raise
                store.tidy()
                store.probe_write()
            ready = True
            yield
        except ParaBlurError:
            if not ready or not _wrote_anything(made):
                # The markers go while the locks are held (no other command can claim the
                # location in between), the folders this run made once the locks are gone.
                for store in reversed(made):
                    with contextlib.suppress(ParaBlurError, OSError):
                        store.unclaim()
                stack.close()
                for store in reversed(made):  # the last made first: they may nest
                    with contextlib.suppress(ParaBlurError, OSError):
                        store.unclaim()
            raise


def _wrote_anything(stores: Iterable[Store]) -> bool:
    """True when any of ``stores`` holds anything besides ParaBlur's own hidden files."""
    return any(store.holds_anything() for store in stores)


def output_store(config: RunConfig, name: str) -> Store:
    """``OUTPUT_DIR/<name>`` (an executor's, or a benchmark leg's): a folder, or a URL prefix."""
    return open_store(config.output_dir, config.storage_options).child(name)


def anonymize(config: RunConfig, *, progress: bool = False,
              echo: Callable[[str], None] = lambda line: None) -> RunSummary:
    """Anonymize every image of ``config.input_dir`` into ``OUTPUT_DIR/<executor>/``.

    Before any cluster starts, the input is listed and read and the output claimed, locked
    and written (a probe object, removed after), so a wrong setup is one line. The workers
    read and write the stores themselves; the client feeds the window from the paged
    listing and never holds it whole. Resume: each output carries its input's tag, the
    parameters and its record line's tag (object metadata, or a hidden sidecar in a
    folder), and the worker skips an image whose output matches; ``config.force`` redoes
    everything, rewriting ParaBlur's outputs in place and deleting nothing. ``echo`` gets
    the lines a command shows its user (a stale lock taken over).
    """
    job = Job.for_run(config)
    inp = open_store(config.input_dir, config.storage_options)
    out = output_store(config, config.executor)
    boxes = (output_store(config, f"{config.executor}-boxes")
             if config.draw_boxes and job.workload.record_file else None)
    first = inp.probe_read()
    with claimed([s for s in (out, boxes) if s is not None], "run", echo=echo):
        with started(config, progress=progress) as executor:
            return run_images(executor, config, inp, out, first=first, force=config.force,
                              boxes=boxes, progress=progress)
