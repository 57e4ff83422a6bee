"""Two of eyecite's costs that buy the rules backend nothing, removed at import.

Measured over 200 corpus documents, eyecite was 44 % of the rules backend's CPU, and
half of that went to two steps whose output the backend never reads:

- ``helpers.get_court_by_paren`` maps a citation's court parenthetical ("9th Cir.") to
  a courts-db id by normalising every court's citation string with a regex, for every
  citation. Replaced by the same function over a table built once, memoised: the same
  result for every input (exact match first, else the last court whose normalised
  string starts with the input, as eyecite does).
- ``find.extract_reference_citations`` looks for "Name, 123" pin cites after each full
  case citation, compiling a new regex per citation. The backend keeps only full case,
  short case and law citations, and eyecite's ``filter_citations`` never drops one of
  those for a reference citation (a reference loses every overlap), so the result is
  the same without them. Replaced by a function that finds none.

Both are plain attribute replacements on eyecite's modules (``install``), done once
per process; ``uninstall`` restores eyecite's own functions (tests compare the two).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final

_ORIGINAL: Final[dict[str, Callable[..., Any]]] = {}


@functools.cache
def _court_strings() -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    """(normalised citation string -> first court id, every (string, id) in order)."""
    import regex  # type: ignore[import-untyped,unused-ignore]  # eyecite's own regex module
    from courts_db import courts  # the table eyecite.helpers reads

    ordered = tuple(
        (regex.sub(r"[^\w]", "", c["citation_string"]).lower(), str(c["id"])) for c in courts
    )
    exact: dict[str, str] = {}
    for s, cid in ordered:
        exact.setdefault(s, cid)
    return exact, ordered


@functools.lru_cache(maxsize=8192)
def court_by_paren(paren_string: str) -> str | None:
    """eyecite's ``get_court_by_paren``, from a table built once."""
    import regex  # type: ignore[import-untyped,unused-ignore]

    court_str = regex.sub(r"[^\w]", "", paren_string).lower()
    if not court_str:
        return None
    exact, ordered = _court_strings()
    if court_str in exact:
        return exact[court_str]
    found = None
    for s, cid in ordered:
        if s.startswith(court_str):
            found = cid
    return found


def no_reference_citations(citation: Any, document: Any) -> list[Any]:
    return []


def install() -> None:
    import eyecite.find
    import eyecite.helpers

    if _ORIGINAL:
        return
    _ORIGINAL["get_court_by_paren"] = eyecite.helpers.get_court_by_paren
    _ORIGINAL["extract_reference_citations"] = eyecite.find.extract_reference_citations
    eyecite.helpers.get_court_by_paren = court_by_paren
    eyecite.find.extract_reference_citations = no_reference_citations


def uninstall() -> None:
    import eyecite.find
    import eyecite.helpers

    if not _ORIGINAL:
        return
    eyecite.helpers.get_court_by_paren = _ORIGINAL.pop("get_court_by_paren")
    eyecite.find.extract_reference_citations = _ORIGINAL.pop("extract_reference_citations")
