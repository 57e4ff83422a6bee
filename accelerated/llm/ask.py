"""One JSON question to the model, validated, with one repair attempt.

How the reply's JSON schema goes with the question is ``LLM_RESPONSE_FORMAT``
(:func:`response_format`): servers differ in what they take, and a tiny local model
writes valid JSON for the schema only when the server constrains its output to it.
Whatever the server promises, the reply is validated here (``decode``).

A reply that ``decode`` rejects (:class:`InvalidReply`) is sent back with the reason
and the model gets one more try; the repaired answer is then stored under the first
question too, so a re-run asks nothing (the invalid first reply never is). A second
invalid reply raises :class:`InvalidReply` naming ``what`` failed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any, Final, TypeVar

import msgspec

from accelerated.llm.client import ChatClient, InvalidReply

T = TypeVar("T")
JSON_OBJECT: Final = {"type": "json_object"}  # vLLM, Ollama and llama.cpp take it too
MODES: Final = ("json_schema", "json_object_schema", "json_object", "none")  # LLM_RESPONSE_FORMAT


def decode_as(decoder: msgspec.json.Decoder[T], content: str, schema: str) -> T:
    """A reply validated by ``decoder``; :class:`InvalidReply` says what is wrong (the
    repair prompt shows it to the model)."""
    try:
        return decoder.decode(content.strip().encode("utf-8"))
    except msgspec.DecodeError as exc:
        raise InvalidReply(f"reply does not match {schema}: {exc}", backend="openai") from None


def load_text(name: str) -> str:
    """A versioned prompt or schema file shipped in ``accelerated/llm/prompts``."""
    return resources.files("accelerated.llm").joinpath(f"prompts/{name}").read_text("utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """``prompts/<name>.schema.json`` made strict (:func:`strict_schema`)."""
    schema: dict[str, Any] = strict_schema(json.loads(load_text(f"{name}.schema.json")))
    return schema


def strict_schema(schema: Any) -> Any:
    """``schema`` as OpenAI's strict mode needs it: every object lists all its properties
    as required and allows no others. The files leave optional fields out of
    ``required``; each of those is nullable (``["string", "null"]``), so requiring it
    asks the model for a ``null`` where it has nothing, and the decoders take ``null``
    for it: the replies accepted are the same."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items()}
    if out.get("type") == "object" and isinstance(out.get("properties"), dict):
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out


def response_format(mode: str, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The ``response_format`` of a request for ``LLM_RESPONSE_FORMAT=mode``.

    ``json_schema``: OpenAI's structured outputs (``strict``: the reply follows the
    schema), which vLLM, llama.cpp's ``llama-server`` and Ollama take too;
    ``json_object_schema``: JSON mode with the schema beside it, the form
    llama-cpp-python's server takes (it turns the schema into a grammar; it refuses
    ``json_schema`` with HTTP 422), as do Together and Fireworks; ``json_object``: JSON
    mode alone, which every one of them takes; ``none``: no ``response_format``."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": True},
        }
    if mode == "json_object_schema":
        return {"type": "json_object", "schema": schema}
    if mode == "json_object":
        return dict(JSON_OBJECT)
    if mode == "none":
        return None
    raise ValueError(f"LLM_RESPONSE_FORMAT {mode!r} is not one of {', '.join(MODES)}")


async def ask_json(
    client: ChatClient,
    messages: list[dict[str, str]],
    decode: Callable[[str], T],
    *,
    response_format: dict[str, Any] | None,
    prompt_version: str,
    schema_version: str,
    what: str,
    shape: str,
) -> T:
    """``decode(reply)``, asking once more with the reason when it raises InvalidReply.

    ``shape`` describes the expected reply for the repair message (``{"same": ...}``);
    ``response_format`` goes with both questions (:func:`response_format`)."""

    def request(msgs: list[dict[str, str]]) -> dict[str, Any]:
        return client.request(
            msgs,
            response_format=response_format,
            prompt_version=prompt_version,
            schema_version=schema_version,
        )

    first_request = request(messages)
    try:
        return await client.complete(first_request, decode)
    except InvalidReply as first:
        bad = first.content if first.content is not None else "(no content)"
        repair = [
            *messages,
            {"role": "assistant", "content": bad},
            {
                "role": "user",
                "content": f"That reply is not valid ({first}). Reply again with only "
                f"the JSON object {shape} described above.",
            },
        ]
    seen: list[str] = []

    def keep(content: str) -> T:
        value = decode(content)
        seen.append(content)
        return value

    try:
        value = await client.complete(request(repair), keep)
    except InvalidReply as second:
        raise InvalidReply(
            f"{what}: the LLM's reply is invalid after one repair attempt ({second})",
            backend="openai",
        ) from None
    await client.remember(first_request, seen[-1])
    return value
