"""``RESOLUTION=llm``: which of a project's canonical entities are one entity.

The ``resolve`` stage gives every (type, normalised key) its own canonical entity and
merges near-duplicates only within a document, so "Acme" in one filing and "Acme
Widget Holdings" in another stay two entities. At the end of a batch this resolver
looks at all of the project's canonical entities together (the canonical registry in
Redis on the accelerated path, the table on the traditional one):

1. **Blocking** (rapidfuzz): pairs of the same name-like type whose keys score at
   least ``LLM_RESOLUTION_MIN_SCORE`` by ``token_set_ratio`` and whose digits agree,
   best first, at most ``LLM_RESOLUTION_MAX_PAIRS``.
2. **Adjudication**: one LLM question per pair (versioned prompt
   ``prompts/resolution_v1.txt``, reply ``{"same": bool}`` validated by msgspec, one
   repair). The pair is put in a fixed order (by key, then id) and the prompt holds
   only the pair, so the question, its cache key and its answer are the same whichever
   document brought either entity first; decisions are kept per pair in Redis
   (``Keys.llm_merges``, field ``<version>:<id>:<id>``), so a pair is asked once.
3. **Union-find** over the pairs judged the same; each set's representative is its
   member with the least (key, id), so the aliases depend on the set of entities and
   the decisions only, never on the order documents came in.

A spent budget, an unreachable API or a reply still invalid after its repair leaves
that pair undecided (counted; the resolution is then marked incomplete).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Final

import msgspec
from rapidfuzz import fuzz
from redis.utils import str_if_bytes

from accelerated.backends import Alias, Resolution
from accelerated.boundary import map_driver_errors
from accelerated.cluster import RedisClient
from accelerated.errors import BackendError, BudgetExhausted
from accelerated.fuzzy import fuzzy_pairs
from accelerated.llm.ask import decode_as, load_schema, load_text
from accelerated.llm.service import LlmComponent
from accelerated.models import CanonicalEntity
from accelerated.normalize import NAME_TYPES
from accelerated.settings import Settings

PROMPT_VERSION: Final = "resolution_v1"
SCHEMA_VERSION: Final = "same_v1"
RESOLVABLE: Final = NAME_TYPES | {"COURT"}
MAX_KEYS_PER_TYPE: Final = 20_000  # beyond this a type is not blocked (quadratic)
BATCH: Final = 256  # pairs asked concurrently at most (the limiter paces the calls)

Pair = tuple[CanonicalEntity, CanonicalEntity]


class SameReply(msgspec.Struct):
    same: bool
    reason: str | None = None


_DECODER: Final = msgspec.json.Decoder(SameReply)


def decode_same(content: str) -> SameReply:
    return decode_as(_DECODER, content, "{'same': bool}")


def _order(e: CanonicalEntity) -> tuple[str, str]:
    return (e.key, str(e.id))


def candidate_pairs(
    entities: Sequence[CanonicalEntity], min_score: int, max_pairs: int
) -> tuple[list[Pair], int]:
    """Blocked pairs, best first, each in (key, id) order; and how many were over the cap.

    A pure function of the set of entities: the input order does not matter."""
    by_type: dict[str, list[CanonicalEntity]] = {}
    for e in entities:
        if e.type in RESOLVABLE:
            by_type.setdefault(e.type, []).append(e)
    scored: list[tuple[int, str, str, str, Pair]] = []
    for etype, members in by_type.items():
        members = sorted(members, key=_order)
        n = len(members)
        if n < 2 or n > MAX_KEYS_PER_TYPE:
            continue
        keys = [m.key for m in members]
        for i, j, score in fuzzy_pairs(keys, fuzz.token_set_ratio, min_score):
            scored.append((-score, etype, keys[i], keys[j], (members[i], members[j])))
    scored.sort(key=lambda t: t[:4])
    pairs = [t[4] for t in scored[:max_pairs]]
    return pairs, max(0, len(scored) - max_pairs)


def representatives(
    entities: Sequence[CanonicalEntity], same: Sequence[Pair]
) -> dict[CanonicalEntity, CanonicalEntity]:
    """Union-find over ``same``: each merged entity -> its set's least (key, id) member."""
    by_id = {e.id: e for e in entities}
    parent: dict[uuid.UUID, uuid.UUID] = {}

    def find(i: uuid.UUID) -> uuid.UUID:
        root = i
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(i, i) != root:  # path compression
            parent[i], i = root, parent[i]
        return root

    for a, b in same:
        ra, rb = find(a.id), find(b.id)
        if ra != rb:
            ea, eb = by_id[ra], by_id[rb]
            lo, hi = (ea, eb) if _order(ea) <= _order(eb) else (eb, ea)
            parent[hi.id] = lo.id
    out: dict[CanonicalEntity, CanonicalEntity] = {}
    for i in parent:
        root = find(i)
        if root != i:
            out[by_id[i]] = by_id[root]
    return out


class LlmResolver(LlmComponent):
    """Adjudicates blocked pairs with the LLM; decisions cached per pair in Redis."""

    def __init__(self, settings: Settings, *, redis: RedisClient | None = None) -> None:
        super().__init__(
            settings,
            "RESOLUTION=llm",
            prompt=load_text(f"{PROMPT_VERSION}.txt"),
            prompt_version=PROMPT_VERSION,
            schema_version=SCHEMA_VERSION,
            schema=load_schema(SCHEMA_VERSION),
            redis=redis,
        )

    def messages(self, a: CanonicalEntity, b: CanonicalEntity) -> list[dict[str, str]]:
        return self.conversation(f'<pair>\nTYPE: {a.type}\nA: "{a.name}"\nB: "{b.name}"\n</pair>')

    def _field(self, a: CanonicalEntity, b: CanonicalEntity) -> str:
        lo, hi = sorted((str(a.id), str(b.id)))
        return f"{self.version}:{lo}:{hi}"

    async def _stored(self, project: str, pairs: list[Pair]) -> list[bool | None]:
        redis = self.service.redis
        if not pairs or redis is None or not self.service.caches:
            return [None] * len(pairs)
        with map_driver_errors("redis"):
            raw = await redis.hmget(
                self.service.keys.llm_merges(project), [self._field(a, b) for a, b in pairs]
            )
        return [None if v is None else str_if_bytes(v) == "1" for v in raw]

    async def _store(self, project: str, decided: dict[str, bool]) -> None:
        redis = self.service.redis
        if not decided or redis is None or not self.service.caches:
            return
        key = self.service.keys.llm_merges(project)
        with map_driver_errors("redis"):
            await redis.hset(key, mapping={k: "1" if v else "0" for k, v in decided.items()})
            await redis.expire(key, self.settings.ttl_cache_s)

    async def _ask(self, a: CanonicalEntity, b: CanonicalEntity) -> bool:
        reply = await self.ask(
            self.messages(a, b),
            decode_same,
            what=f"whether {a.type} {a.key!r} and {b.key!r} are one entity",
            shape='{"same": true|false, "reason": "..."}',
        )
        return reply.same

    async def resolve(self, project: str, entities: Sequence[CanonicalEntity]) -> Resolution:
        s = self.settings
        pairs, over = await asyncio.to_thread(
            candidate_pairs, entities, s.llm_resolution_min_score, s.llm_resolution_max_pairs
        )
        out = Resolution(entities=len(entities), candidates=len(pairs), over_cap=over)
        known = await self._stored(project, pairs)
        out.remembered = sum(1 for k in known if k is not None)
        decisions: dict[int, bool] = {i: k for i, k in enumerate(known) if k is not None}
        todo = [i for i, k in enumerate(known) if k is None]
        notes: list[str] = []
        stop = False
        for start in range(0, len(todo), BATCH):
            if stop:
                break
            part = todo[start : start + BATCH]
            got = await asyncio.gather(
                *(self._ask(*pairs[i]) for i in part), return_exceptions=True
            )
            fresh: dict[str, bool] = {}
            for i, r in zip(part, got, strict=True):
                if isinstance(r, bool):
                    decisions[i] = r
                    fresh[self._field(*pairs[i])] = r
                elif isinstance(r, BudgetExhausted):
                    stop = True
                    notes.append("LLM_BUDGET_TOKENS spent")
                elif isinstance(r, BackendError):
                    notes.append(type(r).__name__)
                elif isinstance(r, BaseException):
                    raise r
            out.asked += len(fresh)
            await self._store(project, fresh)
        same = [pairs[i] for i, v in sorted(decisions.items()) if v]
        out.same = len(same)
        out.undecided = len(pairs) - len(decisions)
        out.complete = out.undecided == 0
        out.note = ", ".join(sorted(set(notes)))
        out.aliases = [
            Alias(
                alias_id=e.id,
                canonical_id=rep.id,
                project=project,
                type=e.type,
                alias_key=e.key,
                canonical_key=rep.key,
            )
            for e, rep in sorted(
                representatives(entities, same).items(), key=lambda kv: _order(kv[0])
            )
        ]
        return out
