"""The face records' documentation names what the code writes."""

from __future__ import annotations

import re
from pathlib import Path

from parablur.workloads.faces import LOOKS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_faces_md_names_every_look_a_record_can_hold():
    text = (DOCS / "faces.md").read_text(encoding="utf-8")
    record = text[text.index("detections.jsonl"):text.index("the parameters")]
    named = set(re.findall(r"`([a-z-]+)`", record))
    assert set(LOOKS) <= named, f"not documented: {sorted(set(LOOKS) - named)}"
