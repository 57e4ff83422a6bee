"""A local model's revision: a hash of its files, so a cache key changes with the model.

Model caches (entities per chunk, transcripts per recording) are keyed by a
backend's ``version``; for a model given as a local directory that version must
change when the files do (a model retrained and saved to the same path). Files up to
``FULL_HASH_BYTES`` are hashed whole; a larger one (a 3 GB Whisper large-v3) by its
size and its first and last ``SAMPLE_BYTES``, which any retraining changes, so
start-up does not read gigabytes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Final

FULL_HASH_BYTES: Final = 256 * 1024 * 1024
SAMPLE_BYTES: Final = 16 * 1024 * 1024
MODEL_FILES: Final = re.compile(
    r"(config\.json|.*\.safetensors|pytorch_model.*\.bin|model\.bin|tokenizer.*\.json|"
    r"vocab.*|vocabulary.*|merges\.txt|special_tokens_map\.json|preprocessor_config\.json|"
    r".*\.model)$"
)


def directory_revision(directory: Path) -> str:
    """sha256 hex over the model files of ``directory`` (names, sizes, contents)."""
    h = hashlib.sha256()
    files = sorted(p for p in directory.iterdir() if p.is_file() and MODEL_FILES.match(p.name))
    for path in files:
        size = path.stat().st_size
        h.update(f"{path.name}\0{size}\0".encode())
        with path.open("rb") as fh:
            if size <= FULL_HASH_BYTES:
                while block := fh.read(1 << 20):
                    h.update(block)
            else:
                h.update(fh.read(SAMPLE_BYTES))
                fh.seek(size - SAMPLE_BYTES)
                h.update(fh.read(SAMPLE_BYTES))
    return h.hexdigest()
