"""Stage fingerprints: what a stage's output was computed from.

A fingerprint chains the file's sha256 through every stage's code version and the
settings that change its output (both from the stage registry,
:mod:`accelerated.pipeline`), so ``--reprocess`` can start each document at the first
stage whose inputs, code or settings changed, and skip documents whose committed rows
are already what a re-run would write.
"""

from __future__ import annotations

import hashlib

from accelerated.backends import Backends
from accelerated.models import SourceRef
from accelerated.pipeline import PIPELINE, fingerprint_params
from accelerated.settings import Settings


def field(stage: str) -> str:
    """State-hash field holding the fingerprint of the stage's stored output."""
    return f"fp:{stage}"


def stage_params(settings: Settings, backends: Backends) -> dict[str, str]:
    return fingerprint_params(settings, backends)


def fingerprints(ref: SourceRef, params: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    prev = f"{ref.project}|{ref.sha256}"
    for st in PIPELINE:
        raw = f"{prev}|{st.name}|{st.version}|{params.get(st.name, '')}"
        h = hashlib.sha256(raw.encode()).hexdigest()[:32]
        out[st.name] = h
        if st.main and st.chains:  # a branch or side stage: the main line is not chained
            prev = h
    return out
