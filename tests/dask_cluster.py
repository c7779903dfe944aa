"""A real Dask cluster for tests: `dask scheduler` and `dask worker` subprocesses on 127.0.0.1.

Every wait is bounded, and ``stop`` terminates, waits for and if need be kills
every process it started.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent


def dask_cli() -> list[str]:
    """The `dask` command of the interpreter running the tests."""
    exe = Path(sys.executable).parent / "dask"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dask"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    """Workers must import parablur to run its tasks, and stay on one thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


@dataclass
class TLSFiles:
    ca: Path
    cert: Path
    key: Path

    def flags(self) -> list[str]:
        return ["--tls-ca-file", str(self.ca), "--tls-cert", str(self.cert),
                "--tls-key", str(self.key)]

    def security(self):
        from distributed.security import Security

        return Security(tls_ca_file=str(self.ca), tls_client_cert=str(self.cert),
                        tls_client_key=str(self.key), require_encryption=True)


def make_tls(folder: Path) -> TLSFiles:
    """A throw-away CA and one certificate for 127.0.0.1/localhost, signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "parablur test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TLSFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    files.key.chmod(0o600)
    return files


@dataclass
class DaskCluster:
    """A scheduler and its workers, each a subprocess; ``address`` is what clients use."""

    address: str
    scheduler_file: Path
    tls: TLSFiles | None
    procs: list[subprocess.Popen] = field(default_factory=list)

    def client(self, timeout: str = "10s"):
        from distributed import Client

        return Client(self.address, timeout=timeout,
                      security=self.tls.security() if self.tls else None)

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> pid of the worker process (the nanny's child)."""
        with self.client() as c:
            return c.run(os.getpid)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _kill_tree(p.pid)
                p.wait(timeout=5)


def _kill_tree(pid: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        proc = psutil.Process(pid)
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        proc.kill()


def start_cluster(folder: Path, workers: int = 2, tls: TLSFiles | None = None,
                  timeout: float = 60.0, worker_flags: tuple[str, ...] = ()) -> DaskCluster:
    """Start `dask scheduler` and ``workers`` nanny-supervised one-thread `dask worker`s.

    ``worker_flags`` go to every `dask worker` (e.g. ``--preload without_parablur``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proto = "tls" if tls else "tcp"
    sched_file = folder / "scheduler.json"
    tls_flags = tls.flags() if tls else []
    env = child_env()
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    cluster = DaskCluster(f"{proto}://127.0.0.1:{port}", sched_file, tls)
    try:
        cluster.procs.append(subprocess.Popen(
            [*dask_cli(), "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--protocol", proto, "--dashboard-address", "127.0.0.1:0",
             "--scheduler-file", str(sched_file), *tls_flags],
            env=env, cwd=folder, stdout=subprocess.DEVNULL,
            stderr=open(logs / "scheduler.log", "wb")))  # noqa: SIM115 - closed with the process
        deadline = time.monotonic() + timeout
        while not sched_file.exists():
            if cluster.procs[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dask scheduler did not start: "
                                   + (logs / "scheduler.log").read_text(errors="replace")[-2000:])
            time.sleep(0.1)
        for i in range(workers):
            cluster.procs.append(subprocess.Popen(
                [*dask_cli(), "worker", cluster.address, "--host", "127.0.0.1",
                 "--nthreads", "1", "--nworkers", "1", "--name", f"w{i}",
                 "--memory-limit", "0", "--dashboard-address", "127.0.0.1:0",
                 "--local-directory", str(folder / f"w{i}"), "--death-timeout", "60",
                 *tls_flags, *worker_flags],
                env=env, cwd=folder, stdout=subprocess.DEVNULL,
                stderr=open(logs / f"w{i}.log", "wb")))  # noqa: SIM115
        with cluster.client(timeout="20s") as c:
            if workers:
                c.wait_for_workers(workers, timeout=max(deadline - time.monotonic(), 5))
    except BaseException:
        cluster.stop()
        raise
    return cluster
