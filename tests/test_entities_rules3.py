"""The rules-3 patterns, one test each, on text written for the test (not from the corpus).

Each is a layout that recurs across courts and drafters: listings, PACER party blocks,
docket-entry references, judges in docket text, English contract preambles.
"""

from __future__ import annotations

import pytest

from accelerated.entities.rules import RulesBackend
from benchmarks.quality_match import docket_key, key_of, matches
from benchmarks.quality_truth import _JUDGE_LIST


@pytest.fixture(scope="module")
def backend() -> RulesBackend:
    return RulesBackend()


def found(backend: RulesBackend, text: str, etype: str) -> list[str]:
    """Surfaces of one type, the document context computed as the stage does."""
    out = backend.extract_in_context([text], backend.document_context(text))[0]
    return [text[m.start : m.end] for m in out if m.type == etype]


# --- docket numbers in listings -----------------------------------------------------

LISTING = (
    "Opinions\nNumber Caption Date Court No. Judge\n"
    "21-44 Harbor Freight Lines LLC v. United States 03/02/2021 19-00412 Okafor\n"
    "21-43\nMilton Tile Co. v. United States\n02/26/2021 18-00233 Lindqvist\n"
)


def test_row_number_before_the_caption_is_not_a_docket(backend: RulesBackend) -> None:
    got = found(backend, LISTING, "DOCKET_NUMBER")
    assert set(got) == {"19-00412", "18-00233"}


def test_a_docket_column_first_keeps_its_cells(backend: RulesBackend) -> None:
    text = (
        "Docket Caption Date Judge\n19-00412 Harbor Freight Lines LLC v. United States 03/02/2021\n"
    )
    assert "19-00412" in found(backend, text, "DOCKET_NUMBER")


def test_number_alone_above_a_caption_is_the_rows_docket(backend: RulesBackend) -> None:
    text = (
        "Civil\n2031-077\nState v. Ronald Pike\n04/11/2031\nCriminal\n31-AP-219\nIn re Lena Ortiz\n"
    )
    got = found(backend, text, "DOCKET_NUMBER")
    assert {"2031-077", "31-AP-219"} <= set(got)


def test_number_alone_without_a_caption_is_not_a_docket(backend: RulesBackend) -> None:
    text = "Room\n2031-077\nSecond floor\n2019-2020\nState v. Pike\n"
    assert found(backend, text, "DOCKET_NUMBER") == []


@pytest.mark.parametrize(
    "text",
    [
        "granting the motion to extend (Docket No. 14 ) and denying",
        "as noted at Dkt. No. 9, the clerk",
        "the amended complaint (see ECF No. 31 at 4) is",
    ],
)
def test_docket_entry_references_are_not_case_numbers(backend: RulesBackend, text: str) -> None:
    assert found(backend, text, "DOCKET_NUMBER") == []


def test_case_numbers_in_parentheses_still_are(backend: RulesBackend) -> None:
    text = "Docket No. 6120 was filed; the related case (Docket No. 2:30-cv-00411) stayed."
    assert set(found(backend, text, "DOCKET_NUMBER")) == {"6120", "2:30-cv-00411"}


# --- judges in docket text ----------------------------------------------------------


def test_surname_before_a_sentence_end_is_kept(backend: RulesBackend) -> None:
    text = "Status conference set for 5/1/2031 before Judge Miriam Okafor. Counsel shall attend."
    assert found(backend, text, "JUDGE") == ["Miriam Okafor"]


def test_judge_name_stops_where_docket_text_runs_on(backend: RulesBackend) -> None:
    text = "Pretrial conference before Judge Lindqvist Plaintiff's Motions are due by June 3."
    assert found(backend, text, "JUDGE") == ["Lindqvist"]


def test_interests_of_justice_is_not_a_judge(backend: RulesBackend) -> None:
    text = "ORDER to Continue in the Interests of Justice Time excluded from 1/2/31 to 3/4/31."
    assert found(backend, text, "JUDGE") == []


def test_judge_field_title_in_capitals(backend: RulesBackend) -> None:
    text = "Assigned to: JUDGE HAROLD P WEXLER\nCause: 28:1331 Federal Question\n"
    assert found(backend, text, "JUDGE") == ["HAROLD P WEXLER"]


# --- PACER party blocks -------------------------------------------------------------


def test_counsel_after_a_terminated_line(backend: RulesBackend) -> None:
    text = (
        "Defendant (2)\nGordon Pell\nTERMINATED: 03/04/2031 represented by Ines M. Carvalho\n"
        "Carvalho & Webb LLP\n12 Main Street\nLEAD ATTORNEY\n"
        "Consolidated Defendant\nMarlow Freight Inc\n"
        "a Texas corporation represented by Theo Brandt\n(See above for address)\n"
    )
    assert {"Ines M. Carvalho", "Theo Brandt"} <= set(found(backend, text, "ATTORNEY"))
    assert "Carvalho & Webb LLP" not in found(backend, text, "ATTORNEY")
    out = backend.extract([text])[0]
    roles = {text[m.start : m.end]: m.role for m in out if m.type == "PARTY"}
    assert roles.get("Gordon Pell") == "defendant"
    assert roles.get("Marlow Freight Inc") == "defendant"


# --- captions in listings -----------------------------------------------------------


def test_caption_does_not_run_into_the_opinion_type_cell(backend: RulesBackend) -> None:
    text = (
        "Mar. 3, 2031 104,221-7 * Dalton v. Pruitt Maj., and Dis. Opinions\n"
        "Mar. 9, 2031 104,301-2 * State v. Okoro Majority Opinion\n"
    )
    assert set(found(backend, text, "PARTY")) == {"Dalton", "Pruitt", "State", "Okoro"}


def test_parenthesised_place_inside_a_name(backend: RulesBackend) -> None:
    text = "31-12 Jade River Textiles (Ningbo) Co. v. United States 02/02/2031"
    assert "Jade River Textiles (Ningbo) Co." in found(backend, text, "PARTY")


# --- contract preambles -------------------------------------------------------------


def test_english_numbered_parties(backend: RulesBackend) -> None:
    text = (
        "THIS AGREEMENT is made on 4 March 2031\n\nBETWEEN:\n\n"
        '(1) KESTREL ROBOTICS LIMITED a company incorporated in Scotland (the "Company"); and\n\n'
        '(2) PRIYA NAIR of 9 Quay Road, Dundee (the "Executive").\n\nIT IS AGREED as follows:\n'
    )
    assert set(found(backend, text, "PARTY")) == {"KESTREL ROBOTICS LIMITED", "PRIYA NAIR"}


def test_party_after_entered_into_by(backend: RulesBackend) -> None:
    text = (
        "This Advisory Agreement is entered into by Larkspur Genomics, Inc., a Delaware "
        'corporation (the "Company"), and Tomas Reyes, an individual (the "Advisor").\n'
    )
    assert set(found(backend, text, "PARTY")) == {"Larkspur Genomics, Inc.", "Tomas Reyes"}


# --- the benchmark's matching and truth reading -------------------------------------


def test_consolidated_and_lead_markers_are_not_part_of_the_number() -> None:
    assert docket_key("Consol. 19-00412") == docket_key("19-00412")
    assert docket_key("31-1903(L)") == docket_key("31-1903")
    assert docket_key("31-1903 (L)") == docket_key("31-1903")
    assert docket_key("31-1903") != docket_key("31-1904")


def test_short_cite_matches_its_full_cite() -> None:
    truth = key_of("CASE_CITATION", "212 N.J. 100")
    assert matches("CASE_CITATION", truth, key_of("CASE_CITATION", "212 N.J. at 115"))
    assert not matches("CASE_CITATION", truth, key_of("CASE_CITATION", "213 N.J. at 115"))
    assert not matches("CASE_CITATION", truth, key_of("CASE_CITATION", "212 A.2d at 115"))


def test_judge_list_keeps_generational_suffixes() -> None:
    assert _JUDGE_LIST.split("Ruth P. Okafor, III") == ["Ruth P. Okafor, III"]
    assert _JUDGE_LIST.split("Okafor, Lindqvist and Wexler") == ["Okafor", "Lindqvist", "Wexler"]


def test_judge_column_after_the_docket_column(backend: RulesBackend) -> None:
    assert set(found(backend, LISTING, "JUDGE")) == {"Okafor", "Lindqvist"}
    no_column = LISTING.replace("Court No. Judge", "Court No. Division")
    assert found(backend, no_column, "JUDGE") == []


def test_counsels_firm_line_and_status_lines_are_not_attorneys(backend: RulesBackend) -> None:
    text = (
        "Plaintiff\nAria Vance represented by Colette R. Amsel\n"
        "Halberd Quist Moreau & Finch, LLP\n40 Wall Street\nLEAD ATTORNEY\n"
        "ATTORNEY TO BE NOTICED\nDesignation: Retained\nPending Counts\nDisposition\n"
        "Dana Ruiz Osei Lowe Partners & Hale LLP\n"
    )
    got = set(found(backend, text, "ATTORNEY"))
    assert "Colette R. Amsel" in got
    assert not any("Halberd" in a or "Pending" in a for a in got)
    # a name, then its firm on the same line: the name is kept, the firm is not
    assert counsel_line(backend, "Dana Ruiz Osei Lowe Partners & Hale LLP") == ["Dana Ruiz Osei"]


def counsel_line(backend: RulesBackend, line: str) -> list[str]:
    text = f"Attorneys for Respondent\n{line}\n"
    return found(backend, text, "ATTORNEY")


def test_lead_counsel_is_a_title_not_a_name(backend: RulesBackend) -> None:
    text = "NOTICE of Change of Lead Counsel for Plaintiff filed by Acme Corp."
    assert found(backend, text, "ATTORNEY") == []


def test_texas_criminal_appeals_numbers_with_thousands_commas(backend: RulesBackend) -> None:
    text = "Case: WR-41,602-03\nStyle: Ex parte Roe\nCase: AP-76,818\n"
    assert {"WR-41,602-03", "AP-76,818"} <= set(found(backend, text, "DOCKET_NUMBER"))


def test_a_role_in_a_names_place_is_no_party(backend: RulesBackend) -> None:
    text = "Party name: Respondents\nParty name: Gale Whitcombe\n"
    assert found(backend, text, "PARTY") == ["Gale Whitcombe"]


def test_parties_under_their_own_headings(backend: RulesBackend) -> None:
    text = (
        "SUPPLY AGREEMENT\n\nTHIS AGREEMENT is made\n\nBETWEEN:\n\n"
        "      NORTHERN LIGHT MINERALS CORP., a corporation incorporated under the laws of "
        'Manitoba\n\n            (the "Supplier");\n\nAND:\n\n'
        "      R.T. HALVORSEN & COMPANY LIMITED, a company amalgamated under the laws of "
        'Ontario\n\n            (the "Buyer").\n\nWHEREAS:\n'
    )
    got = set(found(backend, text, "PARTY"))
    assert {"NORTHERN LIGHT MINERALS CORP.", "R.T. HALVORSEN & COMPANY LIMITED"} <= got


def test_hereinafter_referred_to_as(backend: RulesBackend) -> None:
    text = (
        "This agreement is made by and between QUILLON DATA, INC. (hereinafter referred to "
        'as "QDI"), a Delaware Corporation, and Marten Labs, Inc. (hereinafter called '
        '"Marten").\n'
    )
    assert {"QUILLON DATA, INC.", "Marten Labs, Inc."} <= set(found(backend, text, "PARTY"))


def dates(backend: RulesBackend, text: str) -> dict[str, str]:
    out = backend.extract([text])[0]
    return {text[m.start : m.end]: m.normalized for m in out if m.type == "DATE"}


def test_dashed_us_and_dotted_day_first_dates(backend: RulesBackend) -> None:
    assert dates(backend, "Motions due 3-9-31; reply due 03-23-2031.") == {
        "3-9-31": "2031-03-09",
        "03-23-2031": "2031-03-23",
    }
    assert dates(backend, "Unterzeichnet am 09.11.2030 in Bern.") == {"09.11.2030": "2030-11-09"}


def test_a_labelled_number_is_no_dashed_date(backend: RulesBackend) -> None:
    text = "Appeal No. 11-4-29 was docketed; see 2:31-cv-4-12 and 4-31-20."
    assert dates(backend, text) == {}  # a docket number; April 31st does not exist
