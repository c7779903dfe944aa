"""Shared helpers for the ingestion tests: small configs, images and a raw-socket HTTP server."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from parablur.config import FetchConfig
from parablur.dataset import list_images
from parablur.ingestion.generate import encode_jpeg, generate_image
from parablur.ingestion.manifest import MANIFEST_NAME, sha256_file


def small_config(folder: Path, **overrides) -> FetchConfig:
    """A FetchConfig with tiny images and short timeouts and backoffs."""
    values = dict(input_dir=folder, num_images=1, width=64, height=64, retries=2,
                  timeout_s=0.5, connect_timeout_s=0.5, backoff_base_s=0.01, backoff_max_s=0.05,
                  retry_after_cap_s=0.2, download_workers=2)
    values.update(overrides)
    return FetchConfig(**values)


def jpeg_bytes(index: int = 0, size: int = 48) -> bytes:
    """A small valid JPEG that differs from the generated fallbacks (size 48, seed 99)."""
    return encode_jpeg(generate_image(index, size, size, seed=99))


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose IHDR declares ``width`` x ``height`` (a decompression-bomb header)."""
    ok, buf = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(buf.tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def closed_port() -> int:
    """A localhost port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_dataset_consistent(folder: Path, count: int) -> dict:
    """Every manifest entry's file exists, matches its sha256 and decodes; nothing else shows."""
    doc = json.loads((folder / MANIFEST_NAME).read_text())
    entries = doc["images"]
    assert [e["index"] for e in entries] == list(range(count))
    for entry in entries:
        path = folder / entry["file"]
        assert sha256_file(path) == entry["sha256"], entry
        assert path.stat().st_size == entry["bytes"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[:2] == (entry["height"], entry["width"])
    assert sorted(p.name for p in list_images(folder)) == sorted(e["file"] for e in entries)
    assert not list(folder.glob(".*.part"))
    return doc


def folder_state(folder: Path) -> dict[str, tuple[str, int] | None]:
    """Everything below ``folder``: each file's (sha256, mtime_ns), None for a folder."""
    state: dict[str, tuple[str, int] | None] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        state[rel] = None if path.is_dir() else (sha256_file(path), path.stat().st_mtime_ns)
    return state


class _Handler(BaseHTTPRequestHandler):
    """Misbehaves according to the path: /reset, /slow, /truncated, /busy, /trickle, /ok;
    '-once' only the first time."""

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        server = self.server
        path = self.path.split("?")[0]
        with server.lock:
            server.hits[path] = server.hits.get(path, 0) + 1
            hit = server.hits[path]
        mode = path.strip("/").split("/")[0]
        once = mode.endswith("-once")
        mode = mode.removesuffix("-once")
        body = server.body
        if mode == "ok" or (once and hit > 1):
            time.sleep(server.delay)
            self._send(body)
        elif mode == "reset":
            # SO_LINGER 0 makes close() send a TCP RST instead of a FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        elif mode == "slow":
            time.sleep(2.0)
            self._send(body)
        elif mode == "truncated":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body) + 5000))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        elif mode == "oddlength":  # a Content-Length of digits int() does not take ('²')
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "\u00b2")
            self.end_headers()
            self.wfile.write(body)
        elif mode == "busy":  # 503, come back in 30 s
            self.send_response(503)
            self.send_header("Retry-After", "30")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif mode == "trickle":  # the body at 100 bytes per 0.5 s
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for start in range(0, len(body), 100):
                    self.wfile.write(body[start:start + 100])
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass


class RawServer:
    """A threaded http.server on 127.0.0.1 for tricks pytest-httpserver cannot play."""

    def __init__(self, body: bytes, delay: float = 0.0) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.body = body
        self.httpd.delay = delay
        self.httpd.hits = {}
        self.httpd.lock = threading.Lock()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def hits(self, path: str) -> int:
        with self.httpd.lock:
            return self.httpd.hits.get(path, 0)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
