"""redact(): every shape of password in a URL or DSN is masked; the rest is kept."""

from __future__ import annotations

import io
import logging

import pytest

from accelerated.redact import MASK, RedactingFilter, install_log_redaction, redact

SECRET = "s3cr3t-P4ss"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"redis://:{SECRET}@cache:6379/0", "redis://:***@cache:6379/0"),
        (f"redis://default:{SECRET}@cache:6379/0", "redis://default:***@cache:6379/0"),
        (f"rediss://user:{SECRET}@cache.example.com:6380", "rediss://user:***@cache.example.com"),
        (f"redis+cluster://u:{SECRET}@n1:7000", "redis+cluster://u:***@n1:7000"),
        (f"unix://:{SECRET}@/run/redis.sock?db=2", "unix://:***@/run/redis.sock?db=2"),
        (f"postgresql://app:{SECRET}@db:5432/legal", "postgresql://app:***@db:5432/legal"),
        (f"postgres://app:{SECRET}@db/legal", "postgres://app:***@db/legal"),
        # Raw '@', '/' and ':' inside a password must not leak its tail.
        (f"postgresql://app:a@b/{SECRET}:x@db/legal", "postgresql://app:***@db/legal"),
        (f"postgresql://db/legal?password={SECRET}", "postgresql://db/legal?password=***"),
        (f"postgresql://app@db/legal?sslmode=require&password={SECRET}", "sslmode=require"),
        (f"postgresql://db/legal?sslpassword={SECRET}&sslmode=verify-full", "&sslmode=verify"),
        (f"redis://cache/0?pass={SECRET}", "redis://cache/0?pass=***"),
        (f"https://api.example.com/v1?api_key={SECRET}&q=1", "api_key=***&q=1"),
        (f"https://api.example.com/v1?token={SECRET}", "token=***"),
        (f"https://h/x?X-Amz-Signature={SECRET}", "X-Amz-Signature=***"),
        (f"host=db port=5432 user=app password={SECRET} dbname=legal", "dbname=legal"),
        (f"host=db password='{SECRET} with spaces' dbname=legal", "password='***' dbname"),
        (f"Host=db;Password={SECRET};Database=legal", "Password=***;Database=legal"),
        (f"{{'user': 'app', 'password': '{SECRET}'}}", "'password': '***'"),
        (f'{{"api_key": "{SECRET}"}}', '"api_key": "***"'),
        (
            f"Redis at redis://:{SECRET}@10.0.0.5:6379/0 is unreachable (Error 111)",
            "Redis at redis://:***@10.0.0.5:6379/0 is unreachable (Error 111)",
        ),
    ],
)
def test_secrets_are_masked_and_the_rest_is_kept(text: str, kept: str) -> None:
    out = redact(text)
    assert SECRET not in out
    assert "s3cr3t" not in out  # no fragment of it either
    assert kept in out, out
    assert MASK in out


@pytest.mark.parametrize(
    "text",
    [
        "redis://cache:6379/0",
        "postgresql://app@db:5432/legal",
        'password authentication failed for user "app"',
        "summary: path=accelerated documents=7 done=7",
        "mail jane@example.com about https://example.com/a?b=c",
        "",
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_redact_is_idempotent() -> None:
    once = redact(f"postgresql://u:{SECRET}@h/db?password={SECRET} password={SECRET}")
    assert redact(once) == once
    assert SECRET not in once


def test_log_filter_masks_message_args_and_exception() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test_redact.isolated")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    install_log_redaction(logger)
    install_log_redaction(logger)  # idempotent: one filter, not two
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    try:
        logger.warning("connecting to %s", f"redis://:{SECRET}@h:1/0")
        logger.warning("dsn: " + f"host=h password={SECRET}")
        try:
            raise ConnectionError(f"cannot reach postgresql://u:{SECRET}@h/db")
        except ConnectionError:
            logger.exception("start-up failed with ?token=%s", SECRET)
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert SECRET not in out
    assert "redis://:***@h:1/0" in out
    assert "postgresql://u:***@h/db" in out  # inside the formatted traceback
    assert "Traceback" in out and "?token=***" in out
