"""One settings object, read from the environment and ``.env`` at the CLI edge only.

Components take a ``Settings`` (or the few values they need) as an argument; nothing
below the CLI reads ``os.environ``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from accelerated.profiles import apply_profile

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
S3_URI_RE = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?")
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
DATABASE_SCHEMES = ("postgresql", "postgres")

# Lower bounds of the numeric settings: a negative size or a zero batch is a typo that
# would otherwise surface much later as a hang or a confusing driver error. (block_ms
# 0 would make XREADGROUP block for ever; claim_idle_ms 0 would reclaim everything.)
MIN_VALUES: dict[str, float] = {
    "pg_statement_cache_size": 0,
    "pg_pool_size": 1,
    "ttl_stage_s": 1,
    "ttl_cache_s": 1,
    "max_value_bytes": 1,
    "max_decompressed_bytes": 1,
    "max_file_bytes": 1,
    "chunk_chars": 1,
    "chunk_overlap": 0,
    "concurrency": 1,
    "read_count": 1,
    "handoff_memo_bytes": 0,
    "handoff_memo_s": 0,
    "block_ms": 1,
    "read_linger_ms": 0,
    "claim_idle_ms": 1,
    "stream_shards": 1,
    "max_deliveries": 1,
    "cpu_workers": 0,
    "wb_batch_rows": 1,
    "wb_batch_ms": 0,
    "wb_backlog_max": 1,
    "wb_retry_max_s": 0,
    "llm_rpm": 1,
    "llm_tpm": 1,
    "llm_budget_tokens": 0,
    "llm_max_tokens": 1,
    "llm_temperature": 0,
    "llm_concurrency": 1,
    "llm_timeout_s": 0.001,
    "llm_window_margin_s": 0,
    "structured_head_chars": 200,
    "llm_resolution_min_score": 0,
    "llm_resolution_max_pairs": 0,
    "legacy_timeout_s": 0.001,
    "s3_list_page_size": 1,
    "aws_max_attempts": 1,
    "aws_connect_timeout_s": 0.001,
    "aws_read_timeout_s": 0.001,
    "textract_tps": 1,
    "textract_poll_s": 0.01,
    "textract_poll_max_s": 0.01,
    "textract_lock_ttl_s": 0.5,
    "textract_job_ttl_s": 60,
    "textract_timeout_s": 1,
    "transformers_max_length": 8,
    "transformers_stride": 0,
    "ner_batch_tokens": 64,
    "ner_max_batch": 1,
    "ner_max_wait_ms": 0,
    "transcribe_beam_size": 1,
    "transcribe_window_s": 30,
    "transcribe_cpu_threads": 0,
    "ocr_max_pages": 1,
    "ocr_max_pixels": 1,
    "ocr_page_timeout_s": 0.001,
}
S3_MAX_KEYS = 1000  # ListObjectsV2 returns at most this many keys a page
# Pillow refuses, as a decompression bomb, an image of more than twice its own
# MAX_IMAGE_PIXELS (89,478,485) whatever we allow: OCR_MAX_PIXELS cannot go beyond.
PILLOW_MAX_PIXELS = 2 * (1024 * 1024 * 1024 // 4 // 3)


def url_scheme(url: str) -> str | None:
    """The scheme of ``url`` (lower case), or None when it has no ``scheme://``."""
    m = _SCHEME_RE.match(url)
    return m.group(1).lower() if m else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)
    _profile_fields: frozenset[str] = PrivateAttr(default_factory=frozenset)

    # Connections: unset means "start embedded servers under state_dir".
    redis_url: str | None = None
    database_url: str | None = None
    enable_redis_acceleration: bool = True
    # Profiles of defaults (accelerated/profiles.py): 1 cloud APIs, 2 local models in
    # Docker, 3 GPU host. Unset: the built-in defaults below.
    deployment_stage: int | None = Field(None, ge=1, le=3)
    allow_cpu: bool = False  # stage 3 (or a cuda device) may run without a GPU
    state_dir: Path = Path(".state")

    # Isolation: every Redis key starts with redis_prefix; every table lives in pg_schema.
    redis_prefix: str = "lp"
    pg_schema: str = "legal"
    pg_statement_cache_size: int = 100  # 0 for Supabase's pooler / pgbouncer
    pg_pool_size: int = 8

    # Stage outputs in Redis: TTLs (seconds) and size caps (bytes).
    ttl_stage_s: int = 7 * 24 * 3600
    ttl_cache_s: int = 30 * 24 * 3600
    ttl_done_s: int = 3600  # state and outputs of a committed document (0: keep ttl_stage_s)
    max_value_bytes: int = 64 * 1024 * 1024  # compressed value cap per key
    max_decompressed_bytes: int = 512 * 1024 * 1024  # zip-bomb guard on reads
    max_file_bytes: int = 200 * 1024 * 1024  # larger inputs fail with a clear error
    # Values over max_value_bytes (a huge document's outputs or intent) go to a spill
    # directory, with a reference in Redis; spill_dir must be shared by all workers.
    spill: bool = True
    spill_dir: Path | None = None  # default: <state_dir>/spill
    max_text_chars: int = 20_000_000  # ~6,000 pages; more text fails at once, not after hours

    # Chunking.
    chunk_chars: int = 2000
    chunk_overlap: int = 200

    # Engine.
    concurrency: int = 16  # documents in flight per stage in one process
    read_count: int = 16  # XREADGROUP COUNT
    # Stage outputs kept in memory for the next stage in this process (Redis keeps the
    # durable copy): budget in compressed bytes, and how long an entry may wait.
    handoff_memo_bytes: int = 32 * 1024 * 1024
    handoff_memo_s: float = 300.0
    block_ms: int = 200
    read_linger_ms: int = 5  # after a partial read, wait this long before the next one
    # Run a document's next stage in the same task when this process serves it and has a
    # slot free there, committing both outputs in one advance (accelerated path only).
    # false: every stage hands off through its stream (one document's stages spread
    # over the workers).
    inline_stages: bool = True
    claim_idle_ms: int = 60_000  # XAUTOCLAIM messages idle this long
    # Stage streams per stage (each document belongs to one shard; see accelerated/keys.py).
    # Unset: what the prefix's keys were laid out with, else 1 on a single Redis and
    # 8 on a cluster. Every process on one prefix must use the same.
    stream_shards: int | None = Field(None, le=256)
    max_deliveries: int = 3  # then the message goes to the stage's dead-letter stream
    cpu_pool: Literal["process", "thread"] = "process"  # where CPU-bound stage code runs
    cpu_workers: int = 0  # 0: one per core
    entity_backend: str = "rules"  # an ENTITY_BACKENDS name: rules, transformers, llm, ...
    # Backends, time limits, shutdown (see accelerated/backends.py, accelerated/pipeline.py).
    # OCR (accelerated/stages/ocr.py): an OCR_ENGINES name; "none": scans end as needs_ocr.
    ocr_backend: str = "tesseract"
    # Bounds per document: pages to OCR (more fails the document before any is read),
    # pixels per page (checked from the header, before decoding: decompression bombs),
    # and seconds per page (a page over it fails the document; pages read are cached).
    ocr_max_pages: int = 1000
    ocr_max_pixels: int = Field(50_000_000, le=PILLOW_MAX_PIXELS)
    ocr_page_timeout_s: float = 120.0
    # Legacy word processor files through external programs (accelerated/extractors/
    # legacy.py): .doc by antiword, .wpd by wpd2text; .rtf needs no program. "on": both
    # must be installed (else a start-up error naming the package); "auto": use those
    # found, files needing a missing one fail as unsupported_format; "off": never run them.
    legacy_formats: Literal["on", "auto", "off"] = "on"
    antiword_cmd: str = "antiword"  # a name looked up on PATH, or a path
    wpd2text_cmd: str = "wpd2text"
    legacy_timeout_s: float = 60.0  # per file; a program still running then is killed
    # Modules imported at start-up, which register backends: "pkg.mod,other.mod".
    plugins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Per stage time limit in seconds: "extract=600,entities=120" (or JSON).
    stage_time_limits: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    shutdown_grace_s: float = 30.0  # worker: finish in-flight work within this, then give back
    cpu_retries: int = 2  # resubmissions of a call whose pool child died under it
    allow_eviction: bool = False  # run although Redis has an allkeys-* policy (may lose work)
    # Redis unreachable or full during a batch: "wait" (say so, carry on when it is back),
    # "fail" (exit 3 once it has lasted redis_outage_limit_s) or "traditional" (past the
    # limit, the documents not yet handed to Redis run on the traditional path while
    # those already handed wait for it). See batch_run.run_batch.
    redis_outage: Literal["wait", "fail", "traditional"] = "wait"
    redis_outage_limit_s: float = 600.0
    # Log lines: "text" (time level logger: message) or "json" (one object per line,
    # for log shippers: ts, level, logger, message and the record's fields; see
    # accelerated/logs.py). Terminal output (progress bar, summary) is not a log.
    log_format: Literal["text", "json"] = "text"

    # Write-behind writer.
    wb_batch_rows: int = 20_000
    wb_batch_ms: int = 1000  # larger batches: fewer DB round trips per document
    wb_backlog_max: int = 5_000  # intents pending before intake pauses (backpressure)
    wb_retry_max_s: float = 5.0  # the writer resumes within this after an outage ends

    # AWS (accelerated/aws.py): credentials from the usual chain (AWS_ACCESS_KEY_ID /
    # AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE and ~/.aws, an instance or
    # task role), read by botocore itself and never by these settings. The region is
    # AWS_REGION, else botocore's AWS_DEFAULT_REGION / config file, else us-east-1 for S3.
    aws_region: str | None = None
    # Another S3-compatible endpoint (MinIO, moto, LocalStack): path-style addressing.
    s3_endpoint_url: str | None = None
    s3_list_page_size: int = S3_MAX_KEYS  # ListObjectsV2 MaxKeys (1-1000)
    aws_max_attempts: int = 5  # per call, botocore "standard" retry mode with backoff
    aws_connect_timeout_s: float = 10.0
    aws_read_timeout_s: float = 60.0  # between bytes of a reply, not for the whole body
    # Spill to the object store (s3://bucket/prefix) instead of spill_dir: needed when
    # workers on other hosts share no volume. Unset: the local directory.
    spill_url: str | None = None

    # API keys (later backends); never logged.
    openai_api_key: SecretStr | None = None

    # LLM backends (accelerated/llm/): any OpenAI-compatible API (OpenAI, vLLM, Ollama,
    # llama.cpp's server). The limits hold for every worker on every host together.
    openai_base_url: str | None = None  # e.g. https://api.openai.com/v1
    llm_model: str | None = None  # e.g. gpt-4o-mini
    llm_rpm: int = 500  # requests a minute
    llm_tpm: int = 200_000  # tokens (prompt + completion) a minute
    llm_budget_tokens: int = 0  # a run makes no new call past this many tokens (0: none)
    llm_max_tokens: int = 1024  # per reply; reserved with the prompt before each call
    llm_temperature: float = 0.0
    llm_concurrency: int = 8  # calls in flight per process
    llm_timeout_s: float = 60.0
    # How a question's reply schema goes to the server (accelerated/llm/ask.py): servers
    # differ in what they take. "json_schema": OpenAI's structured outputs, strict (also
    # vLLM, llama.cpp's llama-server, Ollama); "json_object_schema": JSON mode with the
    # schema beside it (llama-cpp-python's server, which refuses json_schema; Together,
    # Fireworks); "json_object": JSON mode alone, no schema (every server above takes
    # it, hence the default); "none": no response_format. Only the schema forms make a
    # small model's reply follow the schema; every reply is validated whatever is sent.
    llm_response_format: Literal["json_schema", "json_object_schema", "json_object", "none"] = (
        "json_object"
    )
    # A call stays in the limiter's window this much longer than the minute: the time
    # between its admission and its arrival at the server (a busy event loop, a new
    # connection). The server's count holds while that delay is under the margin; the
    # price is margin / (60 + margin) of the rate (1.6 % at 1 s).
    llm_window_margin_s: float = 1.0
    # USD per million tokens, (prompt, completion), for the summary's cost estimate:
    # LLM_PRICES='{"gpt-4o-mini": [0.15, 0.6]}'. Models not listed cost 0.
    llm_prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {"gpt-4o-mini": (0.15, 0.6), "gpt-4o": (2.5, 10.0)}
    )
    # Document-level fields (caption, court, dockets, filing date, type, parties, judges,
    # counsel) into documents.metadata.structured: "none" or a STRUCTURED_EXTRACTORS name
    # ("llm"). The prompt gets the head of the cleaned text: the first page, at least
    # ~1,500 characters of it when the first page is shorter, at most this many.
    structured_extraction: str = "none"
    structured_head_chars: int = 6000
    # Cross-document merging of the project's canonical entities at the end of every
    # batch: "none" or a RESOLVERS name ("llm"). Candidate pairs: same type, rapidfuzz
    # token_set_ratio >= the score below, at most max_pairs per batch (best first).
    resolution: str = "none"
    llm_resolution_min_score: int = 85
    llm_resolution_max_pairs: int = 2000

    # OCR_BACKEND=textract (accelerated/ocr/textract.py, jobs and poller: accelerated/ocr/jobs.py).
    textract_endpoint_url: str | None = None  # e.g. the tests' local server
    textract_staging: str | None = None  # s3://bucket/prefix: local files are uploaded here
    textract_tps: int = 5  # Textract requests a second, every worker on every host together
    textract_poll_s: float = 5.0  # first poll of a job this long after its start...
    textract_poll_max_s: float = 60.0  # ...then doubling up to this between polls
    textract_lock_ttl_s: float = 30.0  # poller leadership lapses this long after its holder died
    textract_job_ttl_s: int = 7 * 24 * 3600  # job records (Textract keeps results 7 days)
    textract_timeout_s: float = 6 * 3600  # a job still IN_PROGRESS after this fails its documents

    # Transformers token classification (ENTITY_BACKEND=transformers / rules+transformers):
    # a local directory or a hub name (offline with HF_HUB_OFFLINE=1, from the HF cache).
    transformers_model: str | None = None
    transformers_revision: str | None = None  # hub branch, tag or commit
    transformers_device: Literal["auto", "cpu", "cuda"] = "auto"
    transformers_max_length: int = 512  # tokens per window (capped by the model's own)
    transformers_stride: int = 128  # tokens shared by consecutive windows of a long chunk
    # The batcher that feeds the model from every document in flight in the process:
    # padded tokens per forward pass, windows per pass, and how long a partial batch waits.
    ner_batch_tokens: int = 16_384
    ner_max_batch: int = 64
    ner_max_wait_ms: float = 20.0

    # Audio (.wav .mp3 .m4a .flac .ogg): "auto" is faster-whisper when TRANSCRIBE_MODEL is
    # set, else none (audio files then fail with needs_transcription).
    transcribe_backend: str = "auto"  # auto | none | a TRANSCRIBERS name
    transcribe_model: str | None = None  # CTranslate2 Whisper directory (or an API model)
    transcribe_device: Literal["auto", "cpu", "cuda"] = "auto"
    transcribe_compute_type: str = "auto"  # auto: int8 on CPU, float16 on CUDA
    transcribe_language: str | None = None  # None: detected per recording
    transcribe_beam_size: int = 5
    transcribe_window_s: float = 600.0  # audio decoded and transcribed this much at a time
    transcribe_cpu_threads: int = 0  # 0: CTranslate2's default

    @model_validator(mode="wrap")
    @classmethod
    def _deployment_profile(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Fill in the stage's defaults where nothing was given (accelerated/profiles.py)."""
        filled: list[str] = []
        if isinstance(data, dict):
            data = dict(data)
            if data.get("deployment_stage") == "":
                data["deployment_stage"] = None  # compose's ${DEPLOYMENT_STAGE:-}
            filled = apply_profile(data)
        out = handler(data)
        if isinstance(out, Settings):
            out._profile_fields = frozenset(filled)
        return out

    @property
    def profile_fields(self) -> frozenset[str]:
        """The settings whose value came from the deployment stage's profile."""
        return self._profile_fields

    @field_validator("log_format", "llm_response_format", mode="before")
    @classmethod
    def _lower_case(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("plugins", mode="before")
    @classmethod
    def _split_plugins(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("stage_time_limits", mode="before")
    @classmethod
    def _parse_limits(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip()
            if v.startswith("{"):
                return json.loads(v)
            out: dict[str, str] = {}
            for part in filter(None, (p.strip() for p in v.split(","))):
                name, sep, value = part.partition("=")
                if not sep:
                    raise ValueError(f"expected stage=seconds, got {part!r}")
                out[name.strip()] = value.strip()
            v = out
        if isinstance(v, dict):
            from accelerated.pipeline import STAGE_NAMES

            unknown = sorted(set(v) - set(STAGE_NAMES))
            if unknown:
                raise ValueError(f"unknown stage(s) {unknown}; stages: {', '.join(STAGE_NAMES)}")
        return v

    @field_validator("textract_staging")
    @classmethod
    def _staging_is_s3(cls, v: str | None) -> str | None:
        if v is not None and not S3_URI_RE.fullmatch(v):
            raise ValueError(
                "must be s3://bucket or s3://bucket/prefix (a bucket name: 3-63 of a-z 0-9 . -)"
            )
        return v

    @field_validator("pg_schema")
    @classmethod
    def _schema_is_identifier(cls, v: str) -> str:
        if not _SCHEMA_RE.fullmatch(v):
            raise ValueError(f"pg_schema {v!r} must be a lower-case SQL identifier")
        return v

    @field_validator("redis_prefix")
    @classmethod
    def _prefix_is_safe(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v):
            raise ValueError(f"redis_prefix {v!r} must be 1-64 of [A-Za-z0-9_.-]")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_url_scheme(cls, v: str | None) -> str | None:
        if v is not None and url_scheme(v) not in REDIS_SCHEMES:
            raise ValueError(
                "must be a URL starting with " + ", ".join(f"{s}://" for s in REDIS_SCHEMES)
            )
        return v

    @field_validator("database_url")
    @classmethod
    def _database_url_scheme(cls, v: str | None) -> str | None:
        if v is not None and url_scheme(v) not in DATABASE_SCHEMES:
            raise ValueError(
                "must be a URL starting with " + " or ".join(f"{s}://" for s in DATABASE_SCHEMES)
            )
        return v

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint_is_http(cls, v: str | None) -> str | None:
        if v is not None and url_scheme(v) not in ("http", "https"):
            raise ValueError("must be a URL starting with http:// or https://")
        return v

    @field_validator("spill_url")
    @classmethod
    def _spill_url_is_s3(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("s3://"):
            raise ValueError("must be s3://bucket/prefix (unset: the local SPILL_DIR)")
        return v

    @field_validator("s3_list_page_size")
    @classmethod
    def _page_size_at_most(cls, v: int) -> int:
        if v > S3_MAX_KEYS:
            raise ValueError(f"must be a number from 1 to {S3_MAX_KEYS}")
        return v

    @field_validator(*MIN_VALUES)
    @classmethod
    def _at_least(cls, v: float | None, info: ValidationInfo) -> float | None:
        low = MIN_VALUES[str(info.field_name)]
        if v is not None and v < low:
            raise ValueError(f"must be a number >= {low:g}")
        return v

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> Settings:
        if self.chunk_overlap >= self.chunk_chars:
            raise ValueError("CHUNK_OVERLAP must be smaller than CHUNK_CHARS")
        return self

    @classmethod
    def from_dsn(cls, redis_url: str | None, database_url: str | None, **kw: Any) -> Settings:
        """Build settings for explicit servers (tests, embedding), like arq's ``from_dsn``."""
        return cls(redis_url=redis_url, database_url=database_url, **kw)
