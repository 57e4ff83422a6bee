"""``STRUCTURED_EXTRACTION=llm``: document-level fields from the head of a document.

One chat call per document with the versioned prompt ``prompts/structured_v1.txt``,
which embeds the versioned schema ``prompts/structured_v1.schema.json`` (sent as
``LLM_RESPONSE_FORMAT`` says, too); the reply
must decode (msgspec) as :class:`~accelerated.models.DocumentFields` and pass the
checks below, else one repair attempt, then :class:`InvalidReply` (the stage records
it against the document, which goes on). The context is the head of the previous
stage's output (the cleaned text, from Redis on the accelerated path), so the model
reads the caption and first page as the pipeline cleaned them.

Checks: ``filing_date`` is a real ``YYYY-MM-DD`` date (else: invalid, repaired);
``document_type`` outside the vocabulary becomes ``other``; roles are lower-cased;
and, as for entity mentions, a docket number, judge, party or counsel name that does
not occur in the text the model was given (case and spacing aside) is dropped and
counted, never stored: the model may invent it.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Final

import msgspec
from prometheus_client import Counter

from accelerated.cluster import RedisClient
from accelerated.llm.ask import decode_as, load_text, strict_schema
from accelerated.llm.client import InvalidReply
from accelerated.llm.service import LlmComponent
from accelerated.models import Counsel, DocumentFields, Party
from accelerated.settings import Settings

PROMPT_VERSION: Final = "structured_v1"
SCHEMA_VERSION: Final = "structured_v1"
DOCUMENT_TYPES: Final = frozenset(
    {
        "opinion",
        "order",
        "judgment",
        "motion",
        "brief",
        "complaint",
        "petition",
        "notice",
        "contract",
        "correspondence",
        "other",
    }
)
DROPPED: Final = Counter("llm_fields_dropped_total", "Document fields not in the text", ["field"])
_ISO: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_DECODER: Final = msgspec.json.Decoder(DocumentFields)


def _folded(text: str) -> str:
    return " ".join(text.casefold().split())


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None


def decode_fields(content: str) -> DocumentFields:
    """msgspec against the schema, and a real ISO filing date."""
    fields = decode_as(_DECODER, content, "the document fields schema")
    date = _clean(fields.filing_date)
    if date is not None:
        try:
            if not _ISO.fullmatch(date):
                raise ValueError(date)
            datetime.date.fromisoformat(date)
        except ValueError:
            raise InvalidReply(
                f"filing_date {date[:40]!r} is not a date as YYYY-MM-DD", backend="openai"
            ) from None
    return fields


class LlmStructuredExtractor(LlmComponent):
    """Fields of one document per call, through the response cache and the limiter."""

    def __init__(self, settings: Settings, *, redis: RedisClient | None = None) -> None:
        schema = load_text(f"{SCHEMA_VERSION}.schema.json")
        super().__init__(
            settings,
            "STRUCTURED_EXTRACTION=llm",
            prompt=load_text(f"{PROMPT_VERSION}.txt").replace("{schema}", schema.strip()),
            prompt_version=PROMPT_VERSION,
            schema_version=SCHEMA_VERSION,
            schema=strict_schema(json.loads(schema)),
            redis=redis,
        )
        self.dropped = 0

    def messages(self, head: str, category: str) -> list[dict[str, str]]:
        return self.conversation(
            f"(The pipeline's guess at its category: {category}.)\n<document>\n{head}\n</document>"
        )

    async def extract_fields(self, head: str, category: str) -> DocumentFields:
        if not head.strip():
            return DocumentFields()
        fields = await self.ask(
            self.messages(head, category),
            decode_fields,
            what="document fields",
            shape='{"caption": ..., "court": ..., ...}',
        )
        return self._checked(head, fields)

    def _checked(self, head: str, f: DocumentFields) -> DocumentFields:
        text = _folded(head)

        def present(name: str, value: str | None) -> str | None:
            value = _clean(value)
            if value is None:
                return None
            if _folded(value) in text:
                return value
            self.dropped += 1
            DROPPED.labels(name).inc()
            return None

        def unique(values: list[str | None]) -> list[str]:
            return list(dict.fromkeys(v for v in values if v is not None))

        parties: dict[str, Party] = {}
        for p in f.parties:
            name = present("party", p.name)
            if name is not None and name not in parties:
                role = _clean(p.role)
                parties[name] = Party(name=name, role=role.lower() if role else None)
        counsel: dict[str, Counsel] = {}
        for c in f.counsel:
            name = present("counsel", c.name)
            if name is not None and name not in counsel:
                counsel[name] = Counsel(
                    name=name, firm=_clean(c.firm), represents=_clean(c.represents)
                )
        kind = (_clean(f.document_type) or "").lower().replace(" ", "_") or None
        return DocumentFields(
            caption=_clean(f.caption),
            court=_clean(f.court),
            docket_numbers=unique([present("docket_number", d) for d in f.docket_numbers]),
            filing_date=_clean(f.filing_date),
            document_type=kind if kind is None or kind in DOCUMENT_TYPES else "other",
            parties=list(parties.values()),
            judges=unique([present("judge", j) for j in f.judges]),
            counsel=list(counsel.values()),
        )
