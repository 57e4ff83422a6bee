"""Entity backends: the mention record they report, and the built-in ones.

The protocols (``EntityBackend`` and its ``pool`` / ``async`` forms) and the registry
live in :mod:`accelerated.backends`, beside every other kind of backend; this package
holds the implementations (``rules``: eyecite, courts-db, regexes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import msgspec

if TYPE_CHECKING:
    from accelerated.backends import EntityBackend
    from accelerated.settings import Settings


class RawMention(msgspec.Struct, array_like=True, frozen=True):
    """A mention as a backend reports it: offsets are relative to the text it was given."""

    type: str
    start: int
    end: int
    normalized: str
    # which field the mention is, where the document states it: a party's side
    # (plaintiff, defendant, ..., contract party), a date's, a docket number's or a
    # judge's field (patterns.DATE_ROLES, DOCKET_ROLES, JUDGE_ROLES). Last and defaulted,
    # so results cached before roles existed still decode.
    role: str | None = None


@runtime_checkable
class ContextualBackend(Protocol):
    """A backend that also reads a short summary of the whole document.

    ``document_context`` sees the whole text once and returns a string (deterministic,
    short); ``extract_in_context`` gets it with every chunk. The stage puts the context
    into the chunk-cache key, so a cached result is never reused under another context.
    """

    def document_context(self, text: str) -> str: ...

    def extract_in_context(self, texts: list[str], context: str) -> list[list[RawMention]]: ...


DEFAULT_BACKEND = "rules"


def register_backend(name: str, factory: Callable[[Settings], EntityBackend]) -> None:
    """Shorthand for ``accelerated.backends.ENTITY_BACKENDS.register``."""
    from accelerated.backends import ENTITY_BACKENDS

    ENTITY_BACKENDS.register(name, factory)


def get_backend(name: str = DEFAULT_BACKEND, settings: Settings | None = None) -> EntityBackend:
    """Build a registered backend by name (``ConfigError`` listing the known ones)."""
    from accelerated.backends import ENTITY_BACKENDS
    from accelerated.settings import Settings

    return ENTITY_BACKENDS.create(name, settings or Settings(_env_file=None))  # type: ignore[call-arg]


def __getattr__(name: str) -> object:
    # Older imports (``from accelerated.entities import EntityBackend``) keep working.
    if name == "EntityBackend":
        from accelerated.backends import PoolEntityBackend

        return PoolEntityBackend
    raise AttributeError(name)
