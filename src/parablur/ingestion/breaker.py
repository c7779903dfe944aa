"""A per-host circuit breaker so an unreachable host is not asked again and again."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit


def host_of(url: str) -> str:
    """The host:port a URL talks to, the unit the breaker counts failures for."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


class CircuitBreaker:
    """Opens for a host after ``threshold`` consecutive connection-level failures; thread-safe.

    An open breaker stays open for the rest of the fetch: a fetch is short, and an
    unreachable host is better replaced by generated images than waited for.
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._open: set[str] = set()

    def is_open(self, url: str) -> bool:
        """True once the host of ``url`` has been given up on."""
        with self._lock:
            return host_of(url) in self._open

    def record_failure(self, url: str) -> bool:
        """Count one connection-level failure; True if the breaker is (now) open."""
        host = host_of(url)
        with self._lock:
            self._failures[host] = self._failures.get(host, 0) + 1
            if self._failures[host] >= self.threshold:
                self._open.add(host)
            return host in self._open

    def record_success(self, url: str) -> None:
        """A host that answered resets its count of consecutive failures."""
        with self._lock:
            self._failures[host_of(url)] = 0

    @property
    def open_hosts(self) -> list[str]:
        """Hosts given up on so far, sorted."""
        with self._lock:
            return sorted(self._open)
