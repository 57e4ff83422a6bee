"""Stage ``structure`` (``STRUCTURED_EXTRACTION``): document-level fields after ``clean``.

It reads the previous stage's output (the cleaned text: from Redis on the accelerated
path, from Postgres on the traditional one) and gives the extractor its head, the
caption and first page, where a court filing states its court, docket, parties and
date. A model answer that stays invalid after its repair attempt is *recorded*, not
fatal: the output carries the error (``documents.metadata.structured_error``) and the
document goes on to chunking and entities, which do not depend on it. A spent token
budget (``BudgetExhausted``) and an unreachable API are not caught here: the engine
ends the document as ``budget_exhausted`` or holds and retries it.
"""

from __future__ import annotations

from typing import Final

from accelerated.errors import ConfigError, InvalidOutput
from accelerated.models import Cleaned, Structured
from accelerated.stages import StageContext

MIN_HEAD_CHARS: Final = 1500  # a cover page of three lines is not enough context


def head_of(doc: Cleaned, max_chars: int) -> str:
    """The first page, extended to ``MIN_HEAD_CHARS`` when shorter, cut at ``max_chars``."""
    first_end = doc.pages[0].end if doc.pages else len(doc.text)
    return doc.text[: min(max_chars, max(first_end, MIN_HEAD_CHARS))]


async def run(doc: Cleaned, ctx: StageContext) -> Structured:
    extractor = ctx.backends.structured if ctx.backends is not None else None
    if extractor is None:
        raise ConfigError("the structure stage runs only with STRUCTURED_EXTRACTION set")
    head = head_of(doc, ctx.settings.structured_head_chars)
    try:
        fields = await extractor.extract_fields(head, doc.category)
    except InvalidOutput as exc:
        return Structured(
            document_id=doc.document_id, extractor=extractor.version, error=f"invalid_reply: {exc}"
        )
    return Structured(document_id=doc.document_id, extractor=extractor.version, fields=fields)
