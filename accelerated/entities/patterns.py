"""Regexes and lookup tables for the rules backend.

Kept apart from the extraction logic so a rule change is a diff in one place (and a
``RULES_VERSION`` bump, which invalidates cached chunk results).
"""

from __future__ import annotations

import re
from typing import Final

RULES_VERSION: Final = "rules-5"

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
    # January 5, 2001 / Jan. 5 2001 / June 2017 (no day: normalized YYYY-MM)
    re.compile(
        rf"\b(?P<month>{_MONTH})\s+(?:(?P<day>\d{{1,2}})(?:st|nd|rd|th)?,?\s+)?(?P<year>\d{{4}})\b"
    ),
    # 5 January 2001 / 5th day of January, 2001 / the 1st of June, 2017
    re.compile(
        rf"\b(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:day\s+of\s+|of\s+)?(?P<month>{_MONTH}),?\s+"
        r"(?P<year>\d{4})\b"
    ),
    # 01/05/2001 (US order: month first); 10/15/25, a two-digit year (00-68 -> 20xx,
    # 69-99 -> 19xx, as POSIX strptime %y); 2001-01-05 (ISO)
    re.compile(r"(?<![\d/])(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4}|\d{2})(?![\d/])"),
    re.compile(r"(?<![\d-])(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})(?![\d-])"),
    # 4-7-98, 04-07-1998 (US order with dashes; not inside a longer dashed number)
    re.compile(
        r"(?<![\w/.,:\-])(?P<month>\d{1,2})-(?P<day>\d{1,2})-(?P<year>(?:19|20)\d\d|\d\d)"
        r"(?![\w/\-]|[.,:]\d)"
    ),
    # 14.05.2018 (day first, as written where dots separate a date; four-digit year)
    re.compile(
        r"(?<![\w.,:/\-])(?P<day>\d{1,2})\.(?P<month>\d{1,2})\.(?P<year>(?:19|20)\d\d)"
        r"(?![\w/\-]|[.,:]\d)"
    ),
)
MONTH_ONLY_YEARS: Final = range(1600, 2200)  # "June 2017" but not "May 1"+"234"

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALE = r"(?:\s+(?P<scale>thousand|million|billion|trillion))?"
MONEY_RES: Final = (
    re.compile(rf"(?:US|U\.S\.\s?)?\$\s?(?P<num>{_NUM}){_SCALE}\b", re.IGNORECASE),
    re.compile(rf"\b(?:USD|US\s+Dollars?)\s?(?P<num>{_NUM}){_SCALE}\b", re.IGNORECASE),
    # "100 dollars", but not the cents of "Fifty Thousand and NO/100 Dollars"
    re.compile(rf"(?<![/\d.,])\b(?P<num>{_NUM}){_SCALE}\s+(?:U\.S\.\s+)?dollars\b", re.IGNORECASE),
)
# A cheap test that a text can hold one of MONEY_RES's forms at all.
DOLLAR_WORD_RE: Final = re.compile(r"(?i:usd|dollar)")
MONEY_SCALE: Final = {
    "thousand": 10**3,
    "million": 10**6,
    "billion": 10**9,
    "trillion": 10**12,
    "k": 10**3,
    "m": 10**6,
    "mm": 10**6,
    "mn": 10**6,
    "b": 10**9,
    "bn": 10**9,
}
# Other currencies: a symbol or ISO code before the amount ("€1,000", "CHF 2.5 million",
# "RMB 200,000") or a currency word after it ("1,000 euros").
_ABBR_SCALE = (
    r"(?:\s+(?P<scale>thousand|million|billion|trillion)|[ \t]?(?P<abbr>K|MM|M|B|BN|bn|mn)\b)?"
)
CURRENCY_SYMBOL: Final = {"€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR"}
CURRENCY_CODE: Final = {
    "EUR": "EUR",
    "GBP": "GBP",
    "CHF": "CHF",
    "JPY": "JPY",
    "CNY": "CNY",
    "RMB": "CNY",
    "CAD": "CAD",
    "AUD": "AUD",
    "INR": "INR",
    "USD": "USD",
    "US$": "USD",
}
CURRENCY_WORD: Final = {
    "euro": "EUR",
    "euros": "EUR",
    "pounds sterling": "GBP",
    "swiss francs": "CHF",
    "yen": "JPY",
    "yuan": "CNY",
    "renminbi": "CNY",
}
FOREIGN_MONEY_RES: Final = (
    re.compile(
        r"(?:(?P<sym>[€£¥₹])|\b(?P<code>EUR|GBP|CHF|JPY|CNY|RMB|CAD|AUD|INR|USD|US\$)(?![a-z]))"
        rf"[ \t]?(?P<num>{_NUM}){_ABBR_SCALE}"
    ),
    re.compile(
        rf"\b(?P<num>{_NUM}){_SCALE}[ \t]+(?P<word>euros?|pounds[ \t]+sterling|swiss[ \t]+francs"
        r"|yen|yuan|renminbi)\b",
        re.IGNORECASE,
    ),
)
# Cheap substring tests that a text can hold a foreign amount at all (most cannot).
FOREIGN_MONEY_SYMBOLS: Final = tuple(CURRENCY_SYMBOL)
FOREIGN_MONEY_CODE_RE: Final = re.compile(
    r"\b(?:EUR|GBP|CHF|JPY|CNY|RMB|CAD|AUD|INR|USD)"
    r"|\d[ \t]+(?i:euros?|pounds|swiss|yen|yuan|renminbi)\b"
)
# "$12 K", "$12,333 M": an abbreviated scale right after a dollar amount.
DOLLAR_ABBR_RE: Final = re.compile(rf"\$[ \t]?(?P<num>{_NUM})[ \t]?(?P<abbr>K|MM|M|B|BN|bn|mn)\b")

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
# A reference to an entry of the docket: "(Docket no. 6 )", "Dkt. No. 8", "ECF No. 12":
# a bare entry number (after "Docket No." only inside parentheses), not a case's number.
ENTRY_REF_LOOKBACK: Final = 24
ENTRY_REF_RE: Final = re.compile(
    r".*(?:\((?:[^()\n]{0,16}[ \t])?(?i:docket|doc\.?)|\b(?i:dkt\.?|ecf))[ \t]+(?i:nos?)\.?"
    r"[ \t]*:?[ \t]*\d{1,4}(?![\w:/\-]|\.\d)",
    re.DOTALL,
)

# A capitalised name token: "Smith", "O'Connor", "McDONALD", "A." (initial).
# A middle initial may lack its period in docket text ("Katherine A Crytzer").
# A word before a sentence's period ("before Judge William Knox. Court will") is a name
# token too, without the period; an abbreviation ("Bros.") is not one. Docket text often
# drops the space after that period ("Judge Dennis Howell.Government attorney",
# "Judge William Knox.(Price, Jackie)"). Initials may run together ("Kevin S.C. Chang").
_NAME_TOK = (
    r"(?:[A-Z]\.(?:[A-Z]\.)*|[A-Z](?=[ \t][A-Z][a-z])|[A-Z][A-Za-z'’\-]*[A-Za-z](?![.\w])"
    r"|[A-Z][a-z'’\-]*[a-z]{2}(?=\.(?:[ \t]+[A-Z(]|[ \t]*$|\(|[A-Z][a-z])))"
)
_PERSON = rf"{_NAME_TOK}(?: {_NAME_TOK}){{0,3}}"

JUDGE_RES: Final = (
    re.compile(
        r"\b(?:(?:Chief|Senior|Presiding|Associate|Magistrate|District|Circuit|Bankruptcy)\s+)?"
        rf"(?:Judge|Justice|JUDGE|JUSTICE)[ \t]+(?P<name>{_PERSON})"
    ),
    # "SOUTER, J.", "Rehnquist, C. J.", "Smith, P.J."; not a list of counsel where "J."
    # is the next name's initial ("Thomas A. Roe, J. Clinton Poe"), nor a deputy clerk's
    # initials closing a docket entry ("(Ravel, J.)")
    re.compile(
        r"\b(?P<name>[A-Z][A-Za-z'’\-]+(?:[ \t]+[A-Z][A-Za-z'’\-]+)?),[ \t]*"
        r"(?:C\.[ \t]?J\.|P\.[ \t]?J\.|JJ?\.)(?!\w)(?![ \t]+[A-Z][a-z]+[ \t]+[A-Z][a-z])"
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
        # counsel's titles ("Change of Lead Counsel for", "Local Counsel for")
        "lead",
        "local",
        "special",
        "liaison",
        # institutions a page's navigation names after "Justice", "Judicial", "Court"
        "commission",
        "committee",
        "council",
        "foundation",
        "center",
        "department",
        "division",
        "system",
        "branch",
        "project",
        "program",
        "services",
        "institute",
        "network",
        "fund",
        "conference",
        "reform",
        "task",
        "force",
        "administration",
        # "Department of Justice Board of Immigration Appeals", "Children's Justice Initiative"
        "board",
        "bureau",
        "office",
        "agency",
        "initiative",
    }
)

# Words of page text that follow "Judge"/"Justice" in headings and tables ("Judge
# Originating", "Justice Programs", "Trial Court Judge Date Filed"): a judge's name has none.
JUDGE_NAME_STOP: Final = frozenset(
    {
        "date",
        "dated",
        "filed",
        "entered",
        "originating",
        "ordering",
        "trial",
        "jurisdiction",
        "panel",
        "panels",
        "form",
        "forms",
        "handbook",
        "order",
        "orders",
        "improvement",
        "conference",
        "pretrial",
        "final",
        "box",
        "po",
        "act",
        "cja",
        "pending",
        "counts",
        "rules",
        "opinion",
        "opinions",
        "programs",
        "education",
        "directory",
        "assignment",
        "assigned",
        "information",
        "name",
        "status",
        "type",
        "case",
        "search",
        "home",
        "page",
        "news",
        "resources",
        "wildlife",
        "integrity",
        "unit",
        "commission",
        "committee",
        "council",
        # "in the Interests of Justice Time excluded" (the Speedy Trial Act's phrase)
        "time",
        "excluded",
        "motion",
        "motions",
        "hearing",
        # a court in the judge's field ("Court Judge: Honorable Judge Probate Ct #3")
        "ct",
        "probate",
    }
)

JUDGE_TITLES: Final = frozenset(
    {"magistrate", "district", "chief", "senior", "judge", "justice", "circuit", "bankruptcy"}
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
# Tokens: "Bros.", "B.V.", "S.p.A.", "WOMEN.COM", "M/Y", "O'Neil", "&".
_ORG_TOK = (
    r"(?:[A-Z][A-Za-z0-9]*\.(?:COM|com|NET|net|ORG|org)(?![.\w])"
    r"|[A-Z][A-Za-z]{0,4}\.(?:[A-Za-z]{1,2}\.)*"
    r"|[A-Z][A-Za-z0-9&'’\-]*(?:/[A-Z][A-Za-z0-9]*)*(?![.\w/])|&)"
)
_ORG_SUFFIX = (
    r"(?:Inc\.?|Incorporated|Corp\.?|Corporation|Co\.|Company|LLC|L\.L\.C\.|Ltd\.?|Limited|LLP"
    r"|L\.L\.P\.|L\.P\.|N\.A\.|PLC|P\.C\.|GmbH|S\.A\.|Bank|University|Association|Trust"
    r"|Holdings|Partners|Authority|Agency|Department|Commission|B\.V\.|N\.V\.|S\.p\.A\.|S\.r\.l\."
    r"|Ltda\.?|S\.A\.[ \t]+de[ \t]+C\.V\.|S\.[ \t]+de[ \t]+R\.L\.(?:[ \t]+de[ \t]+C\.V\.)?"
    r"|Pty\.?[ \t]+Ltd\.?"
    r"|PLLC|L\.P\.|LLLP|A\.G\.|S\.A\.S\.|K\.K\.)"
)
# Short suffixes only in capitals ("LP", not the word "lp"): B.V. and S.A. have periods.
ORG_SUFFIX_SHORT: Final = (
    *("LP", "AG", "SE", "SRL", "SpA", "NV", "BV", "KG", "KGaA", "Pty", "SAS"),
    *("SARL", "Oy", "AB", "ASA"),
)
_ORG_SUFFIX_CS = rf"(?:{'|'.join(ORG_SUFFIX_SHORT)})"
_GAP = r"(?:[ \t]+|[ \t]*\n[ \t]*)"  # names may wrap onto the next line, once
ORG_RES: Final = (
    re.compile(
        rf"\b(?P<name>{_ORG_TOK}(?:,?{_GAP}(?:(?:of|and|the|for|de){_GAP})?{_ORG_TOK}){{0,6}}?"
        rf",?{_GAP}(?:(?=[A-Z])(?i:{_ORG_SUFFIX})|{_ORG_SUFFIX_CS})"
        rf"(?:,?[ \t]+(?:(?=[A-Z])(?i:{_ORG_SUFFIX})|{_ORG_SUFFIX_CS}))?)(?![\w])"
    ),
    # "Bank of America", "University of Michigan"
    re.compile(
        r"\b(?P<name>(?:Bank|University|BANK|UNIVERSITY)[ \t]+(?:of|OF)"
        r"(?:[ \t]+[A-Z][A-Za-z&'’\-]*[A-Za-z]){1,3})\b"
    ),
)
# Whole surfaces a name rule may land on that name nobody.
NOT_A_NAME: Final = frozenset(
    {"v.", "vs.", "v", "vs", "versus", "et al.", "et al", "and", "all", "unknown", "counter"}
    | {"pro se", "intervenor", "movant", "consolidated", "interested party", "claimant"}
    # a role in a name's place ("Party name: Applicants"): no party is named
    | {
        f"{r}{s}"
        for r in ("applicant", "petitioner", "respondent", "appellant", "appellee")
        for s in ("", "s")
    }
    | {f"{r}{s}" for r in ("plaintiff", "defendant", "relator", "movant") for s in ("", "s")}
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
# A listing's court cell ("Sup Ct, Kings County") glued after a caption is not the party.
# ... nor its opinion-type cell ("State v. Roe Maj., and Dis. Opinions", "Majority Opinion").
_PARTY_TOK = (
    rf"(?<![\w\-/:])(?!{_ROLE}\b)(?!(?:Sup|Civ|Crim|Dist|Fam|Sur|App)[ \t]+Ct\b|Ct\b)"
    r"(?!(?:Maj|Dis|Con|Concur|Diss)\.|(?:Majority|Dissenting|Concurring|Plurality|Per[ \t]+Curiam)"
    r"[ \t]+Opinion|Opinions?\b)"
    # ... nor a citation's docket ("Roe v. Doe, No. 12-345") or an original action's
    # marker ("No. 145, Orig. Delaware v. Pennsylvania")
    r"(?!(?:No|Nos|Orig)\.)"
    r"(?!ET[ \t]+AL\b)"  # a caption in capitals: "ROE v. DOE ET AL."
    # hyphenated initials ("State v. J.H.-M."), a plural abbreviation's possessive
    # ("Diamond Sawblades Mfrs.' Coal."), a word before a sentence's period ("Chatrie v.
    # United States. You have ...")
    # a brand's exclamation mark ("Yahoo! Inc.")
    r"(?:[A-Z]\.(?:[A-Z]\.)*(?:-[A-Z]\.)+|[A-Z][A-Za-z]{0,4}\.['’](?=[ \t])"
    r"|[A-Z][A-Za-z0-9]*!(?=[ \t]+[A-Z])"
    rf"|{_ORG_TOK}|[A-Z][A-Za-z'’\-]*[a-z]{{2}}(?=\.(?:[ \t]+[A-Z]|[ \t]*$)))"
)
# Inside a name, a place or former name in parentheses: "Navneet Publ'ns (India) Ltd.",
# or a nickname in quotes: "MARY "KATIE" REYNOLDS".
_PARTY_PAREN = r"(?:\([A-Z][A-Za-z]+(?:[ \t][A-Z][A-Za-z]+)?\)|[\"“][A-Z][A-Za-z]+[\"”])(?!\w)"
_PARTY = (
    rf"{_PARTY_TOK}(?:,?[ \t]+(?:(?:of|and|the|for|de|ex[ \t]+rel\.?|on[ \t]+behalf[ \t]+of)"
    rf"[ \t]+)?(?:{_PARTY_TOK}|{_PARTY_PAREN})){{0,7}}"
)
# Captions are found from their cheap "v." anchor; the left party is then matched in a
# short window ending at the anchor (a forward scan from every capital is 10x slower).
VERSUS_RE: Final = re.compile(r"\s(?:v\.|vs\.?|V\.|VS\.?|versus|v(?=[ \t]))\s+")
CAPTION_LEFT_RE: Final = re.compile(
    rf"(?P<left>{_PARTY})(?:,?\s+(?i:et)[ \t]+(?i:al)\.?)?"
    rf"(?:,?\s+(?P<lrole>{_ROLE}(?:[ \t]*/[ \t]*{_ROLE})*)[,.]?)?,?\s*\Z"
)
CAPTION_RIGHT_RE: Final = re.compile(
    rf"(?P<right>{_PARTY})(?:,?\s+(?i:et)[ \t]+(?i:al)\.?)?(?:,?\s+(?P<rrole>{_ROLE})(?![\w-]))?"
)
# A labelled case name without a versus names the one party ("Case Name: Acme Holding
# LLC", a bankruptcy's debtor); one with a versus is read as a caption.
CASE_NAME_FIELD_RE: Final = re.compile(
    r"^[ \t]*(?:Case[ \t]+Name|Case[ \t]+Title|Case[ \t]+Style|Short[ \t]+Title):[ \t]*\n?[ \t]*"
    r"(?:(?:In[ \t]+re|IN[ \t]+RE):?[ \t]+)?(?P<value>[A-Z][^\n]{1,150}?)[ \t]*$",
    re.MULTILINE,
)
ET_AL_RE: Final = re.compile(r",?[ \t]+(?i:et[ \t]+al)\.?$")
# "In re X", "IN RE: X", "In the Matter of X": X is the party (a debtor, an estate, a ship).
IN_RE_RE: Final = re.compile(
    r"\b(?:In[ \t]+re|IN[ \t]+RE|In[ \t]+the[ \t]+(?:Matter|Interest|Estate)[ \t]+of"
    r"|IN[ \t]+THE[ \t]+(?:MATTER|INTEREST|ESTATE)[ \t]+OF):?"
    rf"[ \t]+(?P<name>{_PARTY})"
)
CAPTION_WINDOW: Final = 240
# "In re X Litigation", "In re: X Antitrust Litigation": an MDL's name, not a party's.
LITIGATION_RE: Final = re.compile(r"\b(?i:litigation)$")
# Mixed-case words a capitalised company name ends with ("ACME Co.", "ACME, Inc.").
SUFFIX_WORD_RE: Final = re.compile(r"(?:Inc|Corp|Co|Ltd|Bros|Cos)\.?,?|&")
# A number opening a company's name, on the name's line: "336 LLC", "954 Ink LLC".
NUMBER_BEFORE_RE: Final = re.compile(r"(?<![\w/.:,\-])\d+[A-Za-z]*[ \t]+\Z")
# PACER's "Transaction Receipt" (the date the page was printed) and CM/ECF's banner
# ("CM/ECF - U.S. District Court - Version 6.1 as of 7/29/2031"): no date of the case.
PRINTOUT_DATE_BEFORE_RE: Final = re.compile(
    r"(?:\bTransaction[ \t]+Receipt[ \t]*\n[ \t]*|\bVersion[ \t]+[\d.]+[ \t]+as[ \t]+of[ \t]+)\Z"
)
# A telephone number's area code or label right before a number: "(202) 501-5970".
PHONE_BEFORE_RE: Final = re.compile(r"(?:\(\d{3}\)|\b(?i:phone|fax|tel)\.?:?)[ \t]*\Z")
# "Drew V. Lounsbury": the given name (or an initial) before a capital "V." and the
# surname after it, in mixed case (a middle initial, not a versus).
GIVEN_NAME_END_RE: Final = re.compile(r"(?<![\w.'’\-])(?:[A-Z][a-z]+|[A-Z]\.)\Z")
SURNAME_START_RE: Final = re.compile(r"[A-Z][a-z][A-Za-z'’\-]*(?![\w.])")
# A "v." opening a line followed by this many lower-case words (connectors apart) is a
# list item's numeral ("v. There are no taxes ..."), not a caption's versus.
LIST_ITEM_MIN_WORDS: Final = 3
CAPTION_CONNECTORS: Final = frozenset(
    {"a", "an", "the", "of", "and", "for", "de", "et", "al", "ex", "rel", "on", "behalf", "in"}
)

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

# --- structure rules (accelerated/entities/structure.py) ----------------------------

# A docket number as courts write it: "4:13-md-02420-YGR", "24-04888-CL7", "PD-0123-88",
# "14-24-00416-CV", "NYS/1:20-cv-01296", or a long bare number ("20220245").
_DNUM = (
    rf"(?:[A-Z]{{2,4}}/)?[A-Za-z0-9]{{1,8}}(?:[:.{_DASH}][A-Za-z0-9]{{1,8}}){{1,5}}(?![\w{_DASH}])"
    r"|\d{5,}(?![\w-])"
)
LABELLED_DOCKET_RES: Final = (
    # "Case Number: 24-50786", "Docket #: 25-869-cv", "Case: 26-0051", "CASE #: 4:13-md-1",
    # "Case Nos.: (10-60409)", "COA Case 14-24-00416-CV", a label alone on its line.
    re.compile(
        # (a qualifier before the label, "COA Case", "Trial Court Case", needs no match of
        # its own; the first-letter test keeps the scan cheap)
        r"(?<![\w.])(?=[CcDdAa])"
        # a bare "Cause:" on a federal docket is the statute ("Cause: 28:1332 Diversity")
        r"(?:(?i:case|docket|appeal)(?:[ \t]+(?i:numbers?|nos?\.?|#))?"
        r"|(?i:cause)[ \t]+(?i:numbers?|nos?\.?|#))(?:[ \t]*#)?"
        rf"(?:[ \t]*:[ \t]*\n?\s*|[ \t]*\n\s*|[ \t]+(?=\(?[A-Z0-9]{{1,4}}[{_DASH}:]))"
        rf"\(?(?P<num>{_DNUM})"
    ),
    # "Docket for 16A985", "No. 10A1000", "Application (16A985)": Supreme Court applications.
    re.compile(r"(?:\bNo\.[ \t]*|\bDocket[ \t]+for[ \t]+|\()(?P<num>\d{2}A\d{1,5})\b"),
    # A caption's docket line: "No. 25741", "Docket No. 131.", "No. 79SA494" alone on a line.
    re.compile(
        r"^[ \t]*(?:(?:Docket|Bankruptcy|Case|Cause|Appeal)[ \t]+)?Nos?\.[ \t]*"
        r"(?P<num>\d[0-9A-Za-z]{2,12})[ \t]*\.?[ \t]*$",
        re.MULTILINE,
    ),
    # "MDL No. 2168": the panel's number is the identifier of the whole litigation.
    re.compile(r"\b(?P<num>MDL[ \t]+No\.?[ \t]*\d{2,5})\b"),
    # Texas appellate numbering: "01-24-00089-CV", "PD-0123-88", "WR-12,345-01".
    re.compile(
        rf"(?<![\w{_DASH}])(?P<num>\d{{2}}-\d{{2}}-\d{{5}}-C[RV]|(?:PD|WR|AP)-\d{{4}}-\d{{2}}"
        # the Court of Criminal Appeals' writ and appeal numbers: "WR-97,175-01", "AP-77,129"
        r"|(?:WR|AP)-\d{1,3},\d{3}(?:-\d{2})?)\b"
    ),
)
# "2024-Ohio-1501": a neutral citation, not a docket number.
# (A state name, or New Mexico's NMSC/NMCA; "2023-CI-04411" is a county docket number.)
NEUTRAL_CITE_RE: Final = re.compile(r"\d{4}-(?:[A-Z][a-z]{2,}|NM[A-Z]{2,4})-\d+")

USCOURTS_HOST_RE: Final = re.compile(
    r"(?:[\w.+-]+@|https?://|\b)(?:(?:ecf|www|pacer|ecf-train)\.)?"
    r"(?P<id>[A-Za-z]{2,5}\d{0,2})\.uscourts\.gov\b"
)
_DIR = r"(?:Northern|Southern|Eastern|Western|Middle|Central)"
_STATE = r"[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+)?"
PACER_COURT_RE: Final = re.compile(
    r"(?:\bU\.[ \t]?S\.|\bUnited[ \t]+States)[ \t]+(?P<kind>District|Bankruptcy)[ \t]+Court"
    r"(?:[ \t]*\[[A-Za-z ]+\])?(?:[ \t]*,[ \t]*|[ \t]*\n\s*)(?:for[ \t]+the[ \t]+)?"
    rf"(?:(?:(?P<dir1>{_DIR})[ \t]+)?District[ \t]+of[ \t]+(?P<state1>{_STATE})"
    rf"|(?P<state2>{_STATE})[ \t]+(?:(?P<dir2>{_DIR})[ \t]+)?District\b)"
)

# A person's name at the start of a line: "Jeff D Friedman", "Shana E. Scarlett".
LINE_PERSON_RE: Final = re.compile(
    r"[ \t]*(?P<name>(?:[A-Z]\.|[A-Z][A-Za-z'’\-]*[A-Za-z0-9]\.?)"
    r"(?:[ \t]+(?:[A-Z]\.?|[A-Z][A-Za-z'’\-]*[A-Za-z0-9]\.?|(?:de|van|von|del|la|di|da)))"
    r"{1,4})(?:,?[ \t]+(?:Jr|Sr|II|III|IV)\.?)?(?=[ \t,#(]|$)"
)
NOT_A_PERSON: Final = frozenset(
    {
        "attorney",
        "attorneys",
        "counsel",
        "notice",
        "court",
        "district",
        "llp",
        "llc",
        "inc",
        "pllc",
        "firm",
        "office",
        "suite",
        "the",
        "of",
        "for",
        "and",
        "law",
        "lead",
        "noticed",
        "hac",
        "vice",
        "terminated",
        "fax",
        "email",
        "united",
        "states",
        "department",
        "county",
        "state",
        "bank",
        "corporation",
        "company",
        "u.s",
        "plaintiff",
        "defendant",
        "date",
        "filed",
        "docket",
        "case",
        # status and role lines of party tables ("Pending Counts", "Counter Claimant")
        "pending",
        "counts",
        "counter",
        "claimant",
        "provider",
        "adr",
        "designation",
    }
)
# The rest of a line after a name that makes the line a firm ("Kramer Levin Naftalis &
# Frankel, LLP"): counsel's firm sits on the line below counsel, never is counsel.
FIRM_REST_RE: Final = re.compile(r"[ \t]*(?:&|,?[ \t]*(?:LLP|LLC|PLLC|P\.C\.|L\.L\.P\.|P\.A\.)\b)")
MAILED_TO_RE: Final = re.compile(r"Notice (?:has been|will be) electronically mailed to:?[ \t]*\n")
MAILED_TO_END_RE: Final = re.compile(
    r"^[^\n]*(?:\bNotice\b|The following document|Document description)", re.MULTILINE
)
ON_BEHALF_RE: Final = re.compile(r"[ \t]+on[ \t]+behalf[ \t]+of\b")

_PARTY_ROLE_HEAD = (
    r"(?:Plaintiff|Defendant|Petitioner|Respondent|Appellant|Appellee|Debtor|Creditor|Movant"
    r"|Intervenor|Claimant|Counter[ -]Claimant|Counter[ -]Defendant|Cross[ -]Claimant"
    r"|Third[ -]Party[ \t]+(?:Plaintiff|Defendant)|Interested[ \t]+Party|Trustee"
    r"|U\.S\.[ \t]+Trustee|Miscellaneous[ \t]+Party|Amicus"
    # CM/ECF's other party types: each heads a party's block the same way
    r"|Garnishee|Garnishor|Receiver|Objector|Mediator|Special[ \t]+Master|Material[ \t]+Witness"
    r"|Unknown|Putative[ \t]+Intervenor)s?"
)
# PACER party tables: the role on its own line, then "NAME represented by COUNSEL".
# ("Consolidated Defendant", "Defendant (1)": a criminal docket numbers its defendants)
PARTY_BLOCK_RE: Final = re.compile(
    r"^[ \t]*(?:(?:Consolidated|Member|Lead)[ \t]+)?"
    rf"(?P<role>{_PARTY_ROLE_HEAD})(?:[ \t]*\(\d{{1,3}}\))?[ \t]*\n[ \t]*"
    r"(?P<party>[^\n]+?)(?:[ \t]+represented[ \t]+by[ \t]+(?P<counsel>[^\n]+)|[ \t]*$)",
    re.MULTILINE,
)
# Counsel at the end of a party's lines ("TERMINATED: 04/08/2015 represented by NAME",
# "a California Corporation represented by NAME"): the name opens the rest of the line.
REPRESENTED_BY_RE: Final = re.compile(r"[ \t]represented[ \t]+by[ \t]+(?P<counsel>[^\n]+)")
STATUS_LINES: Final = ("ATTORNEY", "LEAD ATTORNEY", "PRO HAC", "PRO SE", "TERMINATED")
# More counsel of the same party: the line after an attorney's status lines.
AFTER_STATUS_RE: Final = re.compile(
    r"^[ \t]*(?:LEAD ATTORNEY|ATTORNEY TO BE NOTICED|PRO HAC VICE|TERMINATED:[^\n]*"
    r"|Designation:[^\n]*|Bar Status:[^\n]*)[ \t]*\n(?=(?P<name>[^\n]+))",
    re.MULTILINE,
)
_ROLE_CANON: Final = {
    "plaintiff": "plaintiff",
    "defendant": "defendant",
    "petitioner": "petitioner",
    "respondent": "respondent",
    "appellant": "appellant",
    "appellee": "appellee",
    "debtor": "debtor",
    "creditor": "creditor",
    "applicant": "petitioner",
    "relator": "petitioner",
    "claimant": "plaintiff",
}


def role_of(label: str) -> str:
    """A party role label ("Plaintiffs", "Defendant-Appellee") as one vocabulary word."""
    words = re.findall(r"[a-z]+", label.casefold())
    if words[:1] in (["criminal"], ["civil"]):  # "Criminal - Appellant": the kind of case
        words = words[1:]
    if words[:1] == ["state"]:  # "Criminal - State of Texas": the prosecuting State
        return "state"
    for w in reversed(words):  # "defendant-appellee": the role in this court comes last
        canon = _ROLE_CANON.get(w.removesuffix("s"))
        if canon:
            return canon
    return " ".join(words)


COUNSEL_HEAD_RE: Final = re.compile(
    r"^[ \t]*(?:Attorneys?|Counsel)[ \t]+for[ \t]+(?:the[ \t]+)?(?P<role>[^\n]{1,60}?)"
    r"[ \t]*:?[ \t]*\n"
    r"(?P<name>[^\n]+)",
    re.MULTILINE,
)
# Supreme Court dockets: each counsel block ends "Party name: X"; the next block's first
# line (after an "Other" or "Attorneys for ..." heading) is the next attorney.
AFTER_PARTY_NAME_RE: Final = re.compile(
    r"^[ \t]*Party name:[^\n]*\n(?:[ \t]*(?:Other|(?:Attorneys?|Counsel) for[^\n]*)[ \t]*\n)?"
    r"(?=(?P<name>[^\n]+))",
    re.MULTILINE,
)
# What follows a name on the line when it is a firm: "& Gallagher LLP", "Law Office".
FIRM_MARK_RE: Final = re.compile(r"&|\b(?:LLP|LLC|PLLC|P\.C\.|L\.L\.P\.|Law|LAW|Firm|Office)\b")
PARTY_NAME_FIELD_RE: Final = re.compile(
    r"^[ \t]*Party name:[ \t]*(?P<name>[^\n]*[^\s])", re.MULTILINE
)
JUDGE_FIELD_RE: Final = re.compile(
    r"^[ \t]*(?:Assigned[ \t]+to|Referred[ \t]+to|Presiding[ \t]+Judge|Court[ \t]+Judge"
    r"|Trial[ \t]+Judge|Ordering[ \t]+Judge)[ \t]*:?[ \t]*\n?[ \t]*"
    r"(?i:(?:Hon(?:orable|\.)?|Chief|Senior|Magistrate|District|Bankruptcy|Circuit|U\.S\.)[ \t]+)*"
    r"(?i:Judges?[ \t]+)?(?P<name>[^\n]+)",
    re.MULTILINE,
)
# A role after the name, set off by a comma: "Carl Roe, Relator", "Ann Poe, Applicant".
TRAILING_ROLE_RE: Final = re.compile(rf",[ \t]*(?P<role>{_ROLE}|(?i:relators?|applicants?))\Z")
STYLE_RE: Final = re.compile(
    r"^[ \t]*Style:[ \t]*\n?[ \t]*(?P<left>[^\n]*[^\s])[ \t]*\n[ \t]*v\.?:?[ \t]*$"
    r"(?P<right>)",
    re.MULTILINE,
)
# Court portals' party tables: "NAME  TYPE  REPRESENTATIVE" rows under such a header.
PARTY_TABLE_HEAD_RE: Final = re.compile(
    r"^[ \t]*Party[ \t]+Party[ \t]?Type[ \t]+Representative", re.MULTILINE | re.IGNORECASE
)
# A criminal case's types carry the kind of case first ("Criminal - Appellant", "Criminal -
# State of Texas"); a bare "State" is the type only where it does not open a party's name
# ("The State of Texas").
PARTY_TABLE_ROW_RE: Final = re.compile(
    r"^[ \t]*(?P<party>[^\n]+?)[ \t]+(?P<type>(?:(?:Criminal|Civil)[ \t]*-[ \t]*)?"
    r"(?:Applicant|Appellant|Appellee|Petitioner|Respondent"
    r"|Relator|Real[ \t]+Party[ \t]+in[ \t]+Interest|State(?![ \t]+of\b)|Plaintiff|Defendant|Movant"
    r"|(?<=-[ \t])State[ \t]+of[ \t]+[A-Z][a-z]+"
    r"|Cross-Appellant|Cross-Appellee)[^\s]*(?:[ \t]+\([^)\n]*\)[^\s]*)*)"
    r"(?:[ \t]+(?P<rep>[^\n]+))?$",
    re.MULTILINE,
)

# Contracts: the preamble names the parties: "by and between X, a ... ("Company"), and Y".
PREAMBLE_WINDOW: Final = 3000
# The preamble starts with the agreement's own first sentence, near the top.
PREAMBLE_START_RE: Final = re.compile(
    r"\b(?:agreement|contract|amendment|lease|license|memorandum)\b[^\n]{0,300}?"
    r"\b(?:between|among|by|entered[ \t\n]+into|made)\b",
    re.IGNORECASE,
)
PREAMBLE_END_RE: Final = re.compile(
    r"\b(?:WHEREAS|W[ \t]?I[ \t]?T[ \t]?N[ \t]?E[ \t]?S[ \t]?S[ \t]?E[ \t]?T[ \t]?H"
    r"|RECITALS|Recitals|BACKGROUND"
    r"|NOW,?[ \t]+THEREFORE|IT[ \t]+IS[ \t]+AGREED|Background)\b"
    r"|^[ \t]*(?:1\.[ \t]|ARTICLE[ \t]+(?:1|I)\b|Article[ \t]+(?:1|I)\b|SECTION[ \t]+1\b)",
    re.MULTILINE,
)
# What makes a defined term a party: the name has a company suffix, or its description
# says what kind of person it is.
ENTITY_NAME_RE: Final = re.compile(
    rf"(?:,?[ \t\n]+(?:(?=[A-Z])(?i:{_ORG_SUFFIX})|{_ORG_SUFFIX_CS}))\.?$"
    r"|\b(?i:plc|gmbh|n\.v\.|s\.a\.)$"
)
ENTITY_DESC_RE: Final = re.compile(
    r"(?i:\b(?:corporation|company|partnership|individual|organi[sz]ed|existing|limited"
    r"[ \t\n]+liability|bank|association|trust|society|entity|national|resident)\b)"
)
CONTEXT_MAX_PARTIES: Final = 8
CONTEXT_MAX_JUDGES: Final = 12
NAME_SUFFIXES: Final = frozenset({"jr", "sr", "ii", "iii", "iv"})
# Words that show a capitalised phrase in a preamble is not a party.
NOT_A_CONTRACT_PARTY: Final = frozenset(
    {"agreement", "effective", "date", "section", "exhibit", "schedule", "article", "party"}
)
_CO_TOK = (
    r"(?:[A-Z][A-Za-z0-9]*\.(?:COM|com|NET|net|ORG|org)\b|[A-Z][A-Za-z]{0,4}\.(?:[A-Za-z]{1,2}\.)*"
    r"|[A-Z][A-Za-z0-9&'’\-]*(?![.\w])|&|[A-Z]\.)"
)
_CO_NAME = rf"{_CO_TOK}(?:,?[ \t]+(?:(?:of|and|the|for|de|y|du|des)[ \t]+)?{_CO_TOK}){{0,9}}"
# The opening of a defined term: ("Company"), (the "Licensee"), (hereinafter "X").
_TERM_OPEN = (
    r"(?:the[ \t\n]+|each[ \t\n]+a[ \t\n]+"
    r"|hereinafter[ \t\n]+(?:(?:referred[ \t\n]+to[ \t\n]+as|called)[ \t\n]+)?(?:the[ \t\n]+)?)?"
    r"[\"“'‘]"
)
CONTRACT_PARTY_RE: Final = re.compile(
    # ("entered into by X, a Delaware corporation": a party named after "by")
    # ("AND" in capitals: the second party's paragraph in a preamble laid out by party)
    rf"(?:\bbetween|\bamong|\band|\bAND|;|\binto[ \t\n]+by|\bmade[ \t\n]+by)[ \t\n]+"
    rf"(?:the[ \t]+)?(?P<name>{_CO_NAME})"
    # (a former name in parentheses may come first: "(formerly known as X, Inc.)")
    r"(?=,?[ \t\n]*(?:\((?i:formerly|f/k/a|previously)[^()\n]{0,80}\),?[ \t\n]*)?"
    rf"(?:\({_TERM_OPEN}|(?:a|an)[ \t\n]+[^\n()]{{0,80}}?"
    r"(?i:corporation|company|partnership"
    r"|association|limited|bank|trust|organi[sz]ed|formed|existing|entity|individual|society"
    r"|institution|LLC|L\.L\.C\.)))",
    re.MULTILINE,
)
# A name with its defined term: "INKTOMI CORPORATION ("Inktomi")", "Acme, Inc., a Delaware
# corporation (the "Company")" (no party of another name in between).
DEFINED_PARTY_RE: Final = re.compile(
    rf"(?<![\w.])(?P<name>{_CO_NAME})"
    r"(?P<desc>,?[ \t\n]+(?:(?!\band[ \t\n]+[A-Z]|;)[^()\n\"“”]){0,160}?)?,?[ \t\n]*"
    rf"\({_TERM_OPEN}+(?P<term>[^\"”'’)]{{1,40}})[\"”'’]+\)"
)

# English drafting: "BETWEEN:" then one numbered paragraph per party, "(1) ACME LIMITED a
# company incorporated ...", "(2) JANE ROE of 1 High Street".
NUMBERED_PARTY_RE: Final = re.compile(
    rf"^[ \t]*\((?:\d{{1,2}}|[a-z]|[ivx]{{1,4}})\)[ \t]+(?:the[ \t]+)?(?P<name>{_CO_NAME})"
    r"(?=,?[ \t]+(?:a|an|of|whose|incorporated|having|acting|being)\b|[ \t]*[,(;]|[ \t]*$)",
    re.MULTILINE,
)
# ... or each party under its own heading: "BETWEEN:" then "ACME CORP., a corporation ...",
# "AND:" then the next.
HEADED_PARTY_RE: Final = re.compile(
    r"^[ \t]*(?:BETWEEN|AND|Between|And)[ \t]*:[ \t]*\n\s*(?:the[ \t]+)?"
    rf"(?P<name>{_CO_NAME})"
    r"(?=,?[ \t]+(?:a|an|of|whose|incorporated|having)\b|[ \t]*[,(;]|[ \t]*$)",
    re.MULTILINE,
)
LIST_AND_RE: Final = re.compile(r"^.*[,;][ \t\n]+and[ \t\n]+", re.DOTALL)
NUMBERED_PARTIES_HEAD_RE: Final = re.compile(
    r"^[ \t]*(?:BETWEEN|PARTIES|Parties)[ \t]*:?[ \t]*$", re.M
)

# --- document context ---------------------------------------------------------------

CONTEXT_HEAD_CHARS: Final = 20000  # headers, senders and PACER links come first

# A docket number alone on its line: "W2024-00749-COA-R3-CV" (two separators at least).
LONE_DOCKET_RE: Final = re.compile(
    r"^[ \t]*(?P<num>(?:[A-Z]{2,4}/)?[A-Za-z0-9]{1,8}(?:[:\-][A-Za-z0-9]{1,8}){2,5})[ \t]*$",
    re.MULTILINE,
)
# A listing's row: a short docket number ("2018-166", "22-AP-056", "S275431") alone on its
# line, the case's caption ("State v. Roe", "In re Doe") on the next.
CAPTIONED_NUMBER_RE: Final = re.compile(
    r"^[ \t]*(?P<num>(?:[A-Z]{1,3}-?)?\d{2,4}-(?:[A-Z]{1,3}-)?\d{2,6}|[A-Z]\d{6,9})[ \t]*\n"
    r"[ \t]*(?P<caption>[^\n]{3,200})",
    re.MULTILINE,
)
NOT_A_DOCKET_RE: Final = re.compile(
    r"\d{3}-\d{3}-\d{4}|\d{4}-\d{2}-\d{2}|(?:19|20)\d\d-(?:19|20)?\d\d"
    r"|\d{4}-(?:[A-Z][a-z]{2,}|NM[A-Z]{2,4})-\d+"
)
# A listing table whose header names a docket column ("Date  Docket  Name  J.").
DOCKET_TABLE_HEAD_RE: Final = re.compile(
    r"^(?=[^\n]*\b(?:Docket(?![ \t]+(?:Text|Entr))|Case[ \t]+(?:Number|No\.?|Info)"
    r"|Court[ \t]+No\.?)(?![^\n]*:))"
    r"(?=[^\n]*\b(?:Date|Name|Caption|Title|Subject|Judge|Opinion)s?\b)[^\n]{0,200}$",
    re.MULTILINE,
)
# Such a header whose first column is the listing's own row number, not the docket.
ROW_NUMBER_HEAD_RE: Final = re.compile(
    r"[ \t]*(?:Number|No\.|\#|(?:Slip[ \t]+)?(?:Opinion|Op\.)[ \t]+(?:Number|No\.?))[ \t]"
    r"(?![ \t]*(?:Docket|Case|Court[ \t]+No))"
)
ROW_CAPTION_CHARS: Final = 300
# Such a header with the judge column right after the docket column, and that cell.
DOCKET_THEN_JUDGE_RE: Final = re.compile(
    r"\b(?:Docket(?:[ \t]+No\.?)?|Case[ \t]+(?:Number|No\.?)|Court[ \t]+No\.?)[ \t]+Judge\b"
)
# Such a header with the author's initials right after the case name ("Docket Name J.").
NAME_THEN_INITIALS_RE: Final = re.compile(r"\b(?:Name|Caption|Title)[ \t]+J\.?(?=[ \t]|$)")
INITIALS_CELL_RE: Final = re.compile(r"[ \t]+[A-Z]{1,3}\Z")
JUDGE_CELL_RE: Final = re.compile(
    r"\s+(?P<name>[A-Z][a-z'’\-]+[a-z](?:[ \t]+[A-Z][a-z'’\-]+[a-z])?)(?=[ \t\n]|$)"
)
# A docket-shaped cell of such a table: "21-476", "102,405-3", "12-00099", "20220245".
TABLE_DOCKET_RE: Final = re.compile(
    r"(?<![\w/.,:$\-])(?P<num>(?:[A-Z]{1,3})?\d{2,4}(?:,\d{3})?(?:-\d{1,6}){1,3}(?:-[A-Z]{1,4}\d?)*"
    r"|\d{7,9})(?![\w/.,:\-])"
)
# "the Court", "this Court": the document's own court where the context knows it.
BARE_COURT_RE: Final = re.compile(r"\b(?:the|this|This|The)[ \t]+Court\b(?![ \t]+of\b)")
# Ids courts-db gives names that do not say which court ("United States District Court").
GENERIC_COURTS: Final = frozenset({"usdistct"})

# A recipient line of a notice's e-mail list: "Maria T. Lopez mlopez@example.org, ...".
RECIPIENT_LINE_RE: Final = re.compile(
    r"^(?P<line>[A-Z][^\n@:]{2,80}?)[ \t]+[\w.+#-]+@[\w-]+(?:\.[\w-]+)+"
    r"(?:[ \t]*,[ \t]*[\w.+#-]+@[\w-]+(?:\.[\w-]+)+)*[ \t]*$",
    re.MULTILINE,
)
# CM/ECF appellate party tables: the party's line, then "Role  COUNSEL" on the next.
APPELLATE_PARTY_RE: Final = re.compile(
    r"^[ \t]*(?P<party>[^\n]*[^\s])[ \t]*\n[ \t]*(?P<role>(?:Plaintiff|Defendant|Petitioner"
    r"|Respondent|Appellant|Appellee|Debtor|Creditor|Movant|Intervenor|Interested[ \t]+Party"
    r"|Amicus[ \t]+Curiae|Cross-Appellant|Cross-Appellee)s?(?:[ \t]*-[ \t]*[A-Z][a-z]+)?)"
    r"[ \t]+(?P<counsel>[^\n]+)$",
    re.MULTILINE,
)
# Docket text: "filed by Attorney Richard A. Roe", "appearance of Attorney Jo Poe".
BY_ATTORNEY_RE: Final = re.compile(
    r"\b(?:by|of|for)[ \t]+Attorney[ \t]+(?=[A-Z])(?P<name>[^\n]{3,60})"
)

# --- roles: which field a date, docket number or judge is (accelerated/entities/roles.py) --

# The vocabulary. A mention gets a role only where a label, a column or the document's
# layout says which field it is; a date or number inside running prose or inside a
# docket entry's text gets none.
DATE_ROLES: Final = frozenset(
    {
        "filed",  # "Date Filed:", "Docketed:", "Filed", an EDGAR exhibit's "Source:" line
        "entered",  # a docket entry's date: its row's date cell, "(Entered: ...)"
        "terminated",  # "Date Terminated:", "Termed:", "Date Closed:", "Date Disposed:"
        "decided",  # "Decided", "Decision Date:", "Date Order/Judgment:", a listing row's date
        "argued",  # "Argued", "Submitted", "Heard"
        "received",  # "Date Rec'd COA:", "Received:"
        "effective",  # "effective as of", "Effective Date:"
        "agreement",  # a contract's own "dated as of", "made and entered into as of"
        "executed",  # a signature block's "Dated:" / "Date:"
    }
)
DOCKET_ROLES: Final = frozenset({"own", "related", "lower_court"})
JUDGE_ROLES: Final = frozenset({"assigned", "referred", "presiding", "trial", "author", "panel"})

# A date field's label, right before the date on its line ("Date Filed: 11/10/2008",
# "Docketed: 01/27/2010", "Decided May 19, 1980.", "Argued April 24, 2007"), or alone on
# the line above (a portal's "Date Filed:" over "06/11/2025").
_DATE_LABELS: Final = (
    (
        "terminated",
        r"Date[ \t]+(?:Terminated|Closed|Disposed|Dismissed)|Termed|Terminated"
        r"|Closed|Disposed|Date[ \t]+of[ \t]+(?:Termination|Disposition)",
    ),
    ("received", r"Date[ \t]+Rec(?:eive)?'?d(?:[ \t]+[A-Z]{2,4})?|Received|Date[ \t]+Received"),
    ("entered", r"Date[ \t]+Order/Judgment[ \t]+EOD|Date[ \t]+Entered|Entered"),
    (
        "decided",
        r"Date[ \t]+Order/Judgment|Date[ \t]+of[ \t]+(?:Decision|Judgment|Opinion)"
        r"|Decision[ \t]+Date|Judgment[ \t]+Date|Opinion[ \t]+Date|Date[ \t]+Decided|Decided"
        r"|Rehearing[ \t]+Denied|Opinion[ \t]+(?:Filed|Issued)|Promulgated",
    ),
    ("argued", r"Argued(?:[ \t]+and[ \t]+Submitted)?|Submitted|Heard|Date[ \t]+Argued"),
    (
        "filed",
        r"Date[ \t]+(?:NOA[ \t]+)?Filed|Filing[ \t]+Date|Date[ \t]+Docketed|Docketed"
        r"|Filed(?:[ \t]+on)?",
    ),
    # (a bare "Effective" or "Dated" only as a field, with its ":"; "Effective January 1,
    # 2005, after which ..." opens a sentence)
    ("effective", r"Effective[ \t]+Date|Effective(?=[ \t]*:)"),
    ("agreement", r"Dated[ \t]+as[ \t]+of"),  # a contract's cover: "Dated as of ..."
    ("executed", r"Dated(?=[ \t]*:)|Date[ \t]+Signed|Signed(?=[ \t]*:)|Execution[ \t]+Date"),
)
DATE_LABEL_ROLE: Final = {role: re.compile(rf"(?i:{label})") for role, label in _DATE_LABELS}
_ANY_DATE_LABEL = "|".join(f"(?P<{role}>{label})" for role, label in _DATE_LABELS)
# ... directly before the date (its ":" and an "on" may come between); case as written,
# so a capitalised field label ("Filed", "Decided") but not a verb of a sentence ("was
# filed"); a lower-case label only opening its line or after a ";" ("Submitted ...;
# decided October 16, 1924").
DATE_LABEL_BEFORE_RE: Final = re.compile(
    rf"(?:^|(?<=[\s;,(\[]))(?:{_ANY_DATE_LABEL})[ \t]*:?[ \t]*(?:(?i:on|as[ \t]+of)[ \t]+)?\Z"
)
DATE_LABEL_LOWER_RE: Final = re.compile(
    r"(?:^|;)[ \t]*(?P<label>decided|argued|submitted|filed|entered|docketed|heard)"
    r"[ \t]*:?[ \t]*\Z"
)
# A label alone on the line above the date (its value on the next line).
DATE_LABEL_LINE_RE: Final = re.compile(rf"^[ \t]*(?:{_ANY_DATE_LABEL})[ \t]*:[ \t]*$")
# A row of labels ("Date Order/Judgment: Date Order/Judgment EOD: Date NOA Filed: Date
# Rec'd COA:", "Docketed: Lower Ct: Court of Appeals of ...") over a row of their values:
# the n-th date of the values row is the n-th label's.
LABEL_ROW_ITEM_RE: Final = re.compile(r"(?:^|(?<=[ \t]))(?P<label>[A-Z][\w'/. ]{1,40}?):")
# CM/ECF's party tables close an attorney's or a party's block with "TERMINATED: date": the
# date that person left the case, not a date of the case.
PARTY_TERMINATED_BEFORE_RE: Final = re.compile(r"\bTERMINATED:[ \t]*\Z")
ENTERED_STAMP_BEFORE_RE: Final = re.compile(r"[(\[](?i:entered|filed)(?:[ \t]+on)?:?[ \t]*\Z")
# A notice of electronic filing: "The following transaction was entered on 7/8/2021 at
# 12:49 PM CDT and filed on 7/8/2021", "... was received from Roe, Ann entered on ...".
NEF_DATE_BEFORE_RE: Final = re.compile(
    r"\btransaction\s+was\s+(?:(?:entered|filed)(?:\s+by\s+[^\n]{1,60}?)?"
    r"|(?:entered|filed|received)\b(?s:.{0,200}?)\b(?:entered|filed)(?:\s+by\s+[^\n]{1,60}?)?)"
    r"\s+on\s*\Z"
)
NEF_WINDOW_CHARS: Final = 300
# An EDGAR exhibit's page footer: "Source: ACME CORP, 10-K, 3/30/2016" (the filing's date).
EDGAR_SOURCE_BEFORE_RE: Final = re.compile(r"^[ \t]*Source:[^\n]{2,120},[ \t]*\Z", re.MULTILINE)
# A contract's own date in its opening sentence: "THIS AGREEMENT, dated as of ...", "This
# Agreement is made and entered into as of ...", "... is effective as from the 1st day of".
AGREEMENT_VERB_BEFORE_RE: Final = re.compile(
    r"\b(?P<verb>dated|made|entered[ \t\n]+into|executed|concluded|signed|effective"
    r"|begins?|commences?|starts?)"
    r"(?:[ \t\n]+(?:and[ \t\n]+)?(?:entered[ \t\n]+into|executed|made|effective))*"
    r"(?:[ \t\n]+(?:as[ \t\n]+(?:of|from)|from|on|this|the|day|of|at|for[ \t\n]+reference))*"
    r"[ \t\n,]*\Z",
    re.IGNORECASE,
)
# ... the sentence is the agreement's own: it names "this", "The present" (Agreement) or
# the title in capitals ("SERVICES AGREEMENT, dated as of"), a document word follows, and
# between the last document word and the verb only its defined term and verbs ("This
# Agreement shall be governed by the Convention ... dated" dates the Convention).
OWN_AGREEMENT_RE: Final = re.compile(
    r"\b(?:This|THIS|this|The[ \t\n]+present|the[ \t\n]+present)\b"
    r"|\b[A-Z][A-Z&\-]+(?:[ \t]+[A-Z&\-]+)*[ \t]+(?=(?:AGREEMENT|CONTRACT|LEASE|AMENDMENT"
    r"|LICENSE|MEMORANDUM|PLAN|INDENTURE|DEED)\b)"
)
AGREEMENT_WORD_RE: Final = re.compile(
    r"\b(?i:agreement|contract|lease|amendment|license|memorandum|plan|indenture|deed)\b"
)
# "The term of this Agreement will begin on <date>": the term's start is the effective date.
TERM_START_VERBS: Final = frozenset({"begin", "begins", "commence", "commences", "start", "starts"})
TERM_WORD_RE: Final = re.compile(r"\b(?i:term)\b")
# '"Effective Date" means October 31, 2019': the definition of the effective date.
EFFECTIVE_DEFINED_BEFORE_RE: Final = re.compile(
    r"[\"“]Effective[ \t\n]+Date[\"”][ \t\n]+(?:means|shall[ \t\n]+mean|is)[ \t\n]+"
    r"(?:the[ \t\n]+)?\Z"
)
EFFECTIVE_TERM_AFTER_RE: Final = re.compile(
    r"[ \t\n]*,?[ \t\n]*\((?:the|this)?[ \t\n]*[\"“']+(?i:effective[ \t\n]+date)"
)
SENTENCE_CHARS: Final = 400
AGREEMENT_GAP_CHARS: Final = 80
# A date in a listing row after a label of its own ("Public version posted 08/04/2014",
# "Errata: 02/21/2014"): a note's date, not the row's date cell.
LABELLED_CELL_BEFORE_RE: Final = re.compile(r"(?:\b[a-z]{2,}|:)[ \t]*\Z")
# An opinion's caption block: the court's line, then the decision date alone on its line
# ("Court of Appeals of Texas, Waco." / "May 26, 2004.").
COURT_LINE_RE: Final = re.compile(r"\b(?:Court|COURT|Division|Circuit|Tribunal)\b[^\n]*\.?[ \t]*$")
DATE_ALONE_AFTER_RE: Final = re.compile(r"[ \t]*\.?[ \t]*$")
# A docket-entry table's header ("Date Filed # Docket Text", "Date Proceedings and Orders",
# "Date Event Type Description Document") and a calendar's ("Set Date Calendar Type").
ENTRY_TABLE_HEAD_RE: Final = re.compile(
    r"^[ \t~]*(?:Date[ \t]+Filed|Filing[ \t]+Date|Date)[ \t~]+(?:#[ \t]+)?"
    r"(?:Docket[ \t]+Text|Proceedings|Event|Description|Entry|Document)",
    re.MULTILINE,
)
CALENDAR_HEAD_RE: Final = re.compile(
    r"^[ \t]*(?:Set[ \t]+Date|Hearing[ \t]+Date|Calendar)\b[^\n]*$", re.MULTILINE
)
ENTRY_STAMP_RE: Final = re.compile(r"[(\[]Entered:[ \t]*\d")
ENTRY_STAMPS_MIN: Final = 2
# Labels that make a docket number another case's: an MDL's member and related cases,
# the cases a docket is consolidated or linked with, prior appeals, a bankruptcy's
# adversary case, a criminal case's magistrate number.
RELATED_DOCKET_LABEL_RE: Final = re.compile(
    r"(?i:\b(?:related|relate[ \t]+case|member|lead|consolidated|linked|associated|prior"
    r"|current|companion|adversary|other|transfer)[ \t]+(?:cases?|with|proceedings?)?\b"
    r"|^[ \t]*cases:"
    r"|\bmagistrate[ \t]+judge[ \t]+case[ \t]+number)",
    re.MULTILINE,
)
# ... another court's (the lower court of an appeal, the state court of a removed case).
LOWER_DOCKET_LABEL_RE: Final = re.compile(
    r"(?i:\blower[ \t]+c(?:our)?t\b|\btrial[ \t]+court\b|\boriginating\b|^[ \t]*district:"
    r"|\bcase[ \t]+in[ \t]+other[ \t]+court|\bappeal(?:ed)?[ \t]+from\b"
    r"|\b(?:removal|removed)\b[^\n.]{0,120}?\bcase[ \t]+(?:number|no\.?)[ \t]*\Z)",
    re.MULTILINE,
)
# The document's own case number: a field label with its ":" or "#" ("Case Number:",
# "Docket #:", "CASE #:", "Case:"), a caption's "No." opening its line, a notice's
# "Activity in Case", a Supreme Court docket's "Docket for".
OWN_DOCKET_LABEL_RE: Final = re.compile(
    r"(?:(?i:\b(?:case|docket|appeal|cause|file)(?:[ \t]+(?:numbers?|nos?\.?))?[ \t]*#?[ \t]*:"
    r"|\b(?:case|docket)[ \t]*#)"
    r"|\bActivity[ \t]+in[ \t]+Case|\bDocket[ \t]+for"
    r"|\bnotifications?[ \t]+(?:for|on|in)[ \t]+(?:Case[ \t]+)?No\."
    r"|^[ \t]*(?:(?:Docket|Case|Cause|Appeal|Bankruptcy|Civil|Criminal)[ \t]+)?Nos?\.)"
    r"[ \t]*\(?[ \t]*\Z",
    re.MULTILINE,
)
# ... alone on the line above the number: another court's ("Court Case" under a portal's
# trial-court block, an appeal's "COA Case").
LOWER_DOCKET_LABEL_LINE_RE: Final = re.compile(
    r"^[ \t]*(?:(?:Trial|Lower)[ \t]+)?(?:Court|COA)[ \t]+Case(?:[ \t]+(?:Number|No\.?))?"
    r"[ \t]*:?[ \t]*$"
)
OWN_DOCKET_LABEL_LINE_RE: Final = re.compile(
    r"^[ \t]*(?i:(?:case|docket|appeal|cause)(?:[ \t]+(?:numbers?|nos?\.?|#))?)[ \t]*:?[ \t]*$"
)
# A row opening with a docket number ("09-1066 Date Filed: ...").
ROW_DOCKET_RE: Final = re.compile(rf"[ \t]*(?:{_DNUM})[ \t]")
# A line holding only docket numbers (a list's continuation under its label).
DOCKET_LIST_LINE_RE: Final = re.compile(
    rf"^[ \t]*(?:\(?{_DNUM}\)?(?:[ \t]*\([A-Z]{{1,4}}\))?[ \t,;]*)+$"
)
DOCKET_LIST_MAX_LINES: Final = 40
CONTEXT_MAX_DOCKETS: Final = 8
# A document's own case number is in its header fields, which come first (a docket
# sheet's "CASE #:", a notice's "Case Number:" lines, a portal's "Case:").
CONTEXT_DOCKET_CHARS: Final = 6000
# A judge field's label before the name (on its line, or alone on the line above).
_JUDGE_LABELS: Final = (
    ("referred", r"Referred[ \t]+to"),
    ("assigned", r"Assigned[ \t]+to|Case[ \t]+Judge"),
    ("presiding", r"Presiding[ \t]+Judge|Presiding"),
    (
        "trial",
        r"Trial[ \t]+(?:Court[ \t]+)?Judge|Ordering[ \t]+Judge|Court[ \t]+Judge"
        r"|Lower[ \t]+Court[ \t]+Judge",
    ),
    ("author", r"Authoring[ \t]+Judge|Author|Opinion[ \t]+by|Written[ \t]+by"),
    ("panel", r"Before|Panel|Present"),
)
_ANY_JUDGE_LABEL = "|".join(f"(?P<{role}>{label})" for role, label in _JUDGE_LABELS)
JUDGE_LABEL_BEFORE_RE: Final = re.compile(
    rf"^[ \t]*(?:{_ANY_JUDGE_LABEL})[ \t]*:?[ \t]*\n?[ \t]*"
    r"(?i:(?:Hon(?:orable|\.)?|Chief|Senior|Presiding|Magistrate|District|Bankruptcy|Circuit"
    r"|Special|U\.S\.|Associate)[ \t]+)*(?i:Judges?|Justices?|Chancellor)?[ \t]*\Z",
    re.MULTILINE,
)
# "Thomas, J., delivered the opinion of the Court", "Opinion by Justice Roe".
AUTHOR_AFTER_RE: Final = re.compile(
    r"[ \t,]*(?:(?:C\.[ \t]?J\.|P\.[ \t]?J\.|JJ?\.),?)?[ \t]+(?:delivered|wrote|filed)[ \t]+"
    r"the[ \t]+opinion"
)
