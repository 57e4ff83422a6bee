"""Parking: a document waits on an outside service without holding a worker slot.

A stage that hands its document to a service answering minutes later (an OCR job at
AWS Textract) must not sit in its worker for those minutes: it raises :class:`Parked`
naming a *waiting room*, a Redis hash in the document's own shard (its keys share the
slot of the shard's streams, so one script may touch both on Redis Cluster), and the
*round* of the work it waits for (a job's attempt). The room's ``done`` field is the
last round finished. The engine then acks the message and files the document's ref in
the room (field ``w:<document id>:<generation>``) in one script (:data:`PARK_LUA`)
that checks ``done`` first: when the round finished between the stage's look and the
parking, the message goes straight back to the stage's stream instead, so a wake-up
is never lost. Nothing is parked when the process dies before the script runs: the
message is still pending and another consumer runs the stage again.

Whoever finishes the work (``accelerated/ocr/jobs.py``'s poller) wakes the round in
every shard's room, one script per shard (:data:`WAKE_LUA`): it sets ``done`` and
publishes every parked ref back to the shard's stream (with a ``told:`` note when the
work failed). The stage runs again, finds the result (an OCR cache hit, or the note)
and the document moves on as usual; the state hash says all along that it is
``running`` at that stage.
"""

from __future__ import annotations

from typing import Final

from accelerated.models import SourceRef

STATUS_FIELD: Final = "status"  # of a job record (accelerated/ocr/jobs.py)
DONE_FIELD: Final = "done"  # of a waiting room: the last round finished (0: none yet)
WAITER_PREFIX: Final = "w:"  # w:<document id>:<generation> -> the ref (transport's JSON)
TOLD_PREFIX: Final = "told:"  # told:<document id>:<generation> -> the error it was woken with


class Parked(Exception):  # control flow, not an error
    """Raised by a stage: park this document in ``room`` (a key of its shard) until
    round ``ticket`` is done there; ``reason`` is for logs (``textract job 3f2a...``)."""

    def __init__(self, room: str, ticket: int, reason: str, ttl_s: int) -> None:
        super().__init__(reason)
        self.room, self.ticket, self.reason, self.ttl_s = room, ticket, reason, ttl_s


def waiter_field(ref: SourceRef) -> str:
    return f"{WAITER_PREFIX}{ref.document_id}:{ref.generation}"


def told_field(ref: SourceRef) -> str:
    return f"{TOLD_PREFIX}{ref.document_id}:{ref.generation}"


# KEYS[1] the stage's stream, KEYS[2] the waiting room (hash; both of one shard)
# ARGV[1] group, ARGV[2] message id, ARGV[3] waiter field, ARGV[4] the ref (JSON),
# ARGV[5] the round it waits for, ARGV[6] the room's ttl (s)
# -> 0 the message was not pending (advanced already) | 1 parked | 2 sent back to the stage
PARK_LUA: Final = f"""
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
local done = tonumber(redis.call('HGET', KEYS[2], '{DONE_FIELD}') or '0')
if done < tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
  return 1
end
redis.call('XADD', KEYS[1], '*', 'ref', ARGV[4])
return 2
"""

# KEYS[1] the stage's stream, KEYS[2] the waiting room (both of one shard)
# ARGV[1] the round finished, ARGV[2] error ('' when it succeeded), ARGV[3] ttl (s)
# Every parked document goes back to the stream (the message format of
# RedisTransport._publish); on failure each one also gets its told: note.
# -> documents woken (0 when the round was woken here already)
WAKE_LUA: Final = f"""
local done = tonumber(redis.call('HGET', KEYS[2], '{DONE_FIELD}') or '0')
if done >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[2], '{DONE_FIELD}', ARGV[1])
local n = 0
local p = string.len('{WAITER_PREFIX}')
for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
  if string.sub(f, 1, p) == '{WAITER_PREFIX}' then
    redis.call('XADD', KEYS[1], '*', 'ref', redis.call('HGET', KEYS[2], f))
    redis.call('HDEL', KEYS[2], f)
    if ARGV[2] ~= '' then
      redis.call('HSET', KEYS[2], '{TOLD_PREFIX}' .. string.sub(f, p + 1), ARGV[2])
    end
    n = n + 1
  end
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
return n
"""
