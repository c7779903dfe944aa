"""Which storage errors are worth another try, and the one bounded retry loop around every store call.

fsspec backends turn the service's error codes into Python exceptions
(s3fs: ``AccessDenied`` -> ``PermissionError``, ``NoSuchKey`` -> ``FileNotFoundError``,
``SlowDown`` -> ``OSError(EBUSY)``) and keep the botocore ``ClientError`` as the cause;
the code and HTTP status are read from there when present, the exception types otherwise.
"""

from __future__ import annotations

import enum
import errno
import random
from dataclasses import dataclass

from tenacity import Retrying, retry_if_exception, stop_after_attempt

from ..errors import ConfigError


class Kind(enum.Enum):
    """What an error means for the run."""

    TRANSIENT = "transient"  # 5xx, SlowDown, throttling, resets, timeouts: try again
    CREDENTIALS = "credentials"  # wrong key or secret, expired token: the setup is wrong
    DENIED = "denied"  # the credentials work but may not do this
    NO_BUCKET = "no bucket"  # the bucket or container does not exist: the setup is wrong
    NOT_FOUND = "not found"  # this object does not exist
    OTHER = "other"  # anything else: permanent for this object


_TRANSIENT_CODES = frozenset({
    "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
    "ThrottlingException", "TooManyRequests", "RequestLimitExceeded", "OperationAborted",
    "ServerBusy", "OperationTimedOut", "500", "502", "503", "504",
})
_CREDENTIAL_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem", "InvalidSecurity",
    "NotSignedUp", "RequestTimeTooSkewed", "AuthorizationHeaderMalformed",
    "AuthenticationFailed", "401",
})
_DENIED_CODES = frozenset({
    "AccessDenied", "AuthorizationFailure", "AuthorizationPermissionMismatch", "403",
})
_NO_BUCKET_CODES = frozenset({"NoSuchBucket", "ContainerNotFound"})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "BlobNotFound", "404"})
# Connection-level failures of the HTTP stacks under fsspec backends (botocore, aiohttp,
# urllib3, requests), matched by class name so that none of them has to be imported here.
_TRANSIENT_CLASS_NAMES = frozenset({
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
    "ConnectTimeoutError", "HTTPClientError", "ProxyConnectionError", "ResponseStreamingError",
    "ClientConnectionError", "ClientConnectorError", "ServerDisconnectedError",
    "ClientOSError", "ClientPayloadError", "ServerTimeoutError", "IncompleteRead",
    "ResponseParserError", "FSTimeoutError", "ProtocolError", "ChunkedEncodingError",
    "ServiceRequestError", "ServiceResponseError",
})
_TRANSIENT_ERRNOS = frozenset({
    errno.EBUSY, errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.ETIMEDOUT,
    errno.EPIPE, errno.EAGAIN, errno.EREMOTEIO, errno.EHOSTUNREACH, errno.ENETUNREACH,
})


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def service_code(exc: BaseException) -> tuple[str | None, int | None]:
    """The service's error code and HTTP status, when a botocore-style error is in the chain."""
    for item in _chain(exc):
        response = getattr(item, "response", None)
        if isinstance(response, dict) and isinstance(response.get("Error"), dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return response["Error"].get("Code"), status
    return None, None


def classify(exc: BaseException) -> Kind:
    """What ``exc`` means: a transient failure, a wrong setup, a missing object, or other."""
    code, status = service_code(exc)
    if code in _TRANSIENT_CODES or (status is not None and (status >= 500 or status == 429)):
        return Kind.TRANSIENT
    if code in _NO_BUCKET_CODES:
        return Kind.NO_BUCKET
    if code in _CREDENTIAL_CODES or status == 401:
        return Kind.CREDENTIALS
    if code in _DENIED_CODES or status == 403:
        return Kind.DENIED
    if code in _NOT_FOUND_CODES:
        return Kind.NOT_FOUND
    for item in _chain(exc):
        names = {cls.__name__ for cls in type(item).__mro__}
        if names & _TRANSIENT_CLASS_NAMES:
            return Kind.TRANSIENT
        if isinstance(item, ConnectionError | TimeoutError):
            return Kind.TRANSIENT
        if isinstance(item, OSError) and item.errno in _TRANSIENT_ERRNOS:
            return Kind.TRANSIENT
    if isinstance(exc, PermissionError):
        return Kind.DENIED
    if isinstance(exc, FileNotFoundError):
        return Kind.NOT_FOUND
    return Kind.OTHER


def describe(exc: BaseException) -> str:
    """A short one-line reason: the service's code and message, or the exception's type and text."""
    code, _status = service_code(exc)
    text = " ".join(str(exc).split())
    name = code or type(exc).__name__
    if not text or text == name:
        return name
    return f"{name}: {text}"[:300]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient storage error is tried again."""

    attempts: int = 5
    base_s: float = 0.2
    max_s: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError(f"attempts must be >= 1, got {self.attempts}")
        if self.base_s < 0 or self.max_s < self.base_s:
            raise ConfigError(f"backoff must satisfy 0 <= base_s <= max_s, got {self.base_s}, "
                             f"{self.max_s}")

    def wait_s(self, attempt: int) -> float:
        """Exponential backoff with jitter, capped: the pause after failed attempt ``attempt``."""
        delay = self.base_s * 2 ** (attempt - 1)
        return min(self.max_s, delay + random.uniform(0, self.base_s))

    def retrying(self, spent: int = 0) -> Retrying:
        """A tenacity loop that retries transient errors and re-raises the last error when spent.

        ``spent``: attempts already made before the loop (which then makes the rest, its
        pauses continuing the same backoff).
        """
        return Retrying(
            retry=retry_if_exception(lambda exc: classify(exc) is Kind.TRANSIENT),
            stop=stop_after_attempt(self.attempts - spent),
            wait=lambda state: self.wait_s(state.attempt_number + spent),
            reraise=True,
        )
