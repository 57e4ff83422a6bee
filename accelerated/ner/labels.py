"""A model's labels onto the one vocabulary of ``models.ENTITY_TYPES``.

Token-classification models name their types in many ways: CoNLL's ``PER`` / ``ORG``,
legal label sets such as ``COURT``, ``JUDGE``, ``PETITIONER``, ``RESPONDENT``,
``CASE_NUMBER``, ``PRECEDENT``, ``STATUTE`` (InLegalNER), with ``B-`` / ``I-`` (IOB2),
``E-`` / ``S-`` (BIOES), ``L-`` / ``U-`` (BILOU) prefixes or none at all (IO). Each
label is split into its tag and its type; the type is mapped through :data:`TYPE_MAP`
(party labels keep the side they name as the mention's ``role``). A type that maps
to nothing (``LOC``, ``MISC``, ``GPE``, ``WITNESS`` ...) is dropped: the backend counts
each mention it drops that way, by its model label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NamedTuple

from accelerated.models import ENTITY_TYPES

# Model type (upper case, "-" and " " as "_") -> our type; identity for our own names.
TYPE_MAP: Final[Mapping[str, str | None]] = {
    **{t: t for t in ENTITY_TYPES},
    "PER": "PERSON",
    "PERS": "PERSON",
    "PEOPLE": "PERSON",
    "ORG": "ORGANIZATION",
    "ORGANISATION": "ORGANIZATION",
    "COMPANY": "ORGANIZATION",
    "CORPORATION": "ORGANIZATION",
    "INSTITUTION": "ORGANIZATION",
    "PETITIONER": "PARTY",
    "RESPONDENT": "PARTY",
    "PLAINTIFF": "PARTY",
    "DEFENDANT": "PARTY",
    "APPELLANT": "PARTY",
    "APPELLEE": "PARTY",
    "LITIGANT": "PARTY",
    "CASE_NUMBER": "DOCKET_NUMBER",
    "DOCKET": "DOCKET_NUMBER",
    "PRECEDENT": "CASE_CITATION",
    "CITATION": "CASE_CITATION",
    "CASE": "CASE_CITATION",
    "PROVISION": "STATUTE",
    "LAW": "STATUTE",
    "REGULATION": "STATUTE",
    "LAWYER": "ATTORNEY",
    "COUNSEL": "ATTORNEY",
    "ADVOCATE": "ATTORNEY",
    "JUDGE_NAME": "JUDGE",
    "TIME": None,  # listed to say it is dropped on purpose
    "AMOUNT": "MONEY",
}
ROLE_OF: Final[Mapping[str, str]] = {
    t: t.lower()
    for t in ("PETITIONER", "RESPONDENT", "PLAINTIFF", "DEFENDANT", "APPELLANT", "APPELLEE")
}
_BEGIN: Final = frozenset({"B", "S", "U"})  # a tag that starts an entity
_INSIDE: Final = frozenset({"I", "E", "L"})


class Label(NamedTuple):
    """One model label, parsed: ``begins`` a new entity, its model type, our type."""

    begins: bool
    model_type: str  # "" for the outside label
    type: str | None  # None: outside, or a type we drop
    role: str | None


OUTSIDE: Final = Label(False, "", None, None)


def normalise(name: str) -> str:
    return name.strip().upper().replace("-", "_").replace(" ", "_")


def parse(label: str) -> Label:
    """``B-PER`` -> (True, "PER", "PERSON"); ``O`` -> outside; ``COURT`` (IO) -> inside."""
    raw = label.strip()
    if raw.upper() in ("O", "OUTSIDE", "") or raw.upper().endswith("-O"):
        return OUTSIDE
    tag, sep, rest = raw.partition("-")
    if sep and tag.upper() in _BEGIN | _INSIDE and rest:
        begins, model_type = tag.upper() in _BEGIN, normalise(rest)
    else:
        begins, model_type = False, normalise(raw)
    return Label(begins, model_type, TYPE_MAP.get(model_type), ROLE_OF.get(model_type))


def label_table(id2label: Mapping[int, str]) -> list[Label]:
    """Parsed labels indexed by class id (the model's config gives ids as ints)."""
    size = max(id2label) + 1 if id2label else 0
    table = [OUTSIDE] * size
    for i, name in id2label.items():
        table[int(i)] = parse(str(name))
    return table
