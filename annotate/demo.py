"""Demo generations without a generator: the product photo pasted on a sample stage with PIL.

Used by `make_demo_tasks` (so a person can label right after `make run`) and by the tests.
Each product gets 3 composites (different stages, scales, positions); with `broken=True` a fourth
one with the product's colours swapped serves as a gold item with a known answer.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from PIL import Image, ImageFilter

from core.models import Product
from core.services.storage import store_pixels
from generation.models import Generation

BACKEND = "demo-composite"
STAGES_DIR = Path(settings.BASE_DIR) / "sample_data" / "stages"
MAX_SIDE = 640
VARIANTS = [  # (scale of the shorter stage side, horizontal position 0..1)
    (0.55, 0.5),
    (0.35, 0.3),
    (0.75, 0.65),
]


def _stage_files() -> list[Path]:
    return sorted(STAGES_DIR.glob("*.jpg"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)


def _product_cutout(product: Product) -> Image.Image:
    source = product.source_image
    with default_storage.open(source.image.name, "rb") as fh:
        photo = Image.open(fh).convert("RGB")
    rgb = np.asarray(photo, dtype=np.int16)
    corners = np.array([rgb[0, 0], rgb[0, -1], rgb[-1, 0], rgb[-1, -1]]).mean(axis=0)
    distance = np.abs(rgb - corners).sum(axis=2)
    mask = Image.fromarray(((distance > 45) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    photo.putalpha(mask)
    return photo


def composite(product: Product, stage_path: Path, scale: float, x_pos: float,
              broken: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(staged image, where the product was placed as an 8-bit mask), as a generator reports them."""
    stage = Image.open(stage_path).convert("RGB")
    stage.thumbnail((MAX_SIDE, MAX_SIDE))
    cutout = _product_cutout(product)
    if broken:  # "product changed": colours swapped, a defect annotators must catch
        r, g, b, a = cutout.split()
        cutout = Image.merge("RGBA", (b, r, g, a))
    side = int(min(stage.size) * scale)
    cutout = cutout.resize((side, side), Image.LANCZOS)
    x = int((stage.width - side) * x_pos)
    y = stage.height - side - int(stage.height * 0.06)
    stage.paste(cutout, (x, max(0, y)), cutout)
    placement = Image.new("L", stage.size, 0)
    placement.paste(cutout.getchannel("A"), (x, max(0, y)))
    return np.asarray(stage), np.asarray(placement)


def make_generation(product: Product, stage_path: Path, scale: float, x_pos: float, seed: int,
                    broken: bool = False) -> Generation:
    params = {"stage": stage_path.name, "scale": scale, "x": x_pos, "broken": broken}
    params_hash = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    existing = Generation.objects.filter(product=product, backend=BACKEND, backend_version="1", params_hash=params_hash,
                                         seed=seed, candidate_index=0).first()
    if existing:
        return existing
    image, placement = composite(product, stage_path, scale, x_pos, broken)
    stored = store_pixels(image)
    generation, _ = Generation.objects.get_or_create(
        product=product, backend=BACKEND, backend_version="1", params_hash=params_hash, seed=seed, candidate_index=0,
        defaults={"params": params, "status": Generation.Status.SUCCEEDED, "image": stored.name,
                  "sha256": stored.decoded.sha256, "width": stored.decoded.width, "height": stored.decoded.height,
                  "product_mask": store_pixels(placement, folder="masks").name, "metadata": {"demo": True}},
    )
    return generation


def make_demo_generations(project, *, per_product: int = 3, broken_products: int = 2, seed: int = 0,
                          max_products: int | None = None) -> tuple[list[Generation], list[Generation]]:
    """Returns (good, broken) generations; idempotent."""
    rng = random.Random(seed)
    stages = _stage_files()
    good, broken = [], []
    products = [p for p in project.products.order_by("id") if p.source_image is not None]
    if max_products is not None:
        products = products[:max_products]
    for index, product in enumerate(products):
        chosen = rng.sample(stages, k=min(per_product, len(stages)))
        for variant, stage_path in enumerate(chosen):
            scale, x_pos = VARIANTS[variant % len(VARIANTS)]
            good.append(make_generation(product, stage_path, scale, x_pos, seed=variant))
        if index < broken_products:
            scale, x_pos = VARIANTS[0]
            broken.append(make_generation(product, chosen[0], scale, x_pos, seed=100, broken=True))
    return good, broken


def make_demo_tasks(project, *, gold_rate: float | None = 0.1, **kwargs):
    """Demo generations, queued as comparison and image tasks; pairs with a broken one become gold."""
    from annotate.models import ComparisonTask, ImageTask
    from annotate.services import create_tasks, mark_gold

    good, broken = make_demo_generations(project, **kwargs)
    report = create_tasks(project, seed=kwargs.get("seed", 0))
    broken_ids = {g.pk for g in broken}
    for task in ComparisonTask.objects.filter(project=project, is_gold=False):
        a_broken, b_broken = task.generation_a_id in broken_ids, task.generation_b_id in broken_ids
        if a_broken != b_broken:
            mark_gold(task, "b" if a_broken else "a")
    for task in ImageTask.objects.filter(project=project, generation_id__in=broken_ids, is_gold=False):
        mark_gold(task, {"background_appropriate": True, "product_intact": False})
    if gold_rate is not None and project.gold_rate == 0 and broken:
        project.gold_rate = gold_rate
        project.save(update_fields=["gold_rate"])
    return good, broken, report
