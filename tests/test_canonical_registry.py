"""The project-wide canonical registry against a real Redis: atomic, least name wins."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from accelerated.aio import wait_for
from accelerated.canonical import (
    CHUNK,
    FIELD_SEP,
    PassThroughCanonicalRegistry,
    RedisCanonicalRegistry,
)
from accelerated.errors import BackendUnavailable, InvalidIdError
from accelerated.ids import canonical_id
from accelerated.keys import Keys
from accelerated.models import CanonicalEntity
from accelerated.normalize import entity_key
from tests.conftest import KINDS
from tests.support import redis_from_url

ROOT = Path(__file__).resolve().parents[1]

PROJECT = "proj-1"
# The registry's one-key script runs on a cluster unchanged (the key's {project} tag).
BOTH = pytest.mark.parametrize("redis_kind", KINDS, indirect=True)


def entity(name: str, etype: str = "PARTY", project: str = PROJECT) -> CanonicalEntity:
    key = entity_key(etype, name, "")
    return CanonicalEntity(
        id=canonical_id(project, etype, key), project=project, type=etype, key=key, name=name
    )


# Four spellings per party, one key each; every caller below uses an overlapping subset.
SPELLINGS = {
    base: [f"{base} Corp.", f"{base.upper()} Corporation", f"The {base} Company", f"{base}, Inc."]
    for base in (f"Party{i:04d} Holdings" for i in range(400))
}


@BOTH
async def test_create_then_least_name_wins(redis: aioredis.Redis, keys: Keys) -> None:
    reg = RedisCanonicalRegistry(redis, keys)
    first = await reg.get_or_create(PROJECT, [entity("Acme Corp."), entity("Jones")])
    assert [e.name for e in first] == ["Acme Corp.", "Jones"]
    later = await reg.get_or_create(PROJECT, [entity("The Acme Company")])  # greater: kept
    assert later[0].name == "Acme Corp." and later[0].id == first[0].id
    least = await reg.get_or_create(PROJECT, [entity("ACME Corporation")])  # less: replaces
    assert least[0].name == "ACME Corporation"

    stored = await redis.hgetall(keys.canonical(PROJECT))
    assert set(stored) == {f"PARTY{FIELD_SEP}acme".encode(), f"PARTY{FIELD_SEP}jones".encode()}
    value = json.loads(stored[f"PARTY{FIELD_SEP}acme".encode()])
    assert value == {"id": str(first[0].id), "name": "ACME Corporation"}
    assert await reg.list(PROJECT) == sorted(
        [entity("ACME Corporation"), entity("Jones")], key=lambda e: str(e.id)
    )
    assert await reg.list("other-project") == []


async def test_name_order_is_code_point_order_not_locale(redis: aioredis.Redis, keys: Keys) -> None:
    # A locale collation would put "acme" before "Acme" or "Äcme" near "Acme".
    names = ["Äcme Corp", "acme corp", "Acme corp", "ACME corp", "Acme Corp"]
    reg = RedisCanonicalRegistry(redis, keys)
    for name in names:
        got = await reg.get_or_create(PROJECT, [entity(name, "ORGANIZATION")])
    assert got[0].name == min(names) == "ACME corp"


async def test_unreadable_stored_value_is_replaced(redis: aioredis.Redis, keys: Keys) -> None:
    # Redis is a cache: a damaged entry heals from the derived value instead of failing.
    await redis.hset(keys.canonical(PROJECT), f"PARTY{FIELD_SEP}acme", b"\x00not json")
    got = await RedisCanonicalRegistry(redis, keys).get_or_create(PROJECT, [entity("Acme Inc")])
    assert got == [entity("Acme Inc")]


async def test_large_request_is_chunked_and_keeps_order(redis: aioredis.Redis, keys: Keys) -> None:
    wanted = [entity(f"Company Number {i}") for i in range(CHUNK * 2 + 17)]
    random.Random(3).shuffle(wanted)
    got = await RedisCanonicalRegistry(redis, keys).get_or_create(PROJECT, wanted)
    assert got == wanted
    assert await redis.hlen(keys.canonical(PROJECT)) == len(wanted)


@BOTH
async def test_concurrent_tasks_agree(redis: aioredis.Redis, keys: Keys) -> None:
    reg = RedisCanonicalRegistry(redis, keys)

    async def caller(seed: int) -> list[CanonicalEntity]:
        rnd = random.Random(seed)
        batch = [entity(rnd.choice(names)) for names in SPELLINGS.values() if rnd.random() < 0.7]
        out: list[CanonicalEntity] = []
        for start in range(0, len(batch), 7):  # many small calls interleave on the server
            out += await reg.get_or_create(PROJECT, batch[start : start + 7])
            await asyncio.sleep(0)
        return out

    results = await asyncio.gather(*(caller(seed) for seed in range(40)))
    await _assert_converged(redis, keys, [e for r in results for e in r])


async def sweep(reg: RedisCanonicalRegistry, seed: int) -> list[CanonicalEntity]:
    """Every caller walks the parties in one order, so callers collide on each key."""
    rnd = random.Random(seed)
    return [
        e
        for names in SPELLINGS.values()
        for e in await reg.get_or_create(PROJECT, [entity(rnd.choice(names))])
    ]


_CHILD = r"""
import asyncio, json, sys
import redis.asyncio as aioredis
from accelerated.canonical import RedisCanonicalRegistry
from accelerated.keys import Keys
from tests.test_canonical_registry import sweep
from tests.support import redis_from_url

async def main(url: str, prefix: str, seed: str) -> None:
    client = redis_from_url(url)
    keys = Keys(prefix)
    reg = RedisCanonicalRegistry(client, keys)
    await client.rpush(keys.lock("ready"), seed)
    await client.blpop([keys.lock("go")], timeout=30)
    got = await asyncio.gather(*(sweep(reg, int(seed) * 10 + k) for k in range(2)))
    print(json.dumps([[str(e.id), e.key, e.name] for batch in got for e in batch]))
    await client.aclose()
asyncio.run(main(*sys.argv[1:4]))
"""


async def test_two_processes_and_tasks_agree(
    redis: aioredis.Redis, keys: Keys, prefix: str, redis_url: str
) -> None:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, redis_url, prefix, str(seed), stdout=PIPE, cwd=ROOT
        )
        for seed in (1, 2)
    ]
    try:
        for _ in procs:  # both children connected: start everyone together
            assert await redis.blpop([keys.lock("ready")], timeout=30) is not None
        await redis.rpush(keys.lock("go"), "1", "1")
        reg = RedisCanonicalRegistry(redis, keys)
        got = await asyncio.gather(sweep(reg, 100), sweep(reg, 101))
        seen = [e for batch in got for e in batch]
        for proc in procs:
            out, _ = await wait_for(proc.communicate(), timeout=60)
            assert proc.returncode == 0
            rows = json.loads(out)
            assert len(rows) == 2 * len(SPELLINGS)
            seen += [entity(name) for _, _, name in rows]
            for cid, key, _ in rows:
                assert cid == str(canonical_id(PROJECT, "PARTY", key))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    await _assert_converged(redis, keys, seen)


async def _assert_converged(
    redis: aioredis.Redis, keys: Keys, returned: list[CanonicalEntity]
) -> None:
    """One field per key, every caller got the derived id, the stored name is the least.

    Each call returns min(stored, sent), so the least name returned is the least name
    sent; a lost update (read-modify-write race) would leave a greater one stored.
    """
    stored = await RedisCanonicalRegistry(redis, keys).list(PROJECT)
    least: dict[str, str] = {}
    for e in returned:
        assert e.id == canonical_id(PROJECT, "PARTY", e.key)
        least[e.key] = min(least.get(e.key, e.name), e.name)
    assert await redis.hlen(keys.canonical(PROJECT)) == len(least) == len(stored)
    assert {e.key: e.name for e in stored} == least
    assert all(e == entity(least[e.key]) for e in stored)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_redis_errors_become_backend_unavailable(keys: Keys) -> None:
    client = redis_from_url(f"redis://127.0.0.1:{_closed_port()}", socket_timeout=2)
    reg = RedisCanonicalRegistry(client, keys)
    try:
        with pytest.raises(BackendUnavailable) as info:
            await reg.get_or_create(PROJECT, [entity("Acme")])
        assert info.value.__cause__ is None and info.value.__suppress_context__
        with pytest.raises(BackendUnavailable):
            await reg.list(PROJECT)
    finally:
        await client.aclose()


async def test_bad_project_and_mismatched_entities(redis: aioredis.Redis, keys: Keys) -> None:
    reg = RedisCanonicalRegistry(redis, keys)
    with pytest.raises(InvalidIdError):
        await reg.get_or_create("bad project!", [])
    with pytest.raises(ValueError, match="of project"):
        await reg.get_or_create(PROJECT, [entity("Acme", project="elsewhere")])
    assert await redis.exists(keys.canonical(PROJECT)) == 0


async def test_pass_through_returns_entities_unchanged() -> None:
    reg = PassThroughCanonicalRegistry()
    wanted = [entity("Zeta Corp"), entity("Acme Inc")]
    assert await reg.get_or_create(PROJECT, wanted) == wanted
    with pytest.raises(InvalidIdError):
        await reg.get_or_create("", wanted)
