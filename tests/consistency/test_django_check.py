"""Consistency checks on stored generations, the pages around them and the mask correction upload."""
import base64
import io
import json

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse
from PIL import Image

from consistency import services
from consistency.ml import ConsistencyThresholds
from consistency.models import MaskCorrection
from core.models import SourceImage
from core.services.storage import store_pixels
from tests.consistency.django_helpers import make_generation, product_by_file

JUICE = "packages-juice-tropicana-apple-juice"
ORANGE = "fruit-orange"


def png_data_url(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.mark.django_db
def test_untouched_composite_passes_and_altered_ones_fail_with_the_right_reason(demo_project):
    untouched = make_generation(demo_project, JUICE)
    scaled = make_generation(demo_project, JUICE, "scale", seed=1)
    recoloured = make_generation(demo_project, JUICE, "colour", seed=2)
    summary = services.check_generations(demo_project, ids=[untouched.pk, scaled.pk, recoloured.pk])
    assert summary["checked"] == 3 and summary["passed"] == 1

    untouched.refresh_from_db()
    assert untouched.consistency_passed is True, untouched.consistency["reasons"]
    assert untouched.consistency["status"] == "consistent" and untouched.consistency["reasons"] == []
    assert untouched.consistency["metrics"]["iou"] > 0.85
    assert untouched.consistency["inputs"]["placement_hint"] is True
    assert untouched.consistency_model is None  # nothing calibrated: the threshold rules decide
    assert untouched.consistency["thresholds"]["max_area_change"] == ConsistencyThresholds().max_area_change

    scaled.refresh_from_db()
    assert scaled.consistency_passed is False
    assert any("area grew" in r for r in scaled.consistency["reasons"]), scaled.consistency["reasons"]
    assert 0.15 < scaled.consistency["metrics"]["area_change"] < 0.35

    recoloured.refresh_from_db()
    assert recoloured.consistency_passed is False
    assert any("colour" in r for r in recoloured.consistency["reasons"]), recoloured.consistency["reasons"]

    # the original's mask was computed once and cached on the SourceImage
    source = product_by_file(demo_project, JUICE).source_image
    assert source.mask and untouched.consistency["inputs"]["original_mask"] in ("computed", "stored")
    assert services.read_mask(source.mask.name).shape == (source.height, source.width)


@pytest.mark.django_db
def test_product_extended_beyond_its_placement_fails(demo_project):
    # the reference is built from the generated image at the reported placement, so the growth
    # must be found in the generated image itself
    extended = make_generation(demo_project, JUICE, "extended", seed=3)
    result = services.check_generation(extended)
    assert result["inputs"]["placement_hint"] is True
    assert result["passed"] is False, result["metrics"]
    assert any("grew" in r or "expanded" in r for r in result["reasons"]), result["reasons"]
    assert result["metrics"]["expansion"] > 0.1


@pytest.mark.django_db
def test_demo_generations_record_their_placement_and_pass_unless_broken(demo_project):
    from annotate.demo import make_demo_generations

    good, broken = make_demo_generations(demo_project, max_products=1, broken_products=1)
    assert all(g.product_mask for g in good + broken)
    for g in good:
        result = services.check_generation(g)
        assert result["inputs"]["placement_hint"] is True
        assert result["passed"] is True, (g.params, result["reasons"])
    assert services.check_generation(broken[0])["passed"] is False  # colours swapped


@pytest.mark.django_db
def test_project_rules_override_defaults(demo_project):
    demo_project.consistency_rules = {"allow_rescale": True, "max_expansion": 0.5, "max_shrinkage": 0.5,
                                      "min_iou": 0.0, "min_boundary_f": 0.0, "unknown_key": 1}
    demo_project.save()
    scaled = make_generation(demo_project, ORANGE, "scale")
    result = services.check_generation(scaled)
    assert result["thresholds"]["allow_rescale"] is True and "unknown_key" not in result["thresholds"]
    assert not any("area grew" in r or "area shrank" in r for r in result["reasons"]), result["reasons"]


@pytest.mark.django_db
def test_bad_input_gives_defined_results_not_crashes(demo_project):
    missing = make_generation(demo_project, ORANGE, "missing")
    result = services.check_generation(missing)
    assert result["passed"] is False and result["status"] == "product_missing"
    assert any("product missing" in r for r in result["reasons"])

    # no product mask recorded, grayscale and RGBA generated files: still a defined verdict
    grey_img = np.asarray(Image.open(missing.image.path).convert("L"))
    grey = make_generation(demo_project, ORANGE, with_mask=False, seed=5, image=grey_img)
    assert services.check_generation(grey)["status"] in ("consistent", "inconsistent", "product_missing")
    rgba = make_generation(demo_project, ORANGE, seed=6)
    rgb = np.asarray(Image.open(rgba.image.path).convert("RGB"))
    rgba.image = store_pixels(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).name
    rgba.save()
    assert services.check_generation(rgba)["status"] == "consistent"

    # a generated product mask of another size is resized; an empty one is ignored with a note
    empty = make_generation(demo_project, ORANGE, seed=7)
    empty.product_mask = store_pixels(np.zeros((10, 12), np.uint8), folder="masks").name
    empty.save()
    res = services.check_generation(empty)
    assert res["inputs"]["placement_hint"] is False and any("empty" in n for n in res["notes"])

    # an empty original mask (a person cleared it) → a clear reason, no crash
    source = product_by_file(demo_project, ORANGE).source_image
    source.mask = store_pixels(np.zeros((source.height, source.width), np.uint8), folder="masks").name
    source.save()
    res = services.check_generation(make_generation(demo_project, ORANGE, seed=8))
    assert res["status"] == "no_product_in_original" and "empty" in res["reasons"][0]

    # a generation without an image, and a product without an original photo
    no_image = make_generation(demo_project, ORANGE, seed=9)
    no_image.image = ""
    no_image.status = "failed"
    no_image.save()
    assert services.check_generation(no_image)["status"] == "no_image"
    juice_gen = make_generation(demo_project, JUICE, seed=10)
    SourceImage.objects.filter(product=juice_gen.product).delete()
    assert services.check_generation(juice_gen)["reasons"] == ["the product has no original photo to compare with"]


@pytest.mark.django_db
def test_mask_correction_upload_stores_the_mask_and_feeds_the_next_check(client, demo_project, qa_user, annotator):
    gen = make_generation(demo_project, JUICE)
    services.check_generation(gen)
    source = gen.product.source_image
    source.refresh_from_db()
    url = reverse("consistency:mask", args=[gen.pk, "original"])

    client.force_login(annotator)
    page = client.get(url)
    assert page.status_code == 200 and b'id="me-mask"' in page.content and b"mask_editor.js" in page.content

    client.force_login(qa_user)
    drawn = services.read_mask(source.mask.name)
    drawn[:, : drawn.shape[1] // 10] = False  # the QA person trims the left edge
    response = client.post(url, data=json.dumps({"mask": png_data_url(drawn)}), content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is True
    correction = MaskCorrection.objects.get(pk=body["id"])
    assert correction.created_by == qa_user and correction.target == "original"
    source.refresh_from_db()
    assert source.mask.name == correction.mask.name
    assert (services.read_mask(source.mask.name) == drawn).all()

    gen.refresh_from_db()
    assert services.stale_after_corrections(gen)  # calibration will re-check it
    result = services.check_generation(gen)
    assert result["inputs"]["original_mask"] == "corrected"

    # a generated-image correction replaces the checker's own segmentation
    gurl = reverse("consistency:mask", args=[gen.pk, "generated"])
    empty = np.zeros((gen.height, gen.width), bool)
    assert client.post(gurl, {"mask": png_data_url(empty)}).status_code == 200
    result = services.check_generation(gen)
    assert result["status"] == "product_missing" and result["inputs"]["generated_mask"] == "corrected"


@pytest.mark.django_db
def test_mask_upload_rejects_corrupt_non_png_and_wrong_size(client, demo_project, annotator):
    gen = make_generation(demo_project, ORANGE)
    url = reverse("consistency:mask", args=[gen.pk, "original"])
    client.force_login(annotator)
    source = gen.product.source_image

    def post(data):
        return client.post(url, data=json.dumps({"mask": data}), content_type="application/json")

    corrupt = post("data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20).decode())
    assert corrupt.status_code == 400 and "corrupt" in corrupt.json()["error"]
    buf = io.BytesIO()
    Image.new("L", (source.width, source.height), 255).save(buf, format="JPEG")
    jpeg = post("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode())
    assert jpeg.status_code == 400 and "PNG" in jpeg.json()["error"]
    disguised = post("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    assert disguised.status_code == 400 and "not a PNG" in disguised.json()["error"]
    assert post("data:image/png;base64,@@@").json()["error"] == "the mask data is not valid base64"
    small = post(png_data_url(np.ones((5, 5), bool)))
    assert small.status_code == 400 and f"{source.width}x{source.height}" in small.json()["error"]
    blank = post(png_data_url(np.zeros((source.height, source.width), bool)))
    assert blank.status_code == 400 and "empty" in blank.json()["error"]
    assert client.post(url, data="{not json", content_type="application/json").status_code == 400
    assert MaskCorrection.objects.count() == 0
    source.refresh_from_db()
    assert not source.mask


@pytest.mark.django_db
def test_consistency_page_shows_images_masks_metrics_and_reasons(client, demo_project, qa_user, annotator, ml_engineer):
    gen = make_generation(demo_project, JUICE, "scale")
    services.check_generation(gen)
    page_url = reverse("consistency:generation", args=[gen.pk])
    client.force_login(annotator)
    assert client.get(page_url).status_code == 403  # scores are for QA and ML engineers
    assert client.get(reverse("consistency:mask", args=[gen.pk, "generated"])).status_code == 200
    client.force_login(qa_user)
    html = client.get(page_url).content.decode()
    assert "Failed" in html and "product area grew" in html and 'id="metrics"' in html
    assert reverse("consistency:overlay", args=[gen.pk, "generated"]) in html
    overlay = client.get(reverse("consistency:overlay", args=[gen.pk, "generated"]))
    assert overlay.status_code == 200 and overlay["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(overlay.content)).mode == "RGBA"
    assert client.get(reverse("consistency:overlay", args=[gen.pk, "source"])).status_code == 200
    assert client.post(reverse("consistency:recheck", args=[gen.pk])).status_code == 302
    assert client.get(reverse("consistency:calibration", args=[demo_project.slug])).status_code == 403
    client.force_login(ml_engineer)
    assert client.get(reverse("consistency:calibration", args=[demo_project.slug])).status_code == 200


@pytest.mark.django_db
def test_check_consistency_command(demo_project, capsys):
    ok = make_generation(demo_project, ORANGE)
    bad = make_generation(demo_project, ORANGE, "missing", seed=3)
    call_command("check_consistency", "--project", demo_project.name, "--ids", str(ok.pk), str(bad.pk), "99999")
    out = capsys.readouterr()
    assert "2 checked: 1 passed, 1 failed" in out.out and "99999" in out.err
    ok.refresh_from_db()
    bad.refresh_from_db()
    assert ok.consistency_passed is True and bad.consistency_passed is False
