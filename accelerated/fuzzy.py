"""Near-duplicate keys by rapidfuzz, for the two places that merge names.

The ``resolve`` stage clusters one document's keys (``token_sort_ratio``) and
``RESOLUTION=llm`` blocks a project's canonical keys into candidate pairs
(``token_set_ratio``); both score every key against every other with
``process.cdist`` in blocks of rows (bounded memory) and drop pairs whose digits
differ ("Unit 1" and "Unit 2" are different parties, however alike).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import numpy as np
from rapidfuzz import process

BLOCK_ROWS: Final = 512  # rows per cdist call: bounds memory at BLOCK_ROWS x keys bytes
_NON_DIGITS: Final = re.compile(r"\D+")


def fuzzy_pairs(
    keys: Sequence[str], scorer: Callable[..., Any], cutoff: int
) -> Iterator[tuple[int, int, int]]:
    """``(i, j, score)`` for every pair of ``keys`` with ``i < j``, ``scorer(keys[i],
    keys[j]) >= cutoff`` (0-100) and the same digits in both; by ``i``, then ``j``."""
    n = len(keys)
    digits = [_NON_DIGITS.sub("", k) for k in keys]
    for start in range(0, n, BLOCK_ROWS):
        scores = process.cdist(
            keys[start : start + BLOCK_ROWS],
            keys,
            scorer=scorer,
            score_cutoff=cutoff,
            dtype=np.uint8,
            workers=1,
        )
        for row, col in zip(*np.nonzero(scores), strict=True):
            i, j = start + int(row), int(col)
            if i < j and digits[i] == digits[j]:
                yield i, j, int(scores[row, col])
