"""``python -m benchmarks.entities_cpu --docs 200``: CPU cost of the entity backend alone.

The pipeline benchmark (``benchmarks.run``) measures the entities stage among six others,
through Redis and Postgres; a rule change needs a faster, quieter number. This takes an
even spread of N corpus documents (the same pick as ``benchmarks.run --docs N``),
extracts, cleans and chunks them untimed, then measures the CPU seconds (thread time,
so other processes on a shared machine do not count) of the document context and of the
per-chunk extraction, as the stage runs them in its process pool. ``--profile`` also
prints the rules by CPU (cProfile, cumulative).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from accelerated.backends import PoolEntityBackend
from accelerated.entities import ContextualBackend, get_backend
from accelerated.errors import PipelineError
from accelerated.extractors import extract_bytes
from accelerated.intake import discover
from accelerated.models import Chunked, Cleaned
from accelerated.stages.chunk import build_chunks
from accelerated.stages.clean import clean_document
from accelerated.stages.entities import document_text

DEFAULT_INPUT = Path(
    os.environ.get("CORPUS_DIR") or Path(__file__).resolve().parents[2] / "shared" / "corpus"
)
DOC_ID = uuid.UUID("00000000-0000-4000-8000-00000000c001")


def load(source: Path, docs: int) -> list[Chunked]:
    found = discover([source], ["truth/*"]).files
    picks = found if docs >= len(found) else [found[i * len(found) // docs] for i in range(docs)]
    out: list[Chunked] = []
    for path, _key in picks:
        try:
            r = extract_bytes(path.read_bytes(), path.name)
        except PipelineError:
            continue
        text, pages, category = clean_document(r.text, r.pages, r.format)
        cleaned = Cleaned(document_id=DOC_ID, text=text, pages=pages, category=category)
        out.append(Chunked(document_id=DOC_ID, chunks=build_chunks(cleaned, 2000, 200)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.entities_cpu", description=__doc__)
    ap.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--backend", default="rules")
    ap.add_argument("--profile", action="store_true", help="print the top functions by CPU")
    args = ap.parse_args(argv)
    docs = load(args.input, args.docs)
    backend = get_backend(args.backend)
    cast(PoolEntityBackend, backend).extract(
        ["warm-up: Smith v. Jones, 1 U.S. 1 (1990)."]
    )  # tables, tokenizer
    chars = sum(len(c.text) for d in docs for c in d.chunks)
    prof = cProfile.Profile() if args.profile else None
    ctx_s = ext_s = 0.0
    if prof:
        prof.enable()
    for d in docs:
        texts = [c.text for c in d.chunks]
        t0 = time.thread_time()
        # as the stage's pool call runs it (entities.run_document)
        if isinstance(backend, ContextualBackend) and texts:
            context = backend.document_context(document_text(d))
            t1 = time.thread_time()
            backend.extract_in_context(texts, context)
        else:
            t1 = time.thread_time()
            cast(PoolEntityBackend, backend).extract(texts)
        t2 = time.thread_time()
        ctx_s, ext_s = ctx_s + t1 - t0, ext_s + t2 - t1
    if prof:
        prof.disable()
    n = max(1, len(docs))
    print(f"backend {args.backend} ({backend.version}): {len(docs)} documents, {chars} chars")
    print(f"context    {ctx_s:7.2f} CPU-s  {1000 * ctx_s / n:6.2f} ms/doc")
    print(f"extraction {ext_s:7.2f} CPU-s  {1000 * ext_s / n:6.2f} ms/doc")
    print(f"total      {ctx_s + ext_s:7.2f} CPU-s  {1000 * (ctx_s + ext_s) / n:6.2f} ms/doc")
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(r"entities|eyecite", 40)
    return 0


if __name__ == "__main__":
    sys.exit(main())
