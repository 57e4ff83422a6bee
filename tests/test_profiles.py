"""Deployment stages: profiles of defaults, explicit settings win, impossible ones stop.

The CLI checks run the real ``python -m accelerated.batch`` / ``accelerated.worker``
in a scratch working directory (so its ``.env`` is the test's), with
``CUDA_VISIBLE_DEVICES=""`` so that torch sees no GPU on any machine.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from accelerated.cli import EXIT_OK, EXIT_USAGE
from accelerated.devices import resolve_device
from accelerated.errors import ConfigError
from accelerated.profiles import PROFILES
from accelerated.settings import Settings
from tests.support import PYTHON

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-profile-Secret-9931"
PG_PASSWORD = "pg-profile-Secret-4410"


def _settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper() in {f.upper() for f in Settings.model_fields}:
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("stage", "entities", "transcriber", "device", "ocr"),
    [
        (1, "rules+llm", "openai", "auto", "textract"),
        (2, "rules+transformers", "faster-whisper", "auto", "tesseract"),
        (3, "rules+transformers", "faster-whisper", "cuda", "textract"),
    ],
)
def test_each_stage_resolves_to_its_documented_backends(
    stage: int, entities: str, transcriber: str, device: str, ocr: str
) -> None:
    s = _settings(deployment_stage=stage)
    assert s.entity_backend == entities
    assert s.transcribe_backend == transcriber
    assert s.transformers_device == device
    assert s.ocr_backend == ocr
    assert s.profile_fields == frozenset(PROFILES[stage])
    if stage == 1:
        assert (s.openai_base_url, s.llm_model) == ("https://api.openai.com/v1", "gpt-4o-mini")
    else:
        assert (s.transformers_model, s.transcribe_model) == ("/models/ner", "/models/whisper")


def test_no_stage_keeps_the_built_in_defaults_and_an_explicit_setting_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = _settings()
    assert plain.deployment_stage is None and plain.profile_fields == frozenset()
    assert (plain.entity_backend, plain.ocr_backend, plain.transcribe_backend) == (
        "rules",
        "tesseract",  # local OCR is the built-in default (issue 9)
        "auto",
    )
    monkeypatch.setenv("DEPLOYMENT_STAGE", "2")
    monkeypatch.setenv("ENTITY_BACKEND", "rules")
    monkeypatch.setenv("TRANSFORMERS_MODEL", "/srv/ner")
    s = _settings(ocr_backend="none")
    assert (s.entity_backend, s.transformers_model, s.ocr_backend) == ("rules", "/srv/ner", "none")
    assert s.transcribe_backend == "faster-whisper"  # not given: the profile's
    assert {"entity_backend", "transformers_model", "ocr_backend"}.isdisjoint(s.profile_fields)
    monkeypatch.setenv("DEPLOYMENT_STAGE", "")  # compose's ${DEPLOYMENT_STAGE:-}
    assert _settings().deployment_stage is None


def test_devices_resolve_and_a_missing_gpu_is_an_error_unless_allowed() -> None:
    def none() -> bool:
        return False

    def one() -> bool:
        return True

    assert resolve_device("auto", setting="X", allow_cpu=False, probe=none) == "cpu"
    assert resolve_device("auto", setting="X", allow_cpu=False, probe=one) == "cuda"
    assert resolve_device("cpu", setting="X", allow_cpu=False, probe=one) == "cpu"
    assert resolve_device("cuda", setting="X", allow_cpu=True, probe=none) == "cpu"
    with pytest.raises(ConfigError, match=r"X=cuda but no CUDA device.*ALLOW_CPU=1"):
        resolve_device("cuda", setting="X", allow_cpu=False, probe=none)


def _cli(module: str, args: list[str], cwd: Path, **env: str) -> tuple[int, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in {f.upper() for f in Settings.model_fields}
    }
    full = {**base, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", **env}
    proc = subprocess.run(
        [PYTHON, "-m", module, *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_show_config_says_where_each_value_came_from_with_secrets_masked(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"LLM_MODEL=gpt-4o\nDATABASE_URL=postgresql://u:{PG_PASSWORD}@db/x\n"
    )
    code, out = _cli(
        "accelerated.batch",
        ["--show-config"],
        tmp_path,
        DEPLOYMENT_STAGE="2",
        ENTITY_BACKEND="rules",
        OPENAI_API_KEY=SECRET,
    )
    assert code == EXIT_OK, out
    assert SECRET not in out and PG_PASSWORD not in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["DEPLOYMENT_STAGE"].endswith("env")
    assert lines["ENTITY_BACKEND"].split()[1:] == ["rules", "env"]
    assert lines["TRANSFORMERS_MODEL"].split()[1:] == ["/models/ner", "profile", "2"]
    assert lines["OCR_BACKEND"].split()[1:] == ["tesseract", "profile", "2"]
    assert lines["LLM_MODEL"].split()[1:] == ["gpt-4o", ".env"]
    assert lines["DATABASE_URL"].split()[1:] == ["postgresql://u:***@db/x", ".env"]
    assert lines["OPENAI_API_KEY"].split()[1:] == ["***", "env"]
    assert lines["CHUNK_CHARS"].split()[1:] == ["2000", "default"]
    code, out = _cli("accelerated.worker", ["--show-config"], tmp_path, DEPLOYMENT_STAGE="1")
    assert code == EXIT_OK, out
    assert "ENTITY_BACKEND" in out and "rules+llm" in out and "profile 1" in out


def test_stage_3_without_a_gpu_stops_at_start_up_unless_cpu_is_allowed(tmp_path: Path) -> None:
    code, out = _cli("accelerated.worker", [], tmp_path, DEPLOYMENT_STAGE="3")
    assert code == EXIT_USAGE, out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, out
    assert "DEPLOYMENT_STAGE=3" in lines[0] and "ALLOW_CPU=1" in lines[0]
    assert "Traceback" not in out
    code, out = _cli(
        "accelerated.batch", ["--show-config"], tmp_path, DEPLOYMENT_STAGE="3", ALLOW_CPU="1"
    )
    assert code == EXIT_OK, out
    # Allowed onto the CPU, stage 3 still needs Textract's staging bucket and its models:
    # the next start-up errors, one line each time.
    code, out = _cli("accelerated.worker", [], tmp_path, DEPLOYMENT_STAGE="3", ALLOW_CPU="1")
    assert code == EXIT_USAGE, out
    assert "OCR_BACKEND=textract needs TEXTRACT_STAGING" in out and "Traceback" not in out
    code, out = _cli(
        "accelerated.worker",
        [],
        tmp_path,
        DEPLOYMENT_STAGE="3",
        ALLOW_CPU="1",
        OCR_BACKEND="tesseract",  # an explicit setting wins over the profile
    )
    assert code == EXIT_USAGE, out
    assert "TRANSFORMERS_MODEL=/models/ner" in out and "Traceback" not in out
