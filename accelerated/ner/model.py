"""A transformers token-classification model: windows in, word-level entities out.

Why not ``transformers.pipeline("token-classification")``: it truncates a long
input at the model's maximum length without a word (transformers#15177) unless a
stride is passed, its ``simple`` aggregation splits a word whose sub-tokens got
different labels (#23322), and it batches only the texts of one call. Here:

* :meth:`TokenClassifier.encode` cuts each text into windows of at most
  ``max_length`` tokens that share ``stride`` tokens with the next (the fast
  tokenizer's overflow), keeping every token's character offsets and word;
* :meth:`TokenClassifier.predict` is one padded forward pass over any windows, of
  any texts (the batcher calls it with the windows of many documents at once);
* :meth:`TokenClassifier.decode` stitches a text's windows back together, each token
  taken from the window in which it sits farthest from an edge (the most context),
  and aggregates like the pipeline's ``aggregation_strategy="first"``: a word takes
  the label of its first sub-token, consecutive words of one type form an entity
  unless a ``B-`` tag starts a new one.

One model per process (:func:`load_classifier` caches it), in eval mode, under
``torch.inference_mode()``, in float16 on CUDA; the device is chosen by
:func:`accelerated.devices.resolve_device`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np

from accelerated.devices import resolve_device
from accelerated.entities import RawMention
from accelerated.errors import ConfigError, PipelineError
from accelerated.ner.labels import OUTSIDE, TYPE_MAP, Label, label_table
from accelerated.revision import directory_revision

log = logging.getLogger(__name__)

AGGREGATION: Final = "first1"  # bump when encode/decode change their results
_SAFE: Final = re.compile(r"[^A-Za-z0-9_.-]+")


class Window(NamedTuple):
    """One model input: token ids (special tokens included) and, per position, the
    character offsets and the word index in the text (None for special tokens)."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    words: list[int | None]
    content: list[int]  # positions of the text's own tokens, in order


class EncodedText(NamedTuple):
    text: str
    windows: list[Window]


def _slug(name: str) -> str:
    return _SAFE.sub("_", name).strip("_")[:64] or "model"


def _hub_revision(name: str, revision: str | None) -> str:
    """The commit a hub model was loaded at (its snapshot folder in the HF cache)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json", revision=revision)
    except Exception:  # an old hub client, or a cache layout it does not know
        found = None
    if isinstance(found, str):
        return Path(found).parent.name
    return revision or "unknown"


def _looks_like_path(ref: str) -> bool:
    return ref.startswith(("/", ".", "~")) or ref.count("/") > 1 or "\\" in ref


class TokenClassifier:
    """A loaded model and tokenizer; ``version`` names model, revision and settings."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        revision: str,
        device: str,
        max_length: int = 512,
        stride: int = 128,
    ) -> None:
        import torch

        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(
                f"TRANSFORMERS_MODEL={name}: its tokenizer has no fast (Rust) version, "
                "which the character offsets of mentions need"
            )
        self.model, self.tokenizer = model, tokenizer
        self.name, self.revision, self.device = name, revision, device
        cap = int(getattr(tokenizer, "model_max_length", 0) or 0)
        if not 0 < cap <= 100_000:  # "no limit" sentinels: the position table is the limit
            cap = int(getattr(model.config, "max_position_embeddings", 512))
        self.max_length = min(max_length, cap)
        specials = int(tokenizer.num_special_tokens_to_add())
        if not 0 <= stride < self.max_length - specials:
            raise ConfigError(
                f"TRANSFORMERS_STRIDE={stride} must be below the window of {self.max_length} "
                f"tokens less its {specials} special tokens"
            )
        self.stride = stride
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
        self.labels: list[Label] = label_table(id2label)
        mapped = sorted({lab.type for lab in self.labels if lab.type})
        if not mapped:
            raise ConfigError(
                f"TRANSFORMERS_MODEL={name}: none of its labels "
                f"({', '.join(sorted(set(id2label.values()))[:8])}) maps to an entity type; "
                "is it a token-classification model?"
            )
        self.types = mapped
        table = "|".join(f"{i}={v}" for i, v in sorted(id2label.items()))
        table += "|" + "|".join(f"{k}>{v}" for k, v in sorted(TYPE_MAP.items()) if v)
        labels_hash = hashlib.sha256(table.encode()).hexdigest()[:8]
        self.version = (
            f"transformers-{_slug(name)}@{revision[:12]}-{self.max_length}s{self.stride}"
            f"-{labels_hash}-{AGGREGATION}"
        )
        self._torch = torch
        self._encode_lock = threading.Lock()  # a fast tokenizer's settings are shared state
        model.eval()

    # Encoding ------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> list[EncodedText]:
        """Windows per text; an empty or blank text has none."""
        out = [EncodedText(t, []) for t in texts]
        todo = [i for i, t in enumerate(texts) if t.strip()]
        if not todo:
            return out
        with self._encode_lock:
            enc = self.tokenizer(
                [texts[i] for i in todo],
                truncation=True,
                max_length=self.max_length,
                stride=self.stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
                return_special_tokens_mask=True,
                padding=False,
            )
        for row, sample in enumerate(enc["overflow_to_sample_mapping"]):
            special = enc["special_tokens_mask"][row]
            content = [p for p, s in enumerate(special) if not s]
            if not content:
                continue
            window = Window(
                ids=list(enc["input_ids"][row]),
                offsets=[(int(a), int(b)) for a, b in enc["offset_mapping"][row]],
                words=list(enc.word_ids(row)),
                content=content,
            )
            out[todo[sample]].windows.append(window)
        return out

    # The forward pass (the batcher's thread) --------------------------------------
    def predict(self, batch: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Label ids per position of each window: one padded forward pass."""
        if not batch:
            return []
        torch = self._torch
        width = max(len(ids) for ids in batch)
        input_ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for i, ids in enumerate(batch):
            input_ids[i, : len(ids)] = ids
            mask[i, : len(ids)] = 1
        with torch.inference_mode():
            logits = self.model(
                input_ids=torch.from_numpy(input_ids).to(self.device),
                attention_mask=torch.from_numpy(mask).to(self.device),
            ).logits
            best = logits.argmax(dim=-1).to("cpu").numpy()
        return [best[i, : len(ids)] for i, ids in enumerate(batch)]

    # Decoding --------------------------------------------------------------------------
    def decode(
        self,
        encoded: EncodedText,
        predictions: Sequence[np.ndarray | Sequence[int]],
        dropped: Counter[str],
    ) -> list[RawMention]:
        """Mentions of one text from its windows' predictions (``first`` aggregation);
        mentions of unmapped labels are counted in ``dropped`` by model label."""
        text, windows = encoded
        if len(predictions) != len(windows):
            raise PipelineError("token classifier: a prediction per window expected")
        # Global token index -> (margin to the window's edge, label, word, start, end).
        tokens: dict[int, tuple[int, int, int, int, int]] = {}
        first = 0
        for window, pred in zip(windows, predictions, strict=True):
            n = len(window.content)
            for k, pos in enumerate(window.content):
                word = window.words[pos]
                if word is None:
                    continue
                margin = min(k, n - 1 - k)
                start, end = window.offsets[pos]
                seen = tokens.get(first + k)
                if seen is not None and (seen[3], seen[4]) != (start, end):
                    raise PipelineError("token classifier: windows do not overlap by the stride")
                if seen is None or margin > seen[0]:
                    tokens[first + k] = (margin, int(pred[pos]), word, start, end)
            first += n - self.stride
        # Words: the label of their first sub-token, the span of all of them.
        words: list[list[int]] = []  # [word, label, start, end]
        for t in sorted(tokens):
            _m, label_id, word, start, end = tokens[t]
            if words and words[-1][0] == word:
                words[-1][3] = max(words[-1][3], end)
            else:
                words.append([word, label_id, start, end])
        # Entities: consecutive words of one model type, unless a begin tag splits them.
        groups: list[tuple[Label, int, int]] = []
        for _w, label_id, start, end in words:
            label = self.labels[label_id] if 0 <= label_id < len(self.labels) else OUTSIDE
            last = groups[-1] if groups else None
            if last is not None and not label.begins and label.model_type == last[0].model_type:
                groups[-1] = (last[0], last[1], end)
            else:
                groups.append((label, start, end))
        mentions: list[RawMention] = []
        for label, start, end in groups:
            if not label.model_type:
                continue
            if label.type is None:
                dropped[label.model_type] += 1
                continue
            surface = text[start:end]
            if label.type not in ("CASE_CITATION", "STATUTE"):
                surface = " ".join(surface.split())
            mentions.append(RawMention(label.type, start, end, surface, label.role))
        return mentions


def _head_revision(model: Any, names: Sequence[str], base: str) -> str:
    h = hashlib.sha256(base.encode())
    params = dict(model.named_parameters())
    for name in names:
        if name in params:
            h.update(params[name].detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


# Loading: one model per process ----------------------------------------------------------
_LOADED: dict[tuple[Any, ...], TokenClassifier] = {}
_LOAD_LOCK = threading.Lock()


def load_classifier(
    ref: str,
    *,
    revision: str | None = None,
    device: str = "auto",
    allow_cpu: bool = False,
    max_length: int = 512,
    stride: int = 128,
    id2label: Mapping[int, str] | None = None,
) -> TokenClassifier:
    """The model ``ref`` (a local directory or a hub name), loaded once per process.

    ``id2label`` gives a checkpoint without a token-classification head a new one with
    those labels (tests, a base model to fine-tune); without it the model must have a
    trained head, or loading is a :class:`ConfigError`.
    """
    if not Path(ref).expanduser().is_dir() and _looks_like_path(ref):
        raise ConfigError(f"TRANSFORMERS_MODEL={ref} is not a directory")  # before torch loads
    chosen = resolve_device(device, setting="TRANSFORMERS_DEVICE", allow_cpu=allow_cpu)
    labels_key = tuple(sorted(id2label.items())) if id2label is not None else None
    key = (ref, revision, chosen, max_length, stride, labels_key)
    with _LOAD_LOCK:
        found = _LOADED.get(key)
        if found is None:
            found = _LOADED[key] = _load(ref, revision, chosen, max_length, stride, id2label)
    return found


def _load(
    ref: str,
    revision: str | None,
    device: str,
    max_length: int,
    stride: int,
    id2label: Mapping[int, str] | None,
) -> TokenClassifier:
    try:
        import torch
        import transformers
        from transformers import AutoModelForTokenClassification, AutoTokenizer
    except ImportError as exc:
        raise ConfigError(
            f"ENTITY_BACKEND=transformers needs torch and transformers ({exc}); "
            "pip install '.[ner]'"
        ) from None
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    path = Path(ref).expanduser()
    local = path.is_dir()
    if not local and _looks_like_path(ref):
        raise ConfigError(f"TRANSFORMERS_MODEL={ref} is not a directory")
    source = str(path) if local else ref
    kwargs: dict[str, Any] = {} if local else {"revision": revision}
    head: dict[str, Any] = {}
    if id2label is not None:
        labels = {int(k): str(v) for k, v in id2label.items()}
        head = {"id2label": labels, "label2id": {v: k for k, v in labels.items()}}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model, info = AutoModelForTokenClassification.from_pretrained(
            source, output_loading_info=True, **kwargs, **head
        )
    except (OSError, ValueError) as exc:
        offline = " (HF_HUB_OFFLINE=1 loads only what the HF cache holds)" if not local else ""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"TRANSFORMERS_MODEL={ref}: cannot load it{offline}: {first}") from None
    missing = sorted(info.get("missing_keys") or ())
    if missing and id2label is None:
        raise ConfigError(
            f"TRANSFORMERS_MODEL={ref} has no trained token-classification head "
            f"(missing {', '.join(missing[:3])}); give a fine-tuned NER model"
        )
    if device == "cuda":
        model = model.to("cuda").half()
    revision_id = directory_revision(path) if local else _hub_revision(ref, revision)
    if missing:  # a new head: its (random) weights are part of what the results depend on
        revision_id = _head_revision(model, missing, revision_id)
    name = path.name if local else ref
    log.info("token classifier %s@%s on %s", name, revision_id[:12], device)
    del torch  # imported above only to fail early with the install hint
    return TokenClassifier(
        model,
        tokenizer,
        name=name,
        revision=revision_id,
        device=device,
        max_length=max_length,
        stride=stride,
    )
