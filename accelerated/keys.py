"""Every Redis key and stream name, in one place (as arq does).

Keys are built only from validated ids: a UUID object and its string give the same
key, and a bad id raises before anything is read or written.

Cluster slots (hash tags). Every Lua script and MULTI must touch keys of one slot
on Redis Cluster, and the stage transition (``transport.ADVANCE_LUA``) touches a
document's state and output, the stage streams, the write-behind stream and the
project's outstanding set at once. So the stage streams are split into ``shards``
(``STREAM_SHARDS``), each document belongs to one shard (``shard``: its id modulo
the shard count), and everything such a script touches is tagged with its shard's
tag ``{<prefix>:s<n>}``:

* per document: state hash and stage outputs (``<prefix>:{tag}:doc:<uuid>:...``);
* per shard: the stage streams, the write-behind stream and its dead letters, and
  the per-project outstanding set and failed hash (one per shard; their sizes are
  summed over shards);
* per project, under the project's own tag ``{<project>}``: the canonical registry
  and the run marker (each touched alone);
* untagged: consumer heartbeats, the stage dead-letter streams, caches, limiter
  keys (their own ``{llm:<model>}`` tag), each used by single-key commands.

With one shard (the default on a single Redis) every tagged key shares one tag,
which a single server ignores. The tags are chosen so that shard ``n`` hashes into
the ``n``-th equal part of the 16384 slots: on a cluster whose masters own equal
slot ranges (what ``redis-cli --cluster create`` makes) the shards spread evenly
over the masters instead of where CRC16 happens to put ``s0``, ``s1``, ...
"""

from __future__ import annotations

import functools
import re
import uuid
from typing import Final

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from accelerated.ids import parse_uuid, validate_project
from accelerated.pipeline import OUTPUT_KEYS, PIPELINE, STAGE_NAMES

# Derived from the stage registry (accelerated/pipeline.py), the one place stages are defined.
STAGES: Final = STAGE_NAMES
# Name of each stage's output key, as in DESIGN.md.
OUTPUT_NAMES: Final = {s.name: s.output_key for s in PIPELINE}


MAX_SHARDS: Final = 256  # STREAM_SHARDS' upper bound


class Keys:
    """Key factory bound to a prefix (test runs and tenants never collide) and a shard
    count (every process on one prefix must use the same: see ``layout``)."""

    def __init__(self, prefix: str = "lp", shards: int = 1) -> None:
        if not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"shards must be 1 to {MAX_SHARDS}, not {shards}")
        self.prefix = prefix
        self.shards = shards
        self._tags = shard_tags(prefix, shards)

    # Shards -------------------------------------------------------------------
    def shard(self, doc_id: uuid.UUID | str) -> int:
        """The shard a document belongs to (uuid5 ids are uniform in their low bits)."""
        return parse_uuid(doc_id).int % self.shards

    def tag(self, shard: int) -> str:
        """``{<prefix>:s<n>...}``: the hash tag of one shard's keys."""
        return self._tags[shard]

    def _shard_arg(self, shard: int | None, what: str) -> int:
        if shard is None:
            if self.shards != 1:
                raise ValueError(f"{what} is per shard: give the shard (0..{self.shards - 1})")
            return 0
        if not 0 <= shard < self.shards:
            raise ValueError(f"shard {shard} out of range 0..{self.shards - 1}")
        return shard

    def layout(self) -> str:
        """Hash holding the shard count the prefix's keys were laid out with."""
        return f"{self.prefix}:layout"

    # Per document -------------------------------------------------------------
    def document(self, doc_id: uuid.UUID | str) -> str:
        """The start of every per-document key: ``<prefix>:{<shard tag>}:doc:<uuid>``. A
        new per-document key must be built on it, or a script that touches it with the
        document's state or streams fails with CROSSSLOT on a cluster."""
        uid = parse_uuid(doc_id)
        return f"{self.prefix}:{self._tags[uid.int % self.shards]}:doc:{uid}"

    def output(self, doc_id: uuid.UUID | str, name: str) -> str:
        """A stage output key, by output key name (``ocr``) or by stage name (``extract``)."""
        if name not in OUTPUT_KEYS:
            if name not in OUTPUT_NAMES:
                raise ValueError(f"unknown stage or output {name!r}")
            name = OUTPUT_NAMES[name]
        return f"{self.document(doc_id)}:{name}"

    def outputs(self, doc_id: uuid.UUID | str) -> list[str]:
        """Every stage output key of a document."""
        return [self.output(doc_id, k) for k in OUTPUT_KEYS]

    def state(self, doc_id: uuid.UUID | str) -> str:
        return f"{self.document(doc_id)}:state"

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

    def reading(self, cache_key: str) -> str:
        """The lease of whoever is reading the content of an engine cache entry now
        (``cache_key``: one of the cache keys above); others with that content wait."""
        if not cache_key.startswith(f"{self.prefix}:cache:"):
            raise ValueError(f"not a cache key of this prefix: {cache_key!r}")
        return f"{cache_key}:reading"

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
    # tag, so the claim and record scripts touch keys of one cluster slot; the documents
    # waiting on a job are in per-shard rooms (``ocr_room``).
    def ocr_job(self, service: str, sha256: str) -> str:
        """Hash: one service job for one file content (job id, status, attempts, and the
        documents parked on it); with a TTL."""
        return f"{self.prefix}:ocr-job:{{ocr:{_name(service)}}}:{_hex(sha256)}"

    def ocr_jobs(self, service: str) -> str:
        """Sorted set: sha256 of every job in flight -> when to poll it next (epoch ms)."""
        return f"{self.prefix}:ocr-jobs:{{ocr:{_name(service)}}}"

    def ocr_room(self, service: str, sha256: str, shard: int | None = None) -> str:
        """Hash: the documents of ``shard`` parked on the job of ``sha256`` (a waiting
        room, ``accelerated/parking.py``): in the shard's slot, since the park and wake
        scripts touch it with the shard's ``ocr`` stream."""
        n = self._shard_arg(shard, "ocr_room")
        return f"{self.prefix}:{self._tags[n]}:ocr-room:{_name(service)}:{_hex(sha256)}"

    def ocr_poller_lock(self, service: str) -> str:
        """The redis-py ``Lock`` whose holder is the deployment's one poller of ``service``."""
        return self.lock(f"ocr-poller:{_name(service)}")

    # Per project ----------------------------------------------------------------
    def canonical(self, project: str) -> str:
        return f"{self.prefix}:project:{{{validate_project(project)}}}:canonical"

    def outstanding(self, project: str, shard: int | None = None) -> str:
        """Set of the project's document ids of ``shard`` not yet terminal (drain mode
        waits on the union over shards)."""
        n = self._shard_arg(shard, "outstanding")
        return f"{self.prefix}:{self._tags[n]}:project:{validate_project(project)}:outstanding"

    def outstanding_all(self, project: str) -> list[str]:
        return [self.outstanding(project, n) for n in range(self.shards)]

    def failed(self, project: str, shard: int | None = None) -> str:
        """Hash doc id -> error of the project's failed documents of ``shard``."""
        n = self._shard_arg(shard, "failed")
        return f"{self.prefix}:{self._tags[n]}:project:{validate_project(project)}:failed"

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
    def stream(self, stage: str, shard: int | None = None) -> str:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        return f"{self.prefix}:{self._tags[self._shard_arg(shard, 'stream')]}:{stage}:pending"

    def streams(self, stage: str) -> list[str]:
        """The stage's stream of every shard."""
        return [self.stream(stage, n) for n in range(self.shards)]

    def dlq(self, stage: str) -> str:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        return f"{self.prefix}:{stage}:dlq"

    def wb_stream(self, shard: int | None = None) -> str:
        return f"{self.prefix}:{self._tags[self._shard_arg(shard, 'wb_stream')]}:wb"

    def wb_streams(self) -> list[str]:
        return [self.wb_stream(n) for n in range(self.shards)]

    def wb_dlq(self, shard: int | None = None) -> str:
        """Write-behind intents Postgres rejected (beside their stream: one MULTI)."""
        return f"{self.wb_stream(shard)}:dlq"

    def wb_probe(self, shard: int | None = None) -> str:
        """A key the writer SETs first in each acknowledging MULTI: a full Redis refuses
        that write at queue time, so the whole MULTI is refused, never run in part."""
        return f"{self.wb_stream(shard)}:probe"

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


@functools.lru_cache(maxsize=64)
def shard_tags(prefix: str, shards: int) -> tuple[str, ...]:
    """Hash tags ``{<prefix>:s<n>}`` (``~<k>`` appended where needed) such that shard
    ``n`` lands in the ``n``-th of ``shards`` equal slot ranges. Deterministic: every
    process computes the same tags from (prefix, shards)."""
    out = []
    for n in range(shards):
        lo = n * REDIS_CLUSTER_HASH_SLOTS // shards
        hi = (n + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
        k = 0
        while True:
            body = f"{prefix}:s{n}" if k == 0 else f"{prefix}:s{n}~{k}"
            if lo <= key_slot(body.encode()) < hi:
                break
            k += 1
        out.append("{" + body + "}")
    return tuple(out)


_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")


def _hex(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
        raise ValueError(f"not a lower-case sha256 hex digest: {sha256!r}")
    return sha256


def _name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9_-]{1,32}", name):
        raise ValueError(f"unsafe service name {name!r}")
    return name
