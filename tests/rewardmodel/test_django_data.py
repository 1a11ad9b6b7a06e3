"""Label snapshots from the database, and the builders the other reward-model platform tests use.

Generations are real composites of the shipped sample product photos on real stage photos (good)
and the same with one clear defect (bad), stored through core.services.storage; labels are
created with the ORM as annotators, QA and imports would.
"""
from __future__ import annotations

import functools
import hashlib

import numpy as np
import pytest

from annotate.models import ComparisonTask, ImageLabel, ImageTask, PairwiseLabel
from core.models import Product
from generation.models import Generation

# The real EfficientNet-Lite0 (shipped weights) at 128 px and a small head: fast on a shared CPU.
FAST = {"image_size": 128, "hidden": [64], "max_epochs": 40, "patience": 6, "batch_size": 64, "lr": 2e-3,
        "val_fraction": 0.3, "split_seed": 3}


@functools.lru_cache(maxsize=None)
def _composites(stages_per_product: int, size: int = 160):
    """{product file stem: [(good, bad), ...]} built once per test session."""
    import json

    from core.ml.images import load_rgb
    from rewardmodel.ml.synthetic import DEFECTS, make_pair, white_cutout
    from tests.conftest import SAMPLE

    man = [json.loads(line) for line in (SAMPLE / "manifest.jsonl").read_text().splitlines() if line.strip()]
    stages = [load_rgb(SAMPLE / m["file"]) for m in man if m["kind"] == "stage"]
    clutter = [load_rgb(SAMPLE / m["file"]) for m in man if m["kind"] == "product_in_store"]
    rng = np.random.default_rng(0)
    out, n = {}, 0
    for pi, m in enumerate(m for m in man if m["kind"] == "product_plain"):
        prod = load_rgb(SAMPLE / m["file"])
        alpha = white_cutout(prod, convex=m["category"] == "packages")
        pairs = []
        for s in range(stages_per_product):
            pair = make_pair(prod, alpha, stages[(pi * stages_per_product + s) % len(stages)],
                             clutter[(pi + 1 + s) % len(clutter)], DEFECTS[n % len(DEFECTS)], rng, size=size)
            n += 1
            pairs.append((pair.good, pair.bad))
        out[m["file"].rsplit("/", 1)[-1].rsplit(".", 1)[0]] = pairs
    return out


def make_generation(product: Product, pixels: np.ndarray, index: int, status="succeeded") -> Generation:
    from core.services.storage import store_pixels

    stored = store_pixels(pixels)
    params = {"test": index}
    return Generation.objects.create(
        product=product, backend="test-composite", backend_version="1", params=params,
        params_hash=hashlib.sha256(repr(params).encode()).hexdigest(), seed=index, status=status,
        image=stored.name, sha256=stored.decoded.sha256, width=stored.decoded.width, height=stored.decoded.height,
    )


def build_labelled_project(project, annotator, qa_user=None, *, stages_per_product=4, single_product=True):
    """Per product: `stages_per_product` (good, bad) generations, one pairwise label per pair and a
    single-image label on each image. With `single_product`, the last product gets one generation
    and single-image labels only. Returns {"good": [...], "bad": [...], "pair_labels", "image_labels"}."""
    comps = _composites(stages_per_product)
    products = list(Product.objects.filter(project=project).order_by("id"))
    out = {"good": [], "bad": [], "pair_labels": [], "image_labels": []}
    idx = 0
    for pi, product in enumerate(products):
        pairs = comps.get(product.title.replace(" ", "-")) or list(comps.values())[pi % len(comps)]
        if single_product and pi == len(products) - 1:
            g = make_generation(product, pairs[0][0], idx)
            idx += 1
            out["good"].append(g)
            out["image_labels"].append(ImageLabel.objects.create(generation=g, annotator=annotator,
                                                                 background_appropriate=True))
            if qa_user is not None:
                out["image_labels"].append(ImageLabel.objects.create(
                    generation=g, annotator=qa_user, source=ImageLabel.Source.QA, background_appropriate=True))
            continue
        for s, (good_px, bad_px) in enumerate(pairs):
            good, bad = make_generation(product, good_px, idx), make_generation(product, bad_px, idx + 1)
            idx += 2
            out["good"].append(good)
            out["bad"].append(bad)
            a, b, choice = (good, bad, "a") if s % 2 else (bad, good, "b")
            task = ComparisonTask.objects.create(project=project, generation_a=a, generation_b=b)
            out["pair_labels"].append(PairwiseLabel.objects.create(task=task, annotator=annotator, choice=choice))
            source = ImageLabel.Source.QA if (qa_user is not None and s == 0) else ImageLabel.Source.ANNOTATOR
            who = qa_user if source == ImageLabel.Source.QA else annotator
            for g, ok in ((good, True), (bad, False)):
                out["image_labels"].append(ImageLabel.objects.create(generation=g, annotator=who, source=source,
                                                                     background_appropriate=ok))
    return out


@pytest.fixture
def reward_settings(settings, tmp_path, tmp_path_factory):
    """Artifacts in the test's folder; one feature cache for the session (same images, same features)."""
    settings.STAGECRAFT_ARTIFACT_DIR = tmp_path / "artifacts"
    settings.STAGECRAFT_FEATURE_CACHE_DIR = _session_cache(tmp_path_factory)
    settings.STAGECRAFT_MODELS = {**getattr(settings, "STAGECRAFT_MODELS", {}), "blip": ""}
    return settings


_SESSION: dict = {}


def _session_cache(tmp_path_factory):
    if "cache" not in _SESSION:
        _SESSION["cache"] = tmp_path_factory.mktemp("reward-feature-cache")
    return _SESSION["cache"]


# --- tests of snapshot_labels ----------------------------------------------------------------


def test_snapshot_counts_pairwise_and_single_labels_of_every_source(demo_project, annotator, qa_user, reward_settings):
    from rewardmodel.services import snapshot_labels

    built = build_labelled_project(demo_project, annotator, qa_user, stages_per_product=2)
    g = built["good"][0]
    ImageLabel.objects.filter(generation=g).delete()
    ImageLabel.objects.create(generation=g, annotator=qa_user, source=ImageLabel.Source.IMPORT, background_appropriate=True)
    snap = snapshot_labels(demo_project)
    assert snap.counts["pairwise"] == len(built["pair_labels"]) == 14
    assert snap.counts["image"] == ImageLabel.objects.count()
    assert set(snap.counts["image_by_source"]) == {"annotator", "qa", "import"}
    assert sorted(snap.pairwise_ids) == sorted(p.pk for p in built["pair_labels"])
    assert snap.counts["total"] == len(snap.examples) == snap.counts["pairwise"] + snap.counts["image"]
    assert snap.skipped == {} and snap.weights == {}  # no gold items: every label weighs 1
    assert {ex.weight for ex in snap.examples} == {1.0}
    # the single-generation product is there, with single-image labels only
    last = Product.objects.filter(project=demo_project).order_by("id").last()
    key = last.source_image.sha256
    assert snap.product_pks[key] == [last.pk]
    assert [type(ex).__name__ for ex in snap.examples if ex.product_id == key] == ["SingleLabel"] * 2


def test_labels_on_deleted_images_and_failed_generations_are_skipped_and_counted(demo_project, annotator,
                                                                                 reward_settings):
    from django.core.files.storage import default_storage

    from rewardmodel.services import snapshot_labels

    built = build_labelled_project(demo_project, annotator, stages_per_product=2, single_product=False)
    before = snapshot_labels(demo_project).counts
    gone, failed = built["good"][0], built["bad"][2]
    default_storage.delete(gone.image.name)
    Generation.objects.filter(pk=failed.pk).update(status="failed")
    snap = snapshot_labels(demo_project)
    # one pair + one image label on each broken generation
    assert snap.skipped == {"image_missing": 2, "generation_failed": 2}
    assert snap.counts["total"] == before["total"] - 4 and snap.counts["skipped"] == 4


def test_gold_accuracy_weights_annotator_labels(demo_project, annotator, make_user, reward_settings):
    from core.roles import ANNOTATOR
    from rewardmodel.services import snapshot_labels

    built = build_labelled_project(demo_project, annotator, stages_per_product=2, single_product=False)
    sloppy = make_user("sloppy", ANNOTATOR)
    good, bad = built["good"][0], built["bad"][0]
    gold = ImageTask.objects.create(project=demo_project, generation=good, is_gold=True,
                                    gold_background_appropriate=True)
    ImageLabel.objects.filter(generation=good).update(task=gold)  # the annotator answered gold right
    ImageLabel.objects.create(generation=good, annotator=sloppy, task=gold, background_appropriate=False)
    ImageLabel.objects.create(generation=bad, annotator=sloppy, background_appropriate=True)
    snap = snapshot_labels(demo_project)
    assert snap.weights["ann"] > snap.weights["sloppy"]
    assert "gold" in snap.weight_source
    by_weight = {round(ex.weight, 4) for ex in snap.examples}
    assert round(snap.weights["sloppy"], 4) in by_weight and round(snap.weights["ann"], 4) in by_weight
