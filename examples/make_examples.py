"""Generate the bundled example documents (examples/documents/), deterministically.

Every filing here is fictional and written for this project (the parties, judges and
docket numbers are invented; the few Supreme Court citations are real case names cited,
not quoted). Together they cover each supported format and the entity types the
pipeline extracts, so a new user can run the whole pipeline without the corpus:

    python examples/make_examples.py   # rewrites examples/documents/

The PDFs are written by hand (a minimal valid PDF with a Helvetica text layer) so no
PDF-writing library is needed; timestamps, MIME boundaries and ZIP dates are fixed so
re-running the script reproduces the same bytes.
"""

# ruff: noqa: E501  (the filings below are document text, one paragraph per line)
from __future__ import annotations

import datetime as dt
import io
import json
import textwrap
import zipfile
from email.message import EmailMessage
from email.policy import default as email_policy
from pathlib import Path

import docx

OUT = Path(__file__).resolve().parent / "documents"
FIXED_DATE = dt.datetime(2024, 3, 18, 9, 30, tzinfo=dt.UTC)
ZIP_DATE = (2024, 3, 18, 9, 30, 0)
CASE_NO = "3:23-cv-04517-MLO"

# --------------------------------------------------------------------------- PDF


def _pdf_string(line: str) -> bytes:
    raw = line.encode("cp1252", "replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def make_pdf(pages: list[list[str]], title: str) -> bytes:
    """A minimal PDF 1.4: one Helvetica text stream per page, WinAnsi so '§' survives."""
    objects: list[bytes] = []
    n_pages = len(pages)
    font_id = 3 + 2 * n_pages
    info_id = font_id + 1
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    for i, lines in enumerate(pages):
        content_id = 4 + 2 * i
        objects.append(
            (
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                f"/Resources << /Font << /F1 {font_id} 0 R >> >> /Contents {content_id} 0 R >>"
            ).encode()
        )
        ops = [b"BT", b"/F1 11 Tf", b"14 TL", b"72 720 Td"]
        for line in lines:
            ops.append(_pdf_string(line) + b" Tj T*")
        ops.append(b"ET")
        stream = b"\n".join(ops)
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    objects.append(
        b"<< /Title " + _pdf_string(title) + b" /Producer (make_examples.py) "
        b"/CreationDate (D:20240318093000Z) >>"
    )
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objects) + 1, info_id, xref)
    )
    return out.getvalue()


def paginate(text: str, lines_per_page: int = 44, width: int = 86) -> list[list[str]]:
    lines: list[str] = []
    for para in textwrap.dedent(text).strip().split("\n"):
        lines.extend(textwrap.wrap(para, width) or [""])
    return [lines[i : i + lines_per_page] for i in range(0, len(lines), lines_per_page)]


COMPLAINT = f"""
    Priya Natarajan (SBN 284410)
    HOLLIS & MARSH LLP
    450 Embarcadero Center, Suite 1900, San Francisco, California 94111
    Attorneys for Plaintiff ACME CORPORATION

    UNITED STATES DISTRICT COURT
    NORTHERN DISTRICT OF CALIFORNIA

    ACME CORPORATION, a Delaware corporation,
    Plaintiff,
    v.
    BRIGHTLINE LOGISTICS, INC., an Oregon corporation; and DANIEL REYES, an individual,
    Defendants.

    Case No. {CASE_NO}
    COMPLAINT FOR BREACH OF CONTRACT AND FALSE ADVERTISING
    DEMAND FOR JURY TRIAL

    Plaintiff Acme Corporation ("Acme Corp." or "Acme") alleges as follows against Defendants Brightline Logistics, Inc. ("Brightline") and Daniel Reyes:

    NATURE OF THE ACTION
    1. This action arises from Brightline's failure to perform under the Master Services Agreement dated March 14, 2021 (the "Agreement"), under which Brightline agreed to warehouse and deliver Acme's industrial fasteners throughout the Pacific Northwest.
    2. After Acme paid Brightline $2,450,000.00 in advance fees, Brightline diverted Acme's inventory to a competing distributor and told Acme's customers that Acme had discontinued its product line.

    JURISDICTION AND VENUE
    3. This Court has subject-matter jurisdiction under 28 U.S.C. § 1331 because Acme asserts a claim under the Lanham Act, 15 U.S.C. § 1125(a), and supplemental jurisdiction over the state-law claims under 28 U.S.C. § 1367. Diversity jurisdiction also exists under 28 U.S.C. § 1332.
    4. Venue is proper in this District under 28 U.S.C. § 1391(b) because a substantial part of the events giving rise to the claims occurred in San Francisco County.

    PARTIES
    5. Plaintiff ACME Corporation is a Delaware corporation with its principal place of business in Oakland, California.
    6. Defendant Brightline Logistics, Inc. is an Oregon corporation headquartered in Portland, Oregon. Defendant Daniel Reyes is Brightline's Chief Executive Officer and resides in Multnomah County, Oregon.

    FIRST CLAIM FOR RELIEF (Breach of Contract)
    7. Acme performed every obligation under the Agreement. Brightline breached Sections 4.2 and 9.1 of the Agreement on or about January 9, 2023, by refusing to release 41,000 units of Acme inventory.
    8. As a direct result, Acme has suffered damages of not less than $3,180,500, together with interest at the rate provided by Cal. Civ. Code § 3289.

    SECOND CLAIM FOR RELIEF (False Advertising, 15 U.S.C. § 1125(a))
    9. Brightline's statements to Acme's customers were false statements of fact in commercial advertising. See Smith v. Jones, 123 F.3d 456, 461 (9th Cir. 1999); Lexmark Int'l, Inc. v. Static Control Components, Inc., 572 U.S. 118 (2014).

    PRAYER FOR RELIEF
    WHEREFORE, Acme Corporation prays for judgment against Brightline Logistics, Inc. and Daniel Reyes, jointly and severally, for compensatory damages of $3,180,500, restitution of the $2,450,000.00 advance, treble damages under 15 U.S.C. § 1117, costs, and such further relief as the Court deems just.

    Dated: April 3, 2023
    HOLLIS & MARSH LLP
    By: /s/ Priya Natarajan
    Attorneys for Plaintiff ACME CORPORATION
"""

TERM_SHEET = f"""
    EXHIBIT A - CONFIDENTIAL SETTLEMENT TERM SHEET
    Acme Corporation v. Brightline Logistics, Inc., No. {CASE_NO} (N.D. Cal.)

    1. Payment. Brightline Logistics, Inc. shall pay Acme Corp. the sum of $1,150,000.00 within thirty (30) days of the Effective Date.
    2. Inventory. Brightline shall return all remaining Acme inventory to Acme's Oakland warehouse no later than May 31, 2024.
    3. Release. Upon payment, Acme releases Brightline and Daniel Reyes from all claims asserted in the action, and the parties waive the protection of Cal. Civ. Code § 1542.
    4. Dismissal. Within five court days after payment, the parties shall file a stipulation of dismissal with prejudice under Fed. R. Civ. P. 41(a)(1)(A)(ii).
    5. Mediator. The parties thank the Hon. Lorraine T. Feeney (Ret.) of Bayview Dispute Resolution for her assistance.
"""

# -------------------------------------------------------------------------- DOCX

MOTION_PARAGRAPHS = [
    "Tomas Lindgren (SBN 301877)",
    "KESTREL PARTNERS LLP",
    "1200 SW Morrison Street, Portland, Oregon 97205",
    "Attorneys for Defendants BRIGHTLINE LOGISTICS, INC. and DANIEL REYES",
    "",
    "UNITED STATES DISTRICT COURT",
    "NORTHERN DISTRICT OF CALIFORNIA",
    "",
    "ACME CORPORATION, Plaintiff,",
    "v.",
    "BRIGHTLINE LOGISTICS, INC., et al., Defendants.",
    "",
    "DEFENDANTS' NOTICE OF MOTION AND MOTION TO DISMISS THE SECOND CLAIM FOR RELIEF "
    "PURSUANT TO FED. R. CIV. P. 12(b)(6)",
]
MOTION_BODY = [
    "PLEASE TAKE NOTICE that on July 20, 2023, at 2:00 p.m., in Courtroom 6 of the "
    "above-entitled Court, 450 Golden Gate Avenue, San Francisco, California, before the "
    "Honorable Miriam L. Okafor, Defendants Brightline Logistics, Inc. and Daniel Reyes will "
    "and hereby do move to dismiss the Second Claim for Relief of the Complaint filed by "
    "Acme Corporation.",
    "MEMORANDUM OF POINTS AND AUTHORITIES",
    "I. INTRODUCTION",
    "Acme Corp.'s Lanham Act claim rests on two private telephone calls to former customers. "
    'Private statements are not "commercial advertising or promotion" under 15 U.S.C. '
    "§ 1125(a)(1)(B). See Coastal Abstract Serv., Inc. v. First Am. Title Ins. Co., 173 F.3d "
    "725, 735 (9th Cir. 1999).",
    "II. LEGAL STANDARD",
    "A complaint survives a motion to dismiss only if its factual allegations make the "
    "claim plausible rather than merely conceivable. Ashcroft v. Iqbal, 556 U.S. 662, 678 "
    "(2009); Bell Atlantic Corp. v. Twombly, 550 U.S. 544, 570 (2007). Conclusory "
    "allegations are not entitled to the assumption of truth. Smith v. Jones, 123 F.3d 456, "
    "459 (9th Cir. 1999).",
    "III. ARGUMENT",
    "The Complaint alleges no statement disseminated to the relevant purchasing public. "
    "Acme's remaining claim for breach of the March 14, 2021 Master Services Agreement, "
    "which seeks $3,180,500, belongs in state court; this Court should decline supplemental "
    "jurisdiction under 28 U.S.C. § 1367(c)(3).",
    "IV. CONCLUSION",
    "For these reasons, the Court should dismiss the Second Claim for Relief without leave "
    "to amend.",
    "Dated: June 12, 2023",
    "KESTREL PARTNERS LLP",
    "By: /s/ Tomas Lindgren",
]
MOTION_TABLE = [
    ("Hearing date", "July 20, 2023, 2:00 p.m."),
    ("Judge", "Hon. Miriam L. Okafor"),
    ("Case number", CASE_NO),
    ("Complaint filed", "April 3, 2023"),
]


def _fixed_zip(data: bytes) -> bytes:
    """Rewrite a ZIP with fixed member dates: python-docx stamps the current time."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=ZIP_DATE)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


def make_docx() -> bytes:
    document = docx.Document()
    props = document.core_properties
    props.author = "Kestrel Partners LLP"
    props.title = "Motion to Dismiss"
    props.created = props.modified = props.last_printed = FIXED_DATE.replace(tzinfo=None)
    props.revision = 1
    document.sections[0].header.paragraphs[0].text = f"Case No. {CASE_NO}"
    for text in MOTION_PARAGRAPHS:
        document.add_paragraph(text)
    table = document.add_table(rows=0, cols=2)
    for label, value in MOTION_TABLE:
        cells = table.add_row().cells
        cells[0].text, cells[1].text = label, value
    for text in MOTION_BODY:
        document.add_paragraph(text)
    buf = io.BytesIO()
    document.save(buf)
    return _fixed_zip(buf.getvalue())


# --------------------------------------------------------------------------- TXT

ORDER = f"""UNITED STATES DISTRICT COURT
NORTHERN DISTRICT OF CALIFORNIA

ACME CORPORATION,
          Plaintiff,
     v.
BRIGHTLINE LOGISTICS, INC., et al.,
          Defendants.

Case No. {CASE_NO}

ORDER GRANTING IN PART AND DENYING IN PART DEFENDANTS' MOTION TO DISMISS;
CASE MANAGEMENT SCHEDULING ORDER

Re: Dkt. No. 24

Before the Court is the motion of Defendants Brightline Logistics, Inc. and Daniel Reyes
to dismiss the Second Claim for Relief. Having considered the papers and the arguments
of counsel at the hearing on July 20, 2023, the Court GRANTS the motion with leave to
amend as to the claim under 15 U.S.C. § 1125(a) and DENIES it in all other respects.

A statement made to a handful of customers can be commercial promotion if it is part of
an organized campaign. Coastal Abstract Serv., Inc. v. First Am. Title Ins. Co., 173 F.3d
725, 735 (9th Cir. 1999). Acme Corp. has not alleged such a campaign, but it may be able
to. See Iqbal, 556 U.S. at 678.

The Court retains supplemental jurisdiction over the contract claim under 28 U.S.C.
§ 1367(a); the amount in controversy ($3,180,500) also satisfies 28 U.S.C. § 1332.

SCHEDULE
  Amended complaint due ............................ August 18, 2023
  Close of fact discovery .......................... March 29, 2024
  Mediation with Bayview Dispute Resolution by ..... April 30, 2024
  Pretrial conference .............................. September 12, 2024
  Jury trial (5 days) .............................. October 7, 2024

IT IS SO ORDERED.

Dated: July 27, 2023

                                        ______________________________
                                        MIRIAM L. OKAFOR
                                        United States District Judge
"""

STIPULATION = f"""UNITED STATES DISTRICT COURT
NORTHERN DISTRICT OF CALIFORNIA

ACME CORPORATION v. BRIGHTLINE LOGISTICS, INC., et al.
Case No. {CASE_NO}

[DRAFT] STIPULATION OF DISMISSAL WITH PREJUDICE

Plaintiff Acme Corporation and Defendants Brightline Logistics, Inc. and Daniel Reyes,
through their counsel of record, stipulate under Fed. R. Civ. P. 41(a)(1)(A)(ii) to the
dismissal of this action with prejudice, each party to bear its own fees and costs.

Dated: April __, 2024
HOLLIS & MARSH LLP, by Priya Natarajan, Attorneys for Plaintiff
KESTREL PARTNERS LLP, by Tomas Lindgren, Attorneys for Defendants
"""

# -------------------------------------------------------------------------- HTML

OPINION_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Vega v. City of Harbor Point, No. 22-15873 (9th Cir. 2024)</title>
<style>body { font-family: Georgia, serif; } .caption { text-align: center; }</style>
<script>window.analytics = { track: function () { return "not opinion text"; } };</script>
</head>
<body>
<nav><a href="/">Home</a> | <a href="/opinions">Opinions</a></nav>
<main>
<div class="caption">
<p><b>FOR PUBLICATION</b></p>
<h1>UNITED STATES COURT OF APPEALS FOR THE NINTH CIRCUIT</h1>
<p>MARISOL VEGA, <i>Plaintiff-Appellant</i>,<br>v.<br>CITY OF HARBOR POINT; OFFICER
GRANT HOLLOWAY, <i>Defendants-Appellees</i>.</p>
<p>No. 22-15873<br>D.C. No. 4:21-cv-02290-EKW</p>
<p>Appeal from the United States District Court for the Northern District of California,
Evelyn K. Whitford, District Judge, Presiding</p>
<p>Argued and Submitted October 16, 2023, San Francisco, California<br>
Filed February 2, 2024</p>
<p>Before: Rosalind M. Achebe, Peter J. Lindqvist, and Hana S. Moradi, Circuit Judges.</p>
<p>Opinion by Judge Achebe</p>
</div>
<h2>OPINION</h2>
<p>Marisol Vega appeals the summary judgment entered for the City of Harbor Point and
Officer Grant Holloway on her claim under 42 U.S.C. &sect; 1983 that Holloway used excessive
force during a traffic stop on May 6, 2020. We have jurisdiction under 28 U.S.C. &sect; 1291,
and we reverse in part.</p>
<p>Whether force is excessive turns on its objective reasonableness in light of the
circumstances. <i>Graham v. Connor</i>, 490 U.S. 386, 396 (1989). Viewing the evidence in
Vega's favor, a jury could find that Holloway deployed a taser against a passenger who was
seated, unarmed, and complying. <i>See Smith v. Jones</i>, 123 F.3d 456, 463 (9th Cir. 1999).</p>
<p>The City cannot be liable merely because it employs Holloway. <i>Monell v. Dep't of Soc.
Servs.</i>, 436 U.S. 658, 691 (1978). Vega identified no policy or custom of the Harbor Point
Police Department, so summary judgment for the City was proper.</p>
<table class="costs">
<tr><th>Item</th><th>Amount</th></tr>
<tr><td>Medical expenses claimed</td><td>$48,312.75</td></tr>
<tr><td>Lost wages claimed</td><td>$19,600.00</td></tr>
</table>
<p><b>AFFIRMED in part, REVERSED in part, and REMANDED.</b> Costs on appeal are awarded to
Vega against Holloway.</p>
</main>
<footer>Page generated for the example corpus.</footer>
</body>
</html>
"""

# ---------------------------------------------------------------------------- EML


def make_eml(term_sheet_pdf: bytes) -> bytes:
    msg = EmailMessage(policy=email_policy)
    msg["From"] = "Priya Natarajan <pnatarajan@hollismarsh.example>"
    msg["To"] = "Tomas Lindgren <tlindgren@kestrelpartners.example>"
    msg["Cc"] = "Lorraine Feeney <lfeeney@bayviewdr.example>"
    msg["Date"] = "Mon, 18 Mar 2024 09:30:00 -0700"
    msg["Subject"] = f"Acme v. Brightline, No. {CASE_NO} - settlement term sheet"
    msg["Message-ID"] = "<acme-brightline-20240318@hollismarsh.example>"
    msg.set_content(
        textwrap.dedent(
            f"""\
            Tomas,

            Following Friday's mediation with Judge Feeney, attached are (1) the term sheet
            reflecting the $1,150,000.00 payment by Brightline Logistics, Inc. to Acme
            Corporation and (2) a draft stipulation of dismissal for Case No. {CASE_NO}
            before Judge Okafor in the Northern District of California.

            Acme Corp. requires the payment within 30 days and the return of its inventory to
            the Oakland warehouse by May 31, 2024. Please confirm that Mr. Reyes will sign
            on behalf of Brightline.

            Best regards,
            Priya Natarajan
            Hollis & Marsh LLP
            """
        )
    )
    msg.add_attachment(
        term_sheet_pdf, maintype="application", subtype="pdf", filename="term_sheet.pdf"
    )
    msg.add_attachment(STIPULATION, subtype="plain", filename="draft_stipulation.txt")
    msg.set_boundary("===============acme-brightline-0001==")
    return bytes(msg.as_bytes())


# --------------------------------------------------------------------------- JSON

CASEBODY_XML = """<casebody xmlns="http://nrs.harvard.edu/urn-3:HLS.Libr.US_Case_Law.Schema.Case_Body:v1" firstpage="212" lastpage="219">
  <parties id="b212-4">HARBOR POINT TENANTS ASSOCIATION, Appellant, v. LINDQVIST PROPERTIES, LLC, Respondent.</parties>
  <docketnumber id="b212-5">No. A171204</docketnumber>
  <court id="b212-6">Court of Appeals of Oregon.</court>
  <decisiondate id="b212-7">Decided November 8, 2023.</decisiondate>
  <attorneys id="b212-9">Renata Oduya argued the cause for appellant.</attorneys>
  <attorneys id="b212-10">Carl B. Estrada, of Estrada &amp; Voss PC, argued the cause for respondent.</attorneys>
  <opinion type="majority">
    <author id="b212-12">MARLOWE, J.</author>
    <p id="b212-13">The Harbor Point Tenants Association appeals a judgment dismissing its claim that Lindqvist Properties, LLC withheld $212,400 in security deposits in violation of ORS 90.300. We review for errors of law, <em>Delgado v. Pruitt</em>, 310 Or App 88, 92 (2021), and reverse.</p>
    <p id="b212-14">The trial court reasoned that the association lacked standing. But an association may sue on behalf of its members when the claim does not require individual proof. <em>See Smith v. Jones</em>, 123 F.3d 456, 458 (9th Cir. 1999) (applying the same principle under 42 U.S.C. &#167; 1983).<page-number citation-index="1" label="213">*213</page-number> Each member's deposit was withheld under the same lease clause on March 1, 2022.</p>
    <p id="b212-15">Reversed and remanded.</p>
  </opinion>
</casebody>"""


def make_cap_json() -> str:
    record = {
        "id": 9_000_001,
        "name": "HARBOR POINT TENANTS ASSOCIATION, Appellant, v. LINDQVIST PROPERTIES, LLC, "
        "Respondent",
        "name_abbreviation": "Harbor Point Tenants Ass'n v. Lindqvist Properties, LLC",
        "decision_date": "2023-11-08",
        "docket_number": "No. A171204",
        "first_page": "212",
        "last_page": "219",
        "citations": [{"type": "official", "cite": "329 Or App 212"}],
        "court": {"name": "Court of Appeals of Oregon", "name_abbreviation": "Or. Ct. App."},
        "jurisdiction": {"name": "Or.", "name_long": "Oregon"},
        "casebody": {"status": "ok", "data": CASEBODY_XML},
    }
    return json.dumps(record, indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------- XML

COLUMBIA_XML = """<opinion>
<reporter_caption><center>ACME CORP. v. DELGADO FREIGHT CO., <citation>288 Cal.App.5th 1043</citation> (Cal. Ct. App. 2023)</center></reporter_caption>
<caption><center>ACME CORPORATION, Plaintiff and Respondent, v. DELGADO FREIGHT COMPANY, Defendant and Appellant.</center></caption>
<docket><center>No. A164552.</center></docket>
<court><center>Court of Appeal of California, First District, Division Three.</center></court>
<date><center>February 21, 2023.</center></date>
<attorneys>  Valerie Ng, Kestrel Partners LLP, for Defendant and Appellant.

Priya Natarajan, Hollis &amp; Marsh LLP, for Plaintiff and Respondent.
</attorneys>
<opinion_byline>  TAKAHASHI, P. J.</opinion_byline>
<opinion_text>  Delgado Freight Company appeals a judgment awarding Acme Corporation $684,250 for cargo lost in transit between Stockton and Reno on August 2, 2021. Delgado contends the claim is preempted by the Carmack Amendment, <italic>49 U.S.C. &#167; 14706</italic>.<page_number>Page 1044</page_number>

We agree with the trial court that the shipment was intrastate in character. <cross_reference>Smith v. Jones, 123 F.3d 456, 460 (9th Cir. 1999)</cross_reference>. Acme Corp. proved the value of the lost fasteners through its invoices, and Delgado offered no contrary evidence.

The judgment is affirmed. Acme Corporation shall recover its costs on appeal.
</opinion_text>
</opinion>
"""


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    term_sheet = make_pdf(paginate(TERM_SHEET), "Settlement Term Sheet")
    files: dict[str, bytes] = {
        "complaint_acme_v_brightline.pdf": make_pdf(
            paginate(COMPLAINT), "Complaint - Acme Corporation v. Brightline Logistics, Inc."
        ),
        "motion_to_dismiss_brightline.docx": make_docx(),
        "order_on_motion_to_dismiss.txt": ORDER.encode("utf-8"),
        "opinion_vega_v_harbor_point.html": OPINION_HTML.encode("utf-8"),
        "email_settlement_term_sheet.eml": make_eml(term_sheet),
        "cap_harbor_point_tenants.json": make_cap_json().encode("utf-8"),
        "opinion_acme_v_delgado.xml": COLUMBIA_XML.encode("utf-8"),
    }
    for name, data in files.items():
        (OUT / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
