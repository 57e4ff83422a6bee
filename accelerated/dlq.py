"""``python -m accelerated.dlq list|show ID|replay|purge --stage STAGE``: dead letters.

A message lands in a stage's dead-letter stream (``keys.dlq(stage)``) when it failed
``MAX_DELIVERIES`` times or with an error that a retry cannot fix; the document is then
``failed``. Once the cause is fixed (a setting, a cap, a code bug), ``replay`` puts it
back at the start of that stage with its state reset exactly as intake would
(``RedisTransport.enqueue``), so the document is "at stage X" with a message for stage
X, and only then removes the dead letter. A document whose input file changed since it
was dead-lettered is refused: replaying the old ref would process content that is no
longer there; ingest it again with ``batch`` instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from redis.utils import str_if_bytes

from accelerated import cli, state
from accelerated.boundary import map_driver_errors
from accelerated.cli import EXIT_FAILED, EXIT_OK, CliContext, setup_output
from accelerated.cluster import RedisClient
from accelerated.errors import ConfigError
from accelerated.intake import fingerprint_all
from accelerated.keys import STAGES, Keys
from accelerated.models import SourceRef
from accelerated.tooling import tool_clients, tool_settings
from accelerated.transport import RedisTransport

_decode = msgspec.json.Decoder(SourceRef)


@dataclass(frozen=True)
class DeadLetter:
    id: str
    stage: str
    ref: SourceRef
    error: str
    attempts: int | None  # deliveries to the stage when it was dead-lettered

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stage": self.stage,
            "document_id": str(self.ref.document_id),
            "project": self.ref.project,
            "source": self.ref.source,
            "source_key": self.ref.source_key,
            "sha256": self.ref.sha256,
            "error": self.error,
            "attempts": self.attempts,
        }


async def list_letters(
    redis: RedisClient, keys: Keys, stage: str, project: str | None = None, count: int = 1000
) -> list[DeadLetter]:
    """Dead letters of ``stage`` (oldest first), of one project if given."""
    with map_driver_errors():
        entries = await redis.xrange(keys.dlq(stage), count=count)
        out = []
        for entry_id, fields in entries or []:
            letter = await _letter(redis, keys, stage, entry_id, fields)
            if project is None or letter.ref.project == project:
                out.append(letter)
    return out


async def get_letter(redis: RedisClient, keys: Keys, stage: str, entry_id: str) -> DeadLetter:
    with map_driver_errors():
        entries = await redis.xrange(keys.dlq(stage), min=entry_id, max=entry_id)
    if not entries:
        raise ConfigError(f"no dead letter {entry_id} in stage {stage}")
    [(eid, fields)] = entries
    return await _letter(redis, keys, stage, eid, fields)


async def _letter(
    redis: RedisClient, keys: Keys, stage: str, entry_id: Any, fields: Any
) -> DeadLetter:
    ref = _decode.decode(fields[b"ref"])
    raw = fields.get(b"attempts")
    return DeadLetter(
        str_if_bytes(entry_id),
        stage,
        ref,
        bytes(fields.get(b"error", b"")).decode(errors="replace"),
        int(raw) if raw is not None else None,
    )


async def changed_since(ref: SourceRef) -> str | None:
    """Why the document's input is no longer what was dead-lettered, or None."""
    if "://" in ref.source:
        return None  # an object store URI: its sha256 was checked at intake, not re-read here
    path = Path(ref.source)
    if not await asyncio.to_thread(path.is_file):
        return f"its source {ref.source} is gone"
    [now] = await fingerprint_all(ref.project, [(path, ref.source_key)], ref.generation)
    if now.sha256 != ref.sha256:
        return (
            f"its source {ref.source} changed since (sha256 {ref.sha256[:12]} -> {now.sha256[:12]})"
        )
    return None


@dataclass
class ReplayResult:
    replayed: list[DeadLetter]
    refused: list[tuple[DeadLetter, str]]


async def replay(
    redis: RedisClient,
    keys: Keys,
    stage: str,
    project: str | None = None,
    ids: list[str] | None = None,
    ttl_stage_s: int = 7 * 24 * 3600,
) -> ReplayResult:
    """Queue dead letters again at ``stage`` (state reset as at intake), then delete them.

    Order matters for a crash in between: the message is queued before the dead letter
    is removed, so at worst a document is replayed twice (the second run is a no-op
    upsert), never lost.
    """
    letters = (
        [await get_letter(redis, keys, stage, i) for i in ids]
        if ids
        else await list_letters(redis, keys, stage, project, count=100_000)
    )
    transport = RedisTransport(redis, keys, consumer="dlq-replay", ttl_stage_s=ttl_stage_s)
    result = ReplayResult([], [])
    with map_driver_errors():
        for letter in letters:
            gen = await redis.hget(keys.state(letter.ref.document_id), state.GENERATION)
            if gen is not None and int(gen) != letter.ref.generation:
                result.refused.append((letter, "the document was ingested again since"))
                continue
            why = await changed_since(letter.ref)
            if why is not None:
                result.refused.append((letter, why))
                continue
            await transport.enqueue([letter.ref], stage)
            await redis.xdel(keys.dlq(stage), letter.id)
            result.replayed.append(letter)
    return result


async def purge(redis: RedisClient, keys: Keys, stage: str, project: str | None = None) -> int:
    """Delete the dead letters of ``stage`` (of one project if given); documents stay failed."""
    with map_driver_errors():
        if project is None:
            n = int(await redis.xlen(keys.dlq(stage)))
            await redis.delete(keys.dlq(stage))
            return n
        letters = await list_letters(redis, keys, stage, project, count=100_000)
        if letters:
            await redis.xdel(keys.dlq(stage), *[x.id for x in letters])
        return len(letters)


def _line(x: DeadLetter) -> str:
    return f"{x.id}  {x.ref.project}  {x.ref.source_key}  {x.error[:120]}"


async def amain(args: argparse.Namespace, ctx: CliContext) -> int:
    settings = tool_settings()
    async with tool_clients(settings, need_pg=False) as c:
        assert c.redis is not None
        stages = [args.stage] if args.stage else list(STAGES)
        if args.cmd == "list":
            letters = [
                x for s in stages for x in await list_letters(c.redis, c.keys, s, args.project)
            ]
            if args.json:
                print(json.dumps([x.as_json() for x in letters], indent=1))
            else:
                for x in letters:
                    print(f"{x.stage:10} {_line(x)}")
                print(f"{len(letters)} dead letter(s)")
            return EXIT_OK
        if not args.stage:
            raise ConfigError(f"{args.cmd} needs --stage (one of {', '.join(STAGES)})")
        if args.cmd == "show":
            x = await get_letter(c.redis, c.keys, args.stage, args.id)
            if args.json:
                print(json.dumps(x.as_json(), indent=1))
            else:
                for k, v in x.as_json().items():
                    print(f"{k:12} {v}")
            return EXIT_OK
        if args.cmd == "replay":
            res = await replay(
                c.redis,
                c.keys,
                args.stage,
                args.project,
                [args.id] if args.id else None,
                settings.ttl_stage_s,
            )
            for x in res.replayed:
                print(f"replayed {_line(x)}")
            for x, why in res.refused:
                print(f"refused  {x.id}  {x.ref.source_key}: {why}; ingest it again with batch")
            print(f"{len(res.replayed)} replayed, {len(res.refused)} refused")
            if res.replayed:
                print("a running worker (or the next batch) processes them")
            return EXIT_FAILED if res.refused else EXIT_OK
        n = await purge(c.redis, c.keys, args.stage, args.project)
        print(f"{n} dead letter(s) purged")
        return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m accelerated.dlq", description=__doc__)
    p.add_argument("cmd", choices=("list", "show", "replay", "purge"))
    p.add_argument("id", nargs="?", help="a dead letter's id (show; replay of one)")
    p.add_argument("--stage", choices=STAGES)
    p.add_argument("--project")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "show" and not args.id:
        p.error("show needs a dead letter id")
    setup_output(args.verbose)
    sys.exit(cli.run(lambda ctx: amain(args, ctx), first_signal="stopping"))


if __name__ == "__main__":
    main()
