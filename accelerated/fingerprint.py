"""Stage fingerprints: what a stage's output was computed from.

A fingerprint chains the file's sha256 through every stage's code version and the
settings that change its output, so ``--reprocess`` can start each document at the
first stage whose inputs, code or settings changed, and skip documents whose
committed rows are already what a re-run would write. Bump a stage's version whenever
its output for the same input changes.
"""

from __future__ import annotations

import hashlib
from typing import Final

from accelerated.keys import STAGES
from accelerated.models import SourceRef
from accelerated.settings import Settings

STAGE_VERSIONS: Final = {
    "extract": "1",
    "clean": "1",
    "chunk": "1",
    "entities": "1",  # the backend's own version is chained in too
    "resolve": "1",
    "relate": "1",
}


def field(stage: str) -> str:
    """State-hash field holding the fingerprint of the stage's stored output."""
    return f"fp:{stage}"


def stage_params(settings: Settings, entity_version: str) -> dict[str, str]:
    return {
        "chunk": f"{settings.chunk_chars}/{settings.chunk_overlap}",
        "entities": entity_version,
    }


def fingerprints(ref: SourceRef, params: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    prev = f"{ref.project}|{ref.sha256}"
    for stage in STAGES:
        raw = f"{prev}|{stage}|{STAGE_VERSIONS[stage]}|{params.get(stage, '')}"
        prev = out[stage] = hashlib.sha256(raw.encode()).hexdigest()[:32]
    return out
