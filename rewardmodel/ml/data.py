"""Label records, errors, the product-level split and annotator weights.

Images are referred to by *key*: the sha256 of the stored file (``DecodedImage.sha256``) or any
other stable content id (``image_key(rgb)`` for arrays that never had a file). Features are looked
up by key, so the same photo used in many labels is encoded once.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Sequence, Union

import numpy as np

MIN_LABELS = 50  # below this a head is not worth training (and the validation split is noise)


class NotEnoughLabels(ValueError):
    """Raised before any work when there are too few labels to train."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf: no model is returned or saved."""


class Outcome(str, Enum):
    A = "a"  # A better
    B = "b"  # B better
    TIE = "tie"  # both acceptable and equally good
    BOTH_BAD = "both_bad"  # neither may go live


@dataclass(frozen=True)
class PairwiseLabel:
    """One annotator judgement on two generations of the same product (same original photo)."""

    product_id: str
    original: str  # key of the original product photo
    image_a: str  # key of generation A
    image_b: str  # key of generation B
    outcome: Outcome
    category: str = ""
    weight: float = 1.0  # annotator reliability (see annotator_weight)

    def __post_init__(self):
        object.__setattr__(self, "outcome", Outcome(self.outcome))


@dataclass(frozen=True)
class SingleLabel:
    """"Is the background appropriate?" on one generation."""

    product_id: str
    original: str
    generated: str
    appropriate: bool
    category: str = ""
    weight: float = 1.0


Example = Union[PairwiseLabel, SingleLabel]


def image_key(rgb: np.ndarray) -> str:
    """Content key for an in-memory RGB array (shape + pixels)."""
    arr = np.ascontiguousarray(rgb)
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def category_prompt(category: str) -> str:
    return f"A photo of {category}" if category else "A photo of a product"


def check_enough_labels(examples: Sequence[Example], min_labels: int = MIN_LABELS) -> None:
    n = len(examples)
    if n < min_labels:
        raise NotEnoughLabels(f"need at least {min_labels} labels, have {n}")


def split_by_product(
    examples: Sequence[Example], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Split so that no product has labels on both sides.

    Products are shuffled with ``seed`` and moved to validation until about ``val_fraction`` of the
    labels are there. With two or more products each side gets at least one product; with a single
    product everything is training data (validation is empty).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    by_product: dict[str, list[Example]] = {}
    for ex in examples:
        by_product.setdefault(ex.product_id, []).append(ex)
    products = sorted(by_product)
    random.Random(seed).shuffle(products)
    target = val_fraction * len(examples)
    val_products: set[str] = set()
    n_val = 0
    for p in products:
        if len(val_products) >= len(products) - 1:
            break  # keep at least one product for training
        if n_val >= target:
            break
        val_products.add(p)
        n_val += len(by_product[p])
    if val_fraction > 0 and not val_products and len(products) >= 2:
        val_products.add(products[0])
    train = [ex for ex in examples if ex.product_id not in val_products]
    val = [ex for ex in examples if ex.product_id in val_products]
    return train, val


def annotator_weight(gold_correct: int, gold_total: int, chance: float = 0.5, prior: float = 2.0) -> float:
    """Label weight from an annotator's answers on gold items.

    Smoothed accuracy (``prior`` pseudo-answers at 75 % accuracy added to the gold record), rescaled
    so that chance level gives 0 and perfect gives 1: ``max(0, (acc - chance) / (1 - chance))``.
    An annotator with no gold answers yet gets 0.5.
    """
    acc = (gold_correct + prior * 0.75) / (gold_total + prior)
    return float(max(0.0, (acc - chance) / (1.0 - chance)))


def iter_images(examples: Iterable[Example]):
    """(original key, generated key) of every scored image in the examples."""
    for ex in examples:
        if isinstance(ex, PairwiseLabel):
            yield ex.original, ex.image_a
            yield ex.original, ex.image_b
        else:
            yield ex.original, ex.generated


def all_image_keys(examples: Iterable[Example]) -> list[str]:
    seen: dict[str, None] = {}
    for o, g in iter_images(examples):
        seen.setdefault(o)
        seen.setdefault(g)
    return list(seen)
