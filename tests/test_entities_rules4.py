"""The rules-4 patterns, one test each, on text written for the test (not from the corpus).

Each is a convention of legal documents that recurs across courts: docket text that
glues a name to the next sentence, a capital "V." that is a middle initial, a list
numbered i. to v., captions in capitals, PACER's party types, listing cells glued to a
caption, a name cut by a chunk boundary.
"""

from __future__ import annotations

import uuid

import pytest

from accelerated.entities import RawMention
from accelerated.entities.rules import RulesBackend
from accelerated.models import Chunk, Chunked
from accelerated.stages.entities import assemble


@pytest.fixture(scope="module")
def backend() -> RulesBackend:
    return RulesBackend()


def found(backend: RulesBackend, text: str, etype: str) -> list[str]:
    """Surfaces of one type, the document context computed as the stage does."""
    out = backend.extract_in_context([text], backend.document_context(text))[0]
    return [text[m.start : m.end] for m in out if m.type == etype]


def roles(backend: RulesBackend, text: str) -> dict[str, str | None]:
    out = backend.extract_in_context([text], backend.document_context(text))[0]
    return {text[m.start : m.end]: m.role for m in out if m.type == "PARTY"}


# --- judges in docket text ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (
            "Bond hearing set for 3/2/2031 before Judge Petra Lindqvist.(Okoro, Dana)",
            "Petra Lindqvist",
        ),
        ("held before Magistrate Judge Omar Haddad.Government attorney: R. Poe.", "Omar Haddad"),
        (
            "Minutes of plea hearing by Judge Arlen T.K. Wexford (cmj) (Entered: 1/2/31)",
            "Arlen T.K. Wexford",
        ),
    ],
)
def test_judge_name_glued_to_the_next_sentence_or_initials(
    backend: RulesBackend, text: str, name: str
) -> None:
    assert found(backend, text, "JUDGE") == [name]


# --- captions -----------------------------------------------------------------------


def test_capital_v_between_given_name_and_surname_is_an_initial(backend: RulesBackend) -> None:
    text = (
        "Plaintiff\nMarta V. Okonkwo represented by Marta V. Okonkwo\nPRO SE\n\n"
        "Defendant - Appellee Lionel R. V. Abernathy\n"
    )
    got = set(found(backend, text, "PARTY"))
    assert "Marta V. Okonkwo" in got
    assert not got & {"Marta", "Okonkwo", "Abernathy"}


def test_capital_v_in_a_caption_in_capitals_is_a_versus(backend: RulesBackend) -> None:
    assert set(found(backend, "GRETA HOLM V. NORDVIK SHIPPING AS\n", "PARTY")) == {
        "GRETA HOLM",
        "NORDVIK SHIPPING AS",
    }


def test_fifth_item_of_a_roman_numbered_list_is_no_versus(backend: RulesBackend) -> None:
    text = (
        "iv. Licensee shall keep the Titles in the Territory.\n\n"
        "v. There are no royalties owed to any person for the Titles.\n\n"
        "v. Vendor and Reseller shall agree upon a refund process.\n"
    )
    assert found(backend, text, "PARTY") == []


def test_a_versus_alone_on_its_line_is_still_one(backend: RulesBackend) -> None:
    text = (
        "HANNA LUND\nPlaintiff - Appellant\nv.\n"
        "OSKAR BERG, in his individual and official capacity\n"
    )
    assert "OSKAR BERG" in found(backend, text, "PARTY")


@pytest.mark.parametrize(
    ("text", "party"),
    [
        (
            "Notice for Ines Moreau, Petitioner v. United States. You are registered.",
            "United States",
        ),
        ('RALPH TEAGUE v. MARIE "DOTTIE" TEAGUE - 2031 Ark. App. 12', 'MARIE "DOTTIE" TEAGUE'),
        ("31-7 Allied Valve Mfrs.' Ass'n v. United States 01/04/2031", "Allied Valve Mfrs.' Ass'n"),
        ("Mar. 2, 2031 104,118-3 * State v. K.L.-R. Majority Opinion", "K.L.-R."),
        ("Subject: 418 LLC v. Town of Orrin 31-220 - Order", "418 LLC"),
    ],
)
def test_party_name_forms(backend: RulesBackend, text: str, party: str) -> None:
    assert party in found(backend, text, "PARTY")


def test_a_citations_docket_and_an_original_actions_marker_are_not_party_words(
    backend: RulesBackend,
) -> None:
    text = (
        "As held in Quint v. Marlowe, No. E2011-00412-COA-R3-CV, and in No. 155, Orig. Ohio v. Iowa"
    )
    got = set(found(backend, text, "PARTY"))
    assert {"Quint", "Marlowe", "Ohio", "Iowa"} <= got
    assert not any("No." in p or "Orig." in p for p in got)


def test_caption_in_capitals_ends_where_mixed_case_text_starts(backend: RulesBackend) -> None:
    text = "Subject: Activity in Case 2:31-cv-00417 ROWAN v. FENWICK Scheduling Order\n"
    assert set(found(backend, text, "PARTY")) == {"ROWAN", "FENWICK"}
    text = "BAXTER v. DELMAR CO., INC. ET AL.\n"
    assert set(found(backend, text, "PARTY")) == {"BAXTER", "DELMAR CO., INC."}


def test_in_re_a_litigation_names_no_party(backend: RulesBackend) -> None:
    text = "IN RE: SOLAR PANEL TARIFF ANTITRUST LITIGATION\n\nIn re Harriet Vole\n"
    assert found(backend, text, "PARTY") == ["Harriet Vole"]


def test_listing_initials_column_is_not_part_of_the_caption(backend: RulesBackend) -> None:
    text = (
        "Date Docket Name J. Citation\n"
        "3/1/31 30-118 Brandt v. Oyelaran AB 612 U.S. 40\n"
        "3/2/31 30-207 Torvik v. SEC PC 612 U.S. 77\n"
    )
    assert set(found(backend, text, "PARTY")) == {"Brandt", "Oyelaran", "Torvik", "SEC"}
    no_column = text.replace("Name J.", "Name Author")
    assert "Oyelaran AB" in found(backend, no_column, "PARTY")


# --- party tables -------------------------------------------------------------------


def test_pacer_party_types_beyond_plaintiff_and_defendant(backend: RulesBackend) -> None:
    text = (
        "Garnishee\nHollis County Credit Union represented by Jorge Mena\n"
        "LEAD ATTORNEY\n\nMediator\nAgnes T. Whitlow represented by Agnes T Whitlow\n\n"
        "Unknown\nMarsh Creek Irrigation District represented by Ruth Ambler\n"
        "Court Case\nUnknown\nReporter\n"
    )
    got = roles(backend, text)
    assert got.get("Hollis County Credit Union") == "garnishee"
    assert got.get("Agnes T. Whitlow") == "mediator"
    assert got.get("Marsh Creek Irrigation District") == "unknown"
    assert "Reporter" not in got  # "Unknown" heads a party only with its counsel


def test_criminal_party_table_types(backend: RulesBackend) -> None:
    text = (
        "Party PartyType Representative\n"
        "The State of Ohio Criminal - State of Ohio Hon. Lena Marsh\n"
        "Pike, Arlo Dean Criminal - Appellant Arlo Dean Pike\n\nCase Documents\n"
    )
    assert roles(backend, text) == {"The State of Ohio": "state", "Pike, Arlo Dean": "appellant"}


# --- numbers ------------------------------------------------------------------------


def test_telephone_numbers_are_not_docket_numbers(backend: RulesBackend) -> None:
    text = (
        "Docket Caption Date\n31-0412 Roe v. Poe 03/02/2031\n"
        "Phone: (312) 555-0199 Fax: (312) 555-0142\n"
    )
    assert found(backend, text, "DOCKET_NUMBER") == ["31-0412"]


# --- assembly across chunks ---------------------------------------------------------


def test_a_name_cut_by_a_chunk_start_is_reported_once_whole() -> None:
    """The previous chunk saw the whole name; the next, starting inside it, a tail."""
    text = "Case No. 31-1: Ohio State Bar Grievance Board v. Lena Marsh\nFiled"
    cut = text.index("Board")
    doc_id = uuid.UUID(int=7)
    chunks = [
        Chunk(
            id=uuid.UUID(int=8 + i),
            document_id=doc_id,
            index=i,
            text=text[s:],
            start=s,
            end=len(text),
            page_start=1,
            page_end=1,
        )
        for i, s in enumerate((0, cut))
    ]
    whole = RawMention("PARTY", 15, cut + 5, "ohio state bar grievance board")
    tail = RawMention("PARTY", 0, 5, "board")
    other = RawMention("PARTY", text[cut:].index("Lena"), len(text[cut:]) - 6, "lena marsh")
    out = assemble(Chunked(document_id=doc_id, chunks=chunks), [[whole], [tail, other]])
    assert [m.text for m in out] == ["Ohio State Bar Grievance Board", "Lena Marsh"]


# --- what is not a judge ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "For appellee: Ruth A. Delane, Thomas B. Okafor, J. Milton Hale, of counsel.",
        "MOTION to seal filed by Acme Corp.. (Varga, J.)\n",
        "Executive Office for Immigration Review, Department of Justice Board of Appeals",
        "Juvenile Court\nChildren's Justice Initiative\nCLE Calendar\n",
        "Court Judge\nHonorable Judge Probate Ct #2\nCourt Case\n",
    ],
)
def test_no_judge_in_counsel_lists_clerk_initials_or_institutions(
    backend: RulesBackend, text: str
) -> None:
    assert found(backend, text, "JUDGE") == []


def test_judge_initial_forms_still_read(backend: RulesBackend) -> None:
    text = "Okafor, J., delivered the opinion. (Lindqvist, J., dissenting)\nHale, J.\n\nThe Court"
    assert found(backend, text, "JUDGE") == ["Okafor", "Lindqvist", "Hale"]


def test_judge_by_surname_is_the_documents_judge_of_that_surname(backend: RulesBackend) -> None:
    text = (
        "Assigned to: Judge Marisol T. Quade\nReferred to: Magistrate Judge Ada Brandt\n"
        "Hearing before Judge Quade. Order by Judge Tom Brandt; set before Judge Brandt.\n"
    )
    out = backend.extract_in_context([text], backend.document_context(text))[0]
    norm = {text[m.start : m.end]: m.normalized for m in out if m.type == "JUDGE"}
    assert norm["Quade"] == "marisol t. quade"
    assert norm["Brandt"] == "brandt"  # two judges of that surname: left as written
    assert backend.extract([text])[0]  # without a context the surname stays a surname
    bare = {text[m.start : m.end]: m.normalized for m in backend.extract([text])[0]}
    assert bare["Quade"] == "quade"


def test_printout_and_software_dates_are_not_case_dates(backend: RulesBackend) -> None:
    text = (
        "CM/ECF - U.S. District Court - Version 7.1.2 as of 3/14/2031\n"
        "03/02/2031 4 ORDER setting hearing for 4/1/2031.\n\n"
        "PACER Service Center\nTransaction Receipt\n05/06/2032 10:11:12\nPACER Login: x\n"
    )
    assert found(backend, text, "DATE") == ["03/02/2031", "4/1/2031"]


def test_preamble_party_with_a_former_name_and_one_after_and_in_capitals(
    backend: RulesBackend,
) -> None:
    text = (
        'This LICENSE AGREEMENT (this "Agreement") is entered into by and between Kestrel '
        'Data, Inc., a Delaware corporation ("Seller") and Orrin Holding, Inc. (formerly '
        'known as Tarn HoldCo, Inc.), a Delaware corporation ("Buyer").\n\nWHEREAS, ...\n'
    )
    assert set(found(backend, text, "PARTY")) == {"Kestrel Data, Inc.", "Orrin Holding, Inc."}
    text = (
        'This Outsourcing Agreement (hereinafter "Agreement") is effective as from the 1st '
        "day of January, 2031, by and between:\n\nNORDHAVN SMELTERS LIMITED, a private "
        'company (hereinafter referred to as "the Customer"),\n\nAND\n\nVELLA SYSTEMS, SA., '
        'a public limited company with place of business in Madrid (hereinafter "VS").\n\n'
        "1. RECORDINGS\n"
    )
    assert "VELLA SYSTEMS, SA." in found(backend, text, "PARTY")


def test_style_field_role_and_a_brands_exclamation_mark(backend: RulesBackend) -> None:
    text = (
        "Style:\nIn Re Mara Quist, Relator\nv.:\nOrig Proc:\n\nZYLO ADS CORP. v. Yodel! Inc et al\n"
    )
    got = roles(backend, text)
    assert got.get("In Re Mara Quist") == "petitioner"
    assert "Yodel! Inc" in got
