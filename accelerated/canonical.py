"""Project-wide canonical registries behind ``StageContext.canonical``.

Both keep the same rule as the database: a canonical id is a pure function of
(project, type, key), and the display name that wins is the lexicographically least
one seen (by code point, i.e. UTF-8 byte order). That rule is commutative, so the
registry, the Postgres rows and every re-run converge to the same value whatever the
order documents arrive in. (The protocol's docstring still says "first writer wins";
least-name is what this module and the stores implement.)
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from typing import Final

import msgspec
from redis.utils import str_if_bytes

from accelerated.boundary import map_driver_errors
from accelerated.cluster import RedisClient
from accelerated.errors import CodecError
from accelerated.ids import validate_project
from accelerated.keys import Keys
from accelerated.models import CanonicalEntity
from accelerated.script_batch import ScriptBatch

FIELD_SEP: Final = "\x1f"
CHUNK: Final = 1000  # entities per script call: bounds the time the server is blocked

# KEYS[1] - the project's canonical hash (Keys.canonical)
# ARGV    - pairs: field ("<type>\x1f<key>"), value (compact JSON {"id":..., "name":...})
# For each pair: create the field if absent; else, if the new name is less than the
# stored one (or the stored value is unreadable), replace it. Returns the stored
# values, one per pair, in order. Atomic, so concurrent workers cannot lose an update.
GET_OR_CREATE_SCRIPT: Final = """
-- byte order, not the server locale's strcoll that Lua's '<' uses
local function less(a, b)
    if a == b then return false end
    for i = 1, math.min(#a, #b) do
        local x, y = string.byte(a, i), string.byte(b, i)
        if x ~= y then return x < y end
    end
    return #a < #b
end
local out = {}
for i = 1, #ARGV, 2 do
    local field, value = ARGV[i], ARGV[i + 1]
    local stored = redis.call('hget', KEYS[1], field)
    if not stored then
        redis.call('hset', KEYS[1], field, value)
        stored = value
    else
        local ok, old = pcall(cjson.decode, stored)
        local new = cjson.decode(value)
        if not ok or type(old) ~= 'table' or type(old.name) ~= 'string'
                or less(new.name, old.name) then
            redis.call('hset', KEYS[1], field, value)
            stored = value
        end
    end
    out[#out + 1] = stored
end
return out
"""


class _Stored(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Stored).decode


def field_of(entity: CanonicalEntity) -> str:
    return f"{entity.type}{FIELD_SEP}{entity.key}"


class RedisCanonicalRegistry:
    """The accelerated path's registry: one Redis hash per project, updated by Lua."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        # Lookups of documents in flight share round trips (accelerated/script_batch.py).
        self._script = ScriptBatch(redis, GET_OR_CREATE_SCRIPT)

    async def get_or_create(
        self, project: str, entities: Sequence[CanonicalEntity]
    ) -> builtins.list[CanonicalEntity]:
        """One script call (one round trip) per ``CHUNK`` entities.

        Each call is atomic on its own; atomicity per entity is all the rule needs.
        """
        key = self._keys.canonical(project)
        for entity in entities:
            if entity.project != project:
                raise ValueError(f"entity {entity.id} is of project {entity.project!r}")
        if not entities:
            return []
        values: builtins.list[bytes | str] = []
        with map_driver_errors():
            for start in range(0, len(entities), CHUNK):
                args: builtins.list[str | bytes] = []
                for entity in entities[start : start + CHUNK]:
                    args.append(field_of(entity))
                    args.append(_encode(_Stored(entity.id, entity.name)))
                values.extend(await self._script([key], args))
        return [
            _entity(project, entity.type, entity.key, value)
            for entity, value in zip(entities, values, strict=True)
        ]

    async def list(self, project: str) -> builtins.list[CanonicalEntity]:
        """Every registered entity of the project, sorted by id (for inspection)."""
        key = self._keys.canonical(project)
        out: builtins.list[CanonicalEntity] = []
        with map_driver_errors():
            async for field, value in self._redis.hscan_iter(key, count=1000):
                etype, _, ekey = str_if_bytes(field).partition(FIELD_SEP)
                out.append(_entity(project, etype, ekey, value))
        return sorted(out, key=lambda e: str(e.id))


class PassThroughCanonicalRegistry:
    """The traditional path's registry: returns the entities unchanged.

    Ids need no lookup (they are a pure function of the key), and the atomic
    get-or-create is the store's ``INSERT ... ON CONFLICT (id) DO UPDATE`` keeping the
    least name, done in the same transaction as the stage's other rows. A second copy
    of that rule here would only add a round trip per document to the baseline.
    """

    async def get_or_create(
        self, project: str, entities: Sequence[CanonicalEntity]
    ) -> list[CanonicalEntity]:
        validate_project(project)
        return list(entities)


def _entity(project: str, etype: str, key: str, value: bytes | str) -> CanonicalEntity:
    try:
        stored = _decode(value)
    except msgspec.DecodeError as exc:
        raise CodecError(f"canonical registry value for {etype} {key!r}: {exc}") from None
    return CanonicalEntity(id=stored.id, project=project, type=etype, key=key, name=stored.name)
