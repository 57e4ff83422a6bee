"""One test per rules pattern, on text written for the test (not copied from the corpus).

Each shows a layout of legal documents that recurs across courts; the quality benchmark
(``python -m benchmarks.quality``) measures the same rules against the corpus truth.
"""

from __future__ import annotations

import uuid

import msgspec
import pytest

from accelerated.entities import ContextualBackend, RawMention
from accelerated.entities.rules import DocContext, RulesBackend
from accelerated.models import Chunk, Chunked
from accelerated.stages import entities as entities_stage
from benchmarks.quality_match import key_of, matches


@pytest.fixture(scope="module")
def backend() -> RulesBackend:
    return RulesBackend()


def found(backend: RulesBackend, text: str, etype: str, context: str = "") -> dict[str, str]:
    """surface text -> normalized, for one type."""
    out = backend.extract_in_context([text], context)[0] if context else backend.extract([text])[0]
    for m in out:
        assert text[m.start : m.end], m
    return {text[m.start : m.end]: m.normalized for m in out if m.type == etype}


def roles(backend: RulesBackend, text: str) -> dict[str, str | None]:
    return {text[m.start : m.end]: m.role for m in backend.extract([text])[0] if m.type == "PARTY"}


# --- docket numbers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("Docket #: 31-442-cv\n", "31-442-cv"),
        ("Case Number: 19-77231\n", "19-77231"),
        ("Case: 27-0133\nDate Filed: 01/02/2027", "27-0133"),
        ("COA Case 03-19-00871-CR was dismissed.", "03-19-00871-CR"),
        ("Case Nos.: (11-70512)", "11-70512"),
        ("Case Number:\n\n2:19-cv-04411-KLM\n", "2:19-cv-04411-KLM"),
        ("Trial Court Case\n77-CR-1203\n", "77-CR-1203"),
    ],
)
def test_labelled_docket_fields(backend: RulesBackend, text: str, number: str) -> None:
    assert number in found(backend, text, "DOCKET_NUMBER")


def test_supreme_court_application_and_mdl_numbers(backend: RulesBackend) -> None:
    text = "No. 19A1234 was submitted. In re Widgets, MDL No. 3055, was centralised."
    got = found(backend, text, "DOCKET_NUMBER")
    assert got["19A1234"] == "19a1234"
    assert "MDL No. 3055" in got


def test_federal_number_with_judge_initials(backend: RulesBackend) -> None:
    text = "Filed in 3:22-cv-00917-RST-UV on that day."
    assert found(backend, text, "DOCKET_NUMBER") == {"3:22-cv-00917-RST-UV": "3:22-cv-00917-rst-uv"}


def test_neutral_citation_is_not_a_docket(backend: RulesBackend) -> None:
    text = "See Smith v. Jones, 2019-Ohio-4410, and Case No. 2019-Ohio-4410."
    assert "2019-Ohio-4410" not in found(backend, text, "DOCKET_NUMBER")


def test_lone_docket_line_but_not_phone_or_date(backend: RulesBackend) -> None:
    text = "Jane Roe v. City of Elm\nE2031-00412-COA-R3-CV\n555-123-4567\n2024-05-06\nWB3-204-01K\n"
    got = found(backend, text, "DOCKET_NUMBER")
    assert set(got) == {"E2031-00412-COA-R3-CV"}


def test_docket_table_cells_need_the_document_context(backend: RulesBackend) -> None:
    table = "Date Docket Name\n7/1/24 23-911 Able v. Baker\n7/2/24 23-1402 Cole v. Dunn\n"
    rows = "7/3/24 23-1777 Eddy v. Fox\n"  # a later chunk: no header of its own
    ctx = DocContext.of(table + rows).encode()
    assert DocContext.decode(ctx) == DocContext(docket_table=True)
    assert found(backend, rows, "DOCKET_NUMBER") == {}
    assert set(found(backend, rows, "DOCKET_NUMBER", ctx)) == {"23-1777"}


# --- courts -------------------------------------------------------------------------


def test_pacer_header_two_lines(backend: RulesBackend) -> None:
    text = "U.S. District Court\nOregon District (Eugene)\nCIVIL DOCKET FOR CASE #: 6:21-cv-1"
    assert "ord" in found(backend, text, "COURT").values()
    text = "U.S. District Court [LIVE]\n\nWestern District of Washington\n\nNotice"
    assert "wawd" in found(backend, text, "COURT").values()


def test_bankruptcy_court_with_comma(backend: RulesBackend) -> None:
    text = "U.S. Bankruptcy Court, Northern District of Texas\nIn re: Acme Co."
    assert "txnb" in found(backend, text, "COURT").values()


def test_court_from_sender_domain_and_pacer_link(backend: RulesBackend) -> None:
    text = "From: ecf_help@mied.uscourts.gov\nSee https://ecf.nvb.uscourts.gov/doc1/123"
    assert set(found(backend, text, "COURT").values()) == {"mied", "nvb"}


def test_bare_court_and_generic_id_take_the_document_court(backend: RulesBackend) -> None:
    doc = "From: ecf@wied.uscourts.gov\nUnited States District Court\nThe Court grants the motion."
    ctx = backend.document_context(doc)
    assert DocContext.decode(ctx) == DocContext(court="wied")
    got = found(backend, doc, "COURT", ctx)
    assert "usdistct" not in got.values()
    assert got["The Court"] == "wied"


# --- attorneys ----------------------------------------------------------------------


def test_notice_recipient_list(backend: RulesBackend) -> None:
    text = (
        "1:23-cv-00011 Notice has been electronically mailed to:\n"
        "Maria T. Lopez mlopez@example.org, docket@example.org\n"
        "Samuel Ortega\nsortega@example.net\n"
        "Jordan Wu on behalf of Creditor Big Lender LLC\njwu@example.com\n"
        "1:23-cv-00011 Notice will not be electronically mailed to:\n"
        "Someone Else\n"
    )
    assert set(found(backend, text, "ATTORNEY")) == {"Maria T. Lopez", "Samuel Ortega", "Jordan Wu"}


def test_docket_party_table_attorney_and_firm_are_two(backend: RulesBackend) -> None:
    text = (
        "Plaintiff\n"
        "Rosa Alvarez represented by Peter Q. Hall\n"
        "Hall & Finch LLP\n"
        "12 Main Street\n"
        "LEAD ATTORNEY\n"
        "ATTORNEY TO BE NOTICED\n"
        "Nina Brook\n"
        "Hall & Finch LLP\n"
        "ATTORNEY TO BE NOTICED\n"
        "\n"
        "Defendant\n"
        "Granite Shipping Co.\n"
    )
    attorneys = found(backend, text, "ATTORNEY")
    assert set(attorneys) == {"Peter Q. Hall", "Nina Brook"}
    got = roles(backend, text)
    assert got["Rosa Alvarez"] == "plaintiff"
    assert got["Granite Shipping Co."] == "defendant"


def test_counsel_heading_and_party_name_field(backend: RulesBackend) -> None:
    text = "Attorneys for Petitioner\nLena Marsh\n1 Court Plaza\nParty name: Omar Reyes\n"
    assert "Lena Marsh" in found(backend, text, "ATTORNEY")
    assert "Omar Reyes" in found(backend, text, "PARTY")


def test_portal_party_table(backend: RulesBackend) -> None:
    text = (
        "Parties\nParty PartyType Representative\n"
        "Ward, Helen Appellant Carl Vance\n"
        "THE STATE OF OHIO Appellee Dana Pruitt\n"
        "Case Events\n"
    )
    got = roles(backend, text)
    assert got["Ward, Helen"] == "appellant"
    assert got["THE STATE OF OHIO"] == "appellee"
    assert {"Carl Vance", "Dana Pruitt"} <= set(found(backend, text, "ATTORNEY"))


# --- judges -------------------------------------------------------------------------


def test_judge_fields(backend: RulesBackend) -> None:
    text = "Assigned to: Hon. Maya R. Osei\nReferred to: Magistrate Judge Tom Beck\n"
    got = found(backend, text, "JUDGE")
    assert {"Maya R. Osei", "Tom Beck"} <= set(got)


def test_commission_boilerplate_is_not_a_judge(backend: RulesBackend) -> None:
    text = "Home\nCourts\nState Access to Justice Commission\nJudicial Conduct Commission\n"
    assert found(backend, text, "JUDGE") == {}


# --- parties ------------------------------------------------------------------------


def test_contract_preamble_parties(backend: RulesBackend) -> None:
    text = (
        "This SUPPLY AGREEMENT is made by and between Northwind Widgets B.V., a Dutch private "
        'company with limited liability ("Supplier"), and BLUEFIN.COM HOLDINGS, INC., a '
        'Nevada corporation ("Buyer").'
    )
    got = roles(backend, text)
    assert got.get("Northwind Widgets B.V.") == "contract party"
    assert got.get("BLUEFIN.COM HOLDINGS, INC.") == "contract party"


def test_style_caption(backend: RulesBackend) -> None:
    text = "Style:\nMARLOWE, ANNA\nv.:\n"
    assert "MARLOWE, ANNA" in found(backend, text, "PARTY")


# --- cache and context plumbing -----------------------------------------------------


def test_raw_mention_without_role_still_decodes() -> None:
    old = msgspec.json.encode([["PARTY", 0, 4, "acme"]])
    new = msgspec.json.decode(old, type=list[RawMention])
    assert new == [RawMention("PARTY", 0, 4, "acme", None)]


def test_context_is_part_of_the_cache_key() -> None:
    assert entities_stage.cache_hash("x", "") != entities_stage.cache_hash("x", "court=ared")
    assert entities_stage.cache_hash("x", "") == entities_stage.cache_hash("x", "")


def test_stage_passes_context_to_every_chunk(backend: RulesBackend) -> None:
    assert isinstance(backend, ContextualBackend)
    doc_id = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
    first = "From: ecf@wied.uscourts.gov\nheader text "
    second = "The Court denies the motion."
    full = first + second
    chunks = [
        Chunk(id=uuid.uuid4(), document_id=doc_id, index=0, text=first, start=0,
              end=len(first), page_start=1, page_end=1),
        Chunk(id=uuid.uuid4(), document_id=doc_id, index=1, text=second, start=len(first),
              end=len(full), page_start=1, page_end=1),
    ]  # fmt: skip
    doc = Chunked(document_id=doc_id, chunks=chunks)
    assert entities_stage.document_text(doc) == full
    mentions = entities_stage.assemble(doc, entities_stage.backend_results(backend, doc))
    courts = {(m.text, m.normalized) for m in mentions if m.type == "COURT"}
    assert ("The Court", "wied") in courts
    alone = backend.extract([second])[0]  # without the context the chunk names no court
    assert [m for m in alone if m.type == "COURT"] == []


# --- the benchmark's matching rule --------------------------------------------------


def test_matching_rule() -> None:
    assert matches("PARTY", key_of("PARTY", "Ward, Helen"), key_of("PARTY", "Helen Ward"))
    assert not matches("PARTY", key_of("PARTY", "Ward"), key_of("PARTY", "Helen Ward"))
    t, p = key_of("DOCKET_NUMBER", "4:13-md-02420"), key_of("DOCKET_NUMBER", "4:13-md-2420-YGR")
    assert matches("DOCKET_NUMBER", t, p)
    assert not matches("DOCKET_NUMBER", key_of("DOCKET_NUMBER", "13-2420"), p)
    assert key_of("PARTY", "Acme L.L.C.") == key_of("PARTY", "ACME LLC")


# --- dates --------------------------------------------------------------------------


def test_date_forms(backend: RulesBackend) -> None:
    text = (
        "Filed 04/09/26. Signed on the 3rd of March, 2011. Term ends July 2030. "
        "Hearing on August 4, 2030. Old filing 12/31/71."
    )
    got = found(backend, text, "DATE")
    assert got["04/09/26"] == "2026-04-09"
    assert got["3rd of March, 2011"] == "2011-03-03"
    assert got["July 2030"] == "2030-07"
    assert got["August 4, 2030"] == "2030-08-04"
    assert "August 4" not in got  # the month-year form never splits a full date
    assert got["12/31/71"] == "1971-12-31"


# --- more structure: appellate tables, titled counsel, notice lists across chunks ---


def test_appellate_party_table(backend: RulesBackend) -> None:
    text = "ORLA K. MENDES\nAppellant Victor P. Lund\nDirect: 555-0100\nv.\nHARBOR TRUST CO.\n"
    text += "Appellee Ines Ward\n"
    got = roles(backend, text)
    assert got["ORLA K. MENDES"] == "appellant"
    assert got["HARBOR TRUST CO."] == "appellee"
    assert {"Victor P. Lund", "Ines Ward"} <= set(found(backend, text, "ATTORNEY"))


def test_counsel_named_by_title_in_docket_text(backend: RulesBackend) -> None:
    text = "NOTICE of appearance filed by Attorney Greta M. Olsen for Appellee Pine LLC."
    assert "Greta M. Olsen" in found(backend, text, "ATTORNEY")


def test_recipient_lines_in_a_later_chunk_need_the_notice_context(backend: RulesBackend) -> None:
    head = "2:24-cv-00001 Notice has been electronically mailed to:\nAda Byrne ab@example.org\n"
    later = "Carl D. Moss cmoss@example.com, filings@example.com\nDina Oyelaran do@example.net\n"
    ctx = backend.document_context(head + later)
    assert DocContext.decode(ctx).notice
    assert found(backend, later, "ATTORNEY") == {}
    assert set(found(backend, later, "ATTORNEY", ctx)) == {"Carl D. Moss", "Dina Oyelaran"}


# --- captions -----------------------------------------------------------------------


def test_caption_et_al_and_v_without_periods(backend: RulesBackend) -> None:
    text = "Case Name: Okafor, et al v Brightline Freight LLC, et al\n"
    assert {"Okafor", "Brightline Freight LLC"} <= set(found(backend, text, "PARTY"))


def test_caption_roles(backend: RulesBackend) -> None:
    text = "HANNAH QUIST, Plaintiff, v. ORCHARD MILLS INC., Defendant.\n"
    got = roles(backend, text)
    assert got["HANNAH QUIST"] == "plaintiff"
    assert got["ORCHARD MILLS INC."] == "defendant"


def test_middle_initial_v_is_not_versus(backend: RulesBackend) -> None:
    text = "Paula V. Romero v. County of Lake\n"
    got = found(backend, text, "PARTY")
    assert "Paula V. Romero" in got
    assert "Paula" not in got and "Romero" not in got


def test_in_re_and_slash_inside_a_name(backend: RulesBackend) -> None:
    text = "In re The M/Y Silver Gull\n"
    assert "M/Y Silver Gull" in " ".join(found(backend, text, "PARTY"))
    text = "In the Interest of R.T., Minor Child\n"
    assert "R.T." in " ".join(found(backend, text, "PARTY"))


def test_listing_initials_cell_is_not_part_of_the_party(backend: RulesBackend) -> None:
    text = "61 6/30/31 30-118 Marsh v. Dalton KJ 612 U.S. 10\n"
    assert "Dalton" in found(backend, text, "PARTY")


def test_foreign_company_suffixes_and_dotted_names(backend: RulesBackend) -> None:
    text = (
        "Orbis Quarry S.p.A. and Linde Tech B.V. signed with Campos Alimentos Ltda. and "
        "Grupo Norte S. de R.L. de C.V. and Meridian Capital Partners LP and "
        "SEASHELL.COM SYSTEMS, INC.\n"
    )
    got = set(found(backend, text, "ORGANIZATION"))
    for name in (
        "Orbis Quarry S.p.A.",
        "Linde Tech B.V.",
        "Campos Alimentos Ltda.",
        "Grupo Norte S. de R.L. de C.V.",
        "Meridian Capital Partners LP",
        "SEASHELL.COM SYSTEMS, INC.",
    ):
        assert name in got, (name, got)


def test_judge_headings_are_not_judges(backend: RulesBackend) -> None:
    text = "Trial Court Judge\nDate Filed\nJudge Originating\nJustice Programs\n"
    assert found(backend, text, "JUDGE") == {}


# --- money --------------------------------------------------------------------------


def test_money_currencies_and_abbreviated_scales(backend: RulesBackend) -> None:
    text = (
        "Fees of €2,500 and £1,000,000, CHF 3 million, RMB 40,000 and 900 euros; "
        "a cap of $7.5 M and a deductible of $40 K. Forty and NO/100 Dollars."
    )
    got = set(found(backend, text, "MONEY").values())
    assert {
        "EUR 2500",
        "GBP 1000000",
        "CHF 3000000",
        "CNY 40000",
        "EUR 900",
        "USD 7500000",
        "USD 40000",
    } <= got
    assert "USD 100" not in got


def test_contract_parties_reach_later_chunks_through_the_context(backend: RulesBackend) -> None:
    start = (
        'LICENSE AGREEMENT\nThis License Agreement (the "Agreement") is entered into by '
        'QUILLON SYSTEMS LTD. ("Quillon"), an English company, and Tamsin Roe, an individual '
        '(the "Licensee").\nWHEREAS, Quillon owns software; and\n'
    )
    later = "9. Notices. Notices to QUILLON SYSTEMS LTD. go to its registered office."
    ctx = backend.document_context(start + later)
    assert DocContext.decode(ctx).parties == ("QUILLON SYSTEMS LTD.", "Tamsin Roe")
    plain = {m.role for m in backend.extract([later])[0] if m.type == "PARTY"}
    assert "contract party" not in plain
    got = {
        later[m.start : m.end]: m.role
        for m in backend.extract_in_context([later], ctx)[0]
        if m.type == "PARTY"
    }
    assert got == {"QUILLON SYSTEMS LTD.": "contract party"}


def test_defined_terms_are_not_parties(backend: RulesBackend) -> None:
    text = (
        'This Services Agreement (the "Agreement") is made between Harrow Labs, Inc., a '
        'Delaware corporation ("Harrow"), and Pell & Sons LLP ("Pell"). Any Confidential '
        'Information ("Confidential Information") and the Be Well(R) brand stay private.\n'
        "RECITALS\n"
    )
    got = roles(backend, text)
    assert got.get("Harrow Labs, Inc.") == "contract party"
    assert got.get("Pell & Sons LLP") == "contract party"
    assert "Confidential Information" not in got
    assert "Be Well" not in got


def test_federal_cause_field_is_a_statute_not_a_docket(backend: RulesBackend) -> None:
    text = "Cause: 28:1332 Diversity-Breach of Contract\nCause No. 2023-CI-04411\n"
    got = found(backend, text, "DOCKET_NUMBER")
    assert "28:1332" not in got
    assert "2023-CI-04411" in got


def test_supreme_court_counsel_blocks(backend: RulesBackend) -> None:
    text = (
        "Attorneys for Petitioner\nIrene K. Folau\nCounsel of Record Office of the Solicitor\n"
        "1 Capitol Way\nParty name: State of Alder\nOther\n"
        "Tobias R. Wend Carver Lane & Moss LLP\n7 Elm St\nParty name: Amici Teachers\n"
    )
    got = set(found(backend, text, "ATTORNEY"))
    assert {"Irene K. Folau", "Tobias R. Wend"} <= got
    assert not any("Carver" in a for a in got)  # the firm on the same line is not the name


def test_portal_table_further_representatives_and_initials(backend: RulesBackend) -> None:
    text = (
        "Party PartyType Representative\n"
        "Yew Holdings, LLC Appellant Rhea T. Quon\n"
        "Omar Fitch\n"
        "THE STATE OF UTAH State J. K. Lund\n"
        "\n"
    )
    assert {"Rhea T. Quon", "Omar Fitch", "J. K. Lund"} <= set(found(backend, text, "ATTORNEY"))


def test_judge_initial_without_period_and_next_title(backend: RulesBackend) -> None:
    text = "Judge/Magistrate: District Judge Priya N Halvorsen Magistrate Judge Otto R Blum\n"
    assert set(found(backend, text, "JUDGE")) == {"Priya N Halvorsen", "Otto R Blum"}


def test_separator_and_versus_lines_are_not_parties(backend: RulesBackend) -> None:
    text = (
        "IN RE: OWEN T. PARK\nDebtor\n------------------------\n"
        "OWEN T. PARK\nAppellant Mara L. Voss\nDirect: 555-0101\nv.\n"
        "FIRST HARBOR BANK\nAppellee Lee Ortiz\n"
        "ATTORNEY TO BE NOTICED\nV.\nIntervenor\nPRO SE\n"
    )
    parties = roles(backend, text)
    assert not any(p.startswith("-") or p == "v." for p in parties), parties
    assert not {"ATTORNEY TO BE NOTICED", "Intervenor", "PRO SE"} & set(parties)
    assert parties.get("OWEN T. PARK") == "appellant"


def test_case_name_field_and_one_sided_caption(backend: RulesBackend) -> None:
    text = (
        "Case Name: Pinecrest Mills Holding LLC\nCase Number: 25-10411-ABC\n"
        "Case Name: Rosa Kim, Chapter 7 Trustee of the estate v. Lumen Supply, Inc.\n"
        "Case Name: United States ex rel Doe et al v. Harbor Clinic Group et al\n"
    )
    got = set(found(backend, text, "PARTY"))
    assert {"Pinecrest Mills Holding LLC", "Lumen Supply, Inc.", "Harbor Clinic Group"} <= got


def test_caption_docket_line(backend: RulesBackend) -> None:
    text = "SUPREME COURT OF ELDORIA\nNo. 48213\nDocket No. 77.\nItem No. 3 of the list\n"
    got = found(backend, text, "DOCKET_NUMBER")
    assert {"48213", "77"} <= set(got)
    assert "3" not in got
