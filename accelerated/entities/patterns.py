"""Regexes and lookup tables for the rules backend.

Kept apart from the extraction logic so a rule change is a diff in one place (and a
``RULES_VERSION`` bump, which invalidates cached chunk results).
"""

from __future__ import annotations

import re
from typing import Final

RULES_VERSION: Final = "rules-1"

_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
MONTH_NUMBER: Final[dict[str, int]] = {}
for _i, _m in enumerate(_MONTHS, start=1):
    MONTH_NUMBER[_m.lower()] = _i
    MONTH_NUMBER[_m[:3].lower()] = _i
MONTH_NUMBER["sept"] = 9

# "January", "Jan.", "Sept." and their upper-case forms.
_MONTH = (
    r"(?:(?:January|February|March|April|May|June|July|August|September|October|November|December)"
    r"|(?:JANUARY|FEBRUARY|MARCH|APRIL|MAY|JUNE|JULY|AUGUST|SEPTEMBER|OCTOBER|NOVEMBER|DECEMBER)"
    r"|(?:(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?))"
)
DATE_RES: Final = (
    # January 5, 2001 / Jan. 5 2001
    re.compile(
        rf"\b(?P<month>{_MONTH})\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<year>\d{{4}})\b"
    ),
    # 5 January 2001 / 5th day of January, 2001
    re.compile(
        rf"\b(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:day\s+of\s+)?(?P<month>{_MONTH}),?\s+"
        r"(?P<year>\d{4})\b"
    ),
    # 01/05/2001 (US order: month first) and 2001-01-05 (ISO)
    re.compile(r"(?<![\d/])(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4})(?![\d/])"),
    re.compile(r"(?<![\d-])(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})(?![\d-])"),
)

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALE = r"(?:\s+(?P<scale>thousand|million|billion|trillion))?"
MONEY_RES: Final = (
    re.compile(rf"(?:US|U\.S\.\s?)?\$\s?(?P<num>{_NUM}){_SCALE}\b", re.IGNORECASE),
    re.compile(rf"\b(?:USD|US\s+Dollars?)\s?(?P<num>{_NUM}){_SCALE}\b", re.IGNORECASE),
    re.compile(rf"\b(?P<num>{_NUM}){_SCALE}\s+(?:U\.S\.\s+)?dollars\b", re.IGNORECASE),
)
MONEY_SCALE: Final = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}

_UNI_DASH = "\u2010\u2011\u2012\u2013\u2014"
_DASH = r"\-" + _UNI_DASH  # for character classes
DOCKET_RES: Final = (
    # "Case No. 1:20-cv-01234-ABC", "Docket No. 5847", "Civil Action No. 04-1234"
    re.compile(
        r"\b(?:Case|Docket|Dkt\.|Civil\s+Action|Civ\.\s+A\.|Criminal|Cause|Appeal|Index|File)"
        rf"\s+Nos?\.?\s*:?\s*(?P<num>[A-Z0-9][\w:.{_DASH}/]*\d[\w{_DASH}]*|\d+)",
        re.IGNORECASE,
    ),
    # "No. 12-3456", "Nos. 02–241", "No. 1:20-cv-1"
    re.compile(rf"\bNos?\.\s*(?P<num>\d[\w]*(?:[:{_DASH}][\w]+)+)"),
    # bare federal district numbers: 1:20-cv-01234-ABC
    re.compile(
        r"(?<![\w:])(?P<num>\d{1,2}:\d{2}-[a-zA-Z]{2,4}-\d{2,6}(?:-[A-Za-z0-9]{1,5})*)(?![\w-])"
    ),
)
DASHES: Final = str.maketrans({c: "-" for c in _UNI_DASH})

# A capitalised name token: "Smith", "O'Connor", "McDONALD", "A." (initial).
_NAME_TOK = r"(?:[A-Z]\.|[A-Z][A-Za-z'’\-]*[A-Za-z](?![.\w]))"
_PERSON = rf"{_NAME_TOK}(?: {_NAME_TOK}){{0,3}}"

JUDGE_RES: Final = (
    re.compile(
        r"\b(?:(?:Chief|Senior|Presiding|Associate|Magistrate|District|Circuit|Bankruptcy)\s+)?"
        rf"(?:Judge|Justice|JUDGE|JUSTICE)\s+(?P<name>{_PERSON})"
    ),
    # "SOUTER, J.", "Rehnquist, C. J.", "Smith, P.J."
    re.compile(
        r"\b(?P<name>[A-Z][A-Za-z'’\-]+(?:[ \t]+[A-Z][A-Za-z'’\-]+)?),[ \t]*"
        r"(?:C\.[ \t]?J\.|P\.[ \t]?J\.|JJ?\.)(?!\w)"
    ),
)
BEFORE_RE: Final = re.compile(
    r"\b(?:Before|BEFORE)\s*:\s*(?P<list>[^\n]{3,300}?)(?:,\s*)?"
    r"(?:(?:Senior\s+|Chief\s+)?(?:Circuit|District|Bankruptcy|Appellate)?\s*Judges|JJ\.|Justices)"
)
BEFORE_NAME_RE: Final = re.compile(rf"(?P<name>{_PERSON})")
# Capitalised words the name patterns catch that are never a person's name.
NAME_STOP: Final = frozenset(
    {
        "chief",
        "judge",
        "judges",
        "justice",
        "senior",
        "circuit",
        "district",
        "and",
        "appeals",
        "court",
        "state",
        "states",
        "united",
        "plaintiff",
        "plaintiffs",
        "defendant",
        "defendants",
        "the",
        "of",
        "he",
        "she",
        "it",
    }
)

PERSON_RE: Final = re.compile(
    rf"\b(?:Mr|Mrs|Ms|Dr|Miss|Prof|MR|MRS|MS|DR)\.?[ \t]+(?P<name>{_PERSON})"
)

ATTORNEY_RES: Final = (
    re.compile(rf"\b(?P<name>{_PERSON}),?[ \t]+Esq(?:uire|\.)?(?!\w)"),
    re.compile(rf"\b(?P<name>{_PERSON}),?\s+(?:Attorneys?|Counsel)\s+for\b", re.MULTILINE),
    re.compile(rf"\b(?P<name>{_PERSON})[ \t]+argued\s+the\s+cause\b"),
    re.compile(
        r"\b(?:Attorneys?|Counsel)\s+for\s+(?:the\s+)?[A-Za-z\-]+(?:\s+[A-Za-z\-]+)?\s*:\s*"
        rf"(?P<name>{_PERSON})"
    ),
)

# Organisation: capitalised tokens (with a few lower-case connectors) ending in a suffix.
# A trailing period only on short abbreviations ("Bros.", "U.S."), so a name never runs
# across a sentence end.
_ORG_TOK = r"(?:[A-Z][A-Za-z]{0,4}\.(?:[A-Z]\.)*|[A-Z][A-Za-z0-9&'’\-]*(?![.\w])|&)"
_ORG_SUFFIX = (
    r"(?:Inc\.?|Incorporated|Corp\.?|Corporation|Co\.|Company|LLC|L\.L\.C\.|Ltd\.?|Limited|LLP"
    r"|L\.L\.P\.|L\.P\.|N\.A\.|PLC|P\.C\.|GmbH|S\.A\.|Bank|University|Association|Trust"
    r"|Holdings|Partners|Authority|Agency|Department|Commission)"
)
_GAP = r"(?:[ \t]+|[ \t]*\n[ \t]*)"  # names may wrap onto the next line, once
ORG_RES: Final = (
    re.compile(
        rf"\b(?P<name>{_ORG_TOK}(?:,?{_GAP}(?:(?:of|and|the|for|de){_GAP})?{_ORG_TOK}){{0,6}}?"
        rf",?{_GAP}(?=[A-Z])(?i:{_ORG_SUFFIX})(?:,?[ \t]+(?=[A-Z])(?i:{_ORG_SUFFIX}))?)(?![\w])"
    ),
    # "Bank of America", "University of Michigan"
    re.compile(
        r"\b(?P<name>(?:Bank|University|BANK|UNIVERSITY)[ \t]+(?:of|OF)"
        r"(?:[ \t]+[A-Z][A-Za-z&'’\-]*[A-Za-z]){1,3})\b"
    ),
)
# Leading words the greedy name patterns pick up that are not part of a name.
LEAD_STOP: Final = frozenset(
    {
        "the",
        "a",
        "an",
        "in",
        "see",
        "cf.",
        "but",
        "and",
        "or",
        "accord",
        "compare",
        "under",
        "also",
        "as",
        "by",
        "on",
        "to",
        "for",
        "from",
        "with",
        "when",
        "while",
        "that",
        "this",
        "plaintiff",
        "plaintiffs",
        "defendant",
        "defendants",
        "petitioner",
        "respondent",
        "appellant",
        "appellee",
        "between",
        "citing",
        "quoting",
        "following",
        "unlike",
        "like",
        "of",
        "it",
        "if",
        "at",
        "whereas",
        "whereof",
        "witnesseth",
        "hereby",
        "mr.",
        "ms.",
        "dr.",
    }
)
ORG_SUFFIX_CANON: Final = (
    (re.compile(r"\bincorporated$|\binc\.?$"), "inc"),
    (re.compile(r"\bcorporation$|\bcorp\.?$"), "corp"),
    (re.compile(r"\bcompany$|\bco\.$"), "co"),
    (re.compile(r"\bl\.l\.c\.$|\bllc$"), "llc"),
    (re.compile(r"\blimited$|\bltd\.?$"), "ltd"),
    (re.compile(r"\bl\.l\.p\.$|\bllp$"), "llp"),
)

# Captions: "X v. Y", "X, Plaintiff, v. Y, Defendant".
_ROLE = (
    r"(?i:plaintiffs?|defendants?|petitioners?|respondents?|appellants?|appellees?"
    r"|plaintiffs?-appellants?|plaintiffs?-appellees?|defendants?-appellants?"
    r"|defendants?-appellees?|cross-appellants?|cross-appellees?|claimants?|debtors?"
    r"|petitioners?[ \t]*-[ \t]*appellants?|respondents?[ \t]*-[ \t]*appellees?)"
)
_PARTY_TOK = rf"(?!{_ROLE}\b){_ORG_TOK}"
_PARTY = (
    rf"{_PARTY_TOK}(?:,?[ \t]+(?:(?:of|and|the|for|de|ex[ \t]+rel\.|on[ \t]+behalf[ \t]+of)"
    rf"[ \t]+)?{_PARTY_TOK}){{0,7}}"
)
# Captions are found from their cheap "v." anchor; the left party is then matched in a
# short window ending at the anchor (a forward scan from every capital is 10x slower).
VERSUS_RE: Final = re.compile(r"\s(?:v\.|vs\.?|V\.|VS\.?|versus)\s+")
CAPTION_LEFT_RE: Final = re.compile(
    rf"(?P<left>{_PARTY})(?:,?\s+et[ \t]+al\.)?"
    rf"(?:,?\s+{_ROLE}(?:[ \t]*/[ \t]*{_ROLE})*[,.]?)?,?\s*\Z"
)
CAPTION_RIGHT_RE: Final = re.compile(rf"(?P<right>{_PARTY})")
CAPTION_WINDOW: Final = 240

# Court words a courts-db name must contain to be used as a literal (drops "new mexico").
# courts-db names too generic to name one court ("District Court").
COURT_MIN_TOKENS: Final = 3
COURT_GENERIC: Final = frozenset({"court of claims"})
COURT_WORDS: Final = re.compile(
    r"\b(?:court|ct|cir|circuit|tribunal|commission|board|panel|appeals|bankr|bankruptcy|"
    r"judicial|chancery|surrogate)\b"
)
# A parenthetical ending a citation: "(9th Cir. 2005)", "(N.D. Cal. Jan. 5, 2001)".
COURT_PAREN_RE: Final = re.compile(
    r"\((?P<court>[A-Z0-9][^()\n]{0,40}?)\s+"
    rf"(?:{_MONTH}\s+\d{{1,2}},\s+)?(?:1[6-9]|20)\d\d\)"
)

# Cheap pre-checks for the name-first regexes (keyed by pattern text).
KEYWORDS: Final[dict[str, re.Pattern[str]]] = {
    ATTORNEY_RES[0].pattern: re.compile(r"Esq"),
    ATTORNEY_RES[1].pattern: re.compile(r"Attorney|Counsel"),
    ATTORNEY_RES[2].pattern: re.compile(r"argued"),
}
