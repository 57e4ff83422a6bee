"""Which field a date, a docket number or a judge mention is: its ``role``.

A docket names many dates, numbers and judges; what a reader (and most truth sets)
wants is the fields: the case's filing and termination dates and its entries' dates, the
docket's own number, the assigned judge. The rules find every mention; this module says
which field a mention is, from the label, the column or the heading next to it and the
document's context, so a consumer can keep the fields without losing the rest. Each rule
is a layout that recurs across courts and drafters (a "Label:" before the value, a label
row over a value row, a docket-entry table's date column, a contract's opening sentence);
a mention no rule reads stays without a role (a date inside running prose or inside an
entry's text). The vocabulary is ``patterns.DATE_ROLES``, ``DOCKET_ROLES`` and
``JUDGE_ROLES``.

Roles only add information: no mention is dropped or moved here, and a role a rule set
when it found the mention (a listing's docket cell is its row's own number) is kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from accelerated.entities import RawMention
from accelerated.entities import patterns as P


@dataclass(frozen=True)
class Layout:
    """What the document context says about the document as a whole."""

    own_dockets: tuple[str, ...] = ()  # docket_core() of the document's own numbers
    entries: bool = False  # it has a docket-entry table (dates opening a row are entries)
    listing: bool = False  # it lists opinions with a docket column


def assign(text: str, mentions: Sequence[RawMention], layout: Layout) -> list[RawMention]:
    """The mentions, each DATE, DOCKET_NUMBER or JUDGE without a role given one where a
    rule reads it (the rest unchanged)."""
    out: list[RawMention] = []
    for m in mentions:
        role: str | None = None
        if m.role is None:
            if m.type == "DATE":
                role = date_role(text, m.start, m.end, layout)
            elif m.type == "DOCKET_NUMBER":
                role = docket_role(text, m.start, m.end, m.normalized, layout)
            elif m.type == "JUDGE":
                role = judge_role(text, m.start, m.end)
        out.append(msgspec.structs.replace(m, role=role) if role else m)
    return out


def _line_bounds(text: str, start: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    return line_start, len(text) if line_end < 0 else line_end


def _previous_line(text: str, line_start: int) -> str | None:
    """The line above (None when the text starts here: the chunk cannot see it)."""
    if line_start == 0:
        return None
    prev_start = text.rfind("\n", 0, line_start - 1) + 1
    return text[prev_start : line_start - 1]


def _role_of_label(match: re.Match[str]) -> str | None:
    return next((role for role, value in match.groupdict().items() if value), None)


# --- dates --------------------------------------------------------------------------


def date_role(text: str, start: int, end: int, layout: Layout) -> str | None:
    line_start, line_end = _line_bounds(text, start)
    before = text[line_start:start]
    if P.PARTY_TERMINATED_BEFORE_RE.search(before):
        return None  # a party's or an attorney's "TERMINATED:", not the case's
    if P.ENTERED_STAMP_BEFORE_RE.search(before):
        return "entered"
    if P.NEF_DATE_BEFORE_RE.search(text, max(0, start - P.NEF_WINDOW_CHARS), start):
        return "entered"  # a notice's transaction is a docket entry: its dates are the entry's
    if _in_related_row(text, line_start, before):
        return None  # "Prior Cases:" / "09-1066 Date Filed: ...": another case's dates
    label = P.DATE_LABEL_BEFORE_RE.search(before)
    if label:
        return _role_of_label(label)
    lower = P.DATE_LABEL_LOWER_RE.search(before)
    if lower:
        return _lower_label_role(lower)
    if P.EDGAR_SOURCE_BEFORE_RE.search(before):
        return "filed"
    prev = _previous_line(text, line_start)
    if prev is not None and not before.strip():
        above = P.DATE_LABEL_LINE_RE.match(prev)
        if above:
            return _role_of_label(above)
    if prev is not None and _only_dates(before):
        row = _label_row_role(text, prev, line_start, start)
        if row:
            return row
    contract = _contract_date_role(text, start, end)
    if contract:
        return contract
    rest = text[end:line_end]
    if not before.strip() and layout.entries and not _under_calendar(text, line_start):
        return "entered"  # the date column of a docket-entry row
    if (
        not layout.entries
        and not before.strip()
        and P.DATE_ALONE_AFTER_RE.fullmatch(rest)
        and prev is not None
        and _court_line_above(text, line_start)
    ):
        return "decided"  # an opinion's caption: the court's line, then its date
    if (
        layout.listing
        and P.TABLE_DOCKET_RE.search(text, line_start, line_end)
        and not P.LABELLED_CELL_BEFORE_RE.search(before)
    ):
        return "decided"  # a listing row: the opinion's date beside its docket number
    return None


def _only_dates(before: str) -> bool:
    """Nothing but dates (a values row's earlier cells) before this one on its line."""
    rest = before
    for rx in P.DATE_RES:
        rest = rx.sub(" ", rest)
    return not rest.strip()


def _in_related_row(text: str, line_start: int, before: str) -> bool:
    """A row that opens with another case's number under a related-cases heading."""
    head = P.ROW_DOCKET_RE.match(before)
    if head is None:
        return False
    prev = _previous_line(text, line_start)
    return prev is not None and _qualifier_in(prev) is not None


def _lower_label_role(label: re.Match[str]) -> str | None:
    word = label.groupdict().get("label") or ""
    return {
        "decided": "decided",
        "argued": "argued",
        "submitted": "argued",
        "heard": "argued",
        "filed": "filed",
        "docketed": "filed",
        "entered": "entered",
    }.get(word)


def _label_row_role(text: str, prev: str, line_start: int, start: int) -> str | None:
    """The n-th date of a values row is the n-th label's of the row above."""
    labels = [m.group("label") for m in P.LABEL_ROW_ITEM_RE.finditer(prev)]
    if not labels or not prev.lstrip().startswith(labels[0]):
        return None
    index = sum(1 for _ in _dates_before(text, line_start, start))
    if index >= len(labels):
        return None
    for role, rx in P.DATE_LABEL_ROLE.items():
        if rx.fullmatch(labels[index].strip()):
            return role
    return None


def _dates_before(text: str, line_start: int, start: int) -> Iterable[int]:
    for rx in P.DATE_RES:
        for m in rx.finditer(text, line_start, start):
            if m.end() <= start:
                yield m.start()


def _contract_date_role(text: str, start: int, end: int) -> str | None:
    """ "THIS AGREEMENT, dated as of <date>", "This Agreement is made and entered into as
    of <date>", "... effective as from the <date>", "The term of this Agreement will
    begin on <date>", '"Effective Date" means <date>'."""
    lo = max(0, start - P.SENTENCE_CHARS)
    before = text[lo:start]
    if P.EFFECTIVE_DEFINED_BEFORE_RE.search(before):
        return "effective"
    cut = max(before.rfind(". "), before.rfind(".\n"), before.rfind("\n\n"))
    sentence = before[cut + 1 :] if cut >= 0 else before
    verb = P.AGREEMENT_VERB_BEFORE_RE.search(sentence)
    own = P.OWN_AGREEMENT_RE.search(sentence, 0, verb.start()) if verb else None
    if verb is None or own is None:
        return None
    words = list(P.AGREEMENT_WORD_RE.finditer(sentence, own.start(), verb.start()))
    if not words:
        return None
    gap = re.sub(r"\([^()]*\)", " ", sentence[words[-1].end() : verb.start()])
    if len(gap) > P.AGREEMENT_GAP_CHARS or re.search(r"[A-Z]", gap):
        return None
    kind = verb.group("verb").casefold()
    if kind in P.TERM_START_VERBS:
        return "effective" if P.TERM_WORD_RE.search(sentence, 0, verb.start()) else None
    if kind == "effective" or P.EFFECTIVE_TERM_AFTER_RE.match(text, end):
        return "effective"
    return "agreement"


def _under_calendar(text: str, line_start: int) -> bool:
    """The nearest table header above (in this text) is a calendar's, not the entries'."""
    calendars = list(P.CALENDAR_HEAD_RE.finditer(text, 0, line_start))
    if not calendars:
        return False
    return P.ENTRY_TABLE_HEAD_RE.search(text, calendars[-1].end(), line_start) is None


def _court_line_above(text: str, line_start: int) -> bool:
    """The nearest non-empty line above names a court ("... Court of Appeals, Waco.")."""
    pos = line_start - 1
    while pos > 0:
        prev_start = text.rfind("\n", 0, pos) + 1
        line = text[prev_start:pos]
        if line.strip():
            return P.COURT_LINE_RE.search(line) is not None
        pos = prev_start - 1
    return False


# --- docket numbers -----------------------------------------------------------------


def docket_core(num: str) -> str:
    """A number's comparable core: lower case, unified dashes, no leading zeros, and a
    federal number without its judge-initials or defendant suffix ("1:08-cv-00662-KD-C"
    and "1:08-cv-662" are one case)."""
    s = num.translate(P.DASHES).casefold().strip(" .,;:()")
    s = re.sub(r"\d+", lambda m: str(int(m.group())), s)
    fed = _FEDERAL_CORE.match(s)
    return fed.group(1) if fed else s


_FEDERAL_CORE = re.compile(r"^((?:\d{1,2}:)?\d{1,2}-[a-z]{1,4}-\d+)(?:-[a-z0-9]{1,5})*$")


def docket_role(text: str, start: int, end: int, normalized: str, layout: Layout) -> str | None:
    qualified = _docket_qualifier(text, start)
    if qualified:
        return qualified
    if layout.own_dockets and docket_core(normalized) in layout.own_dockets:
        return "own"
    if _own_label(text, start):
        return "own"
    return None


def _docket_qualifier(text: str, start: int) -> str | None:
    """ "Related Cases: X" (and the numbers listed under it), "Lower Ct: ...", "District:
    ... : X" in an appeal's originating-court block, a removal's "case number X"."""
    line_start, _ = _line_bounds(text, start)
    before = text[line_start:start]
    role = _qualifier_in(before)
    if role:
        return role
    prev = _previous_line(text, line_start)
    if prev is not None and P.LOWER_DOCKET_LABEL_RE.search(prev) and "Lower" in prev:
        return "lower_court"  # "Lower Ct: ..." over "Case Numbers: (...)"
    if prev is not None and not before.strip():
        if P.LOWER_DOCKET_LABEL_LINE_RE.match(prev):
            return "lower_court"
        if P.RELATED_DOCKET_LABEL_RE.search(prev) and prev.rstrip().endswith(":"):
            return "related"  # "Transfer Case:" over the number
    if text[line_start:].lstrip().startswith(text[start : start + 1]) and not before.strip():
        # a number alone opening its line: the list it continues takes its heading's role
        pos, lines = line_start, 0
        while pos > 0 and lines < P.DOCKET_LIST_MAX_LINES:
            prev_start = text.rfind("\n", 0, pos - 1) + 1
            line = text[prev_start : pos - 1]
            if not P.DOCKET_LIST_LINE_RE.match(line):
                return _qualifier_in(line)
            pos, lines = prev_start, lines + 1
    return None


def _qualifier_in(line: str) -> str | None:
    related = [m.start() for m in P.RELATED_DOCKET_LABEL_RE.finditer(line)]
    lower = [m.start() for m in P.LOWER_DOCKET_LABEL_RE.finditer(line)]
    if not related and not lower:
        return None
    # the label nearest the number wins ("District: 0101-1 : X Lead: X" is the lower court's)
    if lower and (not related or max(lower) <= min(related)):
        return "lower_court"
    return "related"


def _own_label(text: str, start: int) -> bool:
    line_start, _ = _line_bounds(text, start)
    if P.OWN_DOCKET_LABEL_RE.search(text[line_start:start]):
        return True
    prev = _previous_line(text, line_start)
    if prev is None or text[line_start:start].strip():
        return False
    # "Case:" over the number; or a listing's row, its caption over its number alone
    return P.OWN_DOCKET_LABEL_LINE_RE.match(prev) is not None or (
        P.LONE_DOCKET_RE.match(text, line_start) is not None and _is_caption(prev)
    )


def _is_caption(line: str) -> bool:
    return P.VERSUS_RE.search(f" {line} ") is not None or P.IN_RE_RE.match(line) is not None


# --- judges -------------------------------------------------------------------------


def judge_role(text: str, start: int, end: int) -> str | None:
    lo = max(0, text.rfind("\n", 0, max(0, text.rfind("\n", 0, start))) + 1)
    label = P.JUDGE_LABEL_BEFORE_RE.search(text, lo, start)
    if label and label.end() == start:
        return _role_of_label(label)
    if P.AUTHOR_AFTER_RE.match(text, end):
        return "author"
    return None
