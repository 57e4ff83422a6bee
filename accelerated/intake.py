"""Intake: find documents, hash them, record them in Postgres, queue them.

The document row (project, source, sha256) is written to Postgres before any stage
runs, so Redis never holds the only copy of what was ingested.
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from accelerated.errors import ConfigError
from accelerated.ids import document_id, validate_project
from accelerated.models import SourceRef

# Extensions intake picks up (the extractor then goes by the bytes, not the name).
# .wp/.wp5/.wp6: what older WordPerfect versions called their files. Images (scanned
# pages, TIFF productions) are read by OCR.
DOCUMENT_EXTENSIONS = frozenset(
    {".pdf", ".docx", ".doc", ".wpd", ".wp", ".wp5", ".wp6", ".rtf"}
    | {".txt", ".htm", ".html", ".eml", ".json", ".xml"}
    | {".wav", ".mp3", ".m4a", ".flac", ".ogg"}  # recordings: transcribed
    | {".tif", ".tiff", ".png", ".jpg", ".jpeg"}
)
_HEAD_BYTES = 4096


NOT_A_DOCUMENT = "not a document type we take"
LINK_ESCAPES = "symlink leads outside the input folder (--follow-symlinks to follow it)"
LINK_LOOP = "symlink loop"
LINK_BROKEN = "broken symlink"


@dataclass
class Discovery:
    files: list[tuple[Path, str]] = field(default_factory=list)  # (path, source_key)
    skipped: list[str] = field(default_factory=list)  # source keys intake did not take
    reasons: dict[str, str] = field(default_factory=dict)  # skipped key -> why

    def skip(self, key: str, reason: str) -> None:
        self.skipped.append(key)
        self.reasons[key] = reason


def discover(
    inputs: list[Path], exclude: list[str] | None = None, *, follow_symlinks: bool = False
) -> Discovery:
    """Walk the inputs in a stable order; source keys are paths relative to each input.

    Symlinks are an input policy, not an accident of the walk: a link whose target
    lies outside the input folder is skipped (with the reason) unless
    ``follow_symlinks``, because a production folder handed to us should not pull in
    whatever a link points at (another client's files, ``/etc``). Links that stay
    inside the folder are followed; a link back to a folder being walked (a loop) and a
    dangling link are skipped with their reason, never followed for ever.
    """
    found = Discovery()
    patterns = exclude or []
    for root in inputs:
        if not root.exists():
            raise ConfigError(f"input {root} does not exist")
        if root.is_file():
            _take(found, root, root.name, patterns)
            continue
        real_root = root.resolve()
        _walk(found, root, "", real_root, (real_root,), patterns, follow_symlinks)
    return found


def excluded(key: str, patterns: list[str]) -> bool:
    """Whether intake leaves ``key`` out: a hidden part, or an ``--exclude`` match."""
    if any(part.startswith(".") for part in Path(key).parts):
        return True  # hidden files and folders are never documents
    return any(fnmatch.fnmatch(key, pat) for pat in patterns)


def _take(found: Discovery, path: Path, key: str, patterns: list[str]) -> None:
    if excluded(key, patterns):
        return
    if path.suffix.lower() not in DOCUMENT_EXTENSIONS:
        found.skip(key, NOT_A_DOCUMENT)
        return
    found.files.append((path, key))


def _walk(
    found: Discovery,
    folder: Path,
    prefix: str,
    real_root: Path,
    ancestors: tuple[Path, ...],
    patterns: list[str],
    follow_symlinks: bool,
) -> None:
    """Depth first, entries by name: the order ``sorted(root.rglob("*"))`` gave."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        found.skip(prefix.rstrip("/") or ".", f"cannot list folder: {exc.strerror or exc}")
        return
    for entry in entries:
        path, key = Path(entry.path), f"{prefix}{entry.name}"
        if entry.name.startswith("."):
            continue  # hidden files and folders are never documents
        try:
            is_dir = entry.is_dir()  # follows a link; False for a dangling one
        except OSError:
            is_dir = False
        if not is_dir and excluded(key, patterns):
            continue  # --exclude matches file keys, as it always has
        real = path
        if entry.is_symlink():
            try:
                real = path.resolve(strict=True)
            except RuntimeError:  # Python < 3.13 raises this for a loop in strict mode
                found.skip(key, LINK_LOOP)
                continue
            except OSError as exc:
                found.skip(key, LINK_LOOP if exc.errno == errno.ELOOP else LINK_BROKEN)
                continue
            if not follow_symlinks and not real.is_relative_to(real_root):
                found.skip(key, LINK_ESCAPES)
                continue
        if is_dir:
            real_dir = real if real is not path else path.resolve()
            if real_dir in ancestors:
                found.skip(key, LINK_LOOP)
                continue
            _walk(
                found, path, f"{key}/", real_root, (*ancestors, real_dir), patterns, follow_symlinks
            )
        elif entry.is_file():
            _take(found, path, key, patterns)


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
