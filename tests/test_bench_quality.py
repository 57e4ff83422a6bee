"""``benchmarks.quality`` end to end on a tiny truth folder written for the test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from benchmarks.llm_server import ChatServer
from benchmarks.quality import main, select
from benchmarks.quality_truth import Case
from tests.support import LLM_KEY


def _docket_corpus(tmp_path: Path) -> Path:
    """One PACER-style docket with its expected fields; returns the truth folder."""
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
    return corpus / "truth"


def test_quality_command_scores_a_document(tmp_path: Path) -> None:
    out = tmp_path / "q.json"
    assert main(["--truth", str(_docket_corpus(tmp_path)), "--json", str(out)]) == 0
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


def _point_at(chat_server: ChatServer, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the command reads: the local chat server, the test Redis."""
    for name, value in {
        "OPENAI_BASE_URL": chat_server.base_url,
        "OPENAI_API_KEY": LLM_KEY,
        "LLM_MODEL": "test-model",
        "REDIS_URL": redis_url,
    }.items():
        monkeypatch.setenv(name, value)


def test_the_same_command_scores_an_llm_backend_through_its_cache_and_limiter(
    tmp_path: Path, chat_server: ChatServer, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--entity-backend rules+llm``: the LLM part is awaited against the local
    OpenAI-compatible server (bound to Redis for its cache and limiter under a prefix
    of its own, removed after), merged with the rules by span, scored the same way."""
    _point_at(chat_server, redis_url, monkeypatch)
    out = tmp_path / "q.json"
    truth = _docket_corpus(tmp_path)
    assert main(["--truth", str(truth), "--entity-backend", "rules+llm", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["backend"] == "rules+llm" and report["documents"] == 1
    assert "llm-" in report["backend_version"]
    assert len(chat_server.ok()) == 1  # the model was really asked: one chunk, one call
    llm = report["llm"]
    assert (llm["calls"], llm["cache_hits"], llm["failed_chunks"]) == (1, 0, 0), llm
    assert llm["model"] == "test-model" and llm["response_format"] == "json_object"
    # Scored like any backend: the test server's replies ("Judge <Name>", a court, the
    # caption's parties) become mentions that the truth is matched against.
    by_type = report["by_type"]
    assert sum(v["predicted"] for v in by_type.values()) > 0, by_type
    assert by_type["PARTY"]["truth"] == 3
    client = sync_redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match="bench-quality-*")) == []
    finally:
        client.close()


def test_a_document_the_backend_fails_on_is_listed_and_scored_empty(
    tmp_path: Path, chat_server: ChatServer, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model whose replies never match the schema (a tiny model, say): the run goes
    on, the document is listed as failed and counts with no mentions."""
    chat_server.responder = lambda _body: '{"mentions": [{"text": "x"}]}'  # no type, span
    _point_at(chat_server, redis_url, monkeypatch)
    out = tmp_path / "q.json"
    truth = _docket_corpus(tmp_path)
    assert main(["--truth", str(truth), "--entity-backend", "llm", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["documents"] == 1
    assert len(report["failed"]) == 1 and "invalid after one repair" in report["failed"][0]
    assert all(v["predicted"] == 0 for v in report["by_type"].values())
    assert report["by_type"]["PARTY"]["truth"] == 3  # still counted against the truth


def test_cases_are_selected_the_same_way_for_every_backend() -> None:
    """--family (prefixes), --per-family (the first K of each, by name), --limit (the
    first N of what is left, by family and name), whatever order the truth came in."""
    cases = [
        Case(family=f, name=n, text="t")
        for f, n in (("b/two", "z"), ("a/one", "y"), ("b/two", "x"), ("a/one", "w"), ("c", "v"))
    ]

    def names(
        families: list[str] | None, per: int | None = None, n: int | None = None
    ) -> list[str]:
        return [c.name for c in select(reversed(cases), families, per, n)]

    assert names(None) == ["w", "y", "x", "z", "v"]
    assert names(["a/", "b"]) == ["w", "y", "x", "z"]
    assert names(None, 1) == ["w", "x", "v"]
    assert names(["b"], 1) == ["x"]
    assert names(None, 1, 2) == ["w", "x"]
    assert names(None, None, 3) == ["w", "y", "x"]


def test_a_kept_llm_cache_answers_the_same_questions_of_another_backend(
    tmp_path: Path,
    chat_server: ChatServer,
    redis_url: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--llm-cache PREFIX``: ``llm`` after ``rules+llm`` on the same documents asks the
    same questions, answered from the replies kept (no call); without it, or under
    another response format, they are asked."""
    _point_at(chat_server, redis_url, monkeypatch)
    truth = _docket_corpus(tmp_path)
    client = sync_redis.Redis.from_url(redis_url)
    try:

        def run(backend: str, *extra: str) -> dict[str, Any]:
            out = tmp_path / f"{backend}.json"
            assert main(["--truth", str(truth), "--entity-backend", backend, *extra,
                         "--json", str(out)]) == 0  # fmt: skip
            llm: dict[str, Any] = json.loads(out.read_text())["llm"]
            return llm

        assert run("rules+llm", "--llm-cache", prefix)["calls"] == 1
        assert list(client.scan_iter(match=f"{prefix}*"))  # kept
        again = run("llm", "--llm-cache", prefix)
        assert (again["calls"], again["cache_hits"]) == (0, 1)
        assert len(chat_server.ok()) == 1
        monkeypatch.setenv("LLM_RESPONSE_FORMAT", "json_object_schema")
        other = run("llm", "--llm-cache", prefix)
        assert (other["calls"], other["response_format"]) == (1, "json_object_schema")
        assert chat_server.received[-1].body["response_format"]["type"] == "json_object"
        assert "schema" in chat_server.received[-1].body["response_format"]
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


def test_field_precision_counts_the_predictions_of_the_truths_fields(tmp_path: Path) -> None:
    """The truth lists the docket's filing date only: the entry's deadline is a date the
    document writes (all-mentions precision counts it as false), but it is no field, so
    field precision does not count it; recall is over all predictions either way."""
    corpus = tmp_path / "corpus"
    doc = corpus / "juriscraper" / "pacer_docket_district_html" / "fields.txt"
    doc.parent.mkdir(parents=True)
    doc.write_text(
        "CIVIL DOCKET FOR CASE #: 3:30-cv-00078-XYZ\n\nLane v. Birch Co.\n"
        "Assigned to: Judge Mira T. Oakes\nDate Filed: 01/15/2030\n\n"
        "Date Filed # Docket Text\n"
        "01/20/2030 1 ORDER before Judge Tobias Wren. Answer due 2/5/2030. (Wren, T.)\n"
    )
    truth = corpus / "truth" / "juriscraper" / "pacer_docket_district_html"
    truth.mkdir(parents=True)
    (truth / "fields.expected.json").write_text(
        json.dumps(
            {
                "docket_number": "3:30-cv-00078",
                "assigned_to_str": "Mira T. Oakes",
                "date_filed": "2030-01-15",
            }
        )
    )
    out = tmp_path / "q.json"
    assert main(["--truth", str(corpus / "truth"), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    family = "juriscraper/pacer_docket_district_html"
    # the family's truth fields, as roles: no entry dates in this truth
    assert report["truth_roles"][f"{family} DATE"] == ["filed"]
    assert report["truth_roles"][f"{family} JUDGE"] == ["assigned"]
    date = report["by_type"]["DATE"]
    assert (date["predicted"], date["correct"]) == (3, 1)  # 01/15, 01/20 (an entry's), 2/5
    assert (date["field_predicted"], date["field_correct"]) == (1, 1)
    assert date["field_precision"] == 1.0 and date["recall"] == 1.0
    judge = report["by_type"]["JUDGE"]
    assert judge["precision"] == 0.5 and judge["field_precision"] == 1.0
    assert "field" in report["field_precision_note"] and "Field" in report["matching_rule"]
    assert report["by_type"]["DOCKET_NUMBER"]["field_precision"] == 1.0


def test_matching_rule_initials_surnames_and_court_prefixes() -> None:
    from benchmarks.quality_match import key_of, matches, surname, surname_matches

    def judge(a: str, b: str) -> bool:
        return matches("JUDGE", key_of("JUDGE", a), key_of("JUDGE", b))

    assert judge("David Alan Ezra", "David A. Ezra")  # a middle initial for its name
    assert not judge("David Alan Ezra", "David B. Ezra")
    assert not judge("David Alan Ezra", "Ezra")  # a surname alone: only with the context
    assert surname("Thomas R. Frierson, II") == "frierson"
    assert surname("Roe, Jane") == "roe"
    truth = ["David Alan Ezra", "Leslie E. Kobayashi"]
    keys = {key_of("JUDGE", n) for n in ("Ezra", "David A. Ezra", "Kobayashi", "Susan Kobayashi")}
    # "ezra": the document's only Ezra is the truth's; "kobayashi": the document names
    # another Kobayashi, so the surname alone is not matched
    assert surname_matches(truth, keys) == {"ezra": key_of("JUDGE", "David Alan Ezra")}
    assert matches(
        "DOCKET_NUMBER",
        key_of("DOCKET_NUMBER", "1:20-cv-01296"),
        key_of("DOCKET_NUMBER", "NYS/1:20-cv-01296"),
    )
