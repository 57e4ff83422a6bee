"""The ``llm`` entity backend: one chat call per chunk, JSON mentions checked twice.

Each chunk is sent with the versioned prompt ``prompts/entities_v1.txt`` and the
reply must decode (msgspec) as ``{"mentions": [{"type", "text", "start"?}]}``; the
schema ``prompts/mentions_v1.schema.json`` goes with the question as
``LLM_RESPONSE_FORMAT`` says (:func:`accelerated.llm.ask.response_format`). A reply
that does not gets one repair attempt (the reply and the error sent back), then the
chunk fails with a clear :class:`InvalidReply`. Types are mapped onto
``models.ENTITY_TYPES`` (a few common synonyms accepted); any other type is dropped
and counted. Every mention's text is looked up in the chunk: at ``start`` when the
model gave a right one, else at the occurrence nearest to it (or the next one not yet
taken); a text that is not in the chunk is dropped and counted, never stored, since
the model may invent it. Calls go through the exact response cache and the global
limiter (:mod:`accelerated.llm.client`).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import msgspec
from prometheus_client import Counter

from accelerated.backends import BackendClients
from accelerated.cluster import RedisClient
from accelerated.entities import RawMention
from accelerated.llm.ask import decode_as, load_schema, load_text
from accelerated.llm.client import InvalidReply
from accelerated.llm.service import LlmComponent
from accelerated.models import ENTITY_TYPES
from accelerated.settings import Settings

PROMPT_VERSION: Final = "entities_v1"
SCHEMA_VERSION: Final = "mentions_v1"
DROPPED: Final = Counter("llm_mentions_dropped_total", "LLM mentions not stored", ["reason"])

# What models say for the types of the one vocabulary.
SYNONYMS: Final = {
    "CASE": "CASE_CITATION",
    "CITATION": "CASE_CITATION",
    "CASE_LAW": "CASE_CITATION",
    "STATUTE_CITATION": "STATUTE",
    "LAW": "STATUTE",
    "REGULATION": "STATUTE",
    "ORG": "ORGANIZATION",
    "COMPANY": "ORGANIZATION",
    "LAWYER": "ATTORNEY",
    "COUNSEL": "ATTORNEY",
    "DOCKET": "DOCKET_NUMBER",
    "CASE_NUMBER": "DOCKET_NUMBER",
    "AMOUNT": "MONEY",
    "PER": "PERSON",
}


class LlmMention(msgspec.Struct, forbid_unknown_fields=False):
    type: str
    text: str
    start: int | None = None


class MentionsReply(msgspec.Struct):
    mentions: list[LlmMention]


_DECODER: Final = msgspec.json.Decoder(MentionsReply)


def decode_reply(content: str) -> MentionsReply:
    """Validate a reply; :class:`InvalidReply` names what is wrong (for the repair)."""
    return decode_as(_DECODER, content, "the mentions schema")


def load_prompt(version: str = PROMPT_VERSION) -> str:
    return load_text(f"{version}.txt")


def map_type(raw: str) -> str | None:
    t = raw.strip().upper().replace(" ", "_").replace("-", "_")
    t = SYNONYMS.get(t, t)
    return t if t in ENTITY_TYPES else None


def locate(chunk: str, text: str, start: int | None, taken: set[tuple[int, int]]) -> int | None:
    """Offset of ``text`` in ``chunk``: ``start`` when right, else the nearest occurrence
    (or, without a start, the first not yet taken by the same text); None: not there."""
    if start is not None and start >= 0 and chunk[start : start + len(text)] == text:
        return start
    found: list[int] = []
    i = chunk.find(text)
    while i >= 0:
        found.append(i)
        i = chunk.find(text, i + 1)
    if not found:
        return None
    if start is not None:
        return min(found, key=lambda o: (abs(o - start), o))
    free = [o for o in found if (o, o + len(text)) not in taken]
    return (free or found)[0]


class LlmEntityBackend(LlmComponent):
    """``mode = "async"``: chunks are awaited on the loop, concurrently up to the limiter.

    Its Redis client is the runtime's (``bind``, :class:`~accelerated.backends.NeedsClients`);
    ``redis=`` binds one at once, for callers without a runtime (tests, tools)."""

    mode = "async"

    def __init__(self, settings: Settings, *, redis: RedisClient | None = None) -> None:
        super().__init__(
            settings,
            "ENTITY_BACKEND=llm",
            prompt=load_prompt(),
            prompt_version=PROMPT_VERSION,
            schema_version=SCHEMA_VERSION,
            schema=load_schema(SCHEMA_VERSION),
            redis=redis,
        )
        self.dropped_types = 0
        self.dropped_spans = 0
        self.failed_chunks = 0

    async def extract_async(self, texts: list[str]) -> list[list[RawMention]]:
        """Every chunk's call runs to its end even when another chunk's fails (its answer
        is cached: a re-run does not ask it again); then the first failure is raised."""
        results = await asyncio.gather(
            *(self._chunk(i, t) for i, t in enumerate(texts)), return_exceptions=True
        )
        out: list[list[RawMention]] = []
        for r in results:
            if isinstance(r, BaseException):
                raise r
            out.append(r)
        return out

    def messages(self, chunk: str) -> list[dict[str, str]]:
        return self.conversation(f"<chunk>\n{chunk}\n</chunk>")

    async def _chunk(self, index: int, chunk: str) -> list[RawMention]:
        if not chunk.strip():
            return []
        try:
            reply = await self.ask(
                self.messages(chunk),
                decode_reply,
                what=f"chunk {index}",
                shape='{"mentions": [...]}',
            )
        except InvalidReply:  # still invalid after its repair
            self.failed_chunks += 1
            raise
        return self._mentions(chunk, reply)

    def _mentions(self, chunk: str, reply: MentionsReply) -> list[RawMention]:
        out: list[RawMention] = []
        taken: set[tuple[int, int]] = set()
        for m in reply.mentions:
            etype = map_type(m.type)
            if etype is None:
                self.dropped_types += 1
                DROPPED.labels("type").inc()
                continue
            text = m.text.strip()
            start = locate(chunk, text, m.start, taken) if text else None
            if start is None:
                self.dropped_spans += 1
                DROPPED.labels("span").inc()
                continue
            span = (start, start + len(text))
            taken.add(span)
            out.append(RawMention(etype, span[0], span[1], _normalized(etype, text)))
        return _dedupe(out)


def _normalized(etype: str, text: str) -> str:
    return " ".join(text.split()) if etype not in ("CASE_CITATION", "STATUTE") else text


def _dedupe(mentions: list[RawMention]) -> list[RawMention]:
    seen: set[tuple[str, int, int]] = set()
    out = []
    for m in sorted(mentions, key=lambda m: (m.start, m.end, m.type)):
        if (m.type, m.start, m.end) not in seen:
            seen.add((m.type, m.start, m.end))
            out.append(m)
    return out


RULE_TYPES: Final = frozenset({"CASE_CITATION", "STATUTE"})


class RulesPlusLlm:
    """``rules+llm``: citations and statutes by the rules, everything else by the LLM.

    Precedence, by span: the rules' CASE_CITATION and STATUTE mentions are kept as
    they are; the LLM's mentions of those two types are dropped (eyecite is exact
    there, a model is not); any other LLM mention that overlaps a kept citation or
    statute is dropped too; the rules' other types are not used. The rules run in a
    thread so the loop keeps serving the LLM calls.
    """

    mode = "async"

    def __init__(self, rules: Any, llm: LlmEntityBackend) -> None:
        self.rules, self.llm = rules, llm
        self.version = f"rules+llm-{rules.version}-{llm.version}"
        self.llm_model = llm.llm_model

    def bind(self, clients: BackendClients) -> None:
        self.llm.bind(clients)

    async def extract_async(self, texts: list[str]) -> list[list[RawMention]]:
        by_rules, by_llm = await asyncio.gather(
            asyncio.to_thread(self.rules.extract, texts), self.llm.extract_async(texts)
        )
        return [merge(r, m) for r, m in zip(by_rules, by_llm, strict=True)]

    async def aclose(self) -> None:
        await self.llm.aclose()


def merge(rules: list[RawMention], llm: list[RawMention]) -> list[RawMention]:
    """The precedence of :class:`RulesPlusLlm`, sorted by span."""
    kept = [m for m in rules if m.type in RULE_TYPES]
    spans = [(m.start, m.end) for m in kept]
    for m in llm:
        if m.type in RULE_TYPES:
            continue
        if any(m.start < end and start < m.end for start, end in spans):
            continue
        kept.append(m)
    return sorted(kept, key=lambda m: (m.start, m.end, m.type))


def llm_backend(settings: Settings) -> LlmEntityBackend:
    return LlmEntityBackend(settings)


def rules_plus_llm_backend(settings: Settings) -> RulesPlusLlm:
    from accelerated.entities.rules import RulesBackend

    return RulesPlusLlm(RulesBackend(), LlmEntityBackend(settings))
