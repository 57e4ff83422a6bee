"""``python -m benchmarks.quality --truth ../shared/corpus/truth``: entity quality vs ground truth.

Runs an entity backend on the corpus documents (and snippets) that have ground truth,
exactly as the pipeline does (extract, clean, chunk, the entities stage's assembly),
and reports precision, recall and F1 per entity type and per document family. The
truth sets and how each maps to its documents are described in ``truth/README.md``;
which fields count as which entity type is in ``benchmarks/quality_truth.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from accelerated.backends import EntityBackend
from accelerated.entities import get_backend
from accelerated.errors import PipelineError
from accelerated.extractors import extract_bytes
from accelerated.models import Chunked, Cleaned, Mention
from accelerated.settings import Settings
from accelerated.stages.chunk import build_chunks
from accelerated.stages.clean import clean_document
from accelerated.stages.entities import assemble
from benchmarks.quality_backends import bound, llm_figures
from benchmarks.quality_backends import results as backend_results_any
from benchmarks.quality_match import MATCHING_RULE, key_of, matches, name_words, surname_matches
from benchmarks.quality_truth import EVERY_MENTION, Case, load_cases, truth_roles

CHUNK_CHARS, CHUNK_OVERLAP = 2000, 200  # the pipeline's defaults
DOC_ID = uuid.UUID("00000000-0000-4000-8000-00000000a001")
_NAMES = frozenset({"PARTY", "ATTORNEY", "JUDGE"})
# The types whose mentions carry a field role (accelerated/entities/roles.py).
ROLE_TYPES = frozenset({"DATE", "DOCKET_NUMBER", "JUDGE"})
FIELD_PRECISION_NOTE = (
    "field P (DATE, DOCKET_NUMBER, JUDGE): the truth lists fields (a case's decision "
    "date, a contract's agreement and effective dates, a docket's filing, termination and "
    "entry dates, its own number, its assigned and referred judges), so precision over "
    "every mention counts the other dates, numbers and judges a document writes as "
    "false. Field P is precision over the predictions that say they are one of the "
    "fields the family's truth covers: of the distinct predicted values with at least "
    "one mention whose role is among the family's truth roles (truth_roles, from the "
    "truth's field names in benchmarks/quality_truth.py), the fraction that match a "
    "truth item. 'field pred' is how many such values there are; 'field R' the truth "
    "items they find (how much of the truth the roles cover). Recall is unchanged (over "
    "all predictions)."
)
IN_TEXT_NOTE = (
    "'in text' (names only): truth items all of whose words occur in the extracted text; "
    "the rest (a listing's case names kept only in link attributes, justices named by "
    "initials) no text rule can find."
)
PRECISION_NOTE = (
    "Precision is a lower bound: most truth sets list fields (a docket's parties, its "
    "filing dates), not every mention in the text, so a correct mention the truth does "
    "not list counts as a false positive."
)

# Where a family's truth lists fields rather than every mention, or is wrong: what a
# reader must know before reading a low figure there as a rule's failure.
TRUTH_NOTES: dict[str, str] = {
    "juriscraper/pacer_docket_district_html DOCKET_NUMBER": (
        "truth is the docket's own number; the member and related cases its entries name "
        "(an MDL's member cases, 1:08-cv-2793-RWS) are docket numbers too and count as "
        "false positives"
    ),
    "juriscraper/pacer_nef_email_eml DOCKET_NUMBER": (
        "truth is the notice's case; the member cases a JPML or adversary notice lists count "
        "as false positives"
    ),
    "juriscraper/pacer_docket_district_html JUDGE": (
        "truth is the assigned and referred judges; other judges the entries name (who "
        "signed an order, held a hearing) count as false positives, and a judge named by "
        "surname only ('Judge Ezra') cannot match a full name under the matching rule"
    ),
    "juriscraper/pacer_docket_appellate_html JUDGE": (
        "truth is the trial judge; the magistrate judge the docket's origin fields also name "
        "counts as a false positive"
    ),
    "juriscraper/texas_case_html JUDGE": (
        "the trial court's 'Court Judge' field sometimes holds a court, not a judge "
        "('Honorable Judge Probate Ct #3', '497th District Court Judge'); no rule reads those "
        "as judges"
    ),
    "juriscraper/court_opinion_listing_html JUDGE": (
        "cit_example names judges by surname in a table column (no title: not found); "
        "scotus_slip_example names justices by initials (not in the text); tennctapp's "
        "truth is the authoring judge, the trial court judge each entry also names counts "
        "as a false positive"
    ),
    "juriscraper/court_opinion_listing_html PARTY": (
        "nycivct_example's truth covers 3 of the ~70 cases the page lists (the rest count "
        "as false positives); ca2_u_example_2's case names are only in link attributes"
    ),
    "juriscraper/court_opinion_listing_html DOCKET_NUMBER": (
        "truth is one docket per listed opinion; a second number of the same row (a "
        "consolidated case) counts as a false positive"
    ),
    "cuad/contracts_txt PARTY": (
        "CUAD's Parties answers are annotators' spans: some are defined terms or fragments "
        "('Supplier', 'and its permitted successors and assigns'), some parties are named "
        "only in signature blocks (joint filing agreements)"
    ),
    "cuad/contracts_txt DATE": (
        "truth is the agreement and effective dates; every other date counts as a false positive"
    ),
    "courtlistener/cap_case_json DATE": (
        "truth is the decision date; every other date counts as a false positive"
    ),
    "courtlistener/cap_case_json CASE_CITATION": (
        "CAP's cites_to lists one citation per cited case: a parallel citation of the same "
        "case in another reporter (N.J. and A.2d) counts as a false positive"
    ),
    "lexnlp/test_money MONEY": (
        "two cases ('test price like 25.0', 'test cost about 500') read a bare number as "
        "dollars; the rules want a currency"
    ),
    "juriscraper DATE": (
        "dockets' truth is their dates and their entries' filing dates; a date inside an "
        "entry's text (a hearing set for 5/19/2008), an attorney's 'TERMINATED:' date or a "
        "listing's 'archived from' date counts as a false positive"
    ),
    "juriscraper/scotus_docket_html PARTY": (
        "truth is the applicant or petitioner only; the respondent the title names counts "
        "as a false positive"
    ),
    "juriscraper PARTY": (
        "a docket's short title names parties by surname ('USA v. Warren et al'); a surname "
        "alone cannot match a full name under the matching rule"
    ),
}


@dataclass
class Score:
    """Counts for one (family, type): truth items found, predictions that match truth."""

    truth: int = 0
    found: int = 0
    predicted: int = 0
    correct: int = 0
    in_text: int | None = None  # names only: truth items whose words all occur in the text
    # DATE, DOCKET_NUMBER, JUDGE: predictions whose role is one of the family's truth roles
    field_predicted: int | None = None
    field_correct: int | None = None
    field_found: int | None = None  # truth items some such prediction matches

    def add(self, other: Score) -> None:
        if other.in_text is not None:
            self.in_text = (self.in_text or 0) + other.in_text
        if other.field_predicted is not None:
            self.field_predicted = (self.field_predicted or 0) + other.field_predicted
            self.field_correct = (self.field_correct or 0) + (other.field_correct or 0)
            self.field_found = (self.field_found or 0) + (other.field_found or 0)
        self.truth += other.truth
        self.found += other.found
        self.predicted += other.predicted
        self.correct += other.correct

    @property
    def recall(self) -> float | None:
        return self.found / self.truth if self.truth else None

    @property
    def precision(self) -> float | None:
        return self.correct / self.predicted if self.predicted else None

    @property
    def field_precision(self) -> float | None:
        if not self.field_predicted:
            return None
        return (self.field_correct or 0) / self.field_predicted

    @property
    def field_recall(self) -> float | None:
        if self.field_predicted is None or not self.truth:
            return None
        return (self.field_found or 0) / self.truth

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float | int | None]:
        def r3(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "truth": self.truth,
            "found": self.found,
            "predicted": self.predicted,
            "correct": self.correct,
            "truth_in_text": self.in_text,
            "precision": r3(self.precision),
            "recall": r3(self.recall),
            "f1": r3(self.f1),
            "field_predicted": self.field_predicted,
            "field_correct": self.field_correct,
            "field_precision": r3(self.field_precision),
            "field_found": self.field_found,
            "field_recall": r3(self.field_recall),
        }


@dataclass
class Report:
    backend: str
    version: str
    documents: int = 0
    skipped: list[str] = field(default_factory=list)
    # Documents the backend failed on (a model's reply still invalid after its repair):
    # scored with no mentions, as the pipeline would store none for them.
    failed: list[str] = field(default_factory=list)
    scores: dict[tuple[str, str], Score] = field(default_factory=dict)
    misses: dict[str, list[str]] = field(default_factory=dict)
    wrong: dict[str, list[str]] = field(default_factory=dict)
    llm: dict[str, object] | None = None  # an LLM backend's calls and drops (llm_figures)
    # (family, type) -> the roles its truth covers (quality_truth.truth_roles)
    roles: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    def by_type(self) -> dict[str, Score]:
        out: dict[str, Score] = defaultdict(Score)
        for (_family, etype), s in self.scores.items():
            out[etype].add(s)
        return dict(sorted(out.items()))

    def as_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "backend_version": self.version,
            "documents": self.documents,
            "skipped": self.skipped,
            "failed": self.failed,
            **({"llm": self.llm} if self.llm is not None else {}),
            "matching_rule": MATCHING_RULE,
            "precision_note": PRECISION_NOTE,
            "in_text_note": IN_TEXT_NOTE,
            "field_precision_note": FIELD_PRECISION_NOTE,
            "truth_roles": {
                f"{family} {etype}": sorted(roles)
                for (family, etype), roles in sorted(self.roles.items())
                if etype in ROLE_TYPES
            },
            "truth_notes": TRUTH_NOTES,
            "by_type": {t: s.as_dict() for t, s in self.by_type().items()},
            "by_family": {
                f"{family} {etype}": s.as_dict()
                for (family, etype), s in sorted(self.scores.items())
            },
        }


def document_text(case: Case) -> str:
    """The cleaned text the pipeline's chunk stage would see for this case."""
    if case.text is not None:
        return case.text
    assert case.path is not None
    result = extract_bytes(case.path.read_bytes(), case.path.name)
    text, _pages, _category = clean_document(result.text, result.pages, result.format)
    return text


def document_mentions(text: str, backend: EntityBackend) -> list[Mention]:
    """What the entities stage emits for this text (same chunking, same assembly)."""
    return asyncio.run(document_mentions_async(text, backend))


async def document_mentions_async(text: str, backend: EntityBackend) -> list[Mention]:
    cleaned = Cleaned(document_id=DOC_ID, text=text, pages=[], category="other")
    chunks = build_chunks(cleaned, CHUNK_CHARS, CHUNK_OVERLAP)
    doc = Chunked(document_id=DOC_ID, chunks=chunks)
    return assemble(doc, await backend_results_any(backend, doc))


def score_case(
    case: Case,
    mentions: Sequence[Mention],
    text: str = "",
    roles: dict[str, frozenset[str]] | None = None,
) -> dict[str, tuple[Score, list[str], list[str]]]:
    """Per type with truth: the counts, the truth items not found and the predictions that
    match no truth item (for --misses). ``roles``: per type, the roles the family's truth
    covers, for field precision (ROLE_TYPES only)."""
    out: dict[str, tuple[Score, list[str], list[str]]] = {}
    text_words = set(name_words(text))
    for etype, items in case.truth.items():
        truth = {key_of(etype, t) for t in items} - {""}
        if not truth:
            continue
        keyed = [
            (key_of(etype, m.normalized if _use_normalized(etype) else m.text), m.role)
            for m in mentions
            if m.type == etype
        ]
        predicted = {k for k, _ in keyed} - {""}
        alone = surname_matches(items, predicted) if etype == "JUDGE" else {}

        def match(t: str, p: str, etype: str = etype, alone: dict[str, str] = alone) -> bool:
            return matches(etype, t, p) or alone.get(p) == t

        found = [t for t in truth if any(match(t, p) for p in predicted)]
        correct = [p for p in predicted if any(match(t, p) for t in truth)]
        missed = sorted(truth - set(found))
        wrong = sorted(predicted - set(correct))
        score = Score(len(truth), len(found), len(predicted), len(correct))
        if etype in _NAMES:  # truth whose words are all in the text: what a rule could find
            score.in_text = sum(set(t.split()) <= text_words for t in truth)
        if etype in ROLE_TYPES:
            wanted = (roles or {}).get(etype, frozenset())
            fields = {k for k, role in keyed if k and (EVERY_MENTION in wanted or role in wanted)}
            score.field_predicted = len(fields)
            score.field_correct = len(fields & set(correct))
            score.field_found = sum(any(match(t, p) for p in fields) for t in truth)
            # --misses marks the unmatched values counted by field P
            wrong = [f"{w} (field)" if w in fields else w for w in wrong]
        out[etype] = (score, missed, wrong)
    return out


def _use_normalized(etype: str) -> bool:
    """Ids and values are compared on the backend's normalized form, names on the surface."""
    return etype in ("COURT", "DATE", "MONEY", "CASE_CITATION", "STATUTE", "DOCKET_NUMBER")


def evaluate(
    cases: Iterable[Case],
    backend_name: str,
    settings: Settings | None = None,
    llm_cache: str | None = None,
) -> Report:
    """Every case through ``backend_name`` (built from ``settings``: the environment's
    when None, so ``TRANSFORMERS_MODEL``, ``OPENAI_BASE_URL`` ... apply); an LLM
    backend's replies kept under the Redis prefix ``llm_cache`` when given."""
    return asyncio.run(evaluate_async(cases, backend_name, settings or Settings(), llm_cache))


async def evaluate_async(
    cases: Iterable[Case], backend_name: str, settings: Settings, llm_cache: str | None = None
) -> Report:
    async with bound(get_backend(backend_name, settings), settings, llm_cache) as backend:
        return await _evaluate(cases, backend_name, backend)


async def _evaluate(cases: Iterable[Case], backend_name: str, backend: EntityBackend) -> Report:
    cases = list(cases)
    report = Report(backend=backend_name, version=backend.version, roles=truth_roles(cases))
    for case in cases:
        try:
            text = document_text(case)
        except PipelineError as exc:  # unreadable documents are the extractors' business
            report.skipped.append(f"{case.name}: {exc}")
            continue
        report.documents += 1
        try:
            mentions = await document_mentions_async(text, backend)
        except PipelineError as exc:
            report.failed.append(f"{case.name}: {exc}")
            mentions = []
        roles = {t: r for (f, t), r in report.roles.items() if f == case.family}
        scored = score_case(case, mentions, text, roles)
        for etype, (score, missed, wrong) in scored.items():
            report.scores.setdefault((case.family, etype), Score()).add(score)
            if missed:
                report.misses.setdefault(f"{case.family} {etype}", []).extend(
                    f"{case.name}: {m}" for m in missed
                )
            if wrong:
                report.wrong.setdefault(f"{case.family} {etype}", []).extend(
                    f"{case.name}: {m}" for m in wrong
                )
    report.llm = llm_figures(backend)
    return report


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def print_report(report: Report, console: Console, show_misses: bool) -> None:
    console.print(f"backend {report.backend} ({report.version}), {report.documents} documents")
    if report.llm is not None:
        console.print("LLM: " + ", ".join(f"{k} {v}" for k, v in report.llm.items()), markup=False)
    console.print(f"Matching rule: {MATCHING_RULE}")
    console.print(PRECISION_NOTE)
    console.print(FIELD_PRECISION_NOTE)
    console.print(IN_TEXT_NOTE)
    for title, rows in (
        ("By entity type", [(t, s) for t, s in report.by_type().items()]),
        ("By family and type", [(f"{f} {t}", s) for (f, t), s in sorted(report.scores.items())]),
    ):
        table = Table(title=title)
        cols = (
            "",
            "truth",
            "in text",
            "predicted",
            "precision",
            "field pred",
            "field P",
            "field R",
        )
        for col in (*cols, "recall", "F1"):
            table.add_column(col, justify="left" if not col else "right")
        for name, s in rows:
            table.add_row(
                name,
                str(s.truth),
                "-" if s.in_text is None else str(s.in_text),
                str(s.predicted),
                _fmt(s.precision),
                "-" if s.field_predicted is None else str(s.field_predicted),
                _fmt(s.field_precision),
                _fmt(s.field_recall),
                _fmt(s.recall),
                _fmt(s.f1),
            )
        console.print(table)
    console.print("Truth roles (what field P counts, per family):")
    for (family, etype), roles in sorted(report.roles.items()):
        if etype in ROLE_TYPES:
            console.print(f"  {family} {etype}: {', '.join(sorted(roles)) or '-'}", markup=False)
    console.print("Truth notes (where a figure says more about the truth than the rules):")
    for key, note in TRUTH_NOTES.items():
        console.print(f"  {key}: {note}", markup=False)
    for item in report.skipped:
        console.print(f"skipped {item}")
    for item in report.failed:
        console.print(f"failed (scored with no mentions) {item}", markup=False)
    if show_misses:
        for label, items in (("missed", report.misses), ("unmatched", report.wrong)):
            for name, values in sorted(items.items()):
                console.print(f"[bold]{label} {name}[/bold]")
                for m in values:
                    console.print(f"  {m}", markup=False)


def select(
    cases: Iterable[Case],
    families: Sequence[str] | None,
    per_family: int | None = None,
    limit: int | None = None,
) -> list[Case]:
    """The cases of the families starting with one of ``families`` (all when None), the
    first ``per_family`` of each by name, then the first ``limit`` by family and name:
    the same documents for every backend compared on them."""
    chosen = sorted(
        (c for c in cases if not families or c.family.startswith(tuple(families))),
        key=lambda c: (c.family, c.name),
    )
    if per_family is not None:
        taken: dict[str, int] = defaultdict(int)
        kept = []
        for c in chosen:
            if taken[c.family] < per_family:
                taken[c.family] += 1
                kept.append(c)
        chosen = kept
    return chosen if limit is None else chosen[:limit]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__)
    ap.add_argument("--truth", type=Path, required=True, help="the corpus's truth/ folder")
    ap.add_argument("--corpus", type=Path, help="the corpus folder (default: truth's parent)")
    ap.add_argument("--entity-backend", default="rules", help="a registered backend name")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    ap.add_argument("--family", action="append", help="only families starting with this")
    ap.add_argument(
        "--per-family",
        type=int,
        metavar="K",
        help="only the first K cases of each family (by name): a slow backend on every family",
    )
    ap.add_argument(
        "--limit", type=int, help="only the first N cases (by family and name): slow backends"
    )
    ap.add_argument(
        "--llm-cache",
        metavar="PREFIX",
        help="keep an LLM backend's validated replies in Redis under PREFIX (not removed): "
        "a later run asking the same questions (llm after rules+llm) makes no call",
    )
    ap.add_argument(
        "--misses",
        action="store_true",
        help="list the truth items not found and the predictions matching no truth item",
    )
    args = ap.parse_args(argv)
    corpus = args.corpus or args.truth.resolve().parent
    cases = select(load_cases(args.truth, corpus), args.family, args.per_family, args.limit)
    report = evaluate(cases, args.entity_backend, llm_cache=args.llm_cache)
    print_report(report, Console(width=160), args.misses)
    if args.json:
        args.json.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
