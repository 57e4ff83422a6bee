"""Which truth fields count as which entity type, and which document each truth file is for.

Only fields that name an entity the rules vocabulary has are used; a field whose values
are not comparable with a backend's output (juriscraper's own Texas court ids, which are
not courts-db ids; LexNLP's court *names*) is left out rather than guessed at.
"""

from __future__ import annotations

import ast
import csv
import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

csv.field_size_limit(1 << 30)


@dataclass
class Case:
    """One document (``path``) or snippet (``text``) and its truth items by entity type,
    and which truth fields they came from (``fields``: type -> field names)."""

    family: str
    name: str
    path: Path | None = None
    text: str | None = None
    truth: dict[str, list[str]] = field(default_factory=dict)
    fields: dict[str, set[str]] = field(default_factory=dict)

    def add(self, etype: str, *values: object, source: str = "") -> None:
        for v in values:
            if isinstance(v, str) and v.strip():
                self.truth.setdefault(etype, []).append(v.strip())
                self.fields.setdefault(etype, set()).add(source)


# Which role (``accelerated.entities.patterns.DATE_ROLES`` ...) each truth field is: the
# truth lists fields, not mentions, and a backend that says which field a mention is can
# be scored on the fields the truth has ("field precision", benchmarks/quality.py). Keyed
# by the field's name in its truth set (a juriscraper JSON path, a CUAD column, a CAP
# record key); EVERY_MENTION marks truth that lists every mention of its snippet (LexNLP,
# the Free Law examples), where every prediction counts.
EVERY_MENTION: Final = "*"
FIELD_ROLES: Final[dict[str, tuple[str, ...]]] = {
    # juriscraper dockets and notices
    "date_filed": ("filed",),
    "date_terminated": ("terminated",),
    "date_converted": ("filed",),
    "date_discharged": ("terminated",),
    "lower_court_decision_date": ("decided",),
    "lower_court_rehearing_denied_date": ("decided",),
    "docket_entries.date_filed": ("entered",),
    "docket_entries.date_entered": ("entered",),
    "case_events.date": ("entered",),
    "appellate_briefs.date": ("entered",),
    "dockets.date_filed": ("filed",),
    "dockets.docket_entries.date_filed": ("entered",),
    "dockets.docket_entries.date_entered": ("entered",),
    "originating_court_information.date_filed": ("filed",),
    "originating_court_information.date_filed_noa": ("filed",),
    "originating_court_information.date_disposed": ("terminated",),
    "originating_court_information.date_judgment": ("decided",),
    "originating_court_information.date_rehearing_denied": ("decided",),
    "originating_court_information.date_judgment_eod": ("entered",),
    "originating_court_information.date_received_coa": ("received",),
    "docket_number": ("own",),
    "case_number": ("own",),
    "data.docket_number": ("own",),
    "dockets.docket_number": ("own",),
    "lower_court_case_numbers": ("lower_court",),
    "originating_court_information.docket_number": ("lower_court",),
    "originating_court.case": ("lower_court",),
    "appeals_court.case_number": ("lower_court",),
    "assigned_to_str": ("assigned",),
    "referred_to_str": ("referred",),
    "originating_court_information.assigned_to": ("trial",),
    "originating_court_information.ordering_judge": ("trial",),
    "originating_court.judge": ("trial",),
    # juriscraper opinion listings: one row per opinion, each row's fields its own
    "case_dates": ("decided", "filed"),  # the listing's date of the opinion ("Filed ...")
    "docket_numbers": ("own",),
    "judges": ("author", "panel"),
    "authors": ("author",),
    # CUAD, CAP
    "Agreement Date": ("agreement",),
    "Effective Date": ("effective",),
    "decision_date": ("decided",),
    # LexNLP and Free Law snippets: every mention
    "lexnlp": (EVERY_MENTION,),
    "freelaw": (EVERY_MENTION,),
}


def truth_roles(cases: Iterable[Case]) -> dict[tuple[str, str], frozenset[str]]:
    """(family, type) -> the roles the family's truth covers: the roles of the fields its
    truth items came from (stated per field in FIELD_ROLES, so per family, never per
    document). A field without a role contributes none."""
    out: dict[tuple[str, str], set[str]] = {}
    for case in cases:
        for etype, sources in case.fields.items():
            roles = out.setdefault((case.family, etype), set())
            for source in sources:
                roles.update(FIELD_ROLES.get(source, ()))
    return {key: frozenset(roles) for key, roles in out.items()}


@functools.cache
def _court_ids() -> frozenset[str]:
    import courts_db

    return frozenset(c["id"] for c in courts_db.courts)


def _court(case: Case, cid: object, source: str = "court_id") -> None:
    if isinstance(cid, str) and cid in _court_ids():
        case.add("COURT", cid, source=source)


def _caption_parties(case: Case, name: object, source: str = "case_name") -> None:
    """A case name "A v. B" or "In re A" is truth for its parties."""
    if not isinstance(name, str) or not name.strip():
        return
    name = re.sub(r"^\s*in\s+re:?\s+", "", name, flags=re.IGNORECASE)
    for part in re.split(r"\s+(?:v\.?|vs\.?)\s+", name, flags=re.IGNORECASE):
        part = re.sub(r",?\s+et\s+al\.?$", "", part.strip(), flags=re.IGNORECASE)
        case.add("PARTY", part, source=source)


def _date(value: object) -> str | None:
    if isinstance(value, str):
        m = re.match(r"\d{4}-\d{2}-\d{2}", value)
        if m:
            return m.group()
    return None


def _dates(case: Case, d: dict[str, Any], *keys: str, prefix: str = "") -> None:
    for k in keys:
        value = _date(d.get(k))
        if value:
            case.add("DATE", value, source=prefix + k)


def _entries(case: Case, entries: object, prefix: str, *keys: str) -> None:
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict):
            _dates(case, e, *keys, prefix=prefix)


# Every date field of a juriscraper record, not only the filing date.
_CASE_DATES = (
    "date_filed",
    "date_terminated",
    "date_converted",
    "date_discharged",
    "lower_court_decision_date",
    "lower_court_rehearing_denied_date",
)
_ORIGIN_DATES = (
    "date_disposed",
    "date_filed",
    "date_filed_noa",
    "date_judgment",
    "date_judgment_eod",
    "date_received_coa",
    "date_rehearing_denied",
)


# "Smith, Jones and Roe" is three judges; "Thomas R. Frierson, II" is one.
_JUDGE_LIST = re.compile(r"\s*(?:;|,(?!\s*(?:Jr|Sr|II|III|IV)\b\.?)|\band\b)\s*")


def _juriscraper_case(case: Case, d: Any) -> None:
    """All juriscraper fixture kinds; absent fields are simply skipped. Each item is
    added with its field's JSON path (``FIELD_ROLES``)."""
    if isinstance(d, list):  # opinion listings: one object per listed opinion
        for item in d:
            if isinstance(item, dict):
                _caption_parties(case, item.get("case_names"), "case_names")
                _dates(case, item, "case_dates")
                case.add("DOCKET_NUMBER", item.get("docket_numbers"), source="docket_numbers")
                for key in ("judges", "authors"):
                    v = item.get(key)
                    if isinstance(v, str):
                        case.add("JUDGE", *_JUDGE_LIST.split(v), source=key)
        return
    if not isinstance(d, dict):
        return
    data = d.get("data") if isinstance(d.get("data"), dict) else None
    if data is not None:  # scotus e-mail
        case.add("DOCKET_NUMBER", data.get("docket_number"), source="data.docket_number")
        _caption_parties(case, data.get("case_name"), "data.case_name")
    _court(case, d.get("court_id"))
    for key in ("docket_number", "case_number"):
        case.add("DOCKET_NUMBER", d.get(key), source=key)
    for key in ("assigned_to_str", "referred_to_str"):
        case.add("JUDGE", d.get(key), source=key)
    _dates(case, d, *_CASE_DATES)
    _entries(case, d.get("docket_entries"), "docket_entries.", "date_filed", "date_entered")
    _entries(case, d.get("case_events"), "case_events.", "date")
    _entries(case, d.get("appellate_briefs"), "appellate_briefs.", "date")
    for n in d.get("lower_court_case_numbers") or []:
        case.add("DOCKET_NUMBER", n, source="lower_court_case_numbers")
    parties = d.get("parties")
    if isinstance(parties, list) and parties:
        for p in parties:
            case.add("PARTY", p.get("name"), source="parties.name")
            for a in p.get("attorneys") or []:
                name = a.get("name") if isinstance(a, dict) else a
                case.add("ATTORNEY", name, source="parties.attorneys.name")
            for a in p.get("representatives") or []:
                case.add("ATTORNEY", a, source="parties.representatives")
    else:
        _caption_parties(case, d.get("case_name"))
    for dk in d.get("dockets") or []:
        case.add("DOCKET_NUMBER", dk.get("docket_number"), source="dockets.docket_number")
        _caption_parties(case, dk.get("case_name"), "dockets.case_name")
        _dates(case, dk, "date_filed", prefix="dockets.")
        _entries(
            case, dk.get("docket_entries"), "dockets.docket_entries.", "date_filed", "date_entered"
        )
    for r in d.get("email_recipients") or []:
        case.add("ATTORNEY", r.get("name"), source="email_recipients.name")
    oci = d.get("originating_court_information")
    if isinstance(oci, dict):
        prefix = "originating_court_information."
        _court(case, oci.get("court_id"), prefix + "court_id")
        case.add("DOCKET_NUMBER", oci.get("docket_number"), source=prefix + "docket_number")
        for key in ("assigned_to", "ordering_judge"):
            case.add("JUDGE", oci.get(key), source=prefix + key)
        _dates(case, oci, *_ORIGIN_DATES, prefix=prefix)
    orig = d.get("originating_court")
    if isinstance(orig, dict):
        case.add("DOCKET_NUMBER", orig.get("case"), source="originating_court.case")
        case.add("JUDGE", orig.get("judge"), source="originating_court.judge")
    coa = d.get("appeals_court")
    if isinstance(coa, dict):
        for n in coa.get("case_number") or []:
            case.add("DOCKET_NUMBER", n, source="appeals_court.case_number")


def _juriscraper(truth: Path, corpus: Path) -> Iterator[Case]:
    for f in sorted((truth / "juriscraper").glob("*/*.expected.json")):
        group, stem = f.parent.name, f.name.removesuffix(".expected.json")
        docs = sorted((corpus / "juriscraper" / group).glob(f"{stem}.*"))
        if not docs:
            continue
        case = Case(family=f"juriscraper/{group}", name=docs[0].name, path=docs[0])
        _juriscraper_case(case, json.loads(f.read_text()))
        yield case


def _cuad_date(v: str) -> str | None:
    m = re.fullmatch(r"\s*(\d{1,2})/(\d{1,2})/(\d{4})\s*", v)
    return f"{m[3]}-{int(m[1]):02d}-{int(m[2]):02d}" if m else None


def _cuad(truth: Path, corpus: Path) -> Iterator[Case]:
    for table in sorted((truth / "cuad").glob("master_clauses_*.csv")):
        with table.open(newline="") as fh:
            for row in csv.DictReader(fh):
                stem = Path(row["Filename"]).stem
                doc = corpus / "cuad" / "contracts_txt" / f"{stem}.txt"
                if not doc.exists():
                    continue
                case = Case(family="cuad/contracts_txt", name=doc.name, path=doc)
                # "Name ("Short"); Other Name ("Other")": the full names are the parties.
                for part in row.get("Parties-Answer", "").split(";"):
                    case.add("PARTY", re.sub(r"\s*\(.*$", "", part), source="Parties")
                for col in ("Agreement Date", "Effective Date"):
                    d = _cuad_date(row.get(f"{col}-Answer", ""))
                    if d:
                        case.add("DATE", d, source=col)
                yield case


def _csv_groups(path: Path) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """LexNLP tables: a row with an empty Text continues the previous input."""
    text, rows = "", list[dict[str, str]]()
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("Text"):
                if rows:
                    yield text, rows
                text, rows = row["Text"], []
            rows.append(row)
    if rows:
        yield text, rows


def _lexnlp(truth: Path) -> Iterator[Case]:
    specs = (
        ("test_dates", "DATE", lambda r: _date(r.get("Date") or "")),
        ("test_money", "MONEY", _money),
        ("test_citations", "CASE_CITATION", _citation),
    )
    for folder, etype, value in specs:
        for path in sorted((truth / "lexnlp" / folder).glob("*.csv")):
            for i, (text, rows) in enumerate(_csv_groups(path)):
                case = Case(family=f"lexnlp/{folder}", name=f"{path.name}#{i}", text=text)
                for r in rows:
                    v = value(r)
                    if v:
                        case.add(etype, v, source="lexnlp")
                if case.truth:
                    yield case


def _money(r: dict[str, str]) -> str | None:
    amount, currency = r.get("Amount", ""), r.get("Currency", "")
    return f"{currency} {amount}" if amount and currency else None


def _citation(r: dict[str, str]) -> str | None:
    vol, rep, page = r.get("Volume", ""), r.get("Reporter", ""), r.get("Page", "")
    return f"{vol} {rep} {page}" if vol and rep and page else None


def _freelaw(truth: Path) -> Iterator[Case]:
    path = truth / "freelaw_examples" / "citation_statute_court_examples.jsonl"
    if not path.exists():
        return
    for i, line in enumerate(path.read_text().splitlines()):
        ex = json.loads(line)
        kind, text = ex["kind"], ex["text"]
        case = Case(family=f"freelaw/{kind}", name=f"#{i} {text[:40]}", text=text)
        if kind == "court_name":
            _court(case, ex.get("court_id"), "freelaw")
        elif kind == "case_reporter_citation":
            case.add("CASE_CITATION", text, source="freelaw")
        elif kind == "statute_or_regulation_citation":
            case.add("STATUTE", text, source="freelaw")
        if case.truth:
            yield case


def _cap(corpus: Path) -> Iterator[Case]:
    for doc in sorted((corpus / "courtlistener" / "cap_case_json").glob("*.json")):
        d = json.loads(doc.read_text())
        case = Case(family="courtlistener/cap_case_json", name=doc.name, path=doc)
        case.add("DOCKET_NUMBER", d.get("docket_number"), source="docket_number")
        _dates(case, d, "decision_date")
        cites = d.get("cites_to")
        if isinstance(cites, str):  # some records store the list as its Python repr
            try:
                cites = ast.literal_eval(cites)
            except (ValueError, SyntaxError):
                cites = []
        for c in cites or []:
            if isinstance(c, dict):
                case.add("CASE_CITATION", c.get("cite"), source="cites_to")
        if case.truth:
            yield case


def load_cases(truth: Path, corpus: Path) -> list[Case]:
    return [
        *_juriscraper(truth, corpus),
        *_cuad(truth, corpus),
        *_lexnlp(truth),
        *_freelaw(truth),
        *_cap(corpus),
    ]
