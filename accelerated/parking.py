"""Parking: a document waits on an outside service without holding a worker slot.

A stage that hands its document to a service answering minutes later (an OCR job at
AWS Textract) must not sit in its worker for those minutes: it raises :class:`Parked`
naming a *waiting room*, a Redis hash whose ``status`` field says whether the service
is still at work. The engine then acks the message and files the document's ref in the
room (field ``w:<document id>:<generation>``) in one script (:data:`PARK_LUA`) that
checks the status first: when the work finished between the stage's look and the
parking, the message goes straight back to the stage's stream instead, so a wake-up
is never lost. Nothing is parked when the process dies before the script runs: the
message is still pending and another consumer runs the stage again.

Whoever finishes the work (``accelerated/ocr/jobs.py``'s poller) sets the status and
publishes every parked ref back to the stage, again in one script. The stage runs
again, finds the result (an OCR cache hit) and the document moves on as usual; the
state hash says all along that it is ``running`` at that stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from accelerated.models import SourceRef

STATUS_FIELD: Final = "status"
WAITER_PREFIX: Final = "w:"  # w:<document id>:<generation> -> the ref (transport's JSON)
TOLD_PREFIX: Final = "told:"  # told:<document id>:<generation> -> the error it was woken with


class Parked(Exception):  # control flow, not an error
    """Raised by a stage: park this document in ``room`` while its status is one of
    ``waiting``; ``reason`` is for logs (``textract job 3f2a...``)."""

    def __init__(self, room: str, waiting: Sequence[str], reason: str) -> None:
        super().__init__(reason)
        self.room, self.waiting, self.reason = room, tuple(waiting), reason


def waiter_field(ref: SourceRef) -> str:
    return f"{WAITER_PREFIX}{ref.document_id}:{ref.generation}"


def told_field(ref: SourceRef) -> str:
    return f"{TOLD_PREFIX}{ref.document_id}:{ref.generation}"


# KEYS[1] the stage's stream, KEYS[2] the waiting room (hash)
# ARGV[1] group, ARGV[2] message id, ARGV[3] waiter field, ARGV[4] the ref (JSON),
# ARGV[5..] statuses that mean "still at work"
# -> 0 the message was not pending (advanced already) | 1 parked | 2 sent back to the stage
PARK_LUA: Final = f"""
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
local st = redis.call('HGET', KEYS[2], '{STATUS_FIELD}')
for i = 5, #ARGV do
  if st == ARGV[i] then
    redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
    return 1
  end
end
redis.call('XADD', KEYS[1], '*', 'ref', ARGV[4])
return 2
"""
