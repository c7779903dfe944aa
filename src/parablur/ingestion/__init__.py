"""Ingestion: build (or reuse) the input dataset by downloading, generating or adopting images."""

from .fetch import FetchSummary, fetch_dataset
from .generate import encode_jpeg, generate_image

__all__ = ["FetchSummary", "encode_jpeg", "fetch_dataset", "generate_image"]
