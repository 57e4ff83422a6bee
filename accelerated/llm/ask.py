"""One JSON question to the model, validated, with one repair attempt.

A reply that ``decode`` rejects (:class:`InvalidReply`) is sent back with the reason
and the model gets one more try; the repaired answer is then stored under the first
question too, so a re-run asks nothing (the invalid first reply never is). A second
invalid reply raises :class:`InvalidReply` naming ``what`` failed.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any, Final, TypeVar

import msgspec

from accelerated.llm.client import ChatClient, InvalidReply

T = TypeVar("T")
JSON_OBJECT: Final = {"type": "json_object"}  # vLLM, Ollama and llama.cpp take it too


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


async def ask_json(
    client: ChatClient,
    messages: list[dict[str, str]],
    decode: Callable[[str], T],
    *,
    prompt_version: str,
    schema_version: str,
    what: str,
    shape: str,
) -> T:
    """``decode(reply)``, asking once more with the reason when it raises InvalidReply.

    ``shape`` describes the expected reply for the repair message (``{"same": ...}``)."""

    def request(msgs: list[dict[str, str]]) -> dict[str, Any]:
        return client.request(
            msgs,
            response_format=JSON_OBJECT,
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
