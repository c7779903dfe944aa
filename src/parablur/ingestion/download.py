"""Downloading one image over HTTP(S): retries with backoff, a circuit breaker, safe redirects
and validation of the body before it is accepted."""

from __future__ import annotations

import contextlib
import email.utils
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import numpy as np
import requests
from requests.adapters import HTTPAdapter
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_when_event_set
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from .. import __version__
from ..config import FetchConfig
from ..errors import IngestionError, ValidationError
from ..imageinfo import header_size, sniff_format
from .breaker import CircuitBreaker, host_of
from .validation import EXTENSIONS, check_pixels, validate_image

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_HEADER_PARSE_LIMIT = 1 << 20  # look for the size header in the first MiB while streaming
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml",
               "application/javascript", "application/problem")


class DownloadFailed(IngestionError):
    """A URL gave no acceptable image after every allowed attempt."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class DownloadCancelled(IngestionError):
    """The fetch was closed (Ctrl-C) while this download was under way: no image, no fallback."""


class _Cancelled(IngestionError):
    """Raised inside an attempt once the fetch is closed; never retried."""


class BreakerOpen(IngestionError):
    """The host was given up on after repeated connection failures."""


class UnsafeRedirect(IngestionError):
    """A redirect to a non-HTTP scheme, in a loop, or one too many."""


class _Transient(IngestionError):
    """A failure worth retrying: timeouts, resets, 429, 5xx, short reads."""

    def __init__(self, reason: str, retry_after: float | None = None,
                 breaker_open: bool = False) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.breaker_open = breaker_open


@dataclass(frozen=True)
class Download:
    """An accepted image body and what was learned while fetching it."""

    url: str
    final_url: str
    data: bytes
    fmt: str
    image: np.ndarray
    attempts: int


def make_session(pool_size: int) -> requests.Session:
    """A pooled Session, safe to share between download threads, that never retries by itself."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=max(10, pool_size), pool_maxsize=max(10, pool_size),
                          max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"parablur/{__version__}"
    session.headers["Accept"] = "image/*"
    return session


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), if any."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_connect_level(exc: requests.ConnectionError) -> bool:
    """True for failures to reach a host at all (DNS, refused, unreachable, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def _shut_down(response: requests.Response) -> None:
    """Shut down the socket a body is being read from, so that the blocked read returns.

    Through a duplicate of its descriptor: shutdown acts on the connection itself (under
    TLS too), and closing the duplicate leaves the reader's own socket object alone.
    """
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = os.dup(response.raw.fileno())
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            raise
        with sock:
            sock.shutdown(socket.SHUT_RDWR)


def _check_scheme(url: str) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeRedirect(f"refusing a redirect to a {scheme or 'schemeless'}: URL ({url!r})")


class Downloader:
    """Fetches image URLs with one shared Session and one shared circuit breaker."""

    def __init__(self, config: FetchConfig, session: requests.Session | None = None,
                 breaker: CircuitBreaker | None = None,
                 on_retry: Callable[[], None] | None = None) -> None:
        self.config = config
        self.session = session or make_session(config.download_workers)
        self.breaker = breaker or CircuitBreaker(config.breaker_threshold)
        self.on_retry = on_retry or (lambda: None)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._active: set[requests.Response] = set()

    @property
    def closed(self) -> bool:
        """True once ``close`` was called: no attempt starts or is retried any more."""
        return self._closed.is_set()

    def close(self) -> None:
        """Stop every download: no further attempts, backoff sleeps and body reads cut short,
        pooled connections released."""
        self._closed.set()
        with self._lock:
            active = list(self._active)
        for response in active:  # wake the threads blocked reading a body
            _shut_down(response)
        self.session.close()

    def fetch(self, url: str) -> Download:
        """The validated image at ``url``; raises DownloadFailed with the reason and attempts."""
        attempts = 0
        last_reason = ""

        def attempt() -> Download:
            nonlocal attempts, last_reason
            if self._closed.is_set():  # woken from a backoff sleep by close()
                raise _Cancelled("the fetch was stopped")
            if self.breaker.is_open(url):
                suffix = f" after: {last_reason}" if last_reason else ""
                raise BreakerOpen(f"circuit breaker open for {host_of(url)}{suffix}")
            attempts += 1
            try:
                final_url, data = self._get(url)
            except _Transient as exc:
                last_reason = str(exc)
                raise
            fmt, image = validate_image(data, self.config.max_pixels)
            return Download(url, final_url, data, fmt, image, attempts)

        def sleep(seconds: float) -> None:
            # Wake early when the fetch is closed or the host's breaker opens meanwhile.
            end = time.monotonic() + seconds
            while not self._closed.is_set() and not self.breaker.is_open(url):
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return
                self._closed.wait(min(remaining, 0.05))

        retrying = Retrying(
            retry=retry_if_exception_type(_Transient),
            stop=(stop_after_attempt(self.config.retries + 1) | self._stop_if_breaker_open
                  | stop_when_event_set(self._closed)),
            wait=self._wait,
            sleep=sleep,
            before_sleep=lambda _state: self.on_retry(),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except Exception as exc:
            if self._closed.is_set():  # whatever broke, it broke because the fetch stopped
                raise DownloadCancelled(f"stopped after {attempts} attempt(s)") from exc
            if isinstance(exc, (IngestionError, requests.RequestException)):
                raise DownloadFailed(str(exc) or type(exc).__name__, attempts) from exc
            raise

    @staticmethod
    def _stop_if_breaker_open(state) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        return isinstance(exc, _Transient) and exc.breaker_open

    def _wait(self, state) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(retry_after, self.config.retry_after_cap_s)
        # Exponential backoff with full-base jitter, capped (tenacity's own helper renamed its
        # parameters between versions, so it is spelled out here).
        cfg = self.config
        delay = cfg.backoff_base_s * 2 ** (state.attempt_number - 1)
        return min(cfg.backoff_max_s, delay + random.uniform(0, cfg.backoff_base_s))

    def _get(self, url: str) -> tuple[str, bytes]:
        """One attempt: follow redirects by hand (http/https only) and read the body."""
        cfg = self.config
        deadline = time.monotonic() + cfg.connect_timeout_s + cfg.timeout_s
        current, seen = url, {url}
        for _hop in range(cfg.max_redirects + 1):
            if self.breaker.is_open(current):
                raise BreakerOpen(f"circuit breaker open for {host_of(current)}")
            try:
                response = self.session.get(current, stream=True, allow_redirects=False,
                                            timeout=(cfg.connect_timeout_s, cfg.timeout_s))
            except requests.ConnectionError as exc:
                if _is_connect_level(exc):
                    opened = self.breaker.record_failure(current)
                    raise _Transient(f"cannot connect to {host_of(current)}: "
                                     f"{type(exc).__name__}", breaker_open=opened) from exc
                raise _Transient(f"connection error: {type(exc).__name__}: {exc}") from exc
            except requests.Timeout as exc:
                raise _Transient(f"timed out waiting for {host_of(current)}") from exc
            except requests.RequestException as exc:
                raise IngestionError(f"request failed: {type(exc).__name__}: {exc}") from exc
            self.breaker.record_success(current)
            with self._tracked(response):
                status = response.status_code
                if status in _REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise IngestionError(f"HTTP {status} redirect without a Location")
                    target = urljoin(current, location)
                    _check_scheme(target)
                    if target in seen:
                        raise UnsafeRedirect(f"redirect loop at {target}")
                    seen.add(target)
                    current = target
                    continue
                if status == 429 or 500 <= status <= 599:
                    raise _Transient(f"HTTP {status}",
                                     parse_retry_after(response.headers.get("Retry-After")))
                if not 200 <= status <= 299:
                    raise IngestionError(f"HTTP {status}")
                return current, self._read_body(response, deadline)
        raise UnsafeRedirect(f"more than {cfg.max_redirects} redirects")

    @contextlib.contextmanager
    def _tracked(self, response: requests.Response) -> Iterator[None]:
        """Close ``response`` at the end, and let ``close`` cut its connection meanwhile."""
        with self._lock:
            self._active.add(response)
        try:
            with response:
                if self._closed.is_set():
                    raise _Cancelled("the fetch was stopped")
                yield
        finally:
            with self._lock:
                self._active.discard(response)

    def _read_body(self, response: requests.Response, deadline: float) -> bytes:
        """The whole body, streamed with max_bytes, the pixel cap and Content-Length enforced."""
        cfg = self.config
        ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype.startswith(_TEXT_TYPES) or "html" in ctype:
            raise ValidationError(f"served {ctype}, not an image")
        expected = None
        length = (response.headers.get("Content-Length") or "").strip()
        if length.isascii() and length.isdigit():  # isdigit() alone takes '²', int() does not
            expected = int(length)
            if expected > cfg.max_bytes:
                raise ValidationError(
                    f"Content-Length {expected} is over max-bytes {cfg.max_bytes}")
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        encoded = encoding not in ("", "identity")
        body = bytearray()
        fmt: str | None = None
        size_known = False
        try:
            for chunk in response.iter_content(_CHUNK):
                body += chunk
                if len(body) > cfg.max_bytes:
                    raise ValidationError(f"body is over max-bytes {cfg.max_bytes}")
                if time.monotonic() > deadline:
                    raise _Transient(f"body took longer than {cfg.timeout_s} s")
                if fmt is None and len(body) >= 16:
                    fmt = sniff_format(bytes(body[:16]))
                    if fmt not in EXTENSIONS:
                        head = bytes(body[:16]).decode("latin-1").encode("unicode_escape").decode()
                        raise ValidationError(
                            f"not a recognised image format (body starts with {head!r})")
                if fmt and not size_known and len(body) <= _HEADER_PARSE_LIMIT:
                    size = header_size(fmt, bytes(body))
                    if size is not None:
                        check_pixels(*size, cfg.max_pixels)
                        size_known = True
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.Timeout) as exc:
            raise _Transient(f"body cut off after {len(body)} bytes "
                             f"({type(exc).__name__})") from exc
        if expected is not None and not encoded and len(body) != expected:
            raise _Transient(f"short read: {len(body)} of {expected} bytes")
        return bytes(body)
