"""Which device a local model runs on: CUDA when present, the CPU otherwise.

``auto`` picks CUDA when torch sees a device; ``cuda`` insists on it. A ``cuda``
request on a host without a GPU is a start-up error (a GPU host that silently runs
on its CPU is hours behind before anyone notices), unless ``ALLOW_CPU=1`` says the
CPU is acceptable. torch is imported only when a device is asked for, so a worker
that runs the rules never pays for it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Literal

from accelerated.errors import ConfigError

log = logging.getLogger(__name__)

Device = Literal["cpu", "cuda"]


@functools.cache
def gpu_available() -> bool:
    """Whether torch sees a CUDA device (``CUDA_VISIBLE_DEVICES=""`` hides them);
    False without torch (CTranslate2 alone cannot tell without loading a model)."""
    try:
        import torch
    except ImportError:
        return _ctranslate2_gpus() > 0
    return bool(torch.cuda.is_available())


def ctranslate2_gpu_available() -> bool:
    """CTranslate2's own count (cheap: no torch import for a transcriber)."""
    return _ctranslate2_gpus() > 0


def _ctranslate2_gpus() -> int:
    try:
        import ctranslate2
    except ImportError:
        return 0
    try:
        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # a broken CUDA install reads as no GPU, never as a crash
        return 0


def resolve_device(
    requested: str,
    *,
    setting: str,
    allow_cpu: bool,
    why: str = "",
    probe: Callable[[], bool] = gpu_available,
) -> Device:
    """``auto`` | ``cpu`` | ``cuda`` -> the device to use, or a one-line ConfigError."""
    if requested == "cpu":
        return "cpu"
    if probe():
        return "cuda"
    if requested == "auto":
        return "cpu"
    if allow_cpu:
        log.warning(
            "%s=cuda%s but no CUDA device is visible: on the CPU (ALLOW_CPU=1)", setting, why
        )
        return "cpu"
    raise ConfigError(
        f"{setting}=cuda{why} but no CUDA device is visible (torch.cuda.is_available() is "
        "False); run on a GPU host, or set ALLOW_CPU=1 to run on the CPU"
    )
