"""Every Redis key and stream name, in one place (as arq does).

Keys are built only from validated ids: a UUID object and its string give the same
key, and a bad id raises before anything is read or written. Per-document keys carry
the ``{uuid}`` hash tag so one document's keys share a cluster slot.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from accelerated.ids import parse_uuid, validate_project
from accelerated.pipeline import OUTPUT_KEYS, PIPELINE, STAGE_NAMES

# Derived from the stage registry (accelerated/pipeline.py), the one place stages are defined.
STAGES: Final = STAGE_NAMES
# Name of each stage's output key, as in DESIGN.md.
OUTPUT_NAMES: Final = {s.name: s.output_key for s in PIPELINE}


class Keys:
    """Key factory bound to a prefix, so test runs and tenants never collide."""

    def __init__(self, prefix: str = "lp") -> None:
        self.prefix = prefix

    # Per document -------------------------------------------------------------
    def output(self, doc_id: uuid.UUID | str, name: str) -> str:
        """A stage output key, by output key name (``ocr``) or by stage name (``extract``)."""
        if name not in OUTPUT_KEYS:
            if name not in OUTPUT_NAMES:
                raise ValueError(f"unknown stage or output {name!r}")
            name = OUTPUT_NAMES[name]
        return f"{self.prefix}:doc:{{{parse_uuid(doc_id)}}}:{name}"

    def outputs(self, doc_id: uuid.UUID | str) -> list[str]:
        """Every stage output key of a document."""
        return [self.output(doc_id, k) for k in OUTPUT_KEYS]

    def state(self, doc_id: uuid.UUID | str) -> str:
        return f"{self.prefix}:doc:{{{parse_uuid(doc_id)}}}:state"

    # Content-hash caches --------------------------------------------------------
    def extract_cache(self, sha256: str, version: str = "") -> str:
        """Extraction result by file sha256, per extract-stage code version (an extractor
        change must not serve results of the old code)."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]{0,32}", version):
            raise ValueError(f"unsafe extractor version {version!r}")
        return f"{self.prefix}:cache:extract:v{version}:{_hex(sha256)}"

    def ocr_cache(self, version: str, sha256: str) -> str:
        """OCR pages by engine version (with dpi and language) and file sha256."""
        if not re.fullmatch(r"[A-Za-z0-9_.@+-]{1,100}", version):
            raise ValueError(f"unsafe OCR engine version {version!r}")
        return f"{self.prefix}:cache:ocr:{version}:{_hex(sha256)}"

    def transcript_cache(self, version: str, sha256: str) -> str:
        """Transcript segments by transcriber version (engine, model, options) and the
        audio file's sha256."""
        if not re.fullmatch(r"[A-Za-z0-9_.@+-]{1,160}", version):
            raise ValueError(f"unsafe transcriber version {version!r}")
        return f"{self.prefix}:cache:transcript:{version}:{_hex(sha256)}"

    def entity_cache(self, version: str, sha256: str) -> str:
        return f"{self.prefix}:cache:entities:{version}:{_hex(sha256)}"

    def llm_cache(self, model: str, sha256: str) -> str:
        return f"{self.prefix}:cache:llm:{model}:{_hex(sha256)}"

    # Asynchronous OCR jobs (accelerated/ocr/jobs.py) ---------------------------
    # One service's job records and its poll schedule share the ``{ocr:<service>}`` hash
    # tag, so the poller's scripts touch keys of one cluster slot (plus the stream).
    def ocr_job(self, service: str, sha256: str) -> str:
        """Hash: one service job for one file content (job id, status, attempts, and the
        documents parked on it); with a TTL."""
        return f"{self.prefix}:ocr-job:{{ocr:{_name(service)}}}:{_hex(sha256)}"

    def ocr_jobs(self, service: str) -> str:
        """Sorted set: sha256 of every job in flight -> when to poll it next (epoch ms)."""
        return f"{self.prefix}:ocr-jobs:{{ocr:{_name(service)}}}"

    def ocr_poller_lock(self, service: str) -> str:
        """The redis-py ``Lock`` whose holder is the deployment's one poller of ``service``."""
        return self.lock(f"ocr-poller:{_name(service)}")

    # Per project ----------------------------------------------------------------
    def canonical(self, project: str) -> str:
        return f"{self.prefix}:project:{{{validate_project(project)}}}:canonical"

    def outstanding(self, project: str) -> str:
        """Set of the project's document ids not yet terminal (drain mode waits on it)."""
        return f"{self.prefix}:project:{{{validate_project(project)}}}:outstanding"

    def failed(self, project: str) -> str:
        """Hash doc id -> error of the project's failed documents (summary, exit code)."""
        return f"{self.prefix}:project:{{{validate_project(project)}}}:failed"

    def llm_usage(self, project: str) -> str:
        """Hash of the project's LLM counters (calls, cache hits, tokens, cost, limiter
        wait): every worker adds to it, the batch summary reads it; reset per run."""
        return f"{self.prefix}:project:{{{validate_project(project)}}}:llm"

    def llm_merges(self, project: str) -> str:
        """Hash "<id>:<id>" (the pair's ids sorted) -> the LLM's merge decision, so a
        pair of canonical entities is adjudicated once whatever order they came in."""
        return f"{self.prefix}:project:{{{validate_project(project)}}}:llm:merges"

    def ocr_tally(self, project: str, generation: int) -> str:
        """Hash of one run's OCR figures (pages read, pages from cache, seconds), which
        every worker adds to; the run's documents share ``generation``."""
        if not isinstance(generation, int) or generation < 0:
            raise ValueError(f"not a generation: {generation!r}")
        return f"{self.prefix}:project:{{{validate_project(project)}}}:ocr:{generation}"

    def run_marker(self, project: str, token: str) -> str:
        """Set for as long as a batch runs (no TTL): gone means Redis lost its data."""
        if not re.fullmatch(r"[0-9a-f]{32}", token):
            raise ValueError(f"not a run token: {token!r}")
        return f"{self.prefix}:project:{{{validate_project(project)}}}:run:{token}"

    # Streams ----------------------------------------------------------------------
    def stream(self, stage: str) -> str:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        return f"{self.prefix}:{stage}:pending"

    def dlq(self, stage: str) -> str:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        return f"{self.prefix}:{stage}:dlq"

    def wb_stream(self) -> str:
        return f"{self.prefix}:wb"

    def group(self, stage: str) -> str:
        return f"{stage}-workers"

    WB_GROUP: Final = "writers"

    # Coordination -------------------------------------------------------------------
    def consumer_alive(self, consumer: str) -> str:
        """Heartbeat of a live consumer; its pending messages are reclaimed once it lapses."""
        return f"{self.prefix}:consumer:{consumer}"

    def lock(self, name: str) -> str:
        return f"{self.prefix}:lock:{name}"

    def rate_limit(self, name: str) -> str:
        return f"{self.prefix}:rl:{name}"

    def idempotency(self, name: str) -> str:
        return f"{self.prefix}:idem:{name}"

    def pattern(self) -> str:
        """Every key of this prefix (used to clean up test runs)."""
        return f"{self.prefix}:*"


_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")


def _hex(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
        raise ValueError(f"not a lower-case sha256 hex digest: {sha256!r}")
    return sha256


def _name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9_-]{1,32}", name):
        raise ValueError(f"unsafe service name {name!r}")
    return name
