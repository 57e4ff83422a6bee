"""``--show-config``: every setting's resolved value and where it came from.

Part of the CLI edge (it reads the environment and ``.env`` to attribute values, as
pydantic-settings does to set them). Sources, in the order that wins:

* ``env``: the process environment (names in any case, as the settings read them);
* ``.env``: the dotenv file in the working directory;
* ``profile N``: the deployment stage's profile (:mod:`accelerated.profiles`);
* ``argument``: passed in code (tests, an embedding program);
* ``default``: the field's default in :mod:`accelerated.settings`.

Secrets (``SecretStr`` fields) print as ``***`` when set; every other value goes
through :func:`accelerated.redact.redact`, so a password inside a URL is masked too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values
from pydantic import SecretStr

from accelerated.backends import transcriber_name
from accelerated.profiles import STAGE_NAMES
from accelerated.redact import MASK, redact
from accelerated.settings import Settings


@dataclass(frozen=True)
class Row:
    name: str  # the environment variable
    value: str  # as shown (masked)
    source: str


def _shown(value: object) -> str:
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else "(empty)"
    if value is None:
        return "(unset)"
    if isinstance(value, dict | list | tuple):
        return redact(json.dumps(value, default=str))
    return redact(str(value))


def explain(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    env_file: Path | None = Path(".env"),
) -> list[Row]:
    """One row per setting, in the order the settings class declares them."""
    env = {k.upper() for k in (os.environ if environ is None else environ)}
    dotenv: set[str] = set()
    if env_file is not None and env_file.is_file():
        dotenv = {k.upper() for k in dotenv_values(env_file)}
    stage = settings.deployment_stage
    rows = []
    for name in type(settings).model_fields:
        var = name.upper()
        if var in env:
            source = "env"
        elif var in dotenv:
            source = ".env"
        elif name in settings.profile_fields:
            source = f"profile {stage}"
        elif name in settings.model_fields_set:
            source = "argument"
        else:
            source = "default"
        value = _shown(getattr(settings, name))
        if name == "transcribe_backend" and settings.transcribe_backend == "auto":
            value = f"auto ({transcriber_name(settings)})"
        if name == "deployment_stage" and stage is not None:
            value = f"{stage} ({STAGE_NAMES[stage]})"
        rows.append(Row(var, value, source))
    return rows


def render(rows: list[Row]) -> str:
    """Aligned plain text (greppable in a log): ``NAME  value  source``."""
    width = max(len(r.name) for r in rows)
    vwidth = min(48, max(len(r.value) for r in rows))
    return "\n".join(f"{r.name:<{width}}  {r.value:<{vwidth}}  {r.source}" for r in rows)
