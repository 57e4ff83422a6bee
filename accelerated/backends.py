"""Backend protocols and their registries: where a new OCR engine, entity backend,
input source, transcriber or LLM client plugs in.

Each protocol is small and documented; each kind has one :class:`Registry` from
which the CLI edge builds, by the names in settings, every backend a run needs
(:func:`resolve_backends`) before the first document is read, so a wrong name, a
missing model path or a tool not on ``PATH`` (antiword, wpd2text) stops the program at
start-up with one line instead of failing every document. Components receive the built backends
(:class:`Backends`) and never look a name up themselves. The models are httpx's
``_transports/base.py`` and anyio's ``abc/``.

Entity backends declare how they run (``mode``):

* ``pool``: a synchronous ``extract`` shipped to the process pool (CPU-bound rules);
  the object must pickle cheaply, heavy state is built lazily in the child;
* ``async``: ``extract_async`` awaited on the event loop (network I/O: an LLM API);
* ``batched``: ``extract_async`` too, but it hands chunks to a batcher that pools the
  chunks of every document in flight in the process (a GPU model).

Third-party or test code registers its own backends with ``<REGISTRY>.register`` in a
module named in the ``PLUGINS`` setting, imported at start-up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Literal, Protocol, TypeVar, runtime_checkable

import msgspec

from accelerated.entities import RawMention
from accelerated.errors import ConfigError
from accelerated.extractors.legacy import LegacyTools, legacy_tools
from accelerated.models import SourceRef

if TYPE_CHECKING:
    from accelerated.settings import Settings

T = TypeVar("T")
EntityMode = Literal["pool", "async", "batched"]


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


class Segment(msgspec.Struct, frozen=True):
    start_s: float
    end_s: float
    text: str


@runtime_checkable
class Transcriber(Protocol):
    """Audio to timed text segments (the segments become the document's pages)."""

    @property
    def version(self) -> str: ...

    def transcribe(self, audio: bytes, filename: str) -> list[Segment]: ...


@runtime_checkable
class LlmClient(Protocol):
    """Chat completions with JSON output (an OpenAI-compatible API)."""

    @property
    def model(self) -> str: ...

    async def complete_json(self, messages: Sequence[dict[str, str]], schema: str) -> str: ...


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
OCR_ENGINES: Registry[OcrEngine] = Registry("OCR engine", "OCR_BACKEND")
TRANSCRIBERS: Registry[Transcriber] = Registry("transcriber", "TRANSCRIBE_BACKEND")
LLM_CLIENTS: Registry[LlmClient] = Registry("LLM client", "LLM_BACKEND")


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


def _local_files(_settings: Settings) -> BlobSource:
    from accelerated.blobs import LocalBlobReader

    return LocalBlobReader()


def _s3_objects(settings: Settings) -> BlobSource:
    from accelerated.s3 import S3BlobSource

    return S3BlobSource(settings)


def _tesseract(_settings: Settings) -> OcrEngine:
    from accelerated.ocr.tesseract import TesseractEngine

    return TesseractEngine()


ENTITY_BACKENDS.register("rules", _rules)
ENTITY_BACKENDS.register("llm", _llm)
ENTITY_BACKENDS.register("rules+llm", _rules_plus_llm)
OCR_ENGINES.register("tesseract", _tesseract)
BLOB_SOURCES.register("file", _local_files)
BLOB_SOURCES.register("s3", _s3_objects)


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
    ocr: OcrEngine | None = None
    transcriber: Transcriber | None = None
    llm: LlmClient | None = None
    # The external converters of .doc/.wpd (LEGACY_FORMATS): found on PATH at start-up.
    legacy: LegacyTools = field(default_factory=LegacyTools)

    @property
    def notices(self) -> tuple[str, ...]:
        """Start-up lines for the user: what this run will not do, and why."""
        return self.legacy.notices

    async def aclose(self) -> None:
        """Release the connections the blob sources hold (an S3 client's pool)."""
        close = getattr(self.blobs, "aclose", None)
        if close is not None:
            await close()


def load_plugins(modules: Sequence[str]) -> None:
    """Import the ``PLUGINS`` modules, which register backends or stages on import."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"PLUGINS: cannot import {name!r} ({exc})") from None


def resolve_backends(settings: Settings) -> Backends:
    """Build and validate every backend the settings name, before any document is read."""
    load_plugins(settings.plugins)
    ocr = (
        None
        if settings.ocr_backend == "none"
        else OCR_ENGINES.create(settings.ocr_backend, settings)
    )
    return Backends(
        entities=ENTITY_BACKENDS.create(settings.entity_backend, settings),
        blobs=BlobRouter(settings),
        ocr=ocr,
        legacy=legacy_tools(settings),
    )
