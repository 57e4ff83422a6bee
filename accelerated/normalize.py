"""Normalisation keys: the project-wide identity of an entity mention.

The key is the only thing a canonical id is derived from (``ids.canonical_id``), so
it must be a pure function of one mention: two runs, two workers and the two paths
always agree. Name-like types fold the spelling variation courts and filings use for
one party ("Acme Corp." / "ACME Corporation" / "The Acme Company, Inc."); the other
types already carry a canonical ``normalized`` form from the entities stage.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Final

from rapidfuzz.distance import OSA

NAME_TYPES: Final = frozenset({"PARTY", "ORGANIZATION", "PERSON", "JUDGE", "ATTORNEY"})

# Dropped only at the end of a name: "Ford Motor Co." is Ford Motor, but a
# "Company" or "Bank" inside a name is part of it.
_CORPORATE: Final = frozenset(
    {
        "inc",
        "incorporated",
        "corp",
        "corporation",
        "co",
        "company",
        "llc",
        "ltd",
        "limited",
        "lp",
        "llp",
        "plc",
        "na",
    }
)
# OCR and typing mangle the long suffixes too ("Acme Corporaton"): a last word one edit
# (or one transposition) from one of these is still a suffix. Short suffixes have too
# many real-word neighbours for that.
_LONG_SUFFIXES: Final = ("corporation", "incorporated", "company", "limited")
# Dropped at either end: "Hon. Judge Edwards", "Edwards, Chief Judge", "Karr, Esq.".
_TITLES: Final = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "dr",
        "prof",
        "judge",
        "justice",
        "hon",
        "honorable",
        "honourable",
        "esq",
        "esquire",
        "chief",
    }
)
# "Circuit Judge", "Magistrate Judge": dropped only next to a judge/justice title,
# so "Sentelle, Circuit Judge" and "Sentelle" agree but "District of Columbia" stays.
_JUDGE_WORDS: Final = frozenset({"judge", "justice", "judges", "justices"})
_JUDGE_MODIFIERS: Final = frozenset(
    {
        "circuit",
        "district",
        "magistrate",
        "bankruptcy",
        "associate",
        "senior",
        "presiding",
        "acting",
        "administrative",
        "law",
        "chief",
    }
)
# Periods and apostrophes join ("L.L.C." -> "llc", "O'Brien" -> "obrien"); every other
# punctuation mark or symbol separates words.
_JOINERS: Final = re.compile(r"[.'’`´]")
_SEPARATORS: Final = re.compile(r"[^\w\s]|_")


@lru_cache(maxsize=65_536)
def name_key(name: str) -> str:
    """Fold one name; cached because a party recurs hundreds of times per document."""
    text = unicodedata.normalize("NFKC", name).casefold().replace("&", " and ")
    tokens = _SEPARATORS.sub(" ", _JOINERS.sub("", text)).split()
    if tokens and tokens[0] == "the":
        tokens = tokens[1:]
    tokens = _strip_leading_titles(tokens)
    tokens = _strip_trailing(tokens)
    return " ".join(tokens)


def _strip_leading_titles(tokens: list[str]) -> list[str]:
    i = 0
    while i < len(tokens) and (
        tokens[i] in _TITLES or (tokens[i] in _JUDGE_MODIFIERS and _judge_title_follows(tokens, i))
    ):
        i += 1
    return tokens[i:]


def _judge_title_follows(tokens: list[str], i: int) -> bool:
    for tok in tokens[i:]:
        if tok in _JUDGE_WORDS:
            return True
        if tok not in _JUDGE_MODIFIERS:
            return False
    return False


def _strip_trailing(tokens: list[str]) -> list[str]:
    end = len(tokens)
    dropped = ""  # what the last dropped word was: "suffix", "judge" or "other"
    while end:
        tok = tokens[end - 1]
        if tok == "al" and end >= 2 and tokens[end - 2] == "et":  # "Ideal Co., et al."
            end, dropped = end - 2, "other"
        elif tok in _CORPORATE or _is_misspelt_suffix(tok):
            end, dropped = end - 1, "suffix"
        elif tok in _JUDGE_WORDS or (tok in _JUDGE_MODIFIERS and dropped == "judge"):
            end, dropped = end - 1, "judge"
        elif tok in _TITLES or (tok == "and" and dropped == "suffix"):  # "Smith & Co."
            end, dropped = end - 1, "other"
        else:
            break
    return tokens[:end]


def _is_misspelt_suffix(tok: str) -> bool:
    return len(tok) >= 6 and any(
        OSA.distance(tok, suffix, score_cutoff=1) <= 1 for suffix in _LONG_SUFFIXES
    )


def entity_key(type: str, text: str, normalized: str) -> str:
    """Project-wide key of a mention; an empty result means "no identity, skip it".

    Name-like types fold ``normalized`` when the extractor filled it (it may have
    undone hyphenation or OCR splits) and the surface text otherwise.
    """
    if type in NAME_TYPES:
        return name_key(normalized or text)
    return " ".join((normalized or text).casefold().split())
