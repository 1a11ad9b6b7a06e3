"""Published-model tier through transformers, on tiny random GroundingDINO and SAM written with
save_pretrained and loaded back with from_pretrained(folder): the real code path, offline.
Outputs of random weights are meaningless; we check the plumbing gives a defined result."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from consistency.ml import GroundingDinoLocator, SamBoxSegmenter, build_checker, checker_from_env  # noqa: E402

from .tiny_models import build_tiny_grounding_dino, build_tiny_sam  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny_models")
    return str(build_tiny_grounding_dino(root / "gdino")), str(build_tiny_sam(root / "sam"))


def scene():
    rng = np.random.default_rng(0)
    img = np.full((96, 128, 3), 235, np.uint8)
    img[20:80, 40:80] = rng.integers(0, 255, (60, 40, 3), dtype=np.uint8)
    mask = np.zeros((96, 128), bool)
    mask[20:80, 40:80] = True
    return img, mask


def test_grounding_dino_and_sam_load_and_run(tiny):
    gd_path, sam_path = tiny
    img, _ = scene()
    locator = GroundingDinoLocator(gd_path, box_threshold=0.0, text_threshold=0.0)
    dets = locator.detect(img, "juice")
    assert dets, "threshold 0 keeps every query"
    for (x0, y0, x1, y1), score in dets:
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 96 and 0.0 <= score <= 1.0
    located = locator.locate(img, "juice", expected_box=(40, 20, 80, 80))
    assert located is not None and len(located.box) == 4
    seg = SamBoxSegmenter(sam_path).segment_box(img, (40, 20, 80, 80))
    assert seg.alpha.shape == (96, 128) and seg.alpha.dtype == np.float32
    assert not seg.mask[:, :30].any()  # nothing outside the prompted box


def test_full_checker_runs_on_published_tier(tiny):
    gd_path, sam_path = tiny
    img, mask = scene()
    checker = checker_from_env({"STAGECRAFT_GROUNDING_MODEL": gd_path, "STAGECRAFT_SAM_MODEL": sam_path})
    assert checker.prior_refiner is None  # SAM masks are used as they are
    generated = np.roll(img, 6, axis=1)
    for original_mask in (mask, None):  # with the original mask supplied, and segmenting it too
        res = checker.check(img, generated, category="juice", original_mask=original_mask)
        assert res.status in ("consistent", "inconsistent", "product_missing", "no_product_in_original")
        assert isinstance(res.passed, bool) and isinstance(res.reasons, list)
        assert res.models["locator"].startswith("grounding-dino:") and res.models["segmenter"].startswith("sam:")
        json.dumps(res.to_dict())


def test_locator_with_impossible_threshold_means_product_missing(tiny):
    gd_path, sam_path = tiny
    img, mask = scene()
    checker = build_checker(gd_path, sam_path)
    checker.locator.box_threshold = 1.01  # nothing can pass: the locator returns None
    res = checker.check(img, img, category="juice", original_mask=mask)
    assert res.status == "product_missing" and res.reasons == ["product missing in generated image"]
