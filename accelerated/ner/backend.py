"""The ``transformers`` and ``rules+transformers`` entity backends (mode ``batched``).

``transformers``: each call tokenizes its chunks into windows, hands them to the
process's :class:`~accelerated.ner.batcher.Batcher` (shared with every other document
in flight) and decodes the predictions that come back. The entities stage caches each
chunk's result under the backend's ``version``, which names the model, its revision
(a hub commit, or a hash of a local model's files), the window and stride and the
label mapping, so a new model or mapping never reads an old model's results.

``rules+transformers`` merges the two by span, with this precedence:

1. the rules' ``CASE_CITATION``, ``STATUTE``, ``DOCKET_NUMBER``, ``DATE`` and ``MONEY``
   mentions are kept as they are (eyecite and the patterns are exact there); the
   model's mentions of those types are dropped;
2. the model's other mentions (names: parties, people, organizations, courts,
   judges, attorneys) are kept unless they overlap a mention kept in 1; one that the
   rules found with the same span and type takes the rules' role when it has none;
3. the rules' name mentions fill in where no mention kept so far overlaps them.

The rules run in the process pool with the document's context (as ``rules`` alone
does), the model on the batcher, at the same time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Final

import numpy as np
from prometheus_client import Counter as MetricCounter

from accelerated.entities import RawMention
from accelerated.entities.rules import RulesBackend
from accelerated.ner.batcher import Batcher
from accelerated.ner.model import EncodedText, TokenClassifier, load_classifier
from accelerated.settings import Settings

DROPPED: Final = MetricCounter(
    "ner_mentions_dropped_total", "Model mentions whose label maps to no entity type", ["label"]
)
OFFLOAD_CHARS: Final = 200_000  # larger calls tokenize and decode off the event loop
PATTERN_TYPES: Final = frozenset({"CASE_CITATION", "STATUTE", "DOCKET_NUMBER", "DATE", "MONEY"})


class TransformersBackend:
    mode = "batched"

    def __init__(
        self,
        classifier: TokenClassifier,
        *,
        batch_tokens: int = 16_384,
        max_batch: int = 64,
        max_wait_s: float = 0.02,
    ) -> None:
        self.classifier = classifier
        self.version = classifier.version
        self.batcher: Batcher[Sequence[int], np.ndarray] = Batcher(
            classifier.predict,
            token_budget=batch_tokens,
            max_items=max_batch,
            max_wait_s=max_wait_s,
        )
        self.dropped: Counter[str] = Counter()  # model label -> mentions dropped

    async def extract_async(self, texts: list[str]) -> list[list[RawMention]]:
        big = sum(len(t) for t in texts) > OFFLOAD_CHARS
        encoded = (
            await asyncio.to_thread(self.classifier.encode, texts)
            if big
            else self.classifier.encode(texts)
        )
        windows = [w for e in encoded for w in e.windows]
        predictions = await self.batcher.submit(
            [w.ids for w in windows], [len(w.ids) for w in windows]
        )
        if big:
            return await asyncio.to_thread(self._decode, encoded, predictions)
        return self._decode(encoded, predictions)

    def _decode(
        self, encoded: list[EncodedText], predictions: list[np.ndarray]
    ) -> list[list[RawMention]]:
        out: list[list[RawMention]] = []
        dropped: Counter[str] = Counter()
        i = 0
        for e in encoded:
            n = len(e.windows)
            out.append(self.classifier.decode(e, predictions[i : i + n], dropped))
            i += n
        for label, count in dropped.items():
            DROPPED.labels(label).inc(count)
        self.dropped.update(dropped)
        return out

    async def aclose(self) -> None:
        self.batcher.close()


class RulesPlusTransformers:
    """``cpu_part`` (the rules, in the pool) and ``async_part`` (the model), merged."""

    mode = "batched"

    def __init__(self, rules: RulesBackend, model: TransformersBackend) -> None:
        self.cpu_part, self.async_part = rules, model
        self.version = f"rules+transformers-{rules.version}-{model.version}"

    def merge(self, rules: list[RawMention], model: list[RawMention]) -> list[RawMention]:
        return merge(rules, model)

    async def aclose(self) -> None:
        await self.async_part.aclose()


def _overlaps(m: RawMention, spans: list[tuple[int, int]]) -> bool:
    return any(m.start < end and start < m.end for start, end in spans)


def merge(rules: list[RawMention], model: list[RawMention]) -> list[RawMention]:
    """The precedence of :class:`RulesPlusTransformers`, sorted by span."""
    kept = [m for m in rules if m.type in PATTERN_TYPES]
    spans = [(m.start, m.end) for m in kept]
    roles = {(m.start, m.end, m.type): m.role for m in rules if m.role}
    names = []
    for m in model:
        if m.type in PATTERN_TYPES or _overlaps(m, spans):
            continue
        role = m.role or roles.get((m.start, m.end, m.type))
        names.append(RawMention(m.type, m.start, m.end, m.normalized, role))
    kept += names
    spans += [(m.start, m.end) for m in names]
    kept += [m for m in rules if m.type not in PATTERN_TYPES and not _overlaps(m, spans)]
    return sorted(kept, key=lambda m: (m.start, m.end, m.type))


def _classifier(settings: Settings) -> TokenClassifier:
    from accelerated.errors import ConfigError

    if not settings.transformers_model:
        raise ConfigError(
            f"ENTITY_BACKEND={settings.entity_backend} needs TRANSFORMERS_MODEL "
            "(a local model directory or a hub name)"
        )
    return load_classifier(
        settings.transformers_model,
        revision=settings.transformers_revision,
        device=settings.transformers_device,
        allow_cpu=settings.allow_cpu,
        max_length=settings.transformers_max_length,
        stride=settings.transformers_stride,
    )


def transformers_backend(
    settings: Settings, classifier: TokenClassifier | None = None
) -> TransformersBackend:
    return TransformersBackend(
        classifier or _classifier(settings),
        batch_tokens=settings.ner_batch_tokens,
        max_batch=settings.ner_max_batch,
        max_wait_s=settings.ner_max_wait_ms / 1000,
    )


def rules_plus_transformers_backend(
    settings: Settings, classifier: TokenClassifier | None = None
) -> RulesPlusTransformers:
    return RulesPlusTransformers(RulesBackend(), transformers_backend(settings, classifier))
