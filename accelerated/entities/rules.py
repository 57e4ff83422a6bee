"""Offline rules backend: eyecite for citations, courts-db for courts, regexes for the rest.

Every text is processed on its own (no context from neighbouring chunks), so a
chunk's result depends only on its text and can be cached by content hash.
"""

from __future__ import annotations

import calendar
import contextlib
import fcntl
import functools
import importlib.util
import logging
import re
import tempfile
import threading
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import msgspec

from accelerated.entities import RawMention, eyecite_speed
from accelerated.entities import patterns as P
from accelerated.entities import roles as R
from accelerated.entities import structure as S

# eyecite logs a warning for every citation overlap it cannot classify: noise per chunk.
logging.getLogger("eyecite.helpers").addFilter(
    lambda record: not str(record.msg).startswith("Unknown overlap case")
)

# One char -> one char, so offsets into the translated text equal offsets into the
# original. eyecite's regexes expect ASCII hyphens in pin cites ("311–312").
_EYECITE_TR = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014"})
_ASCII_LOWER = str.maketrans({chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)})


def _default_cache_dir() -> str:
    return str(Path(tempfile.gettempdir()) / "legal-pipeline-hyperscan")


def fastest_tokenizer() -> str:
    """Hyperscan is ~5x faster than eyecite's default Aho-Corasick tokenizer."""
    return "hyperscan" if importlib.util.find_spec("hyperscan") is not None else "ahocorasick"


@dataclass(frozen=True)
class RulesBackend:
    """Picklable: only configuration travels; tables are built once per process."""

    tokenizer: str = field(default_factory=fastest_tokenizer)
    cache_dir: str = field(default_factory=_default_cache_dir)
    version: str = field(init=False, default="")

    def __post_init__(self) -> None:
        if self.tokenizer not in ("hyperscan", "ahocorasick"):
            raise ValueError(f"unknown eyecite tokenizer {self.tokenizer!r}")
        # The tokenizer is part of the cache key: the two can disagree on edge cases.
        object.__setattr__(self, "version", f"{P.RULES_VERSION}+{self.tokenizer}")

    def extract(self, texts: list[str]) -> list[list[RawMention]]:
        tokenizer = _tokenizer(self.tokenizer, self.cache_dir)
        return [extract_text(text, tokenizer) for text in texts]

    def document_context(self, text: str) -> str:
        return DocContext.of(text).encode()

    def extract_in_context(self, texts: list[str], context: str) -> list[list[RawMention]]:
        tokenizer = _tokenizer(self.tokenizer, self.cache_dir)
        doc = DocContext.decode(context)
        return [extract_text(text, tokenizer, doc) for text in texts]


class DocContext(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a chunk cannot see on its own: the document's court, its docket table, its
    notice list, the parties its contract preamble names.

    Encoded as short deterministic JSON; the stage keys the chunk cache on it.
    """

    court: str = ""  # courts-db id named by the header, the sender or the PACER host
    docket_table: bool = False  # a listing whose header names a docket column
    # ... whose first column is the listing's own number ("Number", "Slip Op. No."):
    # the number opening a row, before its caption, is not a docket number
    row_number_first: bool = False
    # ... whose judge column follows the docket column ("Court No. Judge"): the name after
    # each docket cell is the judge's
    judge_after_docket: bool = False
    # ... whose name column is followed by the author's initials ("Docket Name J."): a
    # caption's last capitals ("Haaland v. Brackeen AB") are that cell, not the party's
    initials_after_name: bool = False
    notice: bool = False  # a notice of electronic filing with an e-mail recipient list
    parties: tuple[str, ...] = ()  # contract parties, as the preamble writes them
    # judges the document names in full (normalized), its labelled fields' first: a
    # judge named by surname alone ("before Judge Ezra") is the one of them with that
    # surname, when only one person has it
    judges: tuple[str, ...] = ()
    # the document's own case numbers (``roles.docket_core``): its labelled header fields'
    # ("Case #:", "Case Number:", a caption's "No."), not a related or lower court's; any
    # mention of one of them is the document's own number
    dockets: tuple[str, ...] = ()
    entries: bool = False  # a docket-entry table: a date opening a row is an entry's

    @staticmethod
    def of(text: str) -> DocContext:
        head = text[: P.CONTEXT_HEAD_CHARS]
        votes: dict[str, int] = {}
        for m in [*S.host_courts(head), *S.header_courts(head)]:
            votes[m.normalized] = votes.get(m.normalized, 0) + 1
        court = ""
        if votes:
            best = max(votes.values())
            top = sorted(c for c, n in votes.items() if n == best)
            court = top[0] if len(top) == 1 else ""
        names = sorted({text[m.start : m.end] for m in S.contract_parties(text)})
        table = P.DOCKET_TABLE_HEAD_RE.search(text)
        return DocContext(
            court=court,
            docket_table=table is not None,
            row_number_first=table is not None
            and P.ROW_NUMBER_HEAD_RE.match(table.group()) is not None,
            judge_after_docket=table is not None
            and P.DOCKET_THEN_JUDGE_RE.search(table.group()) is not None,
            initials_after_name=table is not None
            and P.NAME_THEN_INITIALS_RE.search(table.group()) is not None,
            notice=P.MAILED_TO_RE.search(text) is not None,
            parties=tuple(names[: P.CONTEXT_MAX_PARTIES]),
            judges=_full_judges(text),
            dockets=_own_dockets(text[: P.CONTEXT_DOCKET_CHARS]),
            entries=_has_entries(text),
        )

    def encode(self) -> str:
        if self == DocContext():
            return ""
        return _CONTEXT_ENCODER.encode(self).decode()

    @staticmethod
    def decode(context: str) -> DocContext:
        if not context:
            return DocContext()
        try:
            return _CONTEXT_DECODER.decode(context)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return DocContext()  # another backend's context: read as none


_CONTEXT_ENCODER = msgspec.json.Encoder(order="sorted")
_CONTEXT_DECODER = msgspec.json.Decoder(DocContext)


def _in_context(text: str, doc: DocContext) -> Iterator[RawMention]:
    if doc.docket_table:
        for m in P.TABLE_DOCKET_RE.finditer(text):
            num = m.group("num")
            if doc.row_number_first and _opens_captioned_row(text, m.start(), m.end()):
                continue
            if not P.NOT_A_DOCKET_RE.fullmatch(num):
                # a listing's docket cell is its row's own number; the judge column, the
                # opinion's author
                yield RawMention("DOCKET_NUMBER", m.start(), m.end(), num.lower(), "own")
                judge = P.JUDGE_CELL_RE.match(text, m.end()) if doc.judge_after_docket else None
                if judge and _is_judge_name(judge.group("name")):
                    s, e = judge.start("name"), judge.end("name")
                    yield RawMention("JUDGE", s, e, _norm_name(judge.group("name")), "author")
    if doc.notice:
        yield from S.recipient_lines(text)
    for name in doc.parties:  # the preamble's parties, wherever the chunk names them
        for m in re.finditer(rf"(?<![\w.]){re.escape(name)}(?![\w])", text):
            yield RawMention("PARTY", m.start(), m.end(), _norm_name(name), "contract party")
    if doc.court:
        for m in P.BARE_COURT_RE.finditer(text):
            yield RawMention("COURT", m.start(), m.end(), doc.court)


def _own_dockets(head: str) -> tuple[str, ...]:
    """The numbers the document's head labels as its own (none a related or lower court's)."""
    found = keep_longest([*S.labelled_dockets(head), *_dockets(head)])
    own = (
        R.docket_core(m.normalized)
        for m in found
        if R.docket_role(head, m.start, m.end, m.normalized, R.Layout()) == "own"
    )
    return tuple(list(dict.fromkeys(own))[: P.CONTEXT_MAX_DOCKETS])


def _has_entries(text: str) -> bool:
    """A docket-entry table: its header, or entries' "(Entered: date)" stamps."""
    if P.ENTRY_TABLE_HEAD_RE.search(text):
        return True
    stamps = P.ENTRY_STAMP_RE.finditer(text)
    return all(next(stamps, None) is not None for _ in range(P.ENTRY_STAMPS_MIN))


def _layout(text: str, doc: DocContext | None) -> R.Layout:
    """What the roles read of the document: its context, or what this text itself shows."""
    if doc is None:
        return R.Layout(entries=_has_entries(text))
    return R.Layout(
        own_dockets=doc.dockets,
        entries=doc.entries or _has_entries(text),
        listing=doc.docket_table,
    )


def _full_judges(text: str) -> tuple[str, ...]:
    """The document's judges named with a given name, in order of first mention."""
    if "Judge" not in text and "JUDGE" not in text and "Justice" not in text:
        return ()
    found = [*S.labelled_judges(text[: P.CONTEXT_HEAD_CHARS]), *_judges(text)]
    out = dict.fromkeys(m.normalized for m in found if len(m.normalized.split()) >= 2)
    return tuple(list(out)[: P.CONTEXT_MAX_JUDGES])


def _surname_judge(m: RawMention, doc: DocContext) -> RawMention:
    """ "Judge Ezra" -> "david alan ezra" where the document names one person so."""
    if m.type != "JUDGE" or not doc.judges or " " in m.normalized:
        return m
    same = [j for j in doc.judges if _surname(j) == m.normalized.strip(".,")]
    if not same or len({j.split()[0] for j in same}) > 1:
        return m  # unknown, or two people of that surname
    return msgspec.structs.replace(m, normalized=same[0])


def _surname(name: str) -> str:
    words = [w.strip(".,") for w in name.split()]
    while len(words) > 1 and words[-1] in P.NAME_SUFFIXES:
        words.pop()
    return words[-1]


def _opens_captioned_row(text: str, start: int, end: int) -> bool:
    """The number starts its line and the caption ("X v. Y") follows it."""
    if text[text.rfind("\n", 0, start) + 1 : start].strip():
        return False
    rest = text[end : end + P.ROW_CAPTION_CHARS].lstrip()
    return _is_caption(rest.split("\n", 1)[0])


def _specific(m: RawMention, doc: DocContext | None) -> RawMention:
    """A generic court id ("usdistct") becomes the document's court when that is known; a
    judge named by surname alone, the document's judge of that surname."""
    if doc and doc.court and m.type == "COURT" and m.normalized in P.GENERIC_COURTS:
        return msgspec.structs.replace(m, normalized=doc.court)
    if doc and doc.judges and m.type == "JUDGE":
        return _surname_judge(m, doc)
    return m


def extract_text(text: str, tokenizer: Any, doc: DocContext | None = None) -> list[RawMention]:
    """All rule mentions in one text; same-type overlaps resolved to the longest."""
    if not text.strip():
        return []
    found: list[RawMention] = []
    if doc is not None:
        found.extend(_in_context(text, doc))
    found.extend(_citations(text, tokenizer))
    found.extend(_courts(text))
    found.extend(_judges(text))
    found.extend(_parties(text))
    found.extend(_organizations(text))
    found.extend(_named(text, P.ATTORNEY_RES, "ATTORNEY"))
    found.extend(_named(text, (P.PERSON_RE,), "PERSON"))
    found.extend(_dockets(text))
    found.extend(_dates(text))
    found.extend(_money(text))
    for rule in S.RULES:
        found.extend(rule(text))
    if doc is None:  # without a context, a chunk may still be a document's first
        found.extend(S.contract_parties(text))
    for m in P.LONE_DOCKET_RE.finditer(text):
        num = m.group("num")
        # a lone line is a docket number only with a sequence number of four digits or more
        # ("W2031-00412-COA-R3-CV"), not a room or unit code ("WD2-103-02L")
        if re.search(r"\d{4}", num) and not P.NOT_A_DOCKET_RE.fullmatch(num):
            found.append(RawMention("DOCKET_NUMBER", m.start("num"), m.end("num"), num.lower()))
    row_numbers = doc is not None and doc.row_number_first  # the row's number, not its docket
    for m in P.CAPTIONED_NUMBER_RE.finditer(text) if not row_numbers else ():
        # a listing's row: the number alone on its line, the case's caption on the next
        num, caption = m.group("num"), m.group("caption")
        if P.NOT_A_DOCKET_RE.fullmatch(num) or not _is_caption(caption):
            continue
        found.append(RawMention("DOCKET_NUMBER", m.start("num"), m.end("num"), num.lower(), "own"))
    if doc is not None and doc.initials_after_name:
        found = [_drop_initials(text, m) if m.type == "PARTY" else m for m in found]
    kept = keep_longest(_specific(m, doc) for m in found if m.end > m.start and _plausible(text, m))
    dockets = [(m.start, m.end) for m in kept if m.type == "DOCKET_NUMBER"]
    if dockets:
        # "No. 12-3-45": a labelled number is the docket's, not a date written with dashes
        kept = [
            m
            for m in kept
            if m.type != "DATE" or not any(m.start < e and s < m.end for s, e in dockets)
        ]
    return R.assign(text, kept, _layout(text, doc))


def _drop_initials(text: str, m: RawMention) -> RawMention:
    cell = P.INITIALS_CELL_RE.search(text, m.start, m.end)
    if cell is None or cell.start() <= m.start:
        return m
    return RawMention("PARTY", m.start, cell.start(), _norm_name(text[m.start : cell.start()]))


def _is_caption(line: str) -> bool:
    return P.VERSUS_RE.search(f" {line} ") is not None or P.IN_RE_RE.match(line) is not None


def _plausible(text: str, m: RawMention) -> bool:
    """Layout rules can land on a separator ("-----") or the versus line ("v."), a
    number rule on a telephone number ("Phone: (202) 501-5970")."""
    if m.type == "DOCKET_NUMBER":
        return P.PHONE_BEFORE_RE.search(text, max(0, m.start - 16), m.start) is None
    if m.type == "DATE":  # the printout's or the software's date, not one of the case
        return P.PRINTOUT_DATE_BEFORE_RE.search(text, max(0, m.start - 40), m.start) is None
    if m.type not in ("PARTY", "ATTORNEY", "JUDGE"):
        return True
    surface = text[m.start : m.end].strip()
    letters = sum(c.isalpha() for c in surface)
    if surface.upper().startswith(P.STATUS_LINES):  # "ATTORNEY TO BE NOTICED" above a "V."
        return False
    return letters >= 2 and surface.casefold() not in P.NOT_A_NAME


def keep_longest(mentions: Iterable[RawMention]) -> list[RawMention]:
    """Per type, drop any mention overlapping a longer (or earlier equal) one.

    A kept mention without a role takes the role of an overlapping dropped one (a
    party table states the role its caption form does not).
    """
    ordered = sorted(
        mentions, key=lambda m: (m.type, -(m.end - m.start), m.start, m.normalized, m.role or "")
    )
    kept: dict[str, list[int]] = {}
    out: list[RawMention] = []
    for m in ordered:
        idx = kept.setdefault(m.type, [])
        hit = next((i for i in idx if m.start < out[i].end and out[i].start < m.end), None)
        if hit is None:
            idx.append(len(out))
            out.append(m)
        elif m.role and out[hit].role is None:
            out[hit] = msgspec.structs.replace(out[hit], role=m.role)
    out.sort(key=lambda m: (m.start, m.end, m.type))
    return out


def _collapse(s: str) -> str:
    return " ".join(s.split())


def _norm_name(s: str) -> str:
    return _collapse(s).casefold().strip(" ,;:")


# --- citations (eyecite) ------------------------------------------------------------


_per_thread = threading.local()


def _tokenizer(kind: str, cache_dir: str) -> Any:
    """One tokenizer per thread: a Hyperscan database's scratch space is single-user."""
    cache: dict[tuple[str, str], Any] | None = getattr(_per_thread, "tokenizers", None)
    if cache is None:
        cache = _per_thread.tokenizers = {}
    tok = cache.get((kind, cache_dir))
    if tok is None:
        tok = cache[(kind, cache_dir)] = _new_tokenizer(kind, cache_dir)
    return tok


def shared_tokenizer() -> Any:
    """This thread's tokenizer of the default kind (for code outside the backend)."""
    return _tokenizer(fastest_tokenizer(), _default_cache_dir())


def _new_tokenizer(kind: str, cache_dir: str) -> Any:
    from eyecite.tokenizers import HyperscanTokenizer, default_tokenizer

    if kind != "hyperscan":
        return default_tokenizer
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    tok = HyperscanTokenizer(cache_dir=cache_dir)
    # eyecite writes its compiled-database cache non-atomically: serialise the first
    # load across processes so no worker reads a half-written file.
    with open(Path(cache_dir) / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _ = tok.hyperscan_db
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return tok


def _citations(text: str, tokenizer: Any) -> Iterator[RawMention]:
    from eyecite import get_citations
    from eyecite.models import FullCaseCitation, FullLawCitation, ShortCaseCitation

    eyecite_speed.install()
    cite: Any  # eyecite's citation methods are untyped
    for cite in get_citations(text.translate(_EYECITE_TR), tokenizer=tokenizer):
        if isinstance(cite, FullCaseCitation | ShortCaseCitation):
            etype = "CASE_CITATION"
        elif isinstance(cite, FullLawCitation):
            etype = "STATUTE"
        else:
            continue  # Id., supra, journals, unknown: not entities of their own
        start, end = cite.span()
        surface = text[start:end]
        stripped = surface.rstrip(" ,;")
        end -= len(surface) - len(stripped)
        if end > start:
            yield RawMention(etype, start, end, _collapse(str(cite.corrected_citation())))


# --- courts (courts-db) -------------------------------------------------------------

_COURT_TOKEN = re.compile(r"[^\s,;:]+")
_COURT_SEP = re.compile(r"[\s,;:]+")


@functools.cache
def _court_tables() -> tuple[Any, dict[str, str]]:
    """(Aho-Corasick automaton over normalised court names, citation string -> id)."""
    import ahocorasick  # type: ignore[import-not-found,unused-ignore]
    import courts_db

    by_name: dict[str, set[str]] = {}
    own_name: dict[str, str] = {}
    cites: dict[str, str] = {}
    literal = re.compile(r"^[^\\()\[\]?*+|^${}]+$")
    for court in courts_db.courts:
        cid = court["id"]
        names = [court["name"], *court.get("examples", [])]
        names += [r for r in court.get("regex", []) if literal.match(r)]
        bankruptcy = "bankruptcy" in court["name"].lower()
        for name in names:
            key = " ".join(_COURT_TOKEN.findall(name.translate(_ASCII_LOWER)))
            if bankruptcy and "bankr" not in key:
                continue  # courts-db lists district-court names as bankruptcy examples
            if (
                len(key.split()) >= P.COURT_MIN_TOKENS
                and key not in P.COURT_GENERIC
                and P.COURT_WORDS.search(key)
            ):
                for variant in _court_variants(key):
                    by_name.setdefault(variant, set()).add(cid)
        own_name[cid] = " ".join(_COURT_TOKEN.findall(court["name"].translate(_ASCII_LOWER)))
        cs = court.get("citation_string") or ""
        if len(cs) >= 3 and cs != "SCOTUS":
            cites.setdefault(cs, cid)
    auto = ahocorasick.Automaton()
    for key, ids in by_name.items():
        exact = sorted(i for i in ids if own_name.get(i) == key)
        cid = exact[0] if exact else (next(iter(ids)) if len(ids) == 1 else "")
        if cid:  # ambiguous names ("Franklin County Court") carry no id: skipped
            auto.add_word(key, (len(key), cid))
    auto.make_automaton()
    return auto, cites


def _court_variants(key: str) -> Iterator[str]:
    """Caption forms courts-db lacks: a "UNITED STATES" prefix, a line break for "for the"."""
    yield key
    if key.startswith(("court of appeals for the", "district court for the")):
        key = f"united states {key}"
        yield key
    m = re.match(r"(united states (?:district|bankruptcy) court) for the (.+ district of .+)", key)
    if m:
        yield f"{m.group(1)} {m.group(2)}"


def _courts(text: str) -> Iterator[RawMention]:
    auto, cites = _court_tables()
    # Names are matched on the text lower-cased with each run of separators made one
    # space; offsets are mapped back only for the (few) hits.
    lower = text.translate(_ASCII_LOWER)
    norm = " ".join(w for w in _COURT_SEP.split(lower) if w)
    hits = [
        (last - length + 1, last + 1, cid)
        for last, (length, cid) in auto.iter(norm)
        if (last - length < 0 or norm[last - length] == " ")
        and (last + 1 == len(norm) or not norm[last + 1].isalnum())
    ]
    if hits:
        tokens = list(_COURT_TOKEN.finditer(lower))
        norm_starts: list[int] = []
        pos = 0
        for tok in tokens:
            norm_starts.append(pos)
            pos += tok.end() - tok.start() + 1

        def to_orig(p: int) -> int:
            i = bisect_right(norm_starts, p) - 1
            return tokens[i].start() + (p - norm_starts[i])

        for s, e, cid in hits:
            yield RawMention("COURT", to_orig(s), to_orig(e - 1) + 1, cid)
    for m in P.COURT_PAREN_RE.finditer(text):
        court = _collapse(m.group("court"))
        cid = cites.get(court)
        if cid is not None:
            yield RawMention("COURT", m.start("court"), m.end("court"), cid)


# --- people, parties, organisations -------------------------------------------------


def _trim_lead(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop leading stop words ("See", "The", "Plaintiff") a greedy name regex took."""
    while True:
        m = re.match(r"\s*(\S+)\s+", text[start:end])
        if not m or m.group(1).casefold() not in P.LEAD_STOP:
            return start, end
        start += m.end()


def _is_name(name: str) -> bool:
    return any(w.casefold() not in P.NAME_STOP for w in name.split())


def _drop_trailing_title(name: str) -> str:
    """ "Katherine A Crytzer Magistrate [Judge ...]": the next judge's title is not hers."""
    words = name.split(" ")
    while len(words) > 1 and words[-1].casefold() in P.JUDGE_TITLES:
        words.pop()
    return " ".join(words)


def _is_judge_name(name: str) -> bool:
    words = [w.strip(".,").casefold() for w in name.split()]
    return _is_name(name) and not any(w in P.JUDGE_NAME_STOP for w in words)


def _cut_at_text(name: str) -> str:
    """ "Kobayashi Defendant's Motions are due": docket text run on after the name (no
    punctuation between) starts at the first word no name has."""
    words = name.split(" ")
    for i, w in enumerate(words[1:], start=1):
        bare = w.casefold().removesuffix("'s").removesuffix("’s").strip(".,")
        if bare in P.NAME_STOP or bare in P.JUDGE_NAME_STOP:
            return " ".join(words[:i])
    return name


def _judges(text: str) -> Iterator[RawMention]:
    for rx in P.JUDGE_RES:
        for m in rx.finditer(text):
            if text[m.start() - 1 : m.start()] == "(" and text.startswith(")", m.end()):
                continue  # "(Ravel, J.)": a deputy clerk's initials closing a docket entry
            name = _cut_at_text(_drop_trailing_title(m.group("name")))
            if _is_judge_name(name):
                s = m.start("name")
                yield RawMention("JUDGE", s, s + len(name), _norm_name(name))
    for m in P.BEFORE_RE.finditer(text):
        base = m.start("list")
        for n in P.BEFORE_NAME_RE.finditer(m.group("list")):
            name = n.group("name")
            if _is_judge_name(name):  # "Before: X, Y and Z, Circuit Judges": the panel
                s, e = base + n.start(), base + n.end()
                yield RawMention("JUDGE", s, e, _norm_name(name), "panel")


def _named(text: str, regexes: Iterable[re.Pattern[str]], etype: str) -> Iterator[RawMention]:
    for rx in regexes:
        if not _worth_running(rx, text):
            continue
        for m in rx.finditer(text):
            s, e = _trim_lead(text, m.start("name"), m.end("name"))
            if e > s and _is_name(text[s:e]):
                yield RawMention(etype, s, e, _norm_name(text[s:e]))


def _worth_running(rx: re.Pattern[str], text: str) -> bool:
    """Name-first regexes scan from every capital: skip them when their keyword is absent."""
    keyword = P.KEYWORDS.get(rx.pattern)
    return keyword is None or keyword.search(text) is not None


def _parties(text: str) -> Iterator[RawMention]:
    for v in P.VERSUS_RE.finditer(text):
        if _middle_initial(text, v) or _list_numeral(text, v):
            continue
        lo = max(0, v.start() - P.CAPTION_WINDOW)
        left = P.CAPTION_LEFT_RE.search(text, lo, v.start())
        right = P.CAPTION_RIGHT_RE.match(text, v.end())
        if left is None and right is None:
            continue
        # one side may be a description ("X, Chapter 7 Trustee of the estate v. Y"): the
        # other side is still a party
        sides = [(left, "left", "lrole"), (right, "right", "rrole")]
        capitals = left is not None and _in_capitals(left.group("left"))
        for m, group, rgroup in ((m, g, r) for m, g, r in sides if m is not None):
            s, e = _trim_lead(text, m.start(group), m.end(group))
            if group == "left":
                s = _number_first(text, s, e)
            surface = _drop_initial_cell(text[s:e].rstrip(" ,&"))
            if group == "right" and capitals:
                surface = _capitals_only(surface)
            if surface and surface.casefold() not in P.LEAD_STOP:
                role = P.role_of(m.group(rgroup)) if m.group(rgroup) else None
                yield RawMention("PARTY", s, s + len(surface), _norm_name(surface), role)
    for m in P.CASE_NAME_FIELD_RE.finditer(text):  # "Case Name: Acme Holding LLC"
        value = m.group("value")
        if P.VERSUS_RE.search(f" {value} ") is None:
            s = m.start("value")
            surface = P.ET_AL_RE.sub("", value).rstrip(" ,")
            if surface and surface.casefold() not in P.LEAD_STOP:
                yield RawMention("PARTY", s, s + len(surface), _norm_name(surface))
    for m in P.IN_RE_RE.finditer(text):
        s, e = m.start("name"), m.end("name")
        surface = text[s:e].rstrip(" ,&")
        if P.LITIGATION_RE.search(surface):
            continue  # "In re Lithium Ion Batteries Antitrust Litigation": a case, no party
        if surface and surface.casefold() not in P.LEAD_STOP:
            yield RawMention("PARTY", s, s + len(surface), _norm_name(surface))


def _middle_initial(text: str, v: re.Match[str]) -> bool:
    """ "John V. Smith": a capital "V." is a middle initial when its line also has a
    lower-case "v." or "vs." (the caption's real versus), or when it stands between a
    given name (or an initial) and a surname written in mixed case ("Drew V. Lounsbury",
    "Samuel R. V. Garland"): a caption in mixed case writes its versus "v."; one in
    capitals ("ROE V. DOE") is not in mixed case."""
    if v.group().strip() != "V.":
        return False
    line_start = text.rfind("\n", 0, v.start()) + 1
    line_end = text.find("\n", v.end())
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    if re.search(r"\s(?:v\.|vs\.?)\s", line) is not None:
        return True
    before = P.GIVEN_NAME_END_RE.search(text, line_start, v.start())
    return before is not None and P.SURNAME_START_RE.match(text, v.end()) is not None


def _in_capitals(name: str) -> bool:
    letters = [c for c in name if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def _capitals_only(surface: str) -> str:
    """ "KOONES v. KEHATI Status Conference": where the caption is in capitals, the words
    in mixed case that follow the right party (a subject line's docket text) are not part
    of it; company suffixes in mixed case ("Inc.", "Co.") are."""
    words = surface.split(" ")
    if not _in_capitals(words[0]):
        return surface
    for i, w in enumerate(words):
        if i and any(c.islower() for c in w) and not P.SUFFIX_WORD_RE.fullmatch(w):
            return " ".join(words[:i]).rstrip(" ,&")
    return surface


def _number_first(text: str, s: int, e: int) -> int:
    """ "336 LLC v. City of New York": a company whose name opens with a number (the
    capitalised-word scan starts after it) takes the number back."""
    if not P.ENTITY_NAME_RE.search(" " + text[s:e].rstrip(" ,")):
        return s
    m = P.NUMBER_BEFORE_RE.search(text, max(0, s - 12), s)
    return m.start() if m else s


def _list_numeral(text: str, v: re.Match[str]) -> bool:
    """ "v. There are no taxes owed": a "v." opening a line of prose is the fifth item of
    a list numbered i., ii., ..., not a versus (a caption's right side names a party, it
    does not go on as a sentence)."""
    line_start = text.rfind("\n", 0, v.start() + 1) + 1
    if text[line_start : v.start() + 1].strip() or not text.startswith("v.", v.start() + 1):
        return False
    if "\n" in text[v.start() + 1 : v.end()]:
        return False  # "v." alone on its line: a caption's versus
    line_end = text.find("\n", v.end())
    rest = text[v.end() : line_end if line_end >= 0 else len(text)]
    prose = [w for w in re.findall(r"\b[a-z]+\b", rest) if w not in P.CAPTION_CONNECTORS]
    return len(prose) >= P.LIST_ITEM_MIN_WORDS


_SUFFIXES = frozenset(P.ORG_SUFFIX_SHORT)


def _drop_initial_cell(surface: str) -> str:
    """A listing's next cell glued to a name ("Brown A", "Brown KJ": the author's
    initials) is not part of it: a mixed-case party name does not end in one or two
    capitals without periods, company suffixes ("AG", "LP") apart."""
    words = surface.split(" ")
    if len(words) < 2 or not (words[-1].isalpha() and words[-1].isupper()):
        return surface
    last, before = words[-1], words[-2]
    if len(last) == 1 or (len(last) == 2 and not before.isupper() and last not in _SUFFIXES):
        return " ".join(words[:-1]).rstrip(" ,&")
    return surface


def _organizations(text: str) -> Iterator[RawMention]:
    for rx in P.ORG_RES:
        for m in rx.finditer(text):
            s, e = _trim_lead(text, m.start("name"), m.end("name"))
            key = _norm_name(text[s:e])
            if e <= s or " " not in key:  # a bare suffix ("Company") names nobody
                continue
            for suffix, canon in P.ORG_SUFFIX_CANON:
                key = suffix.sub(canon, key)
            yield RawMention("ORGANIZATION", s, e, key.replace(",", ""))


# --- numbers: dockets, dates, money -------------------------------------------------


def _dockets(text: str) -> Iterator[RawMention]:
    for rx in P.DOCKET_RES:
        for m in rx.finditer(text):
            num = m.group("num").rstrip(".,:;-")
            if P.ENTRY_REF_RE.fullmatch(text, max(0, m.start() - P.ENTRY_REF_LOOKBACK), m.end()):
                continue  # "(Dkt. No. 8)": an entry of the docket, not a case number
            if any(c.isdigit() for c in num) and not P.NEUTRAL_CITE_RE.fullmatch(num):
                s = m.start("num")
                yield RawMention("DOCKET_NUMBER", s, s + len(num), num.translate(P.DASHES).lower())


def _dates(text: str) -> Iterator[RawMention]:
    for rx in P.DATE_RES:
        for m in rx.finditer(text):
            month_s = m.group("month").rstrip(".").lower()
            month = int(month_s) if month_s.isdigit() else P.MONTH_NUMBER.get(month_s, 0)
            year = int(m.group("year"))
            if len(m.group("year")) == 2:
                year += 2000 if year < 69 else 1900
            if m.group("day") is None:  # "June 2017"
                if 1 <= month <= 12 and year in P.MONTH_ONLY_YEARS:
                    yield RawMention("DATE", m.start(), m.end(), f"{year:04d}-{month:02d}")
                continue
            day = int(m.group("day"))
            valid = 1 <= month <= 12 and 1000 <= year <= 2999
            if valid and 1 <= day <= calendar.monthrange(year, month)[1]:
                yield RawMention("DATE", m.start(), m.end(), f"{year:04d}-{month:02d}-{day:02d}")


def _money(text: str) -> Iterator[RawMention]:
    # every dollar form has a "$", "USD" or "dollar(s)": most texts have none
    dollars = "$" in text or P.DOLLAR_WORD_RE.search(text) is not None
    for rx in P.MONEY_RES if dollars else ():
        for m in rx.finditer(text):
            with contextlib.suppress(InvalidOperation):
                amount = Decimal(m.group("num").replace(",", ""))
                scale = m.group("scale")
                if scale:
                    amount *= P.MONEY_SCALE[scale.lower()]
                yield RawMention("MONEY", m.start(), m.end(), f"USD {_format_amount(amount)}")
    for m in P.DOLLAR_ABBR_RE.finditer(text) if "$" in text else ():
        with contextlib.suppress(InvalidOperation):
            amount = Decimal(m.group("num").replace(",", "")) * P.MONEY_SCALE[m["abbr"].lower()]
            yield RawMention("MONEY", m.start(), m.end(), f"USD {_format_amount(amount)}")
    if not _may_hold_foreign_money(text):
        return  # the foreign forms' regexes try every digit: skip texts without a currency
    for rx in P.FOREIGN_MONEY_RES:
        for m in rx.finditer(text):
            groups = m.groupdict()
            if groups.get("sym"):
                currency = P.CURRENCY_SYMBOL[groups["sym"]]
            elif groups.get("code"):
                currency = P.CURRENCY_CODE[groups["code"]]
            else:
                currency = P.CURRENCY_WORD[" ".join(groups["word"].lower().split())]
            with contextlib.suppress(InvalidOperation):
                amount = Decimal(m.group("num").replace(",", ""))
                scale = groups.get("scale") or groups.get("abbr")
                if scale:
                    amount *= P.MONEY_SCALE[scale.lower()]
                yield RawMention(
                    "MONEY", m.start(), m.end(), f"{currency} {_format_amount(amount)}"
                )


def _may_hold_foreign_money(text: str) -> bool:
    return any(h in text for h in P.FOREIGN_MONEY_SYMBOLS) or bool(
        P.FOREIGN_MONEY_CODE_RE.search(text)
    )


def _format_amount(amount: Decimal) -> str:
    if amount == amount.to_integral_value():
        return str(int(amount))
    if amount == amount.quantize(Decimal("0.01")):
        return f"{amount.quantize(Decimal('0.01')):f}"
    return f"{amount.normalize():f}"
