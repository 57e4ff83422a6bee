"""Backend protocols and their registries: where a new OCR engine, entity backend,
input source, transcriber or LLM client plugs in.

Each protocol is small and documented; each kind has one :class:`Registry` from
which the CLI edge builds, by the names in settings, every backend a run needs
(:func:`resolve_backends`) before the first document is read, so a wrong name, a
missing model path or a tool not on ``PATH`` (antiword, wpd2text) stops the program at
start-up with one line instead of failing every document. Components receive the built backends
(:class:`Backends`) and never look a name up themselves. The models are httpx's
``_transports/base.py`` and anyio's ``abc/``.

OCR comes in two kinds (``ocr_mode``): an :class:`OcrEngine` reads one page image at
a time in the process pool (tesseract); an :class:`AsyncDocumentOcr` is a remote
service that takes a whole document and answers minutes later (AWS Textract's
asynchronous API). For the second, the ``ocr`` stage starts the job and *parks* the
document (``accelerated/parking.py``: no worker slot is held while it waits), and one
poller per deployment (``accelerated/ocr/jobs.py``) collects the result into the OCR
cache and sends the document back to ``ocr``; a new service implements only the three
calls of the protocol.

Entity backends declare how they run (``mode``):

* ``pool``: a synchronous ``extract`` shipped to the process pool (CPU-bound rules);
  the object must pickle cheaply, heavy state is built lazily in the child;
* ``async``: ``extract_async`` awaited on the event loop (network I/O: an LLM API);
* ``batched``: ``extract_async`` too, but it hands chunks to a batcher that pools the
  chunks of every document in flight in the process (a GPU model).

A combined backend (``rules+transformers``) is a :class:`SplitBackend`: its
``cpu_part`` runs in the pool (with the document's context) while its ``async_part``
is awaited, and ``merge`` combines their results per chunk.

Third-party or test code registers its own backends with ``<REGISTRY>.register`` in a
module named in the ``PLUGINS`` setting, imported at start-up.

Backends are built before any server is connected (a wrong setting must stop the
program first), so a backend that needs a client (the LLM backends: Redis for the
shared limiter, the response cache and the usage counters) implements
:class:`NeedsClients`: the runtime hands it the clients it was given
(:class:`BackendClients`) with ``bind`` and closes it with ``aclose`` on shutdown. A
backend never builds such a client itself.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Final,
    Generic,
    Literal,
    Protocol,
    TypeVar,
    runtime_checkable,
)

import msgspec

from accelerated.cluster import RedisClient
from accelerated.entities import RawMention
from accelerated.errors import ConfigError
from accelerated.extractors.legacy import LegacyTools, legacy_tools
from accelerated.models import CanonicalEntity, DocumentFields, SourceRef

if TYPE_CHECKING:
    from accelerated.keys import Keys
    from accelerated.settings import Settings

T = TypeVar("T")
EntityMode = Literal["pool", "async", "batched"]
OcrMode = Literal["page", "document"]


# Protocols ----------------------------------------------------------------------------
class BlobSource(Protocol):
    """Reads a document's bytes from where intake found it (a path, ``s3://``...)."""

    schemes: tuple[str, ...]  # URI schemes it reads; "" is a plain local path

    async def read(self, source: SourceRef, max_bytes: int) -> bytes:
        """The bytes, at most ``max_bytes`` (else ``DocumentError(code="too_large")``)."""
        ...


@runtime_checkable
class EntityBackend(Protocol):
    """Finds mentions in chunk texts, in the one vocabulary of ``models.ENTITY_TYPES``.

    ``version`` is part of the per-chunk cache key and of the entities stage's
    fingerprint: change it whenever results for the same text can change. ``mode``
    (``pool`` when absent) says which of the two protocols below it implements.
    """

    @property
    def version(self) -> str: ...


@runtime_checkable
class PoolEntityBackend(EntityBackend, Protocol):
    """``pool`` mode: one result list per text, computed in a pool process."""

    def extract(self, texts: list[str]) -> list[list[RawMention]]: ...


@runtime_checkable
class AsyncEntityBackend(EntityBackend, Protocol):
    """``async`` / ``batched`` mode: awaited on the event loop."""

    @property
    def mode(self) -> EntityMode: ...

    async def extract_async(self, texts: list[str]) -> list[list[RawMention]]: ...


@runtime_checkable
class SplitBackend(EntityBackend, Protocol):
    """Two backends run side by side on the same chunks and merged by span."""

    @property
    def cpu_part(self) -> PoolEntityBackend: ...

    @property
    def async_part(self) -> AsyncEntityBackend: ...

    def merge(self, cpu: list[RawMention], other: list[RawMention]) -> list[RawMention]: ...


def entity_mode(backend: EntityBackend) -> EntityMode:
    mode: EntityMode = getattr(backend, "mode", "pool")
    return mode


class PageImage(msgspec.Struct, frozen=True):
    """One rendered page: 8-bit grey pixels, row-major, ``width`` bytes per row."""

    number: int
    width: int
    height: int
    dpi: int
    pixels: bytes


class OcrText(msgspec.Struct, frozen=True):
    """What an engine read on one page."""

    text: str
    confidence: float  # mean word confidence, 0-100 (-1 when the engine gives none)


@runtime_checkable
class OcrEngine(Protocol):
    """Reads text from page images. Synchronous: pages run in the process pool, pages of
    many documents at once. ``version`` covers the engine, its data and settings, and is
    part of the OCR cache key."""

    @property
    def version(self) -> str: ...

    def recognize(self, page: PageImage) -> OcrText: ...


class RateGate(Protocol):
    """Admits one request to a rate-limited service: the limit holds for every worker on
    every host together (``accelerated/llm/limiter.py``)."""

    async def wait(self) -> None:
        """Return when one more request may go out."""
        ...

    async def cool_down(self, ms: float) -> None:
        """The service said "slow down": every worker holds off for ``ms``."""
        ...


class OcrJobResult(msgspec.Struct, frozen=True):
    """What a poll of an asynchronous OCR job learnt.

    ``status`` is ``running``, ``succeeded`` (``pages`` holds every page, numbered from
    1) or ``failed`` (``error`` says why, in words a user can act on)."""

    status: Literal["running", "succeeded", "failed"]
    pages: dict[int, OcrText] | None = None
    error: str = ""


@runtime_checkable
class AsyncDocumentOcr(Protocol):
    """A remote service that reads a whole document and answers later (``mode``
    ``document``; AWS Textract's ``StartDocumentTextDetection``).

    Workers call :meth:`locate` and :meth:`start` from the ``ocr`` stage; only the
    deployment's one poller calls :meth:`poll`. Every request to the service waits on
    ``gate`` first (the shared rate limit). ``version`` is part of the OCR cache key. Calls raise
    ``DocumentError`` for a document the service refuses, ``BackendUnavailable`` for
    what a retry can outlive (throttling included), ``BackendRejected`` otherwise.
    """

    @property
    def mode(self) -> Literal["document"]: ...

    @property
    def name(self) -> str:
        """Short name for keys and messages (``textract``)."""
        ...

    @property
    def version(self) -> str: ...

    async def locate(
        self, name: str, source: str, fmt: str, read: Callable[[], Awaitable[bytes]]
    ) -> str:
        """Where the service reads the bytes (an ``s3://`` URI): ``source`` itself when
        it can read it in place, else a staging copy of ``read()`` under ``name``, a
        content hash (uploaded once: a copy that exists has the same bytes). ``source``
        is ``""`` for bytes that exist only in ``read()`` (the scanned pages of a mixed
        PDF)."""
        ...

    async def start(self, location: str, token: str, gate: RateGate) -> str:
        """Start a job, returning its id. The same ``token`` returns the same job: a
        retried start never starts a second one."""
        ...

    async def poll(self, job_id: str, gate: RateGate) -> OcrJobResult:
        """The job's status; once it succeeded, every page of the result."""
        ...

    async def aclose(self) -> None:
        """Close the connections opened on the running loop (the poller calls it when
        its engine stops)."""
        ...


OcrBackend = OcrEngine | AsyncDocumentOcr


def ocr_mode(backend: OcrBackend) -> OcrMode:
    """``page`` (an :class:`OcrEngine`, in the pool) or ``document`` (a service)."""
    mode: OcrMode = getattr(backend, "mode", "page")
    return mode


class Segment(msgspec.Struct, frozen=True):
    start_s: float
    end_s: float
    text: str


@runtime_checkable
class Transcriber(Protocol):
    """Audio to timed text segments (the segments become the document's pages).

    Synchronous: the transcribe stage runs it on one thread of its own per process
    (one model per process; CTranslate2 and HTTP clients release the GIL). An audio
    file that cannot be decoded is a ``DocumentError(code="corrupt_audio")``.
    ``version`` names the engine, model and decoding options: it is part of the
    transcript cache key."""

    @property
    def version(self) -> str: ...

    def transcribe(self, audio: bytes, filename: str) -> list[Segment]: ...


@runtime_checkable
class LlmClient(Protocol):
    """Chat completions with JSON output (an OpenAI-compatible API)."""

    @property
    def model(self) -> str: ...

    async def complete_json(self, messages: Sequence[dict[str, str]], schema: str) -> str: ...


@runtime_checkable
class StructuredExtractor(Protocol):
    """Document-level fields (caption, court, docket numbers, filing date, type, parties,
    judges, counsel) from the head of a document (``STRUCTURED_EXTRACTION``).

    Raises :class:`~accelerated.errors.InvalidOutput` when the model's answer is still
    invalid after its repair attempt (the stage records it, the document goes on) and
    :class:`~accelerated.errors.BudgetExhausted` past the run's token budget.
    ``version`` is part of the stage's fingerprint.
    """

    @property
    def version(self) -> str: ...

    async def extract_fields(self, head: str, category: str) -> DocumentFields: ...


class Alias(msgspec.Struct, frozen=True, kw_only=True):
    """A canonical entity merged into another (its representative)."""

    alias_id: uuid.UUID
    canonical_id: uuid.UUID
    project: str
    type: str
    alias_key: str
    canonical_key: str


class Resolution(msgspec.Struct, kw_only=True):
    """What a resolver decided over a project's canonical entities."""

    aliases: list[Alias] = msgspec.field(default_factory=list)
    entities: int = 0  # canonical entities looked at
    candidates: int = 0  # pairs the blocking proposed (after the cap)
    over_cap: int = 0  # pairs past LLM_RESOLUTION_MAX_PAIRS, not adjudicated
    asked: int = 0  # pairs adjudicated now (an LLM answer, cached or not)
    remembered: int = 0  # pairs whose decision was already stored
    same: int = 0  # pairs judged to be one entity
    undecided: int = 0  # pairs without a decision (budget spent, invalid replies)
    complete: bool = True  # every candidate pair has a decision
    note: str = ""  # why not complete


@runtime_checkable
class Resolver(Protocol):
    """Cross-document merging of a project's canonical entities (``RESOLUTION``):
    which of them are one entity, as aliases of a deterministic representative."""

    @property
    def version(self) -> str: ...

    async def resolve(self, project: str, entities: Sequence[CanonicalEntity]) -> Resolution: ...


@dataclass(frozen=True)
class BackendClients:
    """The clients the runtime was given, for the backends that need one."""

    redis: RedisClient | None
    keys: Keys
    caches: bool  # the accelerated path: content and response caches in Redis


@runtime_checkable
class NeedsClients(Protocol):
    """A backend that uses the runtime's clients: bound once, closed on shutdown."""

    def bind(self, clients: BackendClients) -> None: ...

    async def aclose(self) -> None: ...


# Registries ---------------------------------------------------------------------------
Factory = Callable[["Settings"], T]


class Registry(Generic[T]):
    """Name -> factory for one kind of backend; factories validate and may raise
    :class:`ConfigError` (a model path missing, a tool not installed, no credentials)."""

    def __init__(self, kind: str, setting: str) -> None:
        self.kind, self.setting = kind, setting
        self._factories: dict[str, Factory[T]] = {}

    def register(self, name: str, factory: Factory[T]) -> None:
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, name: str, settings: Settings) -> T:
        """Build the backend ``name``; a wrong name is a one-line :class:`ConfigError`."""
        try:
            factory = self._factories[name]
        except KeyError:
            raise ConfigError(
                f"{self.setting}={name!r} is not a known {self.kind}; "
                f"known: {', '.join(self.names()) or 'none'}"
            ) from None
        return factory(settings)


BLOB_SOURCES: Registry[BlobSource] = Registry("input source", "input scheme")
ENTITY_BACKENDS: Registry[EntityBackend] = Registry("entity backend", "ENTITY_BACKEND")
OCR_ENGINES: Registry[OcrBackend] = Registry("OCR engine", "OCR_BACKEND")
TRANSCRIBERS: Registry[Transcriber] = Registry("transcriber", "TRANSCRIBE_BACKEND")
LLM_CLIENTS: Registry[LlmClient] = Registry("LLM client", "LLM_BACKEND")
STRUCTURED_EXTRACTORS: Registry[StructuredExtractor] = Registry(
    "structured extractor", "STRUCTURED_EXTRACTION"
)
RESOLVERS: Registry[Resolver] = Registry("resolver", "RESOLUTION")


# Built-in backends (imported late: a worker loads only what it uses) ------------------
def _rules(_settings: Settings) -> EntityBackend:
    from accelerated.entities.rules import RulesBackend

    return RulesBackend()


def _llm(settings: Settings) -> EntityBackend:
    from accelerated.llm.entities import llm_backend

    return llm_backend(settings)


def _rules_plus_llm(settings: Settings) -> EntityBackend:
    from accelerated.llm.entities import rules_plus_llm_backend

    return rules_plus_llm_backend(settings)


def _llm_structured(settings: Settings) -> StructuredExtractor:
    from accelerated.llm.structured import LlmStructuredExtractor

    return LlmStructuredExtractor(settings)


def _llm_resolver(settings: Settings) -> Resolver:
    from accelerated.llm.resolution import LlmResolver

    return LlmResolver(settings)


def _transformers(settings: Settings) -> EntityBackend:
    from accelerated.ner.backend import transformers_backend

    return transformers_backend(settings)


def _rules_plus_transformers(settings: Settings) -> EntityBackend:
    from accelerated.ner.backend import rules_plus_transformers_backend

    return rules_plus_transformers_backend(settings)


def _faster_whisper(settings: Settings) -> Transcriber:
    from accelerated.audio.whisper import faster_whisper_transcriber

    return faster_whisper_transcriber(settings)


def _openai_audio(settings: Settings) -> Transcriber:
    from accelerated.audio.openai_api import openai_transcriber

    return openai_transcriber(settings)


def _local_files(_settings: Settings) -> BlobSource:
    from accelerated.blobs import LocalBlobReader

    return LocalBlobReader()


def _s3_objects(settings: Settings) -> BlobSource:
    from accelerated.s3 import S3BlobSource

    return S3BlobSource(settings)


def _tesseract(settings: Settings) -> OcrBackend:
    from accelerated.ocr.tesseract import TesseractEngine

    return TesseractEngine(timeout_s=settings.ocr_page_timeout_s)


def _textract(settings: Settings) -> OcrBackend:
    from accelerated.ocr.textract import TextractService

    return TextractService.from_settings(settings)


ENTITY_BACKENDS.register("rules", _rules)
ENTITY_BACKENDS.register("llm", _llm)
ENTITY_BACKENDS.register("rules+llm", _rules_plus_llm)
ENTITY_BACKENDS.register("transformers", _transformers)
ENTITY_BACKENDS.register("rules+transformers", _rules_plus_transformers)
TRANSCRIBERS.register("faster-whisper", _faster_whisper)
TRANSCRIBERS.register("openai", _openai_audio)
OCR_ENGINES.register("tesseract", _tesseract)
OCR_ENGINES.register("textract", _textract)
BLOB_SOURCES.register("file", _local_files)
BLOB_SOURCES.register("s3", _s3_objects)
STRUCTURED_EXTRACTORS.register("llm", _llm_structured)
RESOLVERS.register("llm", _llm_resolver)
OFF: Final = "none"  # STRUCTURED_EXTRACTION / RESOLUTION / OCR_BACKEND: not used


def _scheme(source: str) -> str:
    head, sep, _ = source.partition("://")
    return head.lower() if sep and head.isascii() and head.isalnum() else ""


class BlobRouter:
    """The one ``BlobSource`` a run holds: each document is read by the source for the
    scheme of its ``source`` (a plain path or ``file://``: ``file``; ``s3://``: ``s3``;
    a plugin's own scheme: the ``BLOB_SOURCES`` entry of that name).

    The local reader is built at once; others on first use, so a worker that never
    meets an ``s3://`` document never imports aioboto3 (one that does pays its import,
    about a second, on the first such document). The batch command lists its S3
    inputs at start-up, so a missing package or bad credentials is one line there.
    """

    schemes: tuple[str, ...] = ("*",)

    def __init__(self, settings: Settings, registry: Registry[BlobSource] = BLOB_SOURCES) -> None:
        self.settings, self.registry = settings, registry
        self._sources: dict[str, BlobSource] = {}
        self.source_for("file")  # every run may meet a local path: built (imported) now

    def source_for(self, scheme: str) -> BlobSource:
        name = "file" if scheme in ("", "file") else scheme
        source = self._sources.get(name)
        if source is None:
            source = self._sources[name] = self.registry.create(name, self.settings)
        return source

    async def read(self, source: SourceRef, max_bytes: int) -> bytes:
        return await self.source_for(_scheme(source.source)).read(source, max_bytes)

    async def aclose(self) -> None:
        """Close the sources that hold connections (an S3 client's pool)."""
        sources, self._sources = list(self._sources.values()), {}
        for src in sources:
            close = getattr(src, "aclose", None)
            if close is not None:
                await close()


@dataclass(frozen=True)
class Backends:
    """Every backend a run uses, built once at the CLI edge (or by a test)."""

    entities: EntityBackend
    blobs: BlobSource
    ocr: OcrBackend | None = None
    transcriber: Transcriber | None = None
    llm: LlmClient | None = None
    structured: StructuredExtractor | None = None  # STRUCTURED_EXTRACTION; None: off
    resolver: Resolver | None = None  # RESOLUTION; None: off
    # The external converters of .doc/.wpd (LEGACY_FORMATS): found on PATH at start-up.
    legacy: LegacyTools = field(default_factory=LegacyTools)

    @property
    def notices(self) -> tuple[str, ...]:
        """Start-up lines for the user: what this run will not do, and why."""
        return self.legacy.notices

    def components(self) -> list[object]:
        """Every backend present, each once (the runtime binds and closes them)."""
        out: list[object] = []
        for b in (
            self.entities,
            self.blobs,
            self.ocr,
            self.transcriber,
            self.llm,
            self.structured,
            self.resolver,
        ):
            if b is not None and all(b is not o for o in out):
                out.append(b)
        return out

    async def aclose(self) -> None:
        """Release what the backends hold: the blob sources' and an OCR service's
        connections (an S3 or Textract client's pool), the LLM backends' HTTP clients.
        Each is closed even if another fails."""
        errors: list[Exception] = []
        for b in self.components():
            close = getattr(b, "aclose", None)
            if close is None:
                continue
            try:
                await close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def llm_models(backends: Backends) -> set[str]:
    """The models the backends call (an LLM backend names its model in ``llm_model``):
    the runs' usage counters and token budgets are kept for these."""
    out: set[str] = set()
    for c in backends.components():
        model = getattr(c, "llm_model", None)
        if isinstance(model, str) and model:
            out.add(model)
    return out


def load_plugins(modules: Sequence[str]) -> None:
    """Import the ``PLUGINS`` modules, which register backends or stages on import."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"PLUGINS: cannot import {name!r} ({exc})") from None


def transcriber_name(settings: Settings) -> str:
    """``TRANSCRIBE_BACKEND`` resolved: ``auto`` is faster-whisper when a model is set."""
    name = settings.transcribe_backend
    if name == "auto":
        return "faster-whisper" if settings.transcribe_model else "none"
    return name


def resolve_backends(settings: Settings) -> Backends:
    """Build and validate every backend the settings name, before any document is read."""
    load_plugins(settings.plugins)
    ocr = (
        None if settings.ocr_backend == OFF else OCR_ENGINES.create(settings.ocr_backend, settings)
    )
    structured = (
        None
        if settings.structured_extraction == OFF
        else STRUCTURED_EXTRACTORS.create(settings.structured_extraction, settings)
    )
    resolver = (
        None if settings.resolution == OFF else RESOLVERS.create(settings.resolution, settings)
    )
    transcriber = transcriber_name(settings)
    return Backends(
        entities=ENTITY_BACKENDS.create(settings.entity_backend, settings),
        blobs=BlobRouter(settings),
        ocr=ocr,
        transcriber=None if transcriber == "none" else TRANSCRIBERS.create(transcriber, settings),
        structured=structured,
        resolver=resolver,
        legacy=legacy_tools(settings),
    )
