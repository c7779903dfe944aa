"""Bad paths and values, subcommand by subcommand, as a new user would try them.

Every case runs the real command line in a subprocess, in a folder of a user's files, and
asserts: the exit code, one line on stderr (never a traceback), and that the folder is
exactly as it was, byte for byte: no output or report folder, no CSV, no marker. Every
check comes before any dataset is fetched or any pool is started, so each case is quick
(the processes are run a few at a time, once for the module).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import make_images

from parablur.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _closed_port_url() -> str:
    """An http URL where nothing listens: a download that is tried anyway fails at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/64/64"


CLOSED = _closed_port_url()
RUN = ["--input-dir", "in", "--quiet", "--no-dashboard"]
FETCH = ["--input-dir", "data", "--num-images", "2", "--width", "64", "--height", "64",
         "--retries", "0", "--source-url", CLOSED, "--quiet"]
BENCH = ["--input-dir", "in", "--workers", "2", "--trials", "1", "--warmup", "0", "--no-ceiling",
         "--no-dashboard", "--source-url", CLOSED, "--quiet"]
SCALE = [*(a for i, a in enumerate(BENCH) if "--workers" not in (a, BENCH[i - 1])),
         "--workers-list", "1", "--batch-sizes", "2"]
BASE = {"run": RUN, "fetch": FETCH, "bench": BENCH, "scale": SCALE, "report": ["results.csv"],
        "models": []}
USERS_PAGE = b"<html>my own page</html>\n"


def user_folder(tmp: Path) -> None:
    """A user's files: text, a photo, an image folder, an empty folder, a results CSV of
    ParaBlur's, pages that are not performance reports, and a folder with an unreadable image."""
    (tmp / "notes.txt").write_text("my notes\n")
    make_images(tmp / "in", 3, size=(32, 48))
    shutil.copyfile(tmp / "in" / "img_000.jpg", tmp / "photo.jpg")
    (tmp / "adir").mkdir()
    shutil.copyfile(FIXTURES / "results_v1.csv", tmp / "results.csv")
    (tmp / "mine-tasks.csv").write_text("my,own,data\n")
    for name in ("p-dask.html", "q-w1-b2.html"):
        (tmp / name).write_bytes(USERS_PAGE)
    make_images(tmp / "bad_in", 2, size=(32, 48))
    # is_file() is true, every read fails with EIO: an unreadable image.
    (tmp / "bad_in" / "img_0001.jpg").symlink_to("/proc/self/mem")


@dataclass(frozen=True)
class Case:
    command: str
    args: tuple[str, ...]
    code: int = 2
    says: str = ""  # in the error line
    lines: int = 1  # on stderr
    creates: str | None = None  # the one top-level name the command may create (a run's outputs)
    shows: tuple[str, ...] = ()  # on stdout
    base: bool = True  # start from the subcommand's usual flags

    @property
    def argv(self) -> list[str]:
        cmd = self.command.split()
        return [*cmd, *(BASE[cmd[0]] if self.base else []), *self.args]


def C(command: str, *args: str, **kw) -> Case:
    return Case(command, args, **kw)


CASES = {
    # 1. An output path below a regular file.
    "run output-dir under a file": C("run", "--output-dir", "notes.txt/out", says="notes.txt"),
    "run output-dir is a file": C("run", "--output-dir", "notes.txt", says="not a folder"),
    "run output-dir file:// under a file": C("run", "--output-dir", "file://notes.txt/out",
                                             says="notes.txt"),
    "run summary-json under a file": C("run", "--summary-json", "notes.txt/s.json",
                                       says="notes.txt"),
    "run summary-json is a folder": C("run", "--summary-json", "adir", says="adir"),
    "run performance-report under a file": C("run", "--executor", "dask", "--workers", "1",
                                             "--performance-report", "notes.txt/p.html",
                                             says="notes.txt"),
    "run performance-report is a folder": C("run", "--performance-report", "adir", says="adir"),
    "fetch input-dir under a file": C("fetch", "--input-dir", "notes.txt/data", says="notes.txt"),
    "fetch summary-json under a file": C("fetch", "--summary-json", "notes.txt/s.json",
                                         says="notes.txt"),
    "bench output-dir under a file": C("bench", "--output-dir", "notes.txt/out",
                                       says="notes.txt"),
    "bench input-dir under a file": C("bench", "--input-dir", "notes.txt/data", says="notes.txt"),
    "bench report-dir under a file": C("bench", "--report-dir", "notes.txt/r", says="notes.txt"),
    "bench report-dir is a file": C("bench", "--report-dir", "notes.txt", says="notes.txt"),
    "bench report-csv under a file": C("bench", "--report-csv", "notes.txt/r.csv",
                                       says="notes.txt"),
    "bench report-csv is a folder": C("bench", "--report-csv", "adir", says="adir"),
    "bench summary-json under a file": C("bench", "--summary-json", "notes.txt/s.json",
                                         says="notes.txt"),
    "bench performance-report under a file": C("bench", "--performance-report",
                                               "notes.txt/p.html", says="notes.txt"),
    "scale output-dir under a file": C("scale", "--output-dir", "notes.txt/out",
                                       says="notes.txt"),
    "scale report-dir under a file": C("scale", "--report-dir", "notes.txt/r", says="notes.txt"),
    "scale report-csv under a file": C("scale", "--report-csv", "notes.txt/r.csv",
                                       says="notes.txt"),
    "scale summary-json under a file": C("scale", "--summary-json", "notes.txt/s.json",
                                         says="notes.txt"),
    "scale performance-report under a file": C("scale", "--performance-report",
                                               "notes.txt/p.html", says="notes.txt"),
    "report out under a file": C("report", "--out", "notes.txt/r", says="notes.txt"),
    "report out is a file": C("report", "--out", "notes.txt", says="notes.txt"),
    "report summary-json under a file": C("report", "--summary-json", "notes.txt/s.json",
                                          says="notes.txt"),
    # 2. Integers parsed by hand.
    "run batch-size superscript two": C("run", "--batch-size", "\u00b2", says="batch-size"),
    "run batch-size zero": C("run", "--batch-size", "0", says="batch-size"),
    "run batch-size negative": C("run", "--batch-size", "-4", says="batch-size"),
    "bench batch-size superscript two": C("bench", "--batch-size", "\u00b2", says="batch-size"),
    "scale batch-size superscript two": C("scale", "--batch-size", "\u00b2", says="batch-size"),
    "scale workers-list superscript two": C("scale", "--workers-list", "\u00b2",
                                            says="workers-list"),
    "scale workers-list zero": C("scale", "--workers-list", "0,2", says="workers-list"),
    "scale batch-sizes superscript two": C("scale", "--batch-sizes", "1,\u00b2",
                                           says="batch-sizes"),
    "scale batch-sizes empty": C("scale", "--batch-sizes", ",", says="batch-sizes"),
    "fetch num-images superscript two": C("fetch", "--num-images", "\u00b2", says="num-images"),
    # 3. A results CSV that is not one.
    "report of a photo": C("report", "photo.jpg", says="photo.jpg", base=False),
    "report of a text file": C("report", "notes.txt", says="notes.txt", base=False),
    "report of a missing file": C("report", "missing.csv", says="missing.csv", base=False),
    "report of a folder": C("report", "adir", says="adir", base=False),
    # 4. A results CSV to append to that is not one: refused before the dataset and pools.
    "bench report-csv is a photo": C("bench", "--report-csv", "photo.jpg", says="photo.jpg"),
    "bench report-csv is a text file": C("bench", "--report-csv", "notes.txt",
                                         says="notes.txt"),
    "bench report-csv with a user's task file": C("bench", "--report-csv", "mine.csv",
                                                  says="mine-tasks.csv"),
    "scale report-csv is a photo": C("scale", "--report-csv", "photo.jpg", says="photo.jpg"),
    # 5. An unreadable image in a user's folder.
    "run unreadable image": C("run", "--input-dir", "bad_in", code=1, lines=0, creates="processed",
                              shows=("2/3 images anonymized", "failed: img_0001.jpg")),
    "fetch unreadable image": C("fetch", "--input-dir", "bad_in", says="img_0001.jpg"),
    "bench unreadable image": C("bench", "--input-dir", "bad_in", says="img_0001.jpg"),
    "scale unreadable image": C("scale", "--input-dir", "bad_in", says="img_0001.jpg"),
    # 6. Outputs in a store that ends with the process.
    "run output-dir memory://": C("run", "--output-dir", "memory://x/out", says="memory://"),
    "fetch input-dir memory://": C("fetch", "--input-dir", "memory://x/data", says="memory://"),
    "bench input-dir memory://": C("bench", "--input-dir", "memory://x/data", says="memory://"),
    "bench output-dir memory://": C("bench", "--output-dir", "memory://x/out", says="memory://"),
    "scale input-dir memory://": C("scale", "--input-dir", "memory://x/data", says="memory://"),
    "run input-dir memory:// (empty)": C("run", "--input-dir", "memory://x/in",
                                         says="no images"),
    # 7. A user's file at a performance report's derived name.
    "bench two dask executors, user's FILE-dask.html": C(
        "bench", "--executors", "dask,dask-threads", "--performance-report", "p.html",
        says="p-dask.html"),
    "scale user's FILE-w1-b2.html": C("scale", "--performance-report", "q.html",
                                      says="q-w1-b2.html"),
    "run user's file as performance-report": C("run", "--performance-report", "photo.jpg",
                                               says="refusing to overwrite"),
    "run user's file as summary-json": C("run", "--summary-json", "notes.txt",
                                         says="refusing to overwrite"),
    # 8. What else a new user may try.
    "run input-dir missing": C("run", "--input-dir", "missing", says="missing"),
    "run input-dir is a file": C("run", "--input-dir", "notes.txt", says="notes.txt"),
    "fetch input-dir is a file": C("fetch", "--input-dir", "notes.txt", says="notes.txt"),
    "bench input-dir is a file": C("bench", "--input-dir", "notes.txt", says="notes.txt"),
    "run workers zero": C("run", "--workers", "0", says="workers"),
    "run workers negative": C("run", "--workers", "-2", says="workers"),
    "bench workers zero": C("bench", "--workers", "0", says="workers"),
    "run threads-per-worker zero": C("run", "--threads-per-worker", "0", says="threads"),
    "bench trials zero": C("bench", "--trials", "0", says="trials"),
    "bench warmup negative": C("bench", "--warmup", "-1", says="warmup"),
    "scale trials zero": C("scale", "--trials", "0", says="trials"),
    "scale images-per-worker zero": C("scale", "--weak", "--images-per-worker", "0",
                                      says="images-per-worker"),
    "run unknown workload module": C("run", "--workload", "no_such_module_xyz:anonymize",
                                     says="no_such_module_xyz"),
    "run workload not MODULE:FUNCTION": C("run", "--workload", "no such", says="workload"),
    "bench unknown workload module": C("bench", "--workload", "no_such_module_xyz:anonymize",
                                       says="no_such_module_xyz"),
    "run storage-options bad JSON": C("run", "--storage-options", "{bad", says="JSON"),
    "run storage-options missing file": C("run", "--storage-options", "@missing.json",
                                          says="missing.json"),
    "run storage-options a photo": C("run", "--storage-options", "@photo.jpg", says="photo.jpg"),
    "fetch storage-options bad JSON": C("fetch", "--storage-options", "{bad", says="JSON"),
    "bench storage-options missing file": C("bench", "--storage-options", "@missing.json",
                                            says="missing.json"),
    "run input-dir unknown scheme": C("run", "--input-dir", "nosuch://b/in", says="nosuch"),
    "run output-dir unknown scheme": C("run", "--output-dir", "nosuch://b/out", says="nosuch"),
    "fetch input-dir unknown scheme": C("fetch", "--input-dir", "nosuch://b/d", says="nosuch"),
    "bench input-dir unknown scheme": C("bench", "--input-dir", "nosuch://b/d", says="nosuch"),
    "fetch url-list missing": C("fetch", "--url-list", "missing.txt", says="missing.txt"),
    "fetch url-list a photo": C("fetch", "--url-list", "photo.jpg", says="photo.jpg"),
    "fetch url-list a folder": C("fetch", "--url-list", "adir", says="adir"),
    "fetch num-images zero": C("fetch", "--num-images", "0", says="num-images"),
    "fetch source-url ftp": C("fetch", "--source-url", "ftp://example.org/x", says="source-url"),
    "run blur-radius zero": C("run", "--blur-radius", "0", says="blur-radius"),
    "run draw-boxes without faces": C("run", "--draw-boxes", says="draw-boxes"),
    "run scheduler-file missing": C("run", "--executor", "dask", "--scheduler-file",
                                    "missing.json", says="missing.json"),
    "run face-model missing": C("run", "--workload", "faces", "--face-model", "missing.onnx",
                                says="missing.onnx"),
    "bench executors only sequential": C("bench", "--executors", "sequential",
                                         says="parallel executor"),
    "bench engines unknown": C("bench", "--engines", "exact,gpu", says="engines"),
    "models fetch face-model missing": C("models fetch", "--face-model", "missing.onnx",
                                         says="missing.onnx"),
    "models fetch face-model a photo": C("models fetch", "--face-model", "photo.jpg",
                                         says="photo.jpg"),
    "models fetch face-model under a file": C("models fetch", "--face-model", "notes.txt/m.onnx",
                                              says="notes.txt"),
}


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: a folder, a link's target, or a file's SHA-256."""
    tree = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                tree[rel] = f"link {os.readlink(path)}"
            elif path.is_dir():
                tree[rel] = "folder"
            else:
                tree[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


@dataclass(frozen=True)
class Outcome:
    proc: subprocess.CompletedProcess
    before: dict[str, str]
    after: dict[str, str]


def _run_case(root: Path, index: int, case: Case) -> Outcome:
    folder = root / f"case{index:03d}"
    folder.mkdir()
    user_folder(folder)
    before = snapshot(folder)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"),
                                                        os.environ.get("PYTHONPATH", "")]),
           "PARABLUR_CACHE": str(folder / "cache")}
    proc = subprocess.run([sys.executable, "-m", "parablur", *case.argv], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)
    return Outcome(proc, before, snapshot(folder))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case run once, a few at a time: each is one short-lived process, mostly startup."""
    root = tmp_path_factory.mktemp("bad_input")
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool:
        done = pool.map(lambda item: _run_case(root, *item), enumerate(CASES.values()))
        return dict(zip(CASES, done, strict=True))


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.slow
def test_bad_input_is_one_line_and_creates_nothing(name: str, outcomes: dict[str, Outcome]) -> None:
    case, outcome = CASES[name], outcomes[name]
    proc, before, after = outcome.proc, outcome.before, outcome.after
    err = proc.stderr
    assert "Traceback" not in err, err
    assert proc.returncode == case.code, (proc.returncode, err, proc.stdout)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == case.lines, err
    if case.lines:
        assert lines[0].startswith(f"parablur {case.command.split()[0]}"), err
        assert case.says in lines[0], err
        # Refused before any work: no dataset line, no "workers ready", nothing on stdout.
        assert proc.stdout == "", proc.stdout
    for text in case.shows:
        assert text in proc.stdout, proc.stdout
    if case.creates is not None:
        after = {k: v for k, v in after.items() if k.split("/")[0] != case.creates}
    assert after == before


def test_batch_size_auto_and_digits_still_parse() -> None:
    assert RunConfig(batch_size="auto").batch_size == "auto"
    assert RunConfig(batch_size="12").batch_size == 12


def test_derived_report_names_are_the_ones_written_and_parablurs_own_are_allowed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from parablur.cli import _check_written_files, _performance_reports, build_parser
    from parablur.scaling import _point_file

    parse = build_parser().parse_args
    bench = parse(["bench", "--executors", "dask,dask-threads,threads",
                   "--performance-report", "p.html"])
    assert _performance_reports(bench) == [Path("p.html"), Path("p-dask.html"),
                                           Path("p-dask-threads.html")]
    scale = parse(["scale", "--workers-list", "1,2", "--batch-sizes", "4",
                   "--performance-report", "p.html"])
    assert _performance_reports(scale) == [Path("p.html"), Path("p-w1-b4.html"),
                                           Path("p-w2-b4.html")]
    assert _point_file(Path("p.html"), "w1-b4") == Path("p-w1-b4.html")
    # A performance report ParaBlur wrote at a derived name is its own to write again.
    monkeypatch.chdir(tmp_path)
    Path("p-dask.html").write_text("<html><title>Dask Performance Report</title></html>")
    _check_written_files(bench)
