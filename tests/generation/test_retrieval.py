"""Catalog index: build from real staged photos, search with category filter and silhouette fit,
persistence, updates, and the error cases the copy-paste backend relies on."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from core.ml.embeddings import default_image_encoder
from core.ml.images import load_rgb
from generation.ml.backends import GenerationFailed
from generation.ml.cutout import cut_out_product
from generation.ml.retrieval import (
    CatalogIndex,
    CatalogPhoto,
    EmptyCatalog,
    product_on_white,
    silhouette_grid,
    uncovered_fraction,
)

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
PHOTOS = [("can", "can/00.jpg"), ("can", "can/02.jpg"), ("can", "can/05.jpg"), ("bowl", "berry_bowl/00.jpg"), ("bowl", "berry_bowl/02.jpg")]


def small(path: Path, side: int = 256) -> np.ndarray:
    return cv2.resize(load_rgb(path), (side, side), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def real_index():
    """A real catalog: shared segmenter + shared encoder on 5 staged photos (2 categories)."""
    photos = [CatalogPhoto(rel, cat, small(SAMPLE / "staged" / rel)) for cat, rel in PHOTOS]
    index = CatalogIndex.build(photos, encoder=default_image_encoder())  # segments each photo
    return index, photos


def ellipse_mask(h, w, cx, cy, rx, ry):
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (cx, cy), (rx, ry), 0, 0, 360, 1, -1)
    return m.astype(bool)


def rect_mask(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_build_and_self_retrieval(real_index):
    index, photos = real_index
    enc = default_image_encoder()
    assert len(index) == 5 and index.category_counts() == {"can": 3, "bowl": 2}
    assert index.encoder_name == enc.name and index.dim == enc.dim
    # every catalog product retrieves its own photo first
    from core.ml.segmentation import segment_product

    for photo in photos[::3]:
        alpha = segment_product(photo.rgb).alpha
        q = enc.encode([product_on_white(photo.rgb, alpha)])[0]
        res = index.search(q, k=2)
        assert res.hits[0].item_id == photo.item_id
        assert res.hits[0].similarity > 0.98


def test_real_product_query_prefers_its_category_and_explains_fallback(real_index):
    index, _ = real_index
    enc = default_image_encoder()
    cut = cut_out_product(load_rgb(SAMPLE / "products" / "packages-juice-tropicana-apple-juice.jpg"))
    q = enc.encode([product_on_white(cut.rgb, cut.alpha)])[0]
    res = index.search(q, k=3, category="can", query_mask=cut.mask)
    assert res.notice == "" and res.searched_categories == "can"
    assert [h.category for h in res.hits] == ["can"] * 3
    for h in res.hits:
        assert 0.0 <= h.uncovered_fraction <= 1.0
        assert h.score == pytest.approx(h.similarity - 0.5 * h.uncovered_fraction, abs=1e-5)
        json.dumps(h.to_dict())
    scores = [h.score for h in res.hits]
    assert scores == sorted(scores, reverse=True)
    res = index.search(q, k=5, category="shoes", query_mask=cut.mask)
    assert "no catalog photos in category 'shoes'" in res.notice and "searched all categories" in res.notice
    assert res.searched_categories == "all" and {h.category for h in res.hits} == {"can", "bowl"}


def test_silhouette_fit_reranks_equally_similar_scenes():
    """Two catalog scenes with the same embedding: a tall carton fits a tall can's silhouette,
    so the wide bowl (which it would leave mostly uncovered) ranks second."""
    h = w = 200
    v = np.ones((2, 8), np.float32)
    tall = rect_mask(h, w, 80, 20, 120, 180)  # 40 x 160
    wide = ellipse_mask(h, w, 100, 120, 80, 40)  # 160 x 80
    index = CatalogIndex(dim=8)
    index.add(["wide-bowl", "tall-can"], ["x", "x"], v, [wide, tall])
    carton = rect_mask(120, 120, 45, 10, 75, 115)  # 30 x 105: tall
    res = index.search(v[0], k=2, query_mask=carton)
    assert [h.item_id for h in res.hits] == ["tall-can", "wide-bowl"]
    assert res.hits[0].uncovered_fraction < 0.15 < 0.4 < res.hits[1].uncovered_fraction
    # without a query mask, ranking is by similarity only (here a tie) and fit is not computed
    plain = index.search(v[0], k=2).hits
    assert {h.item_id for h in plain} == {"wide-bowl", "tall-can"}
    assert all(np.isnan(h.uncovered_fraction) and h.score == pytest.approx(h.similarity) for h in plain)
    assert plain[0].to_dict()["uncovered_fraction"] is None


def test_uncovered_fraction_basics():
    sq = silhouette_grid(rect_mask(50, 50, 10, 10, 40, 40))
    assert uncovered_fraction(sq, (1.0, 1.0), sq, (30, 30)) == 0.0
    narrow = silhouette_grid(rect_mask(50, 50, 20, 0, 30, 50))  # 10 x 50, fit inside a square box
    assert uncovered_fraction(sq, (1.0, 1.0), narrow, (10, 50)) == pytest.approx(0.8, abs=0.05)


def test_save_load_add_replace_remove(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(6, 16)).astype(np.float32)
    masks = [rect_mask(64, 64, 10 + i, 10, 40 + i, 60) for i in range(6)]
    index = CatalogIndex(dim=16, encoder_name="test-vectors")
    index.add([f"id{i}" for i in range(6)], ["a", "a", "a", "b", "b", "c"], vecs, masks)
    index.save(tmp_path / "idx")
    loaded = CatalogIndex.load(tmp_path / "idx")
    assert loaded.ids == index.ids and loaded.categories == index.categories
    np.testing.assert_array_equal(loaded.silhouettes, index.silhouettes)
    for cat in (None, "b"):
        a = index.search(vecs[3], k=3, category=cat, query_mask=masks[0])
        b = loaded.search(vecs[3], k=3, category=cat, query_mask=masks[0])
        assert [h.item_id for h in a.hits] == [h.item_id for h in b.hits]
        assert a.hits[0].item_id == "id3"
    # replacing an id keeps one entry, with the new vector and category
    loaded.add(["id3"], ["c"], vecs[[0]], [masks[0]])
    assert len(loaded) == 6 and loaded.category_counts() == {"a": 3, "b": 1, "c": 2}
    assert loaded.search(vecs[0], k=2).hits[1].item_id in ("id0", "id3")
    assert loaded.remove(["id0", "nope"]) == 1 and "id0" not in loaded.ids
    assert loaded.search(vecs[0], k=1, exclude=["id3"]).hits[0].item_id != "id3"
    loaded.save(tmp_path / "idx")
    assert len(CatalogIndex.load(tmp_path / "idx")) == 5


def test_errors():
    index = CatalogIndex(dim=4)
    with pytest.raises(EmptyCatalog, match="catalog index is empty"):
        index.search(np.ones(4), k=1)
    assert issubclass(EmptyCatalog, GenerationFailed)
    with pytest.raises(GenerationFailed, match="empty mask"):
        index.add(["x"], ["c"], np.ones((1, 4)), [np.zeros((8, 8), bool)])
    with pytest.raises(ValueError, match="dimension"):
        index.add(["x"], ["c"], np.ones((1, 5)), [rect_mask(8, 8, 1, 1, 5, 5)])
    index.add(["x"], ["c"], np.ones((1, 4)), [rect_mask(8, 8, 1, 1, 5, 5)])
    with pytest.raises(ValueError, match="dimension"):
        index.search(np.ones(3), k=1)
    with pytest.raises(EmptyCatalog, match="no catalog index"):
        CatalogIndex.load("/nonexistent/catalog-index")


def test_ivf_mode_for_large_catalogs_matches_exact_search(tmp_path):
    """Large catalogs switch to IVF; with all lists probed it returns what exact search returns,
    and save/load, category filter, replace and remove keep working."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(8, 32)).astype(np.float32)
    vecs = centres[rng.integers(0, 8, 400)] + 0.3 * rng.normal(size=(400, 32)).astype(np.float32)
    ids = [f"v{i}" for i in range(400)]
    cats = ["a" if i % 10 else "b" for i in range(400)]
    masks = [rect_mask(16, 16, 2, 2, 12, 14)] * 400
    flat = CatalogIndex(dim=32)
    flat.add(ids, cats, vecs, masks)
    ivf = CatalogIndex(dim=32)
    ivf.add(ids, cats, vecs, masks)
    ivf.use_ivf(nlist=8, nprobe=8)
    assert flat.kind == "flat" and ivf.kind == "ivf"
    for qi in (0, 17, 399):
        for cat in (None, "b"):
            want = [h.item_id for h in flat.search(vecs[qi], k=5, category=cat).hits]
            got = [h.item_id for h in ivf.search(vecs[qi], k=5, category=cat).hits]
            assert got == want
    ivf.save(tmp_path / "ivf")
    loaded = CatalogIndex.load(tmp_path / "ivf")
    assert loaded.kind == "ivf" and loaded.search(vecs[17], k=1).hits[0].item_id == "v17"
    assert loaded.remove(["v17"]) == 1 and len(loaded) == 399
    assert loaded.search(vecs[18], k=1).hits[0].item_id == "v18"
    loaded.add(["v18"], ["b"], vecs[[0]], [masks[0]])
    assert loaded.search(vecs[0], k=2).hits[0].item_id in ("v0", "v18") and len(loaded) == 399


def test_vectorised_fit_equals_the_reference():
    rng = np.random.default_rng(2)
    new = silhouette_grid(ellipse_mask(90, 60, 30, 45, 25, 40))
    olds, aspects = [], []
    for i in range(12):
        w, h = int(rng.integers(10, 80)), int(rng.integers(10, 80))
        m = ellipse_mask(100, 100, 50, 50, w // 2 + 1, h // 2 + 1) if i % 2 else rect_mask(100, 100, 5, 5, 5 + w, 5 + h)
        olds.append(silhouette_grid(m))
        ys, xs = np.nonzero(m)
        aspects.append((xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1))
    from generation.ml.retrieval import uncovered_fractions

    batch = uncovered_fractions(np.stack(olds), np.array(aspects), new, (51, 81))
    ref = [uncovered_fraction(o, (a, 1.0), new, (51, 81)) for o, a in zip(olds, aspects)]
    np.testing.assert_allclose(batch, ref, atol=1e-6)


def test_update_catalog_index_creates_adds_and_removes(tmp_path, real_index):
    """The Celery-facing helper: create the folder index, add real photos (segmented and embedded
    here), remove one, and reload what was saved."""
    from generation.ml.retrieval import update_catalog_index

    _, photos = real_index
    enc = default_image_encoder()
    folder = tmp_path / "catalog-index"
    fresh = CatalogPhoto(photos[0].item_id, photos[0].category, photos[0].rgb)
    index, skipped = update_catalog_index(folder, [fresh], encoder=enc)
    assert skipped == [] and len(index) == 1
    # the mask used is left on the photo, for the caller's CatalogSource
    assert fresh.alpha is not None and fresh.alpha.shape == fresh.rgb.shape[:2] and (fresh.alpha >= 0.5).any()
    blank = CatalogPhoto("blank", "can", np.full((64, 64, 3), 250, np.uint8))
    index, skipped = update_catalog_index(folder, [blank], encoder=enc)
    assert len(skipped) == 1 and "blank" in skipped[0] and "no product found" in skipped[0]
    loaded = CatalogIndex.load(folder)
    assert loaded.ids == [photos[0].item_id] and loaded.encoder_name == enc.name
    update_catalog_index(folder, remove=[photos[0].item_id], encoder=enc)
    assert len(CatalogIndex.load(folder)) == 0
