"""The benchmark's input set: N documents from a folder, copies made unique when N is larger.

Documents are staged as hard links (copies across file systems) under one temporary
folder, keyed by their path relative to the input, so both paths see the very same
files and source keys (not symlinks: intake skips links that lead outside its input).
When N exceeds the documents available, copies are added of the formats whose *text* can be
changed safely (TXT, HTML, EML): a marker goes at the start of the text, so the file's
sha256 differs (no extraction-cache hit) and the first chunk differs. Later chunks of a
copy may still equal the original's (the chunker snaps to paragraph breaks), so the
harness reports how many chunk results the entity cache held against the chunks made.
PDF, DOCX, JSON and XML are not copied: only a trailing byte or comment could make
them differ, which would leave every chunk identical to the original's.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from accelerated.intake import discover

_BODY = re.compile(rb"<body\b[^>]*>", re.IGNORECASE)
_SUBJECT = re.compile(rb"^Subject:[ \t]*", re.IGNORECASE | re.MULTILINE)


def _txt(data: bytes, marker: str) -> bytes:
    return f"{marker}\n\n".encode() + data


def _html(data: bytes, marker: str) -> bytes:
    tag = f"<p>{marker}</p>".encode()
    m = _BODY.search(data)
    if m is None:
        return tag + data
    return data[: m.end()] + tag + data[m.end() :]


def _eml(data: bytes, marker: str) -> bytes:
    """Mark the Subject (the extractor puts headers first in the text) or add one."""
    sep = re.search(rb"\r?\n\r?\n", data)
    head_end = sep.start() if sep else len(data)
    m = _SUBJECT.search(data, 0, head_end)
    if m is not None:
        return data[: m.end()] + f"[{marker}] ".encode() + data[m.end() :]
    return f"Subject: {marker}\r\n".encode() + data


COPIERS: dict[str, Callable[[bytes, str], bytes]] = {
    ".txt": _txt,
    ".html": _html,
    ".htm": _html,
    ".eml": _eml,
}


def _place(source: Path, target: Path) -> None:
    """A hard link (no bytes copied; the benchmark never writes its inputs), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


@dataclass
class StagedInputs:
    root: Path
    originals: int = 0
    copies: int = 0
    copies_by_format: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.originals + self.copies


def stage_inputs(source: Path, exclude: list[str], docs: int | None, dest: Path) -> StagedInputs:
    """Stage ``docs`` documents (all when None) of ``source`` under ``dest``."""
    found = discover([source], exclude).files
    if not found:
        raise ValueError(f"no documents under {source}")
    want = len(found) if docs is None else docs
    if want <= 0:
        raise ValueError("--docs must be positive")
    staged = StagedInputs(dest)
    # Fewer than available: an even spread, so every part of the corpus is represented.
    picks = found if want >= len(found) else [found[i * len(found) // want] for i in range(want)]
    for path, key in picks:
        link = dest / key
        link.parent.mkdir(parents=True, exist_ok=True)
        _place(path.resolve(), link)
        staged.originals += 1
    copyable = [(p, k) for p, k in found if p.suffix.lower() in COPIERS]
    if want > len(found) and not copyable:
        raise ValueError("need copies, but no TXT/HTML/EML documents to copy safely")
    n = 0
    while staged.total < want:
        path, key = copyable[n % len(copyable)]
        round_ = n // len(copyable) + 1
        marker = f"benchmark copy {round_}"
        suffix = path.suffix.lower()
        out = dest / f"_copy{round_}" / key
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(COPIERS[suffix](path.read_bytes(), marker))
        staged.copies += 1
        staged.copies_by_format[suffix] = staged.copies_by_format.get(suffix, 0) + 1
        n += 1
    return staged
