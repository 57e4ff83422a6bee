"""The project the current task works for: an ambient value for backends that count
per project (LLM calls, tokens, cost and the run's token budget).

The engine sets it around every stage call and the batch run around its end-of-batch
steps, so a backend deep in a stage (an entity backend sees only chunk texts) can
charge the right project without every protocol growing a ``project`` argument. A
``ContextVar`` is per asyncio task, so documents of different projects in flight in
one process never see each other's value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Final

_PROJECT: Final[ContextVar[str | None]] = ContextVar("lp_project", default=None)


def current_project() -> str | None:
    return _PROJECT.get()


@contextlib.contextmanager
def project_scope(project: str | None) -> Iterator[None]:
    token = _PROJECT.set(project)
    try:
        yield
    finally:
        _PROJECT.reset(token)
