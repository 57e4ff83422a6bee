"""Per-document state hash (``Keys.state``: ``<prefix>:{<shard tag>}:doc:<uuid>:state``): field
names and statuses.

The engine, the write-behind writer and the batch summary all read and write these
fields, so they are spelled once here.
"""

from __future__ import annotations

from typing import Final

# Fields of the state hash. Timestamps are epoch seconds as decimal strings.
STATUS: Final = "status"  # one of STATUSES
STAGE: Final = "stage"  # the stage the document is at (or failed in)
GENERATION: Final = "generation"  # bumped at each (re)intake; stale messages are dropped
ERROR: Final = "error"  # last error, "code: message"
PROJECT: Final = "project"
SOURCE: Final = "source"
INTAKE_AT: Final = "intake_at"
DONE_AT: Final = "done_at"  # set when the document's rows are committed in Postgres
UPDATED_AT: Final = "updated_at"
# Seconds per page the OCR stage's engine took ("1=2.013,2=1.950"): they vary run to
# run, so they live here and in metrics, not in the stored (fingerprinted) content.
OCR_PAGE_SECONDS: Final = "ocr:page_seconds"


def attempts_field(stage: str) -> str:
    return f"attempts:{stage}"


def stage_time_field(stage: str) -> str:
    """CPU seconds spent inside the stage's own code (pipeline overhead is the rest)."""
    return f"compute:{stage}"


QUEUED: Final = "queued"
RUNNING: Final = "running"
PERSISTING: Final = "persisting"  # all stages ran; rows are queued to the writer
DONE: Final = "done"
NEEDS_OCR: Final = "needs_ocr"  # scanned, no text layer: terminal until an OCR backend runs
FAILED: Final = "failed"
# The run's LLM token budget (LLM_BUDGET_TOKENS) was spent before this document's calls
# were made: terminal for this run, not an error of the document; a re-run with a larger
# budget takes it up again (the calls already answered come from the response cache).
BUDGET_EXHAUSTED: Final = "budget_exhausted"

STATUSES: Final = (QUEUED, RUNNING, PERSISTING, DONE, NEEDS_OCR, BUDGET_EXHAUSTED, FAILED)
TERMINAL: Final = frozenset({DONE, NEEDS_OCR, BUDGET_EXHAUSTED, FAILED})
