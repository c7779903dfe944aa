"""ParaBlur's exceptions.

Every error ParaBlur raises on purpose derives from ``ParaBlurError``; the CLI
catches that base class, prints its message on one line and exits with
``exit_code`` (2 for usage/configuration, 1 otherwise).

    ParaBlurError
    ├── ConfigError          a flag or parameter breaks a rule (exit 2)
    ├── DatasetError         the input folder is missing, empty or unusable (exit 2)
    ├── IngestionError       a download or image validation failed
    │   └── ValidationError  a body is not an acceptable image
    ├── ImageError           one image could not be read, blurred or written
    │   ├── ObjectError      one object of a store is missing, unreadable or kept failing (also OSError)
    │   └── MediaError       one video clip is truncated or corrupt, has no video stream or no decoder
    ├── StorageError         a store cannot be used: scheme, extra, bucket, credentials, access (exit 2)
    ├── ClusterError         a Dask cluster or worker pool could not be started or used (exit 2)
    ├── ModelError           the face model is missing, unfetchable or not the expected file (exit 2)
    └── ResultsError         a results CSV cannot be read or appended, or is not one (exit 2)
"""

from __future__ import annotations


class ParaBlurError(Exception):
    """Base class of every error ParaBlur raises on purpose."""

    exit_code = 1


class ConfigError(ParaBlurError, ValueError):
    """A parameter breaks a rule; the message states the rule."""

    exit_code = 2


class DatasetError(ParaBlurError):
    """The input folder is missing, empty or unusable."""

    exit_code = 2


class IngestionError(ParaBlurError):
    """A download failed for good (after retries)."""


class ValidationError(IngestionError):
    """A downloaded body or a file on disk is not an acceptable image."""


class ImageError(ParaBlurError):
    """One image could not be read, blurred or written."""


class ObjectError(ImageError, OSError):
    """One object of a store could not be read or written; the other objects go on.

    Also an ``OSError``, so the workload records it for that image like a failed file read.
    """


class StorageError(ParaBlurError):
    """A store cannot be used at all (unknown scheme, missing extra, bucket, credentials, access)."""

    exit_code = 2


class ClusterError(ParaBlurError):
    """A Dask cluster or worker pool could not be started, reached or used."""

    exit_code = 2


class ModelError(ParaBlurError):
    """The face detector's model cannot be found or fetched, or has the wrong sha256."""

    exit_code = 2


class ResultsError(ParaBlurError):
    """A results CSV cannot be read or appended: a file the user named is missing, unreadable
    or not one of ParaBlur's, checked before any work."""

    exit_code = 2


class MediaError(ImageError):
    """A video clip cannot be read or written: truncated or corrupt, no video stream, no decoder."""
