"""The stage registry: what a stage *is*, in one record per stage.

The engine (what runs, what comes next, time limits), the handoff (record types and
output keys), the fingerprints (code versions and output-changing settings), the
reprocess planner and the traditional store all read these records, so adding a
stage, or a second outcome such as "needs OCR -> OCR stage", is one edit here. The
models are arq's ``Function`` / ``func()`` and dramatiq's ``Actor``: a plain record
naming the coroutine, resolved lazily so a process imports only what it runs.

A stage's run function is ``async def run(input, ctx) -> output`` over the records in
:mod:`accelerated.models`; it never touches Redis or SQL (see ``stages/__init__``).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from accelerated import state
from accelerated.models import (
    AUDIO,
    Chunked,
    Cleaned,
    Extracted,
    Mentions,
    Related,
    Resolved,
    Structured,
)

if TYPE_CHECKING:
    from accelerated.backends import Backends
    from accelerated.settings import Settings
    from accelerated.stages import StageContext

StageFn = Callable[[Any, "StageContext"], Awaitable[Any]]

OK: Final = "ok"  # the outcome every stage has


@dataclass(frozen=True)
class Finish:
    """Where a route ends the document: the terminal status it is left in."""

    status: str


Route = str | Finish  # the next stage's name, or the end


def _no_params(_settings: Settings, _backends: Backends) -> str:
    return ""


def _ok(_output: Any) -> str:
    return OK


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    ``routes`` maps each outcome ``outcome(output)`` can return to the next stage or
    to a terminal status; the ``ok`` outcome of the last stage finishes the document
    as ``done``. ``input_key`` names the output key the stage reads (``None``: the
    document's ``SourceRef``), so a branch such as an OCR stage can read and replace
    the ``ocr`` output that ``extract`` left. Bump ``version`` whenever the stage's
    output for the same input changes: it is chained into the fingerprints that
    ``--reprocess`` compares. ``params`` returns the settings (and backend versions)
    that change the output, for the same reason. ``main`` stages are on every
    document's path; a branch stage (``main=False``) is checked by reprocess only
    where a document went through it.
    """

    name: str
    run: str  # "module:function", imported on first use
    output_type: type[Any]
    output_key: str
    input_key: str | None
    version: str
    routes: Mapping[str, Route]
    outcome: Callable[[Any], str] = _ok
    params: Callable[[Settings, Backends], str] = _no_params
    time_limit_s: float = 300.0  # default; ``STAGE_TIME_LIMITS`` overrides per stage
    main: bool = True
    # In which order to try the routes' targets when a named stage is disabled (e.g.
    # no OCR backend configured): a route to a stage ``enabled`` says no falls back.
    fallback: Mapping[str, Route] = field(default_factory=dict)
    enabled: Callable[[Settings], bool] = lambda _s: True
    chains: bool = True
    # Whether the engine may run this stage right after the previous one, in the same
    # task, when it serves both and has a slot free here (``INLINE_STAGES``): no for
    # stages that wait on outside services for minutes (OCR, transcription), whose
    # documents should free the worker's slots and may park.
    inline: bool = True

    def resolve(self) -> StageFn:
        return _import(self.run)

    def route(self, output: Any, settings: Settings) -> Route:
        """Where the document goes after this stage produced ``output``."""
        outcome = self.outcome(output)
        target = self.routes[outcome]
        if isinstance(target, str) and not STAGES_BY_NAME[target].enabled(settings):
            return self.fallback[outcome]
        return target


@functools.cache
def _import(path: str) -> StageFn:
    module, _, attr = path.partition(":")
    fn: StageFn = getattr(importlib.import_module(module), attr)
    return fn


def _chunk_params(settings: Settings, _backends: Backends) -> str:
    return f"{settings.chunk_chars}/{settings.chunk_overlap}"


def _entity_params(_settings: Settings, backends: Backends) -> str:
    return backends.entities.version


def _ocr_params(_settings: Settings, backends: Backends) -> str:
    return backends.ocr.version if backends.ocr is not None else "none"


def _transcribe_params(_settings: Settings, backends: Backends) -> str:
    return backends.transcriber.version if backends.transcriber is not None else "none"


def _extract_outcome(output: Any) -> str:
    if isinstance(output, Extracted):
        if output.format == AUDIO:
            return "audio"  # a recording: its text comes from the transcriber
        if output.needs_ocr:
            return "needs_ocr"  # no text layer at all
        if output.metadata.get("ocr_pages"):
            return "partly_scanned"  # a filed brief with scanned exhibits
    return OK


def _ocr_enabled(settings: Settings) -> bool:
    return settings.ocr_backend != "none"


def _structured_enabled(settings: Settings) -> bool:
    return settings.structured_extraction != "none"


def _structured_params(_settings: Settings, backends: Backends) -> str:
    return backends.structured.version if backends.structured is not None else "none"


PIPELINE: Final[tuple[Stage, ...]] = (
    Stage(
        name="extract",
        run="accelerated.stages.extract:run",
        output_type=Extracted,
        output_key="ocr",
        input_key=None,
        # 2: pages drawn as vector outlines count as scans. 3: .doc/.wpd/.rtf extracted
        # (they failed before; as e-mail attachments they were left out of done mails).
        version="3",
        outcome=_extract_outcome,
        routes={OK: "clean", "needs_ocr": "ocr", "partly_scanned": "ocr", "audio": "transcribe"},
        # Without an OCR engine: a scan waits for one; a mixed PDF goes on with its text.
        fallback={"needs_ocr": Finish(state.NEEDS_OCR), "partly_scanned": "clean"},
        time_limit_s=300.0,
    ),
    Stage(
        name="ocr",
        run="accelerated.stages.ocr:run",
        output_type=Extracted,
        output_key="ocr",  # replaces extract's output: clean reads the same key either way
        input_key="ocr",
        version="1",
        routes={OK: "clean"},
        params=_ocr_params,
        time_limit_s=1800.0,
        main=False,
        enabled=_ocr_enabled,
        inline=False,
    ),
    Stage(
        name="transcribe",
        run="accelerated.stages.transcribe:run",
        output_type=Extracted,
        output_key="ocr",  # replaces extract's placeholder, as ocr does
        input_key="ocr",
        version="1",
        routes={OK: "clean"},
        params=_transcribe_params,
        time_limit_s=3600.0,  # an hour of audio on a CPU
        main=False,
        inline=False,
    ),
    Stage(
        name="clean",
        run="accelerated.stages.clean:run",
        output_type=Cleaned,
        output_key="clean",
        input_key="ocr",
        version="1",
        routes={OK: "structure"},
        fallback={OK: "chunk"},  # STRUCTURED_EXTRACTION=none
        time_limit_s=120.0,
    ),
    Stage(
        name="structure",
        run="accelerated.stages.structure:run",
        output_type=Structured,
        output_key="structured",
        input_key="clean",  # the caption and first page, as clean left them
        version="1",
        routes={OK: "chunk"},
        params=_structured_params,
        time_limit_s=300.0,
        enabled=_structured_enabled,
        chains=False,  # nothing after it reads its output (only the documents row)
    ),
    Stage(
        name="chunk",
        run="accelerated.stages.chunk:run",
        output_type=Chunked,
        output_key="chunks",
        input_key="clean",
        version="1",
        routes={OK: "entities"},
        params=_chunk_params,
        time_limit_s=120.0,
    ),
    Stage(
        name="entities",
        run="accelerated.stages.entities:run",
        output_type=Mentions,
        output_key="entities",
        input_key="chunks",
        # 2: of two overlapping mentions of one type from neighbouring chunks, the longer
        version="2",
        routes={OK: "resolve"},
        params=_entity_params,
        time_limit_s=600.0,
    ),
    Stage(
        name="resolve",
        run="accelerated.stages.resolve:run",
        output_type=Resolved,
        output_key="canonical",
        input_key="entities",
        version="1",
        routes={OK: "relate"},
        time_limit_s=300.0,
    ),
    Stage(
        name="relate",
        run="accelerated.stages.relate:run",
        output_type=Related,
        output_key="relations",
        input_key="canonical",
        # 2: HAS_CHUNK, MENTIONS and REFERS_TO are derived by the relationships view.
        version="2",
        routes={OK: Finish(state.DONE)},
        time_limit_s=300.0,
    ),
)

STAGES_BY_NAME: Final[Mapping[str, Stage]] = {s.name: s for s in PIPELINE}
STAGE_NAMES: Final[tuple[str, ...]] = tuple(s.name for s in PIPELINE)
FIRST: Final = PIPELINE[0].name
# Output key name -> the record type stored under it (one type per key).
OUTPUT_TYPES: Final[Mapping[str, type[Any]]] = {s.output_key: s.output_type for s in PIPELINE}
OUTPUT_KEYS: Final[tuple[str, ...]] = tuple(dict.fromkeys(s.output_key for s in PIPELINE))


def on_path(st: Stage, settings: Settings, went_through: bool) -> bool:
    """Whether a document's reprocess plan checks ``st``: a main stage while enabled, a
    branch where the document went through it."""
    return st.enabled(settings) if st.main else went_through


def stage(name: str) -> Stage:
    try:
        return STAGES_BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}") from None


def outputs_from(name: str) -> tuple[str, ...]:
    """Output keys a forced re-run from stage ``name`` rewrites (``--from`` drops them);
    the key the stage itself reads is kept, whoever wrote it."""
    st = stage(name)
    i = STAGE_NAMES.index(name)
    keys = (s.output_key for s in PIPELINE[i:] if s.output_key != st.input_key)
    return tuple(dict.fromkeys(keys))


def fingerprint_params(settings: Settings, backends: Backends) -> dict[str, str]:
    """Per stage, the settings and backend versions its output depends on."""
    return {s.name: s.params(settings, backends) for s in PIPELINE}
