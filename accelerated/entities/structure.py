"""Rules that read the structure of dockets, notices, court pages and contracts.

Prose rules (captions, "Judge X") miss what these documents say through layout: a
labelled field ("Case Number:" and the number on the next line), a party table
("Plaintiff" / "NAME represented by COUNSEL"), the recipient list of a notice of
electronic filing, a court named only in a PACER host name. Each rule here is a
layout that recurs across courts, not a fit to one document; each yields mentions
with offsets into the text it was given, a ``role`` where the layout states one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any, Final

from accelerated.entities import RawMention
from accelerated.entities import patterns as P


def _norm(s: str) -> str:
    return " ".join(s.split()).casefold().strip(" ,;:")


def _m(etype: str, text: str, s: int, e: int, norm: str, role: str | None = None) -> RawMention:
    return RawMention(etype, s, e, norm, role)


# --- docket numbers -----------------------------------------------------------------


def labelled_dockets(text: str) -> Iterator[RawMention]:
    for rx in P.LABELLED_DOCKET_RES:
        for m in rx.finditer(text):
            num = m.group("num").rstrip(".,:;-)")
            if not any(c.isdigit() for c in num) or P.NEUTRAL_CITE_RE.fullmatch(num):
                continue
            s = m.start("num")
            yield _m("DOCKET_NUMBER", text, s, s + len(num), num.translate(P.DASHES).lower())


# --- courts -------------------------------------------------------------------------


@functools.cache
def _court_index() -> dict[str, dict[str, Any]]:
    import courts_db

    return {c["id"]: c for c in courts_db.courts}


@functools.cache
def _federal_regexes() -> list[tuple[re.Pattern[str], str, bool]]:
    """courts-db's regexes of the federal courts only: compiling all of courts-db's
    (``find_court``) costs seconds per process, these a fraction. (Not filtered by
    courts-db's ``type``: some district courts are typed "appellate" there.)"""
    from courts_db.utils import gather_regexes

    courts = [c for c in _court_index().values() if c.get("system") == "federal"]
    return [(r[0], r[1], r[3] == "bankruptcy") for r in gather_regexes(courts)]


@functools.lru_cache(maxsize=4096)
def _court_by_name(name: str, bankruptcy: bool) -> str | None:
    """The one federal trial court whose courts-db regex matches the whole built name."""
    ids = {
        cid
        for rx, cid, is_bankruptcy in _federal_regexes()
        if is_bankruptcy == bankruptcy and (m := rx.search(name)) and m.group(0) == name
    }
    return next(iter(ids)) if len(ids) == 1 else None


def host_courts(text: str) -> Iterator[RawMention]:
    """``ecf@cand.uscourts.gov``, ``https://ecf.nysb.uscourts.gov/...``: the court's PACER id."""
    if "uscourts" not in text.casefold():
        return  # the host regex tries every word character: skip texts without a host
    index = _court_index()
    for m in P.USCOURTS_HOST_RE.finditer(text):
        cid = m.group("id").lower()
        if cid in index:
            yield _m("COURT", text, m.start("id"), m.end("id"), cid)


def header_courts(text: str) -> Iterator[RawMention]:
    """PACER headers: "U.S. District Court" with the district on the next line(s)."""
    for m in P.PACER_COURT_RE.finditer(text):
        kind = m.group("kind").lower()
        direction = m.group("dir1") or m.group("dir2") or ""
        state = m.group("state1") or m.group("state2") or ""
        district = f"{direction} District of {state}" if direction else f"District of {state}"
        name = f"United States {kind.title()} Court for the {district}"
        cid = _court_by_name(name, kind == "bankruptcy")
        if cid:
            yield _m("COURT", text, m.start(), m.end(), cid)


# --- attorneys ----------------------------------------------------------------------


def _person(text: str, s: int, e: int) -> tuple[int, int] | None:
    """The leading person name in text[s:e] (a line), or None."""
    m = P.LINE_PERSON_RE.match(text, s, e)
    if m is None:
        return None
    name = m.group("name")
    words = [w.strip(".,").casefold() for w in name.split()]
    if len(words) < 2 or any(w in P.NOT_A_PERSON for w in words):
        return None
    start, end = m.start("name"), m.end("name")
    parts = name.split()
    if len(parts) > 3 and P.FIRM_MARK_RE.search(text, end, e):
        # "Richard D. Bernstein Willkie Farr & Gallagher LLP": the firm follows on the
        # line; a name is first, initials, last (two or three words).
        end = start + len(" ".join(parts[:3]))
    elif P.FIRM_REST_RE.match(text, end, e):
        return None  # "Kramer Levin Naftalis & Frankel, LLP": the line is a firm's name
    return start, end


def _lines(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    pos = start
    while pos < end:
        nl = text.find("\n", pos, end)
        stop = end if nl < 0 else nl
        yield pos, stop
        pos = stop + 1


def notice_attorneys(text: str) -> Iterator[RawMention]:
    """The "Notice has been electronically mailed to:" list of an NEF: one name per entry."""
    for head in P.MAILED_TO_RE.finditer(text):
        stop = P.MAILED_TO_END_RE.search(text, head.end())
        end = stop.start() if stop else min(len(text), head.end() + 20000)
        for s, e in _lines(text, head.end(), end):
            line = text[s:e]
            if not line.strip() or "@" in line[: max(0, line.find(" ")) or len(line)]:
                continue
            m = P.ON_BEHALF_RE.search(line)
            cut = m.start() if m else line.find("@")
            if cut < 0 and not m:
                # a name alone on its line, its addresses on the next
                nxt = text.find("\n", e + 1)
                if "@" not in text[e + 1 : nxt if nxt > 0 else len(text)]:
                    continue
                cut = len(line)
            span = _person(text, s, s + cut)
            if span:
                yield _m("ATTORNEY", text, *span, _norm(text[span[0] : span[1]]))


def docket_parties(text: str) -> Iterator[RawMention]:
    """PACER party tables: a role line, the party, "represented by" its counsel."""
    for m in P.PARTY_BLOCK_RE.finditer(text):
        role = P.role_of(m.group("role"))
        if role == "unknown" and not m.group("counsel"):
            continue  # "Unknown" alone on a line heads a party only with its counsel
        s, e = m.start("party"), m.end("party")
        party = text[s:e].rstrip(" ,")
        if party and party.casefold() not in P.LEAD_STOP:
            yield _m("PARTY", text, s, s + len(party), _norm(party), role)
        if m.group("counsel"):
            span = _person(text, m.start("counsel"), m.end("counsel"))
            if span:
                yield _m("ATTORNEY", text, *span, _norm(text[span[0] : span[1]]))
    for m in P.REPRESENTED_BY_RE.finditer(text) if "represented" in text else ():
        span = _person(text, m.start("counsel"), m.end("counsel"))
        if span:
            yield _m("ATTORNEY", text, *span, _norm(text[span[0] : span[1]]))
    # Further counsel of a party: the name line after an attorney's status lines.
    for m in P.AFTER_STATUS_RE.finditer(text):
        span = _person(text, m.start("name"), m.end("name"))
        if span:
            yield _m("ATTORNEY", text, *span, _norm(text[span[0] : span[1]]))


def counsel_blocks(text: str) -> Iterator[RawMention]:
    """ "Attorneys for Petitioner" / "Counsel of Record" headings, the name on the next line."""
    for m in P.COUNSEL_HEAD_RE.finditer(text):
        span = _person(text, m.start("name"), m.end("name"))
        if span:
            yield _m("ATTORNEY", text, *span, _norm(text[span[0] : span[1]]))
    for m in P.AFTER_PARTY_NAME_RE.finditer(text):  # the next attorney's block
        span = _person(text, m.start("name"), m.end("name"))
        if span:
            yield _m("ATTORNEY", text, *span, _norm(text[span[0] : span[1]]))
    for m in P.PARTY_NAME_FIELD_RE.finditer(text):
        s, e = m.start("name"), m.end("name")
        yield _m("PARTY", text, s, e, _norm(text[s:e]))


# --- judges -------------------------------------------------------------------------


def labelled_judges(text: str) -> Iterator[RawMention]:
    for m in P.JUDGE_FIELD_RE.finditer(text):
        span = _person(text, m.start("name"), m.end("name"))
        words = text[span[0] : span[1]].casefold().split() if span else []
        if span and not any(w.strip(".,") in P.JUDGE_NAME_STOP for w in words):
            yield _m("JUDGE", text, *span, _norm(text[span[0] : span[1]]))


# --- parties in labelled captions and contracts -------------------------------------


def style_parties(text: str) -> Iterator[RawMention]:
    """Court case pages: "Style: X" then "v.:" then "Y" (each on its own line)."""
    for m in P.STYLE_RE.finditer(text):
        for group in ("left", "right"):
            if m.group(group):
                s, e = m.start(group), m.end(group)
                role = P.TRAILING_ROLE_RE.search(text, s, e)  # "In re Roe, Relator"
                if role is not None and role.start() > s:
                    party = text[s : role.start()]
                    yield _m("PARTY", text, s, role.start(), _norm(party), P.role_of(role["role"]))
                else:
                    yield _m("PARTY", text, s, e, _norm(text[s:e]))


def contract_parties(text: str) -> Iterator[RawMention]:
    """The preamble at the start of a contract: "by and between X, a Delaware corporation
    ("Company"), and Y ...", or any name followed by its defined term ("X ("Inktomi")")."""
    lo = P.PREAMBLE_START_RE.search(text, 0, min(len(text), P.PREAMBLE_WINDOW))
    if lo is None:
        return
    stop = P.PREAMBLE_END_RE.search(text, lo.end())
    hi = min(stop.start() if stop else len(text), lo.end() + P.PREAMBLE_WINDOW)
    numbered = P.NUMBERED_PARTIES_HEAD_RE.search(text, lo.start(), hi)
    scans = [(rx, lo.start()) for rx in (P.CONTRACT_PARTY_RE, P.DEFINED_PARTY_RE)]
    if numbered is not None:  # "BETWEEN:" then "ACME CORP., a corporation ...", "AND:" ...
        scans.append((P.HEADED_PARTY_RE, numbered.start()))
    if numbered is not None:  # "BETWEEN:" then "(1) ACME LIMITED ...", "(2) ..."
        scans.append((P.NUMBERED_PARTY_RE, numbered.end()))
    for rx, start in scans:
        for m in rx.finditer(text, start, hi):
            s, e = m.start("name"), m.end("name")
            name = text[s:e].rstrip(" ,")
            # "a Delaware Corporation, and Marten Labs, Inc. (the ...)": the list's last
            # name is the one its defined term belongs to
            cut = P.LIST_AND_RE.search(name)
            if cut is not None:
                s, name = s + cut.end(), name[cut.end() :]
            words = name.casefold().split()
            if (len(words) < 2 and "." not in name) or any(
                w in P.NOT_A_CONTRACT_PARTY for w in words
            ):
                continue
            if rx is P.DEFINED_PARTY_RE and not (
                P.ENTITY_NAME_RE.search(name) or P.ENTITY_DESC_RE.search(m.group("desc") or "")
            ):
                continue  # a defined term ("Confidential Information"), not a party
            yield _m("PARTY", text, s, s + len(name), _norm(name), "contract party")


def party_tables(text: str) -> Iterator[RawMention]:
    """Court portals' "Party / PartyType / Representative" rows: party, role, counsel."""
    for head in P.PARTY_TABLE_HEAD_RE.finditer(text):
        pos = text.find("\n", head.end())
        while pos >= 0:
            m = P.PARTY_TABLE_ROW_RE.match(text, pos + 1)
            if m is None:
                # a party's further representatives: a name alone on the next line(s)
                nxt = text.find("\n", pos + 1)
                line_end = nxt if nxt >= 0 else len(text)
                span = _person(text, pos + 1, line_end)
                if span is None or text[span[1] : line_end].strip():
                    break
                yield _m("ATTORNEY", text, *span, _norm(text[span[0] : span[1]]))
                pos = nxt
                continue
            s, e = m.start("party"), m.end("party")
            yield _m("PARTY", text, s, e, _norm(text[s:e]), P.role_of(m.group("type")))
            if m.group("rep"):
                span = _person(text, m.start("rep"), m.end("rep"))
                if span:
                    yield _m("ATTORNEY", text, *span, _norm(text[span[0] : span[1]]))
            pos = text.find("\n", m.end()) if m.end() < len(text) else -1


def appellate_parties(text: str) -> Iterator[RawMention]:
    """CM/ECF appellate dockets: "PARTY" then "Appellant COUNSEL" on the next line."""
    for m in P.APPELLATE_PARTY_RE.finditer(text):
        s, e = m.start("party"), m.end("party")
        party = text[s:e]
        if party.casefold() in P.LEAD_STOP or party.startswith(("-", "v.", "V.")):
            continue
        if any(c.isdigit() for c in party) or len(party.split()) > 30:
            continue
        if any(x in party for x in (":", "@", " represented by ")):
            continue
        if party.startswith(P.STATUS_LINES):  # an attorney's status line, not a party
            continue
        span = _person(text, m.start("counsel"), m.end("counsel"))
        if span is None:  # the line after the role is counsel: "Appellant David G. Baker"
            continue
        yield _m("PARTY", text, s, e, _norm(party), P.role_of(m.group("role")))
        yield _m("ATTORNEY", text, *span, _norm(text[span[0] : span[1]]))


def titled_attorneys(text: str) -> Iterator[RawMention]:
    """Docket text names counsel by title: "filed by Attorney Richard A. Roe"."""
    for m in P.BY_ATTORNEY_RE.finditer(text):
        span = _person(text, m.start("name"), m.end("name"))
        if span:
            yield _m("ATTORNEY", text, *span, _norm(text[span[0] : span[1]]))


def recipient_lines(text: str) -> Iterator[RawMention]:
    """Lines "NAME address@host, ..." (used where the document is a notice with such a list,
    so a chunk that starts in the middle of the list still reads it)."""
    for m in P.RECIPIENT_LINE_RE.finditer(text):
        span = _person(text, m.start("line"), m.end("line"))
        if span and span[1] == m.end("line"):
            yield _m("ATTORNEY", text, *span, _norm(text[span[0] : span[1]]))


RULES: Final = (
    appellate_parties,
    titled_attorneys,
    labelled_dockets,
    host_courts,
    header_courts,
    notice_attorneys,
    docket_parties,
    counsel_blocks,
    labelled_judges,
    style_parties,
    party_tables,
)
