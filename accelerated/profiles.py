"""Deployment stages (``DEPLOYMENT_STAGE``) as profiles of defaults.

A profile only fills in settings the user did not give: anything set in the
environment, in ``.env`` or passed as an argument wins over it, and a profile never
changes a setting it does not name. Unset, no profile applies and the built-in
defaults hold (offline rules, no OCR, no transcription: a trial needs nothing).

1. **Cloud APIs**: entities by rules plus an OpenAI LLM (``rules+llm``), speech by
   OpenAI's audio API, OCR by AWS Textract (asynchronous jobs; AWS credentials from
   botocore's chain, ``AWS_REGION``).
2. **Local models, in Docker**: ``rules+transformers`` on a model in ``/models/ner``,
   faster-whisper on ``/models/whisper``, tesseract; devices chosen automatically.
3. **The GPU host**: stage 2's models on CUDA (a start-up error without a GPU unless
   ``ALLOW_CPU=1``), OCR by Textract; input from S3 is ``--input s3://...``.

Kept free of pydantic so :mod:`accelerated.settings` can import it, and so the
README's table and the tests read the same dictionaries.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, Final

STAGE_NAMES: Final[Mapping[int, str]] = {
    1: "cloud APIs",
    2: "local models (Docker)",
    3: "GPU host",
}

_LOCAL_MODELS: Final[Mapping[str, Any]] = {
    "entity_backend": "rules+transformers",
    "transformers_model": "/models/ner",
    "transcribe_backend": "faster-whisper",
    "transcribe_model": "/models/whisper",
    "ocr_backend": "tesseract",
}

PROFILES: Final[Mapping[int, Mapping[str, Any]]] = {
    1: {
        "entity_backend": "rules+llm",
        "openai_base_url": "https://api.openai.com/v1",
        "llm_model": "gpt-4o-mini",
        "transcribe_backend": "openai",
        "transcribe_model": "whisper-1",
        "ocr_backend": "textract",
    },
    2: {**_LOCAL_MODELS, "transformers_device": "auto", "transcribe_device": "auto"},
    3: {
        **_LOCAL_MODELS,
        "transformers_device": "cuda",
        "transcribe_device": "cuda",
        "ocr_backend": "textract",
    },
}


def stage_of(value: Any) -> int | None:
    """The stage a raw setting names (an int, or a string from the environment);
    None when unset or not a stage (the field's own validation reports that)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        stage = int(str(value).strip())
    except ValueError:
        return None
    return stage if stage in PROFILES else None


def apply_profile(data: MutableMapping[str, Any]) -> list[str]:
    """Fill the profile's values into ``data`` (settings input by field name) where
    absent; returns the field names it filled, for ``--show-config``."""
    stage = stage_of(data.get("deployment_stage"))
    if stage is None:
        return []
    filled = []
    for name, value in PROFILES[stage].items():
        if name not in data:
            data[name] = value
            filled.append(name)
    return filled
