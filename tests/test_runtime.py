"""Runtime wiring that is not about documents: the CPU pool's processes."""

from __future__ import annotations

import gc

from accelerated.runtime import make_executor, tune_gc
from accelerated.settings import Settings


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
