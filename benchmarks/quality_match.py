"""How a predicted entity is compared with a truth item (stated in the report).

One key function per entity kind, so truth fields and backend output written in
different conventions ("Lightbourn, David" / "David Lightbourn", "4:13-md-02420" /
"4:13-md-2420-YGR") compare equal when they name the same thing, and nothing looser.
"""

from __future__ import annotations

import datetime
import functools
import re
from typing import Any, Final

MATCHING_RULE: Final = (
    "per document and entity type, distinct values: a truth item is found when some "
    "predicted mention of the same type matches it, a prediction is correct when it "
    "matches some truth item of its document. Names (PARTY, ATTORNEY, JUDGE): the "
    "surface text's word set (casefolded, punctuation dropped, runs of single letters "
    "joined so L.L.C. = LLC, company suffixes spelled one way, 'the', 'et al', "
    "'honorable', 'jr' ignored) equals the truth's, or one contains the other and the "
    "smaller has at least two words. JUDGE also: the names share at least two words and "
    "each other word of one is the initial of one of the other's ('David A. Ezra' = "
    "'David Alan Ezra'); a surname alone ('Judge Ezra') matches the truth judge of that "
    "surname when the truth names one person so and no judge the document names in full "
    "with that surname is someone else. COURT: courts-db id equality. DATE: ISO date "
    "equality (month-only dates are not scored). DOCKET_NUMBER: casefolded, spaces "
    "and a label ('No.', 'Docket No.', 'Bankruptcy No.'), marker ('Consol.', a lead case's "
    "'(L)') or a multidistrict notice's court prefix ('NYS/1:20-cv-01296') dropped, dashes "
    "unified, leading zeros of digit runs dropped; equal, or equal after dropping a "
    "federal or bankruptcy number's trailing judge-initials or chapter suffixes "
    "and defendant numbers (1:21-cv-1234-ABC-1, 24-04888-CL7). "
    "CASE_CITATION, STATUTE: eyecite's corrected form (a reporter's variant spelling "
    "mapped to its reporters-db edition) on both sides, casefolded with spaces and "
    "periods removed, equal; a short cite ('167 N.J. at 115') matches the full cite of "
    "the same volume and reporter ('167 N.J. 100'). "
    "MONEY: currency and amount equal. Field precision (DATE, DOCKET_NUMBER, JUDGE) "
    "applies the same matching to the predictions whose role (the field the backend "
    "says a mention is) is one of the fields the family's truth lists (truth_roles): "
    "the truth lists fields, not every mention, so a correct mention of another field "
    "is not counted against it."
)

_WORD = re.compile(r"[^\W_]+")
_NAME_IGNORE: Final = frozenset({"the", "et", "al", "honorable", "hon", "jr", "sr", "esq"})
_SUFFIX: Final = {
    "incorporated": "inc",
    "corporation": "corp",
    "company": "co",
    "limited": "ltd",
}
_NAME_TYPES: Final = frozenset({"PARTY", "ATTORNEY", "JUDGE", "PERSON", "ORGANIZATION"})


def name_words(s: str) -> tuple[str, ...]:
    words: list[str] = []
    run = ""
    for w in _WORD.findall(s.casefold()):
        if len(w) == 1 and w.isalpha():
            run += w
            continue
        if run:
            words.append(run)
            run = ""
        words.append(w)
    if run:
        words.append(run)
    return tuple(sorted({_SUFFIX.get(w, w) for w in words} - _NAME_IGNORE))


def docket_key(s: str) -> str:
    s = s.casefold().translate({ord(c): "-" for c in "\u2010\u2011\u2012\u2013\u2014"})
    s = re.sub(
        r"^\s*(?:(?:case|docket|bankruptcy|civil|criminal|cause|appeal|index|file|action)\s+)*"
        r"nos?\.?\s*:?",
        "",
        s,
    )
    # "Consol. 13-00073" (consolidated), "24-1903 (L)" (the lead case): markers, not number
    s = re.sub(r"^consol(?:idated)?\.?\s*|\s*\((?:l|con|xap)\)\s*$", "", s)
    # "NYS/1:20-cv-01296": a JPML notice names each member case with its district's code
    s = re.sub(r"^[a-z]{2,4}/(?=\d)", "", s)
    s = re.sub(r"\s+", "", s).strip(".,;:()")
    return re.sub(r"\d+", lambda m: str(int(m.group())), s)


def date_key(s: str) -> str:
    s = s.strip()
    m = re.match(r"(\d{4})-(\d{2})-(\d{2})", s)
    if m:  # a month alone ("2017-06") is not scored: no truth set lists months
        return m.group(0)
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", s)
    if m:
        try:
            return datetime.date(int(m[3]), int(m[1]), int(m[2])).isoformat()
        except ValueError:
            return ""
    return ""


def key_of(etype: str, value: str) -> str:
    """The comparable form of a truth item or a prediction ("" when it has none)."""
    if etype in _NAME_TYPES:
        return " ".join(name_words(value))
    if etype == "DOCKET_NUMBER":
        return docket_key(value)
    if etype == "DATE":
        return date_key(value)
    if etype == "COURT":
        return value.strip().casefold()
    if etype in ("CASE_CITATION", "STATUTE"):
        return re.sub(r"[\s.]+", "", corrected_citation(value)).casefold()
    if etype == "MONEY":
        return money_key(value)
    return value.strip().casefold()


@functools.cache
def corrected_citation(value: str) -> str:
    """eyecite's corrected form when the value is one citation ("409 Fed. App'x 277" ->
    "409 F. App'x 277", reporters-db's edition for a variant spelling), else the value."""
    from eyecite import get_citations
    from eyecite.models import FullCitation

    from accelerated.entities.rules import shared_tokenizer

    cites: list[Any] = [  # eyecite's citation objects are untyped
        c for c in get_citations(value, tokenizer=shared_tokenizer()) if isinstance(c, FullCitation)
    ]
    if len(cites) != 1:
        return value
    return " ".join(str(cites[0].corrected_citation()).split())


def money_key(value: str) -> str:
    parts = value.split()
    if len(parts) != 2:
        return ""
    try:
        amount = float(parts[1].replace(",", ""))
    except ValueError:
        return ""
    return f"{parts[0].upper()} {amount:.2f}"


# A federal number "office:yy-type-number", then judge initials or a defendant number.
_FEDERAL = re.compile(
    r"^((?:\d{1,2}[:-])?\d{1,2}-(?:[a-z]{1,4}-)?\d+)(?:-(?=[a-z0-9]*[a-z])[a-z0-9]{1,5})*"
    r"(?:-\d{1,2})?$"
)


def matches(etype: str, truth: str, predicted: str) -> bool:
    """Both arguments are keys (``key_of``)."""
    if truth == predicted:
        return True
    if etype in _NAME_TYPES:
        a, b = set(truth.split()), set(predicted.split())
        small, big = (a, b) if len(a) <= len(b) else (b, a)
        if len(small) >= 2 and small <= big:
            return True
        return etype == "JUDGE" and _initials_match(a, b)
    if etype == "DOCKET_NUMBER":
        ft, fp = _FEDERAL.match(truth), _FEDERAL.match(predicted)
        return ft is not None and fp is not None and ft.group(1) == fp.group(1)
    if etype == "CASE_CITATION":  # "167 N.J. at 115" is the case cited as "167 N.J. 100"
        short, full = _SHORT_CITE.match(predicted), _FULL_CITE.match(truth)
        return short is not None and full is not None and short.groups() == full.groups()
    return False


def _initials_match(a: set[str], b: set[str]) -> bool:
    """Two shared words at least, and each other word of one side the initial of a
    distinct other word of the other ("a david ezra" / "alan david ezra")."""
    only_a, only_b = sorted(a - b), sorted(b - a)
    if len(a & b) < 2 or not only_a or len(only_a) != len(only_b):
        return False
    for letters, words in ((only_a, only_b), (only_b, only_a)):
        if all(len(w) == 1 for w in letters):
            return sorted(letters) == sorted(w[0] for w in words)
    return False


_SUFFIX_WORDS: Final = frozenset({"jr", "sr", "ii", "iii", "iv"})


def surname(name: str) -> str:
    """A person's surname, casefolded: the last word ("Roe, Jane" -> "roe"), suffixes and
    titles' periods dropped ("Thomas R. Frierson, II" -> "frierson")."""
    head, _, tail = name.partition(",")
    words = [w for w in _WORD.findall(tail.casefold()) if w not in _SUFFIX_WORDS]
    if words and not all(len(w) == 1 for w in words):  # "Roe, Jane": surname first
        names = _WORD.findall(head.casefold())
        return names[-1] if names else ""
    names = [w for w in _WORD.findall(head.casefold()) if w not in _SUFFIX_WORDS]
    return names[-1] if names else ""


def surname_matches(truth_names: list[str], predicted_keys: set[str]) -> dict[str, str]:
    """JUDGE: predicted surnames alone -> the truth key they name ("ezra" -> "alan david
    ezra"), where the truth names one person of that surname and no judge the document
    names in full (a predicted key of two words or more) with it is someone else."""
    out: dict[str, str] = {}
    for p in (p for p in predicted_keys if p and " " not in p):
        same = {key_of("JUDGE", t) for t in truth_names if surname(t) == p} - {""}
        if len(same) != 1:
            continue
        [t] = same
        others = (q for q in predicted_keys if " " in q and p in q.split())
        if all(matches("JUDGE", t, q) for q in others):
            out[p] = t
    return out


# Keys: spaces and periods removed. "167njat115" (a short cite), "167nj100" (full).
_SHORT_CITE = re.compile(r"^(\d+)(.*?\D)at\d+$")
_FULL_CITE = re.compile(r"^(\d+)(.*?\D)\d+$")
