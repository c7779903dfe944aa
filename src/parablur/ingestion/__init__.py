"""Ingestion: build (or reuse) the input dataset by downloading, generating or adopting images."""

from .generate import generate_image

__all__ = ["generate_image"]
