"""``--storage-options``: parsing the flag's text, and keeping the credentials in it out of every message."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError

MASK = "***"
MIN_SECRET = 4

# A storage option whose name contains one of these holds a credential (s3fs: key, secret,
# token, client_kwargs.aws_secret_access_key; gcsfs: token; adlfs: account_key, sas_token,
# connection_string, client_secret; any: password).
_SECRET_NAME_PARTS = ("key", "secret", "token", "password", "passwd", "credential", "sas",
                      "connection_string", "signature", "auth")
# The usual environment credentials, masked too in case a library echoes one.
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
               "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN",
               "AZURE_STORAGE_CONNECTION_STRING", "AZURE_CLIENT_SECRET")
# scheme://user:password@host -> the password part.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:\s]*):(?P<pw>[^/@\s]*)@")


def parse_storage_options(text: str | None) -> dict[str, Any]:
    """The ``--storage-options`` flag's value as a dict: inline JSON, or ``@file.json``."""
    if text is None or not text.strip():
        return {}
    source = "--storage-options"
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"--storage-options file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--storage-options file cannot be read: {path}: "
                              f"{type(exc).__name__}") from None
        source = f"--storage-options file {path}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        # The decoder's message names a position only, never the text (which may hold secrets).
        raise ConfigError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{source} must be a JSON object, got {type(value).__name__}")
    return value


def is_secret_name(name: str) -> bool:
    """True for an option name that holds a credential."""
    lowered = str(name).lower()
    return any(part in lowered for part in _SECRET_NAME_PARTS)


def secrets_in(options: Mapping[str, Any] | None, urls: Iterable[str] = ()) -> frozenset[str]:
    """Every credential string in ``options`` (nested too), in ``urls``' passwords and in the environment."""
    found: set[str] = set()

    def walk(value: Any, secret: bool) -> None:
        if isinstance(value, Mapping):
            for name, item in value.items():
                walk(item, secret or is_secret_name(name))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, secret)
        elif secret and isinstance(value, str | bytes) and value:
            found.add(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)

    walk(dict(options or {}), False)
    for url in urls:
        for match in _URL_USERINFO.finditer(str(url)):
            if match["pw"]:
                found.add(match["pw"])
    for name in _SECRET_ENV:
        if os.environ.get(name):
            found.add(os.environ[name])
    return frozenset(found)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret and every URL password replaced by ``***``.

    Secrets shorter than ``MIN_SECRET`` characters are not masked inside other words
    (a one-letter "secret" would mask every such letter); real keys are 16+ characters.
    """
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", str(text))
    # Longest first, so that a secret containing another is masked whole.
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= MIN_SECRET:
            text = text.replace(secret, MASK)
    return text


def redacted_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``options`` with every credential value replaced by ``***`` (for reprs and summaries)."""

    def walk(value: Any, secret: bool) -> Any:
        if isinstance(value, Mapping):
            return {name: walk(item, secret or is_secret_name(name)) for name, item in value.items()}
        if isinstance(value, list | tuple):
            return [walk(item, secret) for item in value]
        return MASK if secret and value not in (None, "", False) else value

    return walk(dict(options or {}), False)
