"""Safe defaults: local clusters listen on loopback only; outputs stay inside --output-dir."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import psutil
import pytest
from conftest import make_images

from parablur.config import ClusterConfig, RunConfig
from parablur.errors import DatasetError
from parablur.executors.dask_executor import DaskExecutor
from parablur.files import remove_stale_temps
from parablur.pipeline import anonymize, plan_tasks


def _listening(pids: list[int]) -> set[tuple[str, int]]:
    found = set()
    for pid in pids:
        try:
            for conn in psutil.Process(pid).net_connections("inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((conn.laddr.ip, conn.laddr.port))
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("processes", [False, True])
def test_local_cluster_and_dashboard_listen_on_loopback_only(processes: bool) -> None:
    me = os.getpid()
    before = _listening([me])
    ex = DaskExecutor(2, 1, ClusterConfig(), processes=processes)
    with ex:
        pids = [me] + [p.pid for p in psutil.Process(me).children(recursive=True)]
        opened = _listening(pids) - before
        assert ex.dashboard_link and ex.dashboard_link.startswith("http://127.0.0.1:")
    assert opened, "the dashboard at least should be listening"
    for ip, port in opened:
        assert ipaddress.ip_address(ip).is_loopback, f"{ip}:{port} is not loopback"


def test_outputs_never_leave_the_output_folder(tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_images(src / "sub", 1, size=(32, 32))
    outside = tmp_path / "outside"
    outside.mkdir()
    config = RunConfig(input_dir=src, output_dir=tmp_path / "out")
    out_dir = tmp_path / "out" / "sequential"
    # A name that climbs out of the input folder is refused.
    sneaky = src / "sub" / ".." / ".." / "escape.jpg"
    with pytest.raises(DatasetError, match="outside the output folder"):
        plan_tasks(config, [sneaky], out_dir)
    # A symlink planted in the output folder that points elsewhere is refused too.
    out_dir.mkdir(parents=True)
    (out_dir / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DatasetError, match="outside the output folder"):
        anonymize(config)
    assert list(outside.iterdir()) == []
    # An input that is a symlink to a file elsewhere is read, and written inside.
    (out_dir / "sub").unlink()
    make_images(tmp_path / "elsewhere", 1, size=(32, 32), seed=2)
    (src / "linked.jpg").symlink_to(tmp_path / "elsewhere" / "img_000.jpg")
    summary = anonymize(config)
    assert summary.ok == 2 and (out_dir / "linked.jpg").is_file()
    assert not (out_dir / "linked.jpg").is_symlink()
    assert (tmp_path / "elsewhere" / "img_000.jpg").stat().st_size > 0


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    stale = [tmp_path / ".img.jpg.0123abcd.part", tmp_path / "a" / ".x y.png.deadbeef.part"]
    keep = [tmp_path / "img.jpg", tmp_path / ".parablur-outputs.json", tmp_path / "notes.part"]
    for p in stale + keep:
        p.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == 2
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)
