"""``benchmarks.quality`` end to end on a tiny truth folder written for the test."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.quality import main


def test_quality_command_scores_a_document(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    doc = corpus / "juriscraper" / "pacer_docket_district_html" / "demo.txt"
    doc.parent.mkdir(parents=True)
    doc.write_text(
        "U.S. District Court\nOregon District (Portland)\n"
        "CIVIL DOCKET FOR CASE #: 3:30-cv-00077-XYZ\n\nLane v. Birch Co.\n"
        "Assigned to: Judge Mira T. Oakes\nDate Filed: 01/15/2030\n\n"
        "Plaintiff\nNora Lane represented by Ezra P. Quill\nQuill LLP\n"
        "ATTORNEY TO BE NOTICED\n\nDefendant\nBirch Co.\n"
    )
    truth = corpus / "truth" / "juriscraper" / "pacer_docket_district_html"
    truth.mkdir(parents=True)
    (truth / "demo.expected.json").write_text(
        json.dumps(
            {
                "court_id": "ord",
                "docket_number": "3:30-cv-00077",
                "assigned_to_str": "Mira T. Oakes",
                "date_filed": "2030-01-15",
                "parties": [
                    {
                        "name": "Nora Lane",
                        "type": "Plaintiff",
                        "attorneys": [{"name": "Ezra P. Quill"}],
                    },
                    {"name": "Birch Co.", "type": "Defendant", "attorneys": []},
                    {"name": "Someone Absent", "type": "Defendant", "attorneys": []},
                ],
            }
        )
    )
    out = tmp_path / "q.json"
    assert main(["--truth", str(corpus / "truth"), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["documents"] == 1
    assert "Matching rule" not in report["matching_rule"]  # the rule itself, stated
    by_type = report["by_type"]
    for etype in ("COURT", "DOCKET_NUMBER", "JUDGE", "DATE", "ATTORNEY"):
        assert by_type[etype]["recall"] == 1.0, (etype, by_type[etype])
    assert by_type["PARTY"]["truth"] == 3
    assert by_type["PARTY"]["found"] == 2  # "Someone Absent" is not in the text
    assert by_type["PARTY"]["truth_in_text"] == 2
    # where the truth lists fields rather than every mention, the output says so
    notes = report["truth_notes"]
    assert any(k.startswith("juriscraper/pacer_docket_district_html") for k in notes)
    assert all(isinstance(v, str) and v for v in notes.values())
