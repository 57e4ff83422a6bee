"""Entity backends: one protocol, one vocabulary (``models.ENTITY_TYPES``), a registry.

Backends are plain picklable objects with a sync ``extract`` so the stage can ship
them to a process pool; heavy state (compiled tables, models) is built lazily inside
the worker process, never pickled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import msgspec

from accelerated.errors import ConfigError


class RawMention(msgspec.Struct, array_like=True, frozen=True):
    """A mention as a backend reports it: offsets are relative to the text it was given."""

    type: str
    start: int
    end: int
    normalized: str
    # plaintiff, defendant, petitioner, respondent, appellant, appellee, debtor, creditor,
    # contract party ... where the document states it. Last and defaulted, so results
    # cached before roles existed still decode.
    role: str | None = None


@runtime_checkable
class EntityBackend(Protocol):
    """``version`` is part of the chunk-cache key: bump it whenever results can change."""

    @property
    def version(self) -> str: ...

    def extract(self, texts: list[str]) -> list[list[RawMention]]: ...


@runtime_checkable
class ContextualBackend(Protocol):
    """A backend that also reads a short summary of the whole document.

    ``document_context`` sees the whole text once and returns a string (deterministic,
    short); ``extract_in_context`` gets it with every chunk. The stage puts the context
    into the chunk-cache key, so a cached result is never reused under another context.
    """

    def document_context(self, text: str) -> str: ...

    def extract_in_context(self, texts: list[str], context: str) -> list[list[RawMention]]: ...


def _rules() -> EntityBackend:
    from accelerated.entities.rules import RulesBackend

    return RulesBackend()


_FACTORIES: dict[str, Callable[[], EntityBackend]] = {"rules": _rules}
DEFAULT_BACKEND = "rules"


def register_backend(name: str, factory: Callable[[], EntityBackend]) -> None:
    """Later backends (transformers, llm) plug in here without touching the stage."""
    _FACTORIES[name] = factory


def get_backend(name: str = DEFAULT_BACKEND) -> EntityBackend:
    try:
        factory = _FACTORIES[name]
    except KeyError:
        known = ", ".join(sorted(_FACTORIES))
        raise ConfigError(f"unknown entity backend {name!r}; known: {known}") from None
    return factory()
