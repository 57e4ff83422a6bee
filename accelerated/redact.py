"""Mask passwords in any text before it reaches a terminal, a log or an exception.

Connection strings travel into messages in many ways: our own notices ("Redis at
URL is unreachable"), driver exceptions that echo their DSN, tracebacks, ``repr`` of
settings. Rather than trusting every call site to strip them, the CLI edge runs all
of its output through :func:`redact`, and :func:`install_log_redaction` puts a
:class:`RedactingFilter` on every root handler so log records are masked as well.

Three shapes are masked, wherever they appear in the text:

* URL userinfo: ``redis://:pw@h``, ``postgresql://u:pw@h/db`` (any scheme): the part
  after the first ``:`` of the userinfo, up to its last ``@`` (a raw ``@`` or ``/`` in
  a password is common and must not leak the tail);
* query-string and keyword secrets: ``?password=``, ``&sslpassword=``, ``token=``,
  ``api_key=`` and every key that contains such a word, as in libpq's
  ``host=h password=pw`` form (quoted values included);
* ``'password': 'pw'`` in dict reprs.

It errs on the side of masking too much: a mangled host name in a message is a small
cost, a leaked password is not.
"""

from __future__ import annotations

import logging
import re

MASK = "***"

# A URL-like token: scheme://, then everything up to whitespace or a quote/bracket.
_URL = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>[^\s'\"<>`]*)")

# Keys whose values are secrets: any key containing one of these words.
_SECRET_WORD = (
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|credential|signature|auth)"
)
_KEY = rf"[A-Za-z0-9_.-]*{_SECRET_WORD}[A-Za-z0-9_.-]*"
# key=value (query strings, libpq keyword DSNs, ADO-style strings); a value is a quoted
# string (libpq allows backslash escapes) or a run up to a separator.
_KEYWORD = re.compile(
    rf"(?P<key>(?<![A-Za-z0-9_.-]){_KEY})(?P<eq>\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s&;'\"]+)",
    re.IGNORECASE,
)
# 'password': 'value' / "token": "value" in dict and JSON reprs.
_MAPPING = re.compile(
    rf"(?P<key>['\"]{_KEY}['\"]\s*:\s*)(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")",
    re.IGNORECASE,
)


def _mask_userinfo(m: re.Match[str]) -> str:
    scheme, rest = m.group("scheme"), m.group("rest")
    at = rest.rfind("@")
    if at < 0:
        return m.group(0)
    userinfo, tail = rest[:at], rest[at:]
    colon = userinfo.find(":")
    if colon < 0:
        return m.group(0)  # a user name alone is not a secret
    return f"{scheme}{userinfo[: colon + 1]}{MASK}{tail}"


def _mask_value(m: re.Match[str]) -> str:
    value = m.group("value")
    if value == MASK:
        return m.group(0)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{m.group('key')}{m.group('eq')}{quote}{MASK}{quote}"


def _mask_mapping(m: re.Match[str]) -> str:
    quote = m.group("value")[0]
    return f"{m.group('key')}{quote}{MASK}{quote}"


def redact(text: str) -> str:
    """``text`` with every password-like value of every URL or DSN in it masked."""
    if not text:
        return text
    out = _URL.sub(_mask_userinfo, text)
    out = _KEYWORD.sub(_mask_value, out)
    return _MAPPING.sub(_mask_mapping, out)


class RedactingFilter(logging.Filter):
    """Redact a record's message, arguments, exception and stack text in place.

    The message is rendered first (``getMessage``) so a secret split between the
    format string and an argument is still seen whole; the exception is formatted here
    and cached in ``exc_text``, which ``logging.Formatter`` then prints instead of
    formatting the traceback again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep logging's own error path
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Put one :class:`RedactingFilter` on ``logger`` (the root) and on each of its handlers.

    Filters on a logger see only records logged on that very logger; records from
    ``accelerated.*`` propagate to the root's *handlers* without passing the root's
    filters. So the handlers are where redaction must sit; call this after
    ``logging.basicConfig``. Idempotent.
    """
    target = logger or logging.getLogger()
    existing = [f for f in target.filters if isinstance(f, RedactingFilter)]
    filt = existing[0] if existing else RedactingFilter()
    if not existing:
        target.addFilter(filt)
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(filt)
    return filt
