"""Copy-paste staging and the paste-on-stage baseline, end to end on real photos: shared segmenter,
shared encoder, real catalog index, real inpainting."""
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
from core.ml.segmentation import segment_product
from generation.ml.backends import BackendUnavailable, GenerationFailed, ProductInput, get_backend_class
from generation.ml.copy_paste import (
    CatalogSource,
    CopyPasteStagingBackend,
    FolderCatalogSource,
    InMemoryCatalogSource,
    PasteOnStageBackend,
    StagedCandidate,
)
from generation.ml.retrieval import CatalogIndex, CatalogPhoto, EmptyCatalog

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
SIZE = 256  # tests stage at 256 px (the default is 512) to stay fast on a loaded machine


def small(path: Path, side: int = 320) -> np.ndarray:
    return cv2.resize(load_rgb(path), (side, side), interpolation=cv2.INTER_AREA)


def blue_can_pixels(rgb: np.ndarray) -> np.ndarray:
    """The catalog can's light-blue body (the product that must disappear from the scene)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    return (hsv[..., 0] > 95) & (hsv[..., 0] < 115) & (hsv[..., 1] > 90) & (hsv[..., 2] > 90)


@pytest.fixture(scope="module")
def catalog():
    source = InMemoryCatalogSource()
    photos = []
    for cat, rel in [("can", "can/00.jpg"), ("can", "can/02.jpg"), ("bowl", "berry_bowl/00.jpg")]:
        rgb = small(SAMPLE / "staged" / rel)
        alpha = segment_product(rgb).alpha
        source.put(rel, rgb, alpha)
        photos.append(CatalogPhoto(rel, cat, rgb, alpha))
    index = CatalogIndex.build(photos, encoder=default_image_encoder())
    return index, source


@pytest.fixture(scope="module")
def juice():
    rgb = load_rgb(SAMPLE / "products" / "packages-juice-tropicana-apple-juice.jpg")
    return rgb, segment_product(rgb).alpha


@pytest.fixture(scope="module")
def staged(catalog, juice):
    index, source = catalog
    backend = CopyPasteStagingBackend(index, source, size=SIZE)
    product = ProductInput(juice[0], "can", "Tropicana apple juice")  # no mask: segments itself
    return backend.generate(product, seed=5, num_candidates=2)


def test_registered_and_availability(catalog):
    assert get_backend_class("copy-paste") is CopyPasteStagingBackend
    assert get_backend_class("paste-on-stage") is PasteOnStageBackend
    ok, why = CopyPasteStagingBackend().availability()
    assert not ok and "catalog index" in why
    assert CopyPasteStagingBackend(*catalog).availability() == (True, "")
    assert isinstance(catalog[1], CatalogSource)


def test_candidates_replace_the_catalog_product(staged, catalog):
    index, source = catalog
    assert len(staged) == 2
    ids = [c.metadata["source_id"] for c in staged]
    assert len(set(ids)) == 2 and all(i.startswith("can/") for i in ids)  # category filter
    for c in staged:
        assert isinstance(c, StagedCandidate)
        meta = json.loads(json.dumps(c.metadata))  # JSON-serialisable provenance
        for key in ("source_id", "similarity", "uncovered_fraction", "placement_box", "inpainter", "timings", "seed"):
            assert key in meta
        assert meta["backend"] == "copy-paste" and meta["notice"] == ""
        assert c.image.shape == (SIZE, SIZE, 3) and c.image.dtype == np.uint8
        # placement: the product mask sits in the placement box, on the old product's base line
        x0, y0, x1, y1 = meta["placement_box"]
        ys, xs = np.nonzero(c.product_mask >= 0.5)
        assert abs(ys.max() + 1 - y1) <= 2 and xs.min() >= x0 - 1 and xs.max() < x1 + 1
        assert y1 == meta["catalog_box"][3]
        assert meta["catalog_box"][0] <= x0 and x1 <= meta["catalog_box"][2]  # fit inside the old box
        # the old blue can is gone: outside the new product, its colour has (almost) vanished
        scene, alpha = source.get(meta["source_id"])
        scene = cv2.resize(scene, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        old = cv2.resize(alpha, (SIZE, SIZE)) >= 0.5
        visible = old & (c.product_mask < 0.02)
        before = blue_can_pixels(scene)[visible].sum()
        after = blue_can_pixels(c.image)[visible].sum()
        assert before > 300 and after < 0.1 * before, (before, after)
        # the product is drawn: its pixels look like the juice carton, not like the scene
        inside = c.product_mask > 0.99
        assert np.abs(c.image[inside].astype(int) - c.layers.product_rgb[inside]).max() <= 1


def test_contact_shadow_darkens_the_ground_under_the_product(staged):
    c = staged[0]
    x0, y0, x1, y1 = c.metadata["placement_box"]
    below = np.zeros(c.product_mask.shape, bool)
    below[y1 : y1 + 4, x0:x1] = True
    below &= c.product_mask < 0.02
    plate = c.layers.clean_plate[below].astype(float).mean()
    shaded = c.image[below].astype(float).mean()
    assert shaded < plate - 5


def test_same_seed_same_images_and_mask_input(catalog, juice):
    index, source = catalog
    backend = CopyPasteStagingBackend(index, source, size=SIZE)
    product = ProductInput(juice[0], "can", mask=juice[1])
    a = backend.generate(product, seed=11, num_candidates=1)[0]
    b = backend.generate(product, seed=11, num_candidates=1)[0]
    np.testing.assert_array_equal(a.image, b.image)
    assert a.metadata["source_id"] == b.metadata["source_id"]


def test_unknown_category_falls_back_with_a_notice(catalog, juice):
    backend = CopyPasteStagingBackend(*catalog, size=SIZE)
    out = backend.generate(ProductInput(juice[0], "garden-furniture", mask=juice[1]), seed=0, num_candidates=1)
    assert "no catalog photos in category 'garden-furniture'" in out[0].metadata["notice"]
    assert out[0].metadata["searched_categories"] == "all"


def test_bad_input_gives_clear_messages(catalog, juice):
    index, source = catalog
    backend = CopyPasteStagingBackend(index, source, size=SIZE)
    product = ProductInput(juice[0], "can", mask=juice[1])
    with pytest.raises(GenerationFailed, match="larger than the scene"):
        backend.generate(product, seed=0, num_candidates=1, scale=8.0)
    with pytest.raises(EmptyCatalog, match="catalog index is empty"):
        backend.generate(product, seed=0, index=CatalogIndex(dim=index.dim, encoder_name=index.encoder_name))
    scene = load_rgb(SAMPLE / "staged" / "vase" / "00.jpg")
    with pytest.raises(GenerationFailed, match="not on a plain background"):
        backend.generate(ProductInput(scene, "can"), seed=0)
    with pytest.raises(BackendUnavailable):
        CopyPasteStagingBackend(index, None).generate(product, seed=0)


def test_folder_catalog_source_round_trip(tmp_path, catalog):
    _, mem = catalog
    rgb, alpha = mem.get("can/00.jpg")
    folder = FolderCatalogSource(tmp_path / "catalog")
    folder.put("can/00.jpg", rgb, alpha)
    rgb2, alpha2 = folder.get("can/00.jpg")
    np.testing.assert_array_equal(rgb2, rgb)
    assert np.abs(alpha2 - alpha).max() <= 1 / 255 + 1e-6
    with pytest.raises(KeyError):
        folder.get("missing")


def test_paste_on_stage_baseline(juice):
    stages = [small(SAMPLE / "stages" / n) for n in ("2.jpg", "10.jpg", "14.jpg")]
    backend = PasteOnStageBackend(stages, size=SIZE)
    assert backend.availability() == (True, "")
    product = ProductInput(juice[0], "can", mask=juice[1])
    out = backend.generate(product, seed=3, num_candidates=2)
    again = backend.generate(product, seed=3, num_candidates=2)
    assert len(out) == 2 and out[0].metadata["source_id"] != out[1].metadata["source_id"]
    for a, b in zip(out, again):
        np.testing.assert_array_equal(a.image, b.image)
        json.dumps(a.metadata)
        x0, y0, x1, y1 = a.metadata["placement_box"]
        assert y1 - y0 == round(0.42 * SIZE)
    with pytest.raises(GenerationFailed, match="larger than the scene"):
        backend.generate(product, seed=0, height_fraction=1.5)
    assert not PasteOnStageBackend().availability()[0]
    with pytest.raises(GenerationFailed, match="no stage images"):
        PasteOnStageBackend().generate(product, seed=0)


def test_small_category_is_filled_up_from_other_categories(catalog, juice):
    backend = CopyPasteStagingBackend(*catalog, size=SIZE)
    out = backend.generate(ProductInput(juice[0], "bowl", mask=juice[1]), seed=0, num_candidates=2)
    assert len(out) == 2
    assert out[0].metadata["source_category"] == "bowl" and out[1].metadata["source_category"] == "can"
    assert "only 1 catalog photo(s) in category 'bowl'" in out[0].metadata["notice"]


def test_wide_product_on_a_narrow_stage_is_shrunk_to_fit(juice):
    from generation.ml.copy_paste import paste_on_stage
    from generation.ml.cutout import cut_out_product

    rgb = load_rgb(SAMPLE / "products" / "vegetables-aubergine.jpg")  # wide
    cut = cut_out_product(rgb, alpha=segment_product(rgb).alpha)
    portrait = small(SAMPLE / "stages" / "9.jpg", 256)[:, :110]  # a narrow stage
    layers, meta = paste_on_stage(cut, portrait, size=256)
    x0, y0, x1, y1 = meta["placement_box"]
    assert x1 - x0 <= 0.9 * meta["scene_size"][0] + 1 and y1 - y0 < 0.42 * 256


def test_inpainter_is_chosen_by_name_and_wbl_loads_the_newest_trained_model(tmp_path, catalog, juice):
    from generation.ml.wbl_inpainter import WblConfig, train_wbl_inpainter

    index, source = catalog
    product = ProductInput(juice[0], "can", mask=juice[1])
    backend = CopyPasteStagingBackend(index, source, size=SIZE, wbl_model=tmp_path / "wbl")
    names = {name: backend.generate(product, seed=0, num_candidates=1, inpainter=name)[0].metadata["inpainter"]
             for name in ("telea", "ns", "patchmatch")}
    assert names == {"telea": "opencv-telea", "ns": "opencv-ns", "patchmatch": "patchmatch-p3"}
    with pytest.raises(GenerationFailed, match="unknown inpainter 'lama'"):
        backend.generate(product, seed=0, inpainter="lama")
    with pytest.raises(BackendUnavailable, match="no trained WBL inpainter"):
        backend.generate(product, seed=0, inpainter="wbl")

    # a few training steps on the catalog scenes, then staging through the learned inpainter
    rgbs, alphas = zip(*(source.get(i) for i in ("can/00.jpg", "can/02.jpg")))
    cfg = WblConfig(steps=3, batch_size=2, crop=48, max_side=96, width=8, n_res=1, output_dir=str(tmp_path / "wbl"))
    first = train_wbl_inpainter(list(rgbs), [a > 0.5 for a in alphas], cfg, device="cpu")
    newest = train_wbl_inpainter(list(rgbs), [a > 0.5 for a in alphas], cfg, device="cpu")
    out = backend.generate(product, seed=0, num_candidates=2, inpainter="wbl")
    assert [c.metadata["inpainter"] for c in out] == ["wbl", "wbl"]
    assert {c.metadata["inpainter_version"] for c in out} == {newest.name}
    pinned = backend.generate(product, seed=0, num_candidates=1, inpainter="wbl", wbl_version=first.name)[0]
    assert pinned.metadata["inpainter_version"] == first.name
    telea = backend.generate(product, seed=0, num_candidates=1, inpainter="telea")[0]
    layers = out[0].layers
    assert layers.clean_plate.shape == telea.layers.clean_plate.shape
    assert not np.array_equal(layers.clean_plate, telea.layers.clean_plate)  # the network's fill, not Telea's
