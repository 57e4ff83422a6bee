"""``LLM_RESPONSE_FORMAT``: how each LLM component's reply schema goes to the server,
read back from the requests the local test server received; the format is part of the
cache key and of the backend's version; a refused format names the setting; whatever
the server is asked, the reply is validated."""

from __future__ import annotations

import json
import uuid
from typing import Any, get_args

import msgspec
import pytest
import redis.asyncio as aioredis

from accelerated.errors import BackendRejected, BackendUnavailable
from accelerated.llm.ask import MODES, load_schema, load_text, strict_schema
from accelerated.llm.cache import request_key
from accelerated.llm.client import InvalidReply
from accelerated.llm.entities import LlmEntityBackend, decode_reply
from accelerated.llm.resolution import LlmResolver, decode_same
from accelerated.llm.structured import LlmStructuredExtractor
from accelerated.models import ENTITY_TYPES, CanonicalEntity, DocumentFields
from accelerated.settings import Settings
from benchmarks.llm_server import ChatServer, Reply
from tests.support import llm_settings

CHUNK = "Before Judge Quill. Orchard Barn LLC owes $1,200."


def _objects(schema: Any) -> list[dict[str, Any]]:
    """Every object schema inside ``schema``."""
    if isinstance(schema, list):
        return [o for s in schema for o in _objects(s)]
    if not isinstance(schema, dict):
        return []
    found = [schema] if schema.get("type") == "object" else []
    return found + [o for v in schema.values() for o in _objects(v)]


def test_the_setting_lists_the_modes_ask_knows() -> None:
    field = Settings.model_fields["llm_response_format"]
    assert get_args(field.annotation) == MODES
    assert Settings(llm_response_format=" JSON_Schema ").llm_response_format == "json_schema"


def test_schemas_are_strict_and_the_decoders_take_what_they_allow() -> None:
    """OpenAI's strict mode: every property required, no others; the optional fields
    are nullable, so a reply with nulls where the model has nothing still decodes."""
    mentions = load_schema("mentions_v1")
    structured = strict_schema(json.loads(load_text("structured_v1.schema.json")))
    for schema in (mentions, load_schema("same_v1"), structured):
        objects = _objects(schema)
        assert objects
        for o in objects:
            assert o["required"] == list(o["properties"]) and o["additionalProperties"] is False
    item = mentions["properties"]["mentions"]["items"]
    assert tuple(item["properties"]["type"]["enum"]) == ENTITY_TYPES  # the one vocabulary
    assert decode_reply('{"mentions": [{"type": "JUDGE", "text": "Quill", "start": null}]}')
    assert decode_same('{"same": false, "reason": null}').same is False
    fields = msgspec.json.decode(
        b'{"caption": null, "court": null, "docket_numbers": [], "filing_date": null, '
        b'"document_type": null, "parties": [{"name": "Vell", "role": null}], "judges": [], '
        b'"counsel": [{"name": "Oda", "firm": null, "represents": null}]}',
        type=DocumentFields,
    )
    assert fields.parties[0].role is None
    # The file's own form (in the prompt) is unchanged: optional fields not required.
    raw = json.loads(load_text("structured_v1.schema.json"))
    assert "role" not in raw["properties"]["parties"]["items"]["required"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            "json_schema",
            lambda s: {
                "type": "json_schema",
                "json_schema": {"name": "mentions_v1", "schema": s, "strict": True},
            },
        ),
        ("json_object_schema", lambda s: {"type": "json_object", "schema": s}),
        ("json_object", lambda s: {"type": "json_object"}),
        ("none", lambda s: None),
    ],
)
async def test_the_request_carries_the_format(
    mode: str,
    expected: Any,
    settings: Settings,
    chat_server: ChatServer,
    redis: aioredis.Redis,
) -> None:
    backend = LlmEntityBackend(
        llm_settings(settings, chat_server, llm_response_format=mode), redis=redis
    )
    [got] = await backend.extract_async([CHUNK])
    await backend.aclose()
    assert [(m.type, CHUNK[m.start : m.end]) for m in got] == [("JUDGE", "Quill")]
    [sent] = [r.body for r in chat_server.received]
    want = expected(load_schema("mentions_v1"))
    if want is None:
        assert "response_format" not in sent
    else:
        assert sent["response_format"] == want


async def test_structured_and_resolution_send_their_schemas(
    settings: Settings, chat_server: ChatServer, redis: aioredis.Redis
) -> None:
    s = llm_settings(settings, chat_server, llm_response_format="json_schema")
    extractor = LlmStructuredExtractor(s, redis=redis)
    await extractor.extract_fields("IN THE COURT OF TESTS\nOPINION\nJudge Quill wrote.", "other")
    await extractor.aclose()
    resolver = LlmResolver(s, redis=redis)
    pair = [
        CanonicalEntity(id=uuid.uuid4(), project="p", type="ORGANIZATION", key=k, name=k)
        for k in ("orchard barn", "orchard barn holdings")
    ]
    await resolver.resolve("p", pair)
    await resolver.aclose()
    formats = {r.body["response_format"]["json_schema"]["name"]: r for r in chat_server.received}
    assert set(formats) == {"structured_v1", "same_v1"}
    same = formats["same_v1"].body["response_format"]["json_schema"]["schema"]
    assert same == load_schema("same_v1")
    fields = formats["structured_v1"].body["response_format"]["json_schema"]["schema"]
    assert fields["properties"]["filing_date"]["pattern"] == r"^\d{4}-\d{2}-\d{2}$"


async def test_the_format_is_in_the_cache_key_and_the_version(
    settings: Settings, chat_server: ChatServer, redis: aioredis.Redis
) -> None:
    """The same chunk under another format is another question (a constrained reply may
    differ): asked again, not answered from the cache; the same format asks nothing."""
    versions, keys = set(), set()
    for mode, calls in (("json_object", 1), ("json_object_schema", 2), ("json_object", 2)):
        backend = LlmEntityBackend(
            llm_settings(settings, chat_server, llm_response_format=mode), redis=redis
        )
        await backend.extract_async([CHUNK])
        await backend.aclose()
        assert len(chat_server.received) == calls, mode
        versions.add(backend.version)
        client_request = backend.client().request(
            backend.messages(CHUNK),
            response_format=backend.response_format,
            prompt_version="entities_v1",
            schema_version="mentions_v1",
        )
        keys.add(request_key(client_request))
        await backend.aclose()
    assert len(versions) == 2 and len(keys) == 2
    first, second = (r.body for r in chat_server.received)
    assert first["messages"] == second["messages"]
    assert first["response_format"] != second["response_format"]


async def test_a_refused_format_names_the_setting(
    settings: Settings, chat_server: ChatServer, redis: aioredis.Redis
) -> None:
    """A server that does not take the form sent (HTTP 400/422; llama-cpp-python's: 500
    naming response_format, tests/test_llm_real.py): the error says which setting sent
    what, and what else there is."""
    backend = LlmEntityBackend(
        llm_settings(settings, chat_server, llm_response_format="json_schema"), redis=redis
    )
    chat_server.script = [Reply(status=422)]
    with pytest.raises(BackendRejected, match=r"HTTP 422.*LLM_RESPONSE_FORMAT=json_schema"):
        await backend.extract_async([CHUNK])
    # A 500 that does not name response_format is an outage, whatever was sent.
    chat_server.script = [Reply(status=500)]
    with pytest.raises(BackendUnavailable, match="HTTP 500"):
        await backend.extract_async([CHUNK])
    # Without a schema in the request a 422 is only the server's refusal.
    plain = LlmEntityBackend(
        llm_settings(settings, chat_server, llm_response_format="json_object"), redis=redis
    )
    chat_server.script = [Reply(status=422)]
    with pytest.raises(BackendRejected) as err:
        await plain.extract_async([CHUNK])
    assert "LLM_RESPONSE_FORMAT" not in str(err.value)
    await backend.aclose()
    await plain.aclose()


async def test_a_constrained_reply_is_still_validated(
    settings: Settings, chat_server: ChatServer, redis: aioredis.Redis
) -> None:
    """A server that ignores the schema it was sent: the reply is checked, repaired once,
    then the chunk fails; nothing is cached."""
    backend = LlmEntityBackend(
        llm_settings(settings, chat_server, llm_response_format="json_schema"), redis=redis
    )
    chat_server.script = [Reply(content='{"mentions": 3}'), Reply(content='{"found": []}')]
    with pytest.raises(InvalidReply, match="after one repair attempt"):
        await backend.extract_async([CHUNK])
    assert all("response_format" in r.body for r in chat_server.received)
    [got] = await backend.extract_async([CHUNK])  # asked again: the default reply
    assert [m.type for m in got] == ["JUDGE"] and len(chat_server.received) == 3
    await backend.aclose()
