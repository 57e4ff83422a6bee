"""Placeholder: masks URL passwords (replaced by the full redaction module)."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]*)@")


def redact(text: str) -> str:
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
