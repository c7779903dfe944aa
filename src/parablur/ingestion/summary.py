"""What a fetch produced: the dataset's images, what was downloaded, reused or generated, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class FetchSummary:
    """What a fetch produced: counts, per-image problems, and the dataset checksum.

    ``images`` is the dataset to use (the first ``num_images``); ``kept`` counts the valid
    images past those, left on disk. ``failed`` counts images that could not even be
    generated or written; downloads that were replaced by a generated image appear in
    ``failures`` with outcome "generated", failed forced re-downloads with outcome "kept".
    """

    images: list[Path]
    downloaded: int
    reused: int
    generated: int
    retried: int
    failed: int
    failures: list[dict] = field(default_factory=list)
    dataset_checksum: str = ""
    elapsed_s: float = 0.0
    source: str = ""
    local: bool = False
    unreachable_hosts: list[str] = field(default_factory=list)
    folder: str = ""
    kept: int = 0
    other_source: int = 0  # reused images that came from another source than the one asked
    foreign_manifest: str | None = None  # why a folder with a manifest.json is the user's
    media: str = "images"  # or "clips": a faces-video dataset (``images`` lists its clips)

    def to_dict(self) -> dict:
        """A JSON-ready dict (paths as strings)."""
        doc = asdict(self)
        doc["images"] = [str(p) for p in self.images]
        return doc

    def format_summary(self) -> str:
        """A few human-readable lines."""
        if self.local:
            lines = [f"Using {len(self.images)} images already in {self.source} "
                     "(your own images, read-only; nothing downloaded or generated)"]
            if self.foreign_manifest:
                lines.append(f"Not a dataset ParaBlur created: {self.foreign_manifest}")
        elif self.media == "clips":
            lines = [f"Dataset of {len(self.images)} clips from {self.source}: {self.reused} reused, "
                     f"{self.generated} generated, {self.failed} failed in {self.elapsed_s:.1f} s"]
        else:
            lines = [f"Dataset of {len(self.images)} images from {self.source}: "
                     f"{self.downloaded} downloaded, {self.reused} reused, "
                     f"{self.generated} generated, {self.failed} failed "
                     f"({self.retried} retries) in {self.elapsed_s:.1f} s"]
        if not self.local:
            if self.kept:
                lines.append(f"Using the first {len(self.images)} of "
                             f"{len(self.images) + self.kept} {self.media} in {self.folder}; "
                             f"the other {self.kept} are kept")
            if self.other_source and self.media == "clips":
                lines.append(f"{self.other_source} of the reused clips were made with another size, "
                             "seed, length or frame rate than asked (--force-download makes them again)")
            elif self.other_source:
                lines.append(f"{self.other_source} of the reused images came from another "
                             f"source than {self.source} (--force-download fetches them again)")
            if self.unreachable_hosts:
                lines.append("Gave up on unreachable host(s): " + ", ".join(self.unreachable_hosts))
            for outcome, text in (("generated", "download(s) replaced by generated images"),
                                  ("kept", "forced re-download(s) failed, the images already "
                                           "there were kept")):
                hits = [f for f in self.failures if f.get("outcome") == outcome]
                if hits:
                    lines.append(f"{len(hits)} {text} (first: image {hits[0]['index']}: "
                                 f"{hits[0]['reason']})")
            for failure in self.failures:
                if failure.get("outcome") == "failed":
                    item = "clip" if self.media == "clips" else "image"
                    lines.append(f"{item} {failure['index']} FAILED: {failure['reason']}")
        lines.append(f"Dataset checksum: {self.dataset_checksum}")
        return "\n".join(lines)
