"""Runtime plumbing that is not about documents: the CPU pool's processes, and how
the time inside stage code is accounted (the benchmark's overhead figure rests on it)."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid

import asyncpg

from accelerated.canonical import PassThroughCanonicalRegistry
from accelerated.models import SourceRef
from accelerated.runtime import make_executor, tune_gc
from accelerated.settings import Settings
from accelerated.stages import StageContext


def test_executor_processes_run_with_the_tuned_collector(settings: Settings) -> None:
    executor = make_executor(settings.model_copy(update={"cpu_pool": "process", "cpu_workers": 1}))
    assert executor is not None
    try:
        assert executor.submit(gc.get_threshold).result(timeout=60) == (50_000, 20, 100)
    finally:
        executor.shutdown()


def test_tune_gc_raises_the_thresholds_and_freezes_startup_objects() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (50_000, 20, 100)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def _burn(seconds: float) -> int:
    """Spin on this thread for ``seconds`` of its own CPU time."""
    end, n = time.thread_time() + seconds, 0
    while time.thread_time() < end:
        n += 1
    return n


class _BusyBlobs:
    """A blob reader whose await costs loop CPU (as a client's parsing, or other
    documents' tasks running meanwhile, would): not the stage's compute."""

    async def read(self, source: SourceRef, max_bytes: int) -> bytes:
        await asyncio.sleep(0)
        _burn(0.2)
        return b"x"


async def test_stage_compute_is_the_stages_own_cpu(settings: Settings) -> None:
    ctx = StageContext(
        project="p",
        settings=settings,
        blobs=_BusyBlobs(),
        canonical=PassThroughCanonicalRegistry(),
    )
    source = SourceRef(
        document_id=uuid.uuid4(), project="p", source="/x", source_key="x",
        sha256="0" * 64, size=1, format="txt", generation=1,
    )  # fmt: skip

    t0 = time.thread_time()
    _burn(0.1)  # the stage's own code on the loop
    await ctx.blobs.read(source, 10)  # I/O: excluded
    await ctx.run_cpu(_burn, 0.15)  # offloaded: its CPU where it ran counts
    compute = ctx.compute_seconds(time.thread_time() - t0)
    assert 0.22 < compute < 0.33, compute
    assert 0.14 < ctx.cpu_s < 0.2


async def test_fingerprints_are_kept_per_content_and_renewed_with_the_backends(
    settings: Settings, pg_pool: asyncpg.Pool
) -> None:
    import dataclasses
    import hashlib

    from accelerated import fingerprint, ids
    from tests.support import make_runtime

    rt = make_runtime(settings, pg_pool, None, accelerated=False)

    def ref(name: str, content: bytes) -> SourceRef:
        return SourceRef(
            document_id=ids.document_id("fp", name), project="fp", source=f"/{name}",
            source_key=name, sha256=hashlib.sha256(content).hexdigest(), size=len(content),
            format="txt", generation=1,
        )  # fmt: skip

    a, b = ref("a.txt", b"one"), ref("b.txt", b"two")
    fa = rt.fingerprints(a)
    assert fa == fingerprint.fingerprints(a, rt.stage_params)
    assert rt.fingerprints(a) is fa  # kept, not hashed again
    assert rt.fingerprints(b) != fa
    # A new entity backend version (what the benchmark's rerun does): new fingerprints.
    backends = rt.backends_
    bumped = dataclasses.replace(backends.entities)  # type: ignore[type-var]
    object.__setattr__(bumped, "version", f"{backends.entities.version}+new")
    rt.backends = dataclasses.replace(backends, entities=bumped)
    rt.__dict__.pop("stage_params", None)
    fa2 = rt.fingerprints(a)
    assert fa2 == fingerprint.fingerprints(a, rt.stage_params)
    assert fa2["entities"] != fa["entities"] and fa2["extract"] == fa["extract"]
