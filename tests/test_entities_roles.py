"""Field roles of dates, docket numbers and judges (accelerated/entities/roles.py).

One test per layout, each on text written for the test (not from the corpus): a label
before the value, a label row over a value row, a docket-entry table's date column, a
contract's opening sentence, an opinion's caption, a related-cases list, a listing's row.
Every test also checks that a date, number or judge the same text names elsewhere (in
an entry's text, in prose) gets no role: roles say which field a mention is, and a
mention of no field stays a mention.
"""

from __future__ import annotations

import uuid

import pytest

from accelerated.entities import RawMention
from accelerated.entities import patterns as P
from accelerated.entities.roles import docket_core
from accelerated.entities.rules import DocContext, RulesBackend
from accelerated.models import Chunk, Chunked
from accelerated.stages.entities import assemble


@pytest.fixture(scope="module")
def backend() -> RulesBackend:
    return RulesBackend()


def mentions(backend: RulesBackend, text: str) -> list[RawMention]:
    """The backend's mentions of the text, its document context computed as the stage does."""
    return backend.extract_in_context([text], backend.document_context(text))[0]


def roles(backend: RulesBackend, text: str, etype: str) -> dict[str, str | None]:
    """Surface -> role of each mention of one type (the last one of a surface wins, so
    tests name surfaces that occur once)."""
    return {text[m.start : m.end]: m.role for m in mentions(backend, text) if m.type == etype}


# --- dates --------------------------------------------------------------------------


def test_docket_header_fields_and_entry_dates(backend: RulesBackend) -> None:
    text = (
        "CIVIL DOCKET FOR CASE #: 2:31-cv-00418-QRS\n\nOtter v. Heron Freight LLC\n"
        "Assigned to: Judge Marisol P. Vantongeren\n"
        "Referred to: Magistrate Judge Idris K. Bello\n"
        "Date Filed: 03/14/2031\nDate Terminated: 09/30/2032\n\n"
        "Plaintiff\nPia Otter represented by Lars Quist\nTERMINATED: 05/05/2032\n\n"
        "Date Filed # Docket Text\n"
        "03/16/2031 1 COMPLAINT against Heron Freight LLC. Answer due 4/4/2031. "
        "(Entered: 03/17/2031)\n"
        "06/02/2031 2 ORDER setting a hearing for July 9, 2031 before Judge Idris K. Bello. "
        "Signed by Judge Tomas Ebner on 6/1/2031. (Entered: 06/02/2031)\n"
    )
    dates = roles(backend, text, "DATE")
    assert dates["03/14/2031"] == "filed"  # the header field
    assert dates["09/30/2032"] == "terminated"
    assert dates["03/16/2031"] == "entered"  # a row's date cell
    assert dates["03/17/2031"] == "entered"  # the "(Entered: ...)" stamp
    assert dates["06/02/2031"] == "entered"
    assert dates["05/05/2032"] is None  # an attorney's "TERMINATED:", not the case's
    assert dates["4/4/2031"] is None  # dates inside an entry's text
    assert dates["July 9, 2031"] is None
    assert dates["6/1/2031"] is None
    judges = roles(backend, text, "JUDGE")
    assert judges["Marisol P. Vantongeren"] == "assigned"
    assert judges["Tomas Ebner"] is None  # named in an entry's text
    bello = {
        m.role
        for m in mentions(backend, text)
        if m.type == "JUDGE" and text[m.start : m.end] == "Idris K. Bello"
    }
    assert bello == {"referred", None}  # the field, and the same judge in an entry's text


def test_label_row_over_value_row(backend: RulesBackend) -> None:
    text = (
        "Originating Court Information:\n"
        "Date Order/Judgment: Date Order/Judgment EOD: Date NOA Filed: Date Rec'd COA:\n"
        "02/03/2031 02/04/2031 02/20/2031 02/21/2031\n"
    )
    dates = roles(backend, text, "DATE")
    assert dates == {
        "02/03/2031": "decided",
        "02/04/2031": "entered",
        "02/20/2031": "filed",
        "02/21/2031": "received",
    }


def test_label_alone_on_the_line_above(backend: RulesBackend) -> None:
    text = "Case:\n07-31-00123-CV\nDate Filed:\n01/22/2031\nCase Type:\nContract\n"
    assert roles(backend, text, "DATE") == {"01/22/2031": "filed"}
    assert roles(backend, text, "DOCKET_NUMBER") == {"07-31-00123-CV": "own"}


def test_opinion_caption_dates(backend: RulesBackend) -> None:
    text = (
        "No. 31-0456.\n\nArgued March 3, 2031\n\nDecided May 19, 2031\n\n"
        "The petition was filed on January 8, 2030, and denied."
    )
    dates = roles(backend, text, "DATE")
    assert dates["March 3, 2031"] == "argued"
    assert dates["May 19, 2031"] == "decided"
    assert dates["January 8, 2030"] is None  # prose
    caption = (
        "Roe v. Doe\n\nCourt of Appeals of Examplia, Northville.\n\nJune 2, 2031.\n\nRoe sued."
    )
    assert roles(backend, caption, "DATE") == {"June 2, 2031": "decided"}


def test_submitted_then_lower_case_decided(backend: RulesBackend) -> None:
    text = "Docket No. 77.\n\nSubmitted April 2, 2031;\n\ndecided June 30, 2031.\n"
    assert roles(backend, text, "DATE") == {"April 2, 2031": "argued", "June 30, 2031": "decided"}


def test_notice_of_electronic_filing(backend: RulesBackend) -> None:
    text = (
        "Notice of Electronic Filing\nThe following transaction was received from Roe, Ann "
        "entered on 4/5/2031 at 9:12 AM EDT and filed\non 4/4/2031\n"
        "Case Name: Birch v. Alder\nCase Number: 5:31-cv-00077-ABC\n"
        "Docket Text:\nORDER: responses due by 5/1/2031.\n"
    )
    dates = roles(backend, text, "DATE")
    assert dates == {"4/5/2031": "entered", "4/4/2031": "entered", "5/1/2031": None}


def test_contract_preamble_dates(backend: RulesBackend) -> None:
    text = (
        'THIS SUPPLY AGREEMENT (this "Agreement"), dated as of March 1, 2031 (the '
        '"Effective Date"), is entered into by and between Quillon Corp., a Delaware '
        'corporation ("Quillon"), and Brask Ltd. ("Brask").\n\n'
        "1. Term. The term of this Agreement shall begin on April 1, 2031.\n\n"
        "2. This Agreement is governed by the Convention on the Sale of Goods dated "
        "April 11, 1980.\n\n"
        "3. Brask shall deliver the first lot by May 15, 2031 under the Master Agreement "
        "dated June 1, 2029.\n\n"
        "Dated: March 2, 2031\n"
        "Source: QUILLON CORP, 10-K, 2/28/2032\n"
    )
    dates = roles(backend, text, "DATE")
    assert dates["March 1, 2031"] == "effective"  # its defined term says so
    assert dates["April 1, 2031"] == "effective"  # the term's start
    assert dates["April 11, 1980"] is None  # another instrument's date
    assert dates["May 15, 2031"] is None
    assert dates["June 1, 2029"] is None  # another agreement's
    assert dates["March 2, 2031"] == "executed"
    assert dates["2/28/2032"] == "filed"  # the EDGAR filing's footer
    made = "This Services Agreement is made and entered into as of July 4, 2031 by Acme."
    assert roles(backend, made, "DATE") == {"July 4, 2031": "agreement"}


def test_effective_opening_a_sentence_is_prose(backend: RulesBackend) -> None:
    text = "Prices are fixed. Effective January 1, 2032, the prices rise by 2%."
    assert roles(backend, text, "DATE") == {"January 1, 2032": None}


def test_calendar_table_dates_are_not_entries(backend: RulesBackend) -> None:
    text = (
        "Case Events\nDate Event Type Disposition\n03/03/2031 Notice of appeal filed\n\n"
        "Calendars\nSet Date Calendar Type Reason Set\n09/09/2031 Status Mandate\n"
    )
    assert roles(backend, text, "DATE") == {"03/03/2031": "entered", "09/09/2031": None}


def test_prior_cases_rows_are_another_case(backend: RulesBackend) -> None:
    text = (
        "Court of Appeals Docket #: 31-1200 Docketed: 02/02/2031\n\nPrior Cases:\n"
        "29-0811 Date Filed: 03/03/2029 Date Disposed: 08/08/2029\n"
    )
    dates = roles(backend, text, "DATE")
    assert dates == {"02/02/2031": "filed", "03/03/2029": None, "08/08/2029": None}


# --- docket numbers -----------------------------------------------------------------


def test_own_related_and_lower_court_numbers(backend: RulesBackend) -> None:
    text = (
        "CIVIL DOCKET FOR CASE #: 1:31-cv-02040-XYZ\n\nIn re Example Litigation\n"
        "Assigned to: Judge Marisol P. Vantongeren\n"
        "Related Cases: 1:30-cv-01111-XYZ\n1:30-cv-01222-XYZ\n\n"
        "Date Filed # Docket Text\n"
        "02/02/2031 1 NOTICE OF REMOVAL from Circuit Court of Pell County, case number "
        "CV-2031-90210. (Entered: 02/02/2031)\n"
        "02/03/2031 2 ORDER consolidating with 1:30-cv-01111-XYZ. (Entered: 02/03/2031)\n"
        "Docket Report Search Criteria: 1:31-cv-02040-XYZ\n"
    )
    numbers = [
        (text[m.start : m.end], m.role)
        for m in mentions(backend, text)
        if m.type == "DOCKET_NUMBER"
    ]
    assert ("1:31-cv-02040-XYZ", "own") in numbers
    assert numbers.count(("1:31-cv-02040-XYZ", "own")) == 2  # the context knows it
    assert ("1:30-cv-01222-XYZ", "related") in numbers  # the list under its label
    assert ("CV-2031-90210", "lower_court") in numbers
    # a number in an entry's text gets no role (it is the related case, but unlabelled)
    assert ("1:30-cv-01111-XYZ", None) in numbers


def test_context_records_own_numbers(backend: RulesBackend) -> None:
    text = "Case Number: 4:31-cv-00900-JKL\nRelated Cases: 4:30-cv-00100-JKL\n"
    doc = DocContext.decode(backend.document_context(text))
    assert doc.dockets == (docket_core("4:31-cv-00900"),)
    assert docket_core("4:31-cv-00900-JKL-1") == docket_core("4:31-cv-900")


def test_notice_subject_and_label_row_with_a_value(backend: RulesBackend) -> None:
    text = (
        "Subject: Activity in Case 3:31-cv-00042-MNO Birch v. Alder\n\n"
        "Docketed: Lower Ct: Court of Appeals of Examplia\nMay 8, 2031 (X31A0099)\n"
    )
    assert roles(backend, text, "DOCKET_NUMBER") == {"3:31-cv-00042-MNO": "own"}
    # the first label of the row above is the first value's
    assert roles(backend, text, "DATE") == {"May 8, 2031": "filed"}


def test_listing_rows_are_their_own(backend: RulesBackend) -> None:
    text = (
        "Opinion Number Date Court No. Judge\n"
        "31-12 Aster Mills v. United States 07/30/2031 29-00123 Halvorsen\n"
        "31-11 Birch Co. v. United States\nPublic version posted 08/04/2031. 07/28/2031 "
        "29-00456 Ostrander\n"
    )
    numbers = roles(backend, text, "DOCKET_NUMBER")
    assert numbers["29-00123"] == "own"
    assert numbers["29-00456"] == "own"
    dates = roles(backend, text, "DATE")
    assert dates["07/30/2031"] == "decided"
    assert dates["08/04/2031"] is None  # a note's date in the row
    judges = roles(backend, text, "JUDGE")
    assert judges["Halvorsen"] == "author"


# --- judges -------------------------------------------------------------------------


def test_judge_labels(backend: RulesBackend) -> None:
    text = (
        "Roe v. Poe\nW2031-00123-COA-R3-CV\n"
        "Authoring Judge: Presiding Judge Anneliese Quarrington\n"
        "Trial Court Judge: Judge Bertil Okonkwo\n\n"
        "The trial court, before Judge Carmen Ylvisaker, dismissed the claim.\n"
    )
    judges = roles(backend, text, "JUDGE")
    assert judges["Anneliese Quarrington"] == "author"
    assert judges["Bertil Okonkwo"] == "trial"
    assert judges["Carmen Ylvisaker"] is None
    assert roles(backend, text, "DOCKET_NUMBER") == {"W2031-00123-COA-R3-CV": "own"}


def test_panel_and_opinion_author(backend: RulesBackend) -> None:
    text = (
        "Before: Aldana, Brisco and Cheung, Circuit Judges.\n\n"
        "Brisco, J., delivered the opinion of the court.\n"
    )
    judges = [(text[m.start : m.end], m.role) for m in mentions(backend, text) if m.type == "JUDGE"]
    assert judges == [
        ("Aldana", "panel"),
        ("Brisco", "panel"),
        ("Cheung", "panel"),
        ("Brisco", "author"),  # "X, J., delivered the opinion"
    ]


# --- vocabulary and pipeline ----------------------------------------------------------


def test_roles_stay_in_the_documented_vocabulary(backend: RulesBackend) -> None:
    text = (
        "CIVIL DOCKET FOR CASE #: 2:31-cv-00418-QRS\nAssigned to: Judge Marisol P. Vantongeren\n"
        "Date Filed: 03/14/2031\nDate Filed # Docket Text\n03/14/2031 1 COMPLAINT.\n"
        'THIS AGREEMENT, dated as of March 1, 2031, is made by Quillon Corp. ("Q").\n'
    )
    vocab = {
        "DATE": P.DATE_ROLES,
        "DOCKET_NUMBER": P.DOCKET_ROLES,
        "JUDGE": P.JUDGE_ROLES,
    }
    for m in mentions(backend, text):
        if m.type in vocab and m.role is not None:
            assert m.role in vocab[m.type], m


def test_roles_reach_the_stage_mentions(backend: RulesBackend) -> None:
    """The entities stage's assembly keeps each mention's role, whatever its type."""
    text = "Case Number: 4:31-cv-00900-JKL\nDate Filed: 01/02/2031\n"
    doc_id = uuid.UUID(int=7)
    chunk = Chunk(
        id=uuid.UUID(int=8),
        document_id=doc_id,
        index=0,
        text=text,
        start=0,
        end=len(text),
        page_start=1,
        page_end=1,
    )
    found = backend.extract_in_context([text], backend.document_context(text))
    out = assemble(Chunked(document_id=doc_id, chunks=[chunk]), found)
    by_type = {m.type: m.role for m in out if m.type in ("DATE", "DOCKET_NUMBER")}
    assert by_type == {"DOCKET_NUMBER": "own", "DATE": "filed"}
