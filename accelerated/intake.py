"""Intake: find documents, hash them, record them in Postgres, queue them.

The document row (project, source, sha256) is written to Postgres before any stage
runs, so Redis never holds the only copy of what was ingested.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from accelerated.errors import ConfigError
from accelerated.ids import document_id, validate_project
from accelerated.models import SourceRef

# Extensions intake picks up. .doc/.wpd/.rtf are legal formats we cannot read yet:
# they are ingested so that each gets a clear "unsupported_format" error.
DOCUMENT_EXTENSIONS = frozenset(
    {".pdf", ".docx", ".doc", ".wpd", ".rtf", ".txt", ".htm", ".html", ".eml", ".json", ".xml"}
)
_HEAD_BYTES = 4096


@dataclass
class Discovery:
    files: list[tuple[Path, str]] = field(default_factory=list)  # (path, source_key)
    skipped: list[str] = field(default_factory=list)  # not a document type we take


def discover(inputs: list[Path], exclude: list[str] | None = None) -> Discovery:
    """Walk the inputs in a stable order; source keys are paths relative to each input."""
    found = Discovery()
    patterns = exclude or []
    for root in inputs:
        if not root.exists():
            raise ConfigError(f"input {root} does not exist")
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            key = path.name if root.is_file() else path.relative_to(root).as_posix()
            if any(part.startswith(".") for part in Path(key).parts):
                continue
            if any(fnmatch.fnmatch(key, pat) for pat in patterns):
                continue
            if path.suffix.lower() not in DOCUMENT_EXTENSIONS:
                found.skipped.append(key)
                continue
            found.files.append((path, key))
    return found


def new_generation() -> int:
    """A fresh generation per intake: messages of an older one are dropped as stale."""
    return time.time_ns() // 1_000_000 & 0x7FFFFFFF


def _fingerprint(path: Path) -> tuple[str, int, bytes, str]:
    h = hashlib.sha256()
    size = 0
    head = b""
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            if not head:
                head = block[:_HEAD_BYTES]
            h.update(block)
            size += len(block)
    return h.hexdigest(), size, head, str(path.resolve())


def sniff(name: str, head: bytes) -> str:
    from accelerated.extractors.detect import sniff_format

    return sniff_format(name, head)


async def fingerprint_all(
    project: str, files: list[tuple[Path, str]], generation: int, parallel: int = 8
) -> list[SourceRef]:
    """Hash files off the loop; unreadable files still get a ref (extract records why)."""
    validate_project(project)
    sem = asyncio.Semaphore(parallel)

    async def one(path: Path, key: str) -> SourceRef:
        async with sem:
            try:
                sha, size, head, source = await asyncio.to_thread(_fingerprint, path)
                fmt = sniff(key, head)
            except OSError:
                sha, size, fmt = hashlib.sha256(b"").hexdigest(), 0, "unknown"
                source = str(path)  # unreadable: extract will say why
        return SourceRef(
            document_id=document_id(project, key),
            project=project,
            source=source,
            source_key=key,
            sha256=sha,
            size=size,
            format=fmt,
            generation=generation,
        )

    return list(await asyncio.gather(*(one(p, k) for p, k in files)))
