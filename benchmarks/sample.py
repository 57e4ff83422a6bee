"""A deterministic, format-diverse sample of the corpus (tests and benchmarks share it)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path


def sample_corpus(corpus: Path, dest: Path, n: int = 60, max_bytes: int = 250_000) -> list[str]:
    """Put a deterministic, format-diverse sample of corpus documents into ``dest``.

    Copies, never symlinks (intake skips links that lead outside ``dest``) nor hard
    links (a test that rewrote an input in place would rewrite the shared corpus).
    """
    with (corpus / "MANIFEST.tsv").open() as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["role"] == "document"]
    rows = [r for r in rows if int(r["bytes"]) <= max_bytes]
    by_ext: dict[str, list[str]] = {}
    for r in sorted(rows, key=lambda r: r["file"]):
        by_ext.setdefault(Path(r["file"]).suffix.lower(), []).append(r["file"])
    picked: list[str] = []
    while len(picked) < n and any(by_ext.values()):
        for ext in sorted(by_ext):
            if by_ext[ext] and len(picked) < n:
                picked.append(by_ext[ext].pop(0))
    for rel in picked:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        place_file(corpus / rel, target)
    return picked


def place_file(source: Path, target: Path) -> None:
    """A private copy of ``source`` at ``target`` (at most a few MB per test)."""
    shutil.copyfile(source, target)
