"""Stage 2, ``clean``: normalise text page by page and categorise the document.

Each page is cleaned on its own and the pages are re-joined with a blank line, so
page ranges stay exact without any offset bookkeeping inside the normaliser.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from typing import Final

from accelerated.errors import DocumentError
from accelerated.models import CATEGORIES, Cleaned, Extracted, Page
from accelerated.stages import StageContext

# Above this size the work goes to the CPU pool so the event loop stays responsive.
OFFLOAD_CHARS = 200_000
PAGE_SEP = "\n\n"

_PAGE_BREAKS = re.compile(r"\r\n?|[\f\v\u2028\u2029\x85]")
# Control and invisible format characters (keeps \n and \t; tabs are collapsed below).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u200b-\u200f\u2060\ufeff]")
# "defen-\n  dant" -> "defendant"; a capital after the break ("Smith-\nJones") is kept.
_HYPHEN_BREAK = re.compile(r"(\w)-[ \t]*\n[ \t]*([a-z])")
_SPACES = re.compile(r"[ \t]+")
_TRAILING = re.compile(r" +\n")
_BLANKS = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Normalise one page; idempotent (cleaning cleaned text changes nothing)."""
    t = unicodedata.normalize("NFKC", text)
    t = _PAGE_BREAKS.sub("\n", t)
    t = _CONTROL.sub("", t)
    t = _HYPHEN_BREAK.sub(r"\1\2", t)
    t = _SPACES.sub(" ", t)
    t = _TRAILING.sub("\n", t)
    t = _BLANKS.sub(PAGE_SEP, t)
    return t.strip(" \n")


def clean_pages(text: str, pages: list[Page]) -> tuple[str, list[Page]]:
    """Clean page by page; the separator after a page belongs to that page.

    Page i covers [pages[i].start, pages[i+1].start) of the input, so text in a gap
    between extractor ranges is kept (in the page before it), never dropped.
    """
    if not pages:
        pages = [Page(1, 0, len(text))]
    starts = [0] + [p.start for p in pages[1:]]
    if any(b < a for a, b in itertools.pairwise(starts)) or starts[-1] > len(text):
        raise DocumentError("page ranges are out of order or past the text", code="bad_pages")
    bounds = [*starts[1:], len(text)]
    cleaned = [clean_text(text[s:e]) for s, e in zip(starts, bounds, strict=True)]
    last = max((i for i, c in enumerate(cleaned) if c), default=-1)
    parts: list[str] = []
    out: list[Page] = []
    pos = 0
    for i, (page, body) in enumerate(zip(pages, cleaned, strict=True)):
        start = pos
        if body:
            piece = body + PAGE_SEP if i < last else body
            parts.append(piece)
            pos += len(piece)
        out.append(Page(page.number, start, pos))
    return "".join(parts), out


# --- categorisation -------------------------------------------------------------------

HEAD_CHARS = 6000
MIN_SCORE = 4  # below this for every category: "other"
EML_PRIOR = 8  # an e-mail is correspondence unless another category clearly wins

_M, _I = re.MULTILINE, re.IGNORECASE
_HDR = r"(?:From|To|Subject|Sent|Cc|Date)"
_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan\.|Feb\.|Mar\.|Apr\.|Jun\.|Jul\.|Aug\.|Sept?\.|Oct\.|Nov\.|Dec\.)"
)
_ROLES = r"(?:appellants?|appellees?|respondents?|petitioners?|plaintiffs?|defendants?)"


def _rx(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


# (category, weight, pattern): each rule counts once; weights are evidence, not odds.
RULES: tuple[tuple[str, int, re.Pattern[str]], ...] = (
    # opinions: authorship, decision dates, appearances, panels, dispositions
    ("opinion", 5, _rx(r"delivered the opinion of the court", _I)),
    ("opinion", 4, _rx(r"^\s*(?:PER CURIAM|(?:MEMORANDUM )?OPINION(?: AND ORDER)?)\b", _M)),
    ("opinion", 3, _rx(r"\b(?:OPINION|Opinion) of the Court\b|^\s*SYLLABUS\b|Syllabus", _M)),
    ("opinion", 3, _rx(r"\bJ\.,? (?:delivered|dissenting|concurring|wrote)\b")),
    (
        "opinion",
        4,
        _rx(
            r"^\s*[A-Z][A-Za-z.'’ -]{1,40},\s*(?:Presiding |Chief |Associate |Senior )?"
            r"(?:Judge|Justice|J\.|C\.\s?J\.|J\.S\.C\.|P\.\s?J\.)",
            _M,
        ),
    ),
    (
        "opinion",
        3,
        _rx(
            r"\b(?:Decided|Filed|Promulgated|Argued|Submitted|Decision Date)(?: on)?:?\s+"
            rf"(?:{_MONTH}|\d)"
        ),
    ),
    (
        "opinion",
        3,
        _rx(
            rf",\s+for (?:the )?(?:{_ROLES}|taxpayer|the State|the Commissioner"
            r"|the United States)\b"
        ),
    ),
    (
        "opinion",
        3,
        _rx(r"\bAppeal from the\b|\bOn (?:Writ of )?Certiorari\b|^\s*Appeal of\b", _I | _M),
    ),
    ("opinion", 3, _rx(r"^\s*Before:?\s+[A-Z]|\bJJ\.", _M)),
    ("opinion", 3, _rx(r"\bFINDINGS OF FACT\b.{0,3000}\bCONCLUSIONS OF LAW\b", re.S)),
    ("opinion", 2, _rx(r"\b(?:this|the court's|our) opinion\b|\bSlip Op\b", _I)),
    (
        "opinion",
        2,
        _rx(r"^\s*(?:\w+ )?(?:Court of (?:Criminal |Civil )?Appeals|Supreme Court)", _M | _I),
    ),
    ("opinion", 2, _rx(r"\bwe (?:affirm|reverse|vacate|hold|conclude)\b", _I)),
    ("opinion", 2, _rx(r"\b(?:AFFIRMED|REVERSED|REMANDED|Affirmed\.)")),
    (
        "opinion",
        1,
        _rx(r"\b\d+ (?:U\. ?S\.|F\. ?[234]d|S\. ?Ct\.|A\.[23]d|N\.E\.[23]d|So\. ?[23]d) \d+"),
    ),
    # orders: decretal language and order titles
    ("order", 5, _rx(r"\bIT IS (?:HEREBY |FURTHER )?ORDERED\b|\bORDERED,? ADJUDGED\b", _I)),
    ("order", 5, _rx(r"^\s*(?:\w+ )?ORDER (?:GRANTING|DENYING|ON|RE|REGARDING|TO)\b", _M)),
    ("order", 4, _rx(r"^\s*(?:MINUTE |SCHEDULING |PROTECTIVE |FINAL )?ORDER\s*$", _M)),
    ("order", 3, _rx(r"\bSO ORDERED\b|^\s*JUDGMENT\s*$", _M)),
    # party filings: motions, briefs, pleadings
    (
        "motion_brief",
        5,
        _rx(
            r"\bMEMORANDUM (?:OF (?:POINTS AND )?(?:LAW|AUTHORITIES)|IN (?:SUPPORT|OPPOSITION))", _I
        ),
    ),
    ("motion_brief", 4, _rx(r"^.{0,80}\b(?:MOTION|Motion) (?:TO|FOR|to|for)\b", _M)),
    ("motion_brief", 4, _rx(r"^\s*(?:\w+ )?(?:BRIEF|COMPLAINT|PETITION|REPLY|ANSWER)\b", _M)),
    ("motion_brief", 4, _rx(r"\b(?:respectfully )?(?:moves?|submits?) (?:this|the) Court\b", _I)),
    ("motion_brief", 3, _rx(r"\bRespectfully submitted\b|\bWHEREFORE\b", _I)),
    ("motion_brief", 2, _rx(r"^\s*(?:PRELIMINARY STATEMENT|ARGUMENT|STATEMENT OF FACTS)\s*$", _M)),
    ("motion_brief", 2, _rx(r"\bAttorneys? for (?:Plaintiff|Defendant|Petitioner|Debtor)", _I)),
    # contracts: recitals, operative words, SEC exhibit headers, defined terms
    (
        "contract",
        5,
        _rx(r"\bthis [\w\s,-]{0,60}?agreement\b.{0,200}?\b(?:is )?(?:made|entered)", _I | re.S),
    ),
    ("contract", 4, _rx(r"\bIN WITNESS WHEREOF\b|\bNOW,? THEREFORE\b", _I)),
    ("contract", 4, _rx(r"^\s*[\w ,.&-]{0,80}\b(?:AGREEMENT|CONTRACT)\b", _M)),
    ("contract", 4, _rx(r"\b(?:hereby )?agree as follows\b|\bhereinafter referred to as\b", _I)),
    ("contract", 3, _rx(r"^\s*WHEREAS\b", _M | _I)),
    ("contract", 3, _rx(r"\bthe parties (?:hereto|agree)\b|\bhereinafter\b", _I)),
    ("contract", 3, _rx(r"^\s*(?:EX-10\.\d+|EXHIBIT 10\.\d+)", _M | _I)),
    ("contract", 2, _rx(r"\b(?:Licensor|Licensee|Franchisee|Distributor|Lessee|Supplier)\b")),
    ("contract", 2, _rx(r"\bgoverned by (?:and construed in accordance with )?the laws? of\b", _I)),
    ("contract", 2, _rx(r"\((?:the )?[\"“][A-Z][\w ]{1,40}[\"”]\)")),
    # correspondence: headers, salutations, closings, court notices
    ("correspondence", 4, _rx(rf"^{_HDR}: .+\n(?:.*\n){{0,3}}?{_HDR}: ", _M)),
    ("correspondence", 4, _rx(r"^\s*Dear (?:Mr|Ms|Mrs|Dr|Sir|Madam|Judge|Counsel)\b", _M)),
    (
        "correspondence",
        3,
        _rx(r"^\s*(?:Sincerely|Very truly yours|Best regards|Kind regards|Regards),?\s*$", _M | _I),
    ),
    (
        "correspondence",
        2,
        _rx(r"\bNotice of Electronic Filing\b|\bautomatic e-?mail message\b", _I),
    ),
)


# Per rule (in ``RULES`` order), words one of which every match contains, lowercased;
# None: no such word worth checking. A rule whose words are all absent from the head
# cannot match, so its pattern is not run: Python's ``re`` takes 0.1-0.2 ms per
# pattern over a 6 000-character head (3 ms per document for all of them), a
# substring test a few microseconds. tests/test_clean_chunk.py checks the words
# against every pattern.
PREFILTER: tuple[tuple[str, ...] | None, ...] = (
    ("delivered the opinion of the court",),
    ("per curiam", "opinion"),
    ("opinion of the court", "syllabus"),
    ("delivered", "dissenting", "concurring", "wrote"),
    ("judge", "justice", "j."),
    ("decided", "filed", "promulgated", "argued", "submitted", "decision date"),
    None,
    ("appeal from the", "certiorari", "appeal of"),
    ("before", "jj."),
    ("findings of fact",),
    ("opinion", "slip op"),
    ("court of", "supreme court"),
    ("we affirm", "we reverse", "we vacate", "we hold", "we conclude"),
    ("affirmed", "reversed", "remanded"),
    None,
    ("ordered",),
    ("order ",),
    ("order",),
    ("so ordered", "judgment"),
    ("memorandum",),
    ("motion to", "motion for"),
    ("brief", "complaint", "petition", "reply", "answer"),
    ("this court", "the court"),
    ("respectfully submitted", "wherefore"),
    ("preliminary statement", "argument", "statement of facts"),
    ("attorney",),
    ("agreement",),
    ("in witness whereof", "therefore"),
    ("agreement", "contract"),
    ("agree as follows", "hereinafter referred to as"),
    ("whereas",),
    ("the parties", "hereinafter"),
    ("ex-10.", "exhibit 10."),
    ("licensor", "licensee", "franchisee", "distributor", "lessee", "supplier"),
    ("governed by",),
    None,
    None,
    ("dear ",),
    ("sincerely", "very truly yours", "regards"),
    ("notice of electronic filing", "automatic e"),
)
# The letters IGNORECASE matches to an ASCII letter that ``str.lower`` does not map to
# it (dotted and dotless i, long s); the Kelvin sign lowers to "k" by itself.
_FOLD: Final = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})


def category_scores(text: str, fmt: str) -> dict[str, int]:
    head = text[:HEAD_CHARS]
    lowered = head.translate(_FOLD).lower()
    scores = dict.fromkeys(CATEGORIES, 0)
    if fmt == "eml":
        scores["correspondence"] += EML_PRIOR
    for (category, weight, rx), words in zip(RULES, PREFILTER, strict=True):
        if words is not None and not any(w in lowered for w in words):
            continue
        if rx.search(head):
            scores[category] += weight
    return scores


def categorize(text: str, fmt: str) -> str:
    """Highest score wins; ties go to the earlier category in ``CATEGORIES``."""
    scores = category_scores(text, fmt)
    best = max(CATEGORIES, key=lambda c: scores[c])
    return best if scores[best] >= MIN_SCORE else "other"


def clean_document(text: str, pages: list[Page], fmt: str) -> tuple[str, list[Page], str]:
    """Top-level (picklable) so large documents can run in a process pool."""
    cleaned, new_pages = clean_pages(text, pages)
    return cleaned, new_pages, categorize(cleaned, fmt)


async def run(doc: Extracted, ctx: StageContext) -> Cleaned:
    if len(doc.text) > OFFLOAD_CHARS:
        text, pages, category = await ctx.run_cpu(clean_document, doc.text, doc.pages, doc.format)
    else:
        text, pages, category = clean_document(doc.text, doc.pages, doc.format)
    return Cleaned(document_id=doc.document_id, text=text, pages=pages, category=category)
