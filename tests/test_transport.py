"""The Redis transport's contract: attempts counted across crashes and retries, and an
advance that is all or nothing, refused for a document re-ingested meanwhile."""

from __future__ import annotations

import hashlib
import uuid

import pytest
import redis.asyncio as aioredis

from accelerated import ids, state
from accelerated.keys import Keys
from accelerated.models import SourceRef
from accelerated.transport import LocalTransport, RedisTransport, Transport, Writes
from tests.conftest import KINDS

PROJECT = "transport"


def _ref(name: str, generation: int = 1) -> SourceRef:
    return SourceRef(
        document_id=ids.document_id(PROJECT, name),
        project=PROJECT,
        source=f"/in/{name}",
        source_key=name,
        sha256=hashlib.sha256(name.encode()).hexdigest(),
        size=1,
        format="txt",
        generation=generation,
    )


async def _transports(redis: aioredis.Redis, keys: Keys) -> tuple[RedisTransport, RedisTransport]:
    a = RedisTransport(redis, keys, "consumer-a")
    b = RedisTransport(redis, keys, "consumer-b")
    await a.setup()
    await b.setup()
    return a, b


BOTH = pytest.mark.parametrize("redis_kind", KINDS, indirect=True)


@BOTH
async def test_a_message_claimed_from_a_dead_consumer_counts_its_earlier_delivery(
    redis: aioredis.Redis, keys: Keys
) -> None:
    a, b = await _transports(redis, keys)
    ref = _ref("doc-1")
    shard = keys.shard(ref.document_id)
    await a.enqueue([ref], "extract")
    [first] = await a.read("extract", 10, 100, shard)
    assert first.attempts == 1 and first.shard == shard
    await a.close()  # consumer-a dies holding the message: its heartbeat key is gone
    [again] = await b.reclaim("extract", 60_000, 10, shard)
    assert again.id == first.id and again.attempts == 2


@BOTH
async def test_a_retry_carries_the_attempts_made_so_far(redis: aioredis.Redis, keys: Keys) -> None:
    a, _b = await _transports(redis, keys)
    ref = _ref("doc-1")
    n = keys.shard(ref.document_id)
    await a.enqueue([ref], "clean")
    [msg] = await a.read("clean", 10, 100, n)
    await a.retry(msg, "ConnectionError: hiccup")
    [second] = await a.read("clean", 10, 100, n)
    assert second.attempts == 2
    await a.retry(second, "ConnectionError: hiccup")
    [third] = await a.read("clean", 10, 100, n)
    assert third.attempts == 3
    # The retried entries were acknowledged and deleted: only the live one remains.
    assert await redis.xlen(keys.stream("clean", n)) == 1


@BOTH
async def test_advance_stores_everything_at_once(redis: aioredis.Redis, keys: Keys) -> None:
    a, _b = await _transports(redis, keys)
    ref = _ref("doc-1")
    n = keys.shard(ref.document_id)
    await a.enqueue([ref], "resolve")
    [msg] = await a.read("resolve", 10, 100, n)
    out_key = keys.output(ref.document_id, "resolve")
    writes = Writes(((out_key, b"LP-output"),), 60, {b"i": b"intent", b"id": b"0123456789abcdef"})
    moved = await a.advance(msg, "relate", {state.STAGE: "relate"}, None, writes)
    assert moved
    assert await redis.get(out_key) == b"LP-output"
    assert 0 < await redis.ttl(out_key) <= 60
    [(_sid, entry)] = await redis.xrange(keys.wb_stream(n))
    assert entry == {b"i": b"intent", b"id": b"0123456789abcdef"}
    [nxt] = await a.read("relate", 10, 100, n)
    assert nxt.ref == ref and nxt.attempts == 1
    assert await redis.xlen(keys.stream("resolve", n)) == 0  # acked and deleted
    st = await redis.hgetall(keys.state(ref.document_id))
    assert st[state.STAGE.encode()] == b"relate"


@BOTH
async def test_terminal_advance_records_the_failure_and_leaves_the_outstanding_set(
    redis: aioredis.Redis, keys: Keys
) -> None:
    a, _b = await _transports(redis, keys)
    ref = _ref("doc-1")
    n = keys.shard(ref.document_id)
    await a.enqueue([ref], "extract")
    assert await a.outstanding(PROJECT) == 1
    [msg] = await a.read("extract", 10, 100, n)
    assert await a.advance(msg, None, {}, (state.FAILED, "extract: corrupt_file: bad xref"))
    assert await a.outstanding(PROJECT) == 0
    failed = await redis.hget(keys.failed(PROJECT, n), str(ref.document_id))
    assert failed == b"extract: corrupt_file: bad xref"
    st = await redis.hgetall(keys.state(ref.document_id))
    assert st[state.STATUS.encode()] == b"failed" and state.DONE_AT.encode() in st


@pytest.mark.parametrize(
    ("backend", "redis_kind"),
    [("redis", "single"), ("redis", "cluster"), ("local", "single")],
    indirect=["redis_kind"],
)
async def test_advance_of_a_reingested_document_stores_nothing(
    redis: aioredis.Redis, keys: Keys, backend: str
) -> None:
    t: Transport = (await _transports(redis, keys))[0] if backend == "redis" else LocalTransport()
    old = _ref("doc-1", generation=1)
    n = keys.shard(old.document_id) if backend == "redis" else 0
    await t.enqueue([old], "chunk")
    [msg] = await t.read("chunk", 10, 100, n)
    await t.enqueue([_ref("doc-1", generation=2)], "extract")  # re-ingested meanwhile
    out_key = keys.output(old.document_id, "chunk")
    writes = Writes(((out_key, b"stale output"),), 60) if backend == "redis" else None
    assert not await t.advance(msg, "entities", {state.STAGE: "entities"}, None, writes)
    assert await t.read("entities", 10, 50, n) == []
    if backend == "redis":
        assert await redis.get(out_key) is None
        assert await redis.xlen(keys.stream("chunk", n)) == 0  # the stale message is gone
        st = await redis.hgetall(keys.state(old.document_id))
        assert st[state.GENERATION.encode()] == b"2" and st[state.STAGE.encode()] == b"extract"


async def test_begin_asks_redis_only_for_what_it_needs(redis: aioredis.Redis, keys: Keys) -> None:
    a, _b = await _transports(redis, keys)
    ref = _ref(f"doc-{uuid.uuid4().hex[:6]}")
    await a.enqueue([ref], "clean")
    [msg] = await a.read("clean", 10, 100)
    before = int((await redis.info("stats"))["total_commands_processed"])
    begin = await a.begin(msg, None, check_stale=False)
    after = int((await redis.info("stats"))["total_commands_processed"])
    assert (begin.attempts, begin.stale, begin.input_raw) == (1, False, None)
    assert after - before == 1  # the INFO call itself: begin sent nothing
    await redis.set(keys.output(ref.document_id, "extract"), b"input")
    begin = await a.begin(msg, keys.output(ref.document_id, "extract"), check_stale=True)
    assert (begin.stale, begin.input_raw) == (False, b"input")
    await a.enqueue([_ref(ref.source_key, generation=ref.generation + 1)], "extract")
    assert (await a.begin(msg, None, check_stale=True)).stale


@pytest.mark.parametrize("shards", [1, 3, 8, 16])
def test_a_documents_keys_and_its_shards_streams_share_one_slot(shards: int) -> None:
    """What lets every script and MULTI run on Redis Cluster (CRC16 of the hash tag)."""
    from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

    keys = Keys("lp", shards)
    seen = set()
    for i in range(64):
        doc = _ref(f"doc-{i}").document_id
        n = keys.shard(doc)
        seen.add(n)
        slot = key_slot(keys.state(doc).encode())
        same = [
            *keys.outputs(doc),
            keys.stream("extract", n),
            keys.stream("relate", n),
            keys.wb_stream(n),
            keys.wb_dlq(n),
            keys.outstanding(PROJECT, n),
            keys.failed(PROJECT, n),
        ]
        assert {key_slot(k.encode()) for k in same} == {slot}
    assert seen == set(range(shards))  # uuid5 ids spread over every shard
    # Shard n hashes into the n-th equal slot range: even over equal masters.
    for n in range(shards):
        slot = key_slot(keys.stream("extract", n).encode())
        assert (
            n * REDIS_CLUSTER_HASH_SLOTS // shards
            <= slot
            < (n + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
        )
    if shards > 1:  # a per-shard key needs its shard
        with pytest.raises(ValueError, match="per shard"):
            keys.stream("extract")
    else:  # one shard: it may be left out
        assert keys.stream("extract") == keys.stream("extract", 0)
    assert keys.canonical(PROJECT).endswith("{" + PROJECT + "}:canonical")
