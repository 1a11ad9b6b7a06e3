"""manage.py finetune_segmenter: the project's corrected masks train a (tiny, local) SAM's mask
decoder; refusals say what is missing."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from consistency import services
from tests.consistency.django_helpers import make_generation

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

STEMS = ["packages-juice-tropicana-apple-juice", "fruit-orange", "fruit-banana", "packages-milk-arla-standard-milk"]


def png(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
def tiny_sam(tmp_path):
    from tests.consistency.tiny_models import build_tiny_sam

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return str(build_tiny_sam(tmp_path / "sam", hidden=32))


@pytest.fixture
def second_project(db):
    from core.models import Project
    from core.services.imports import import_manifest
    from tests.consistency.django_helpers import SAMPLE

    project = Project.objects.create(name="Second shop", slug="second-shop")
    import_manifest(project, SAMPLE / "manifest.jsonl")
    return project


@pytest.mark.django_db
def test_corrections_train_the_segmenter_and_refusals_say_what_is_missing(demo_project, second_project, qa_user,
                                                                          tiny_sam, tmp_path, settings, capsys):
    settings.STAGECRAFT_MODELS = {"grounding": "", "sam": ""}
    with pytest.raises(CommandError, match="needs published SAM weights"):
        call_command("finetune_segmenter", project=demo_project.name, out=str(tmp_path / "x"))

    gens = [make_generation(demo_project, stem) for stem in STEMS]
    placed = [services.read_mask(g.product_mask.name) for g in gens]
    services.save_mask_correction(gens[0], "generated", png(placed[0]), qa_user)
    with pytest.raises(CommandError, match="1 corrected product masks .* need at least 4"):
        call_command("finetune_segmenter", project=demo_project.name, out=str(tmp_path / "x"), base=tiny_sam)

    trimmed = placed[0].copy()
    trimmed[:, : trimmed.shape[1] // 2] = False
    services.save_mask_correction(gens[0], "generated", png(trimmed), qa_user)  # replaces the first one
    for g, m in zip(gens[1:], placed[1:]):
        services.save_mask_correction(g, "generated", png(m), qa_user)
    services.save_mask_correction(make_generation(demo_project, STEMS[0], alteration="missing", seed=1), "generated",
                                  png(np.zeros_like(placed[0])), qa_user)  # "not there": nothing to learn
    other = make_generation(second_project, STEMS[1])  # another project's corrections stay there
    services.save_mask_correction(other, "generated", png(services.read_mask(other.product_mask.name)), qa_user)
    examples = services.corrected_mask_examples(demo_project)
    assert len(examples) == 4
    assert (examples[0].mask == trimmed).all()  # the newest correction of an image wins

    out = tmp_path / "tuned"
    call_command("finetune_segmenter", project=demo_project.name, out=str(out), base=tiny_sam, epochs=3)
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("{"):printed.rindex("}") + 1])
    assert report["train"] == 3 and report["held_out"] == 1 and report["base_model"] == tiny_sam

    # a corrected original-photo mask is an example too
    source = gens[2].product.source_image
    drawn = np.zeros((source.height, source.width), bool)
    drawn[source.height // 4: -source.height // 4, source.width // 4: -source.width // 4] = True
    services.save_mask_correction(gens[2], "original", png(drawn), qa_user)
    assert len(services.corrected_mask_examples(demo_project)) == 5
    with pytest.raises(CommandError, match="another folder"):
        call_command("finetune_segmenter", project=demo_project.name, out=tiny_sam, base=tiny_sam)
    assert (out / "config.json").is_file()
    from consistency.ml import SamBoxSegmenter

    # the folder is what STAGECRAFT_SAM_MODEL then points at
    assert SamBoxSegmenter(str(out)).segment_box(examples[1].rgb, (10, 10, 60, 60)).alpha.shape == examples[1].mask.shape


@pytest.mark.django_db
def test_a_calibration_run_can_also_fine_tune_the_segmenter(client, demo_project, annotator, qa_user, ml_engineer,
                                                             tiny_sam, settings, tmp_path):
    from django.urls import reverse

    from tests.consistency.test_django_calibration import PRODUCTS, label

    settings.STAGECRAFT_ARTIFACT_DIR = tmp_path / "artifacts"
    settings.STAGECRAFT_MODELS = {"grounding": "", "sam": ""}
    client.force_login(ml_engineer)
    url = reverse("consistency:calibrate", args=[demo_project.slug])
    refused = client.post(url, {"promote": "auto", "finetune_segmenter": "on"}, HTTP_ACCEPT="application/json")
    assert refused.status_code == 409 and "STAGECRAFT_SAM_MODEL" in refused.json()["error"]
    page = client.get(reverse("consistency:calibration", args=[demo_project.slug])).content.decode()
    assert 'name="finetune_segmenter" disabled' in page

    for i, stem in enumerate(PRODUCTS):
        ok = make_generation(demo_project, stem, seed=10 * i)
        altered = make_generation(demo_project, stem, "scale" if i % 2 else "colour", seed=10 * i + 1)
        label(ok, annotator, True)
        label(altered, annotator, False)
        services.save_mask_correction(ok, "generated", png(services.read_mask(ok.product_mask.name)), qa_user)
    services.calibrate(demo_project, ml_engineer)  # the checks are stored with the offline default

    settings.STAGECRAFT_MODELS = {"grounding": "", "sam": tiny_sam}
    run = services.start_calibration_run(demo_project, ml_engineer, finetune_segmenter=True)
    services.execute_calibration_run(run)
    run.refresh_from_db()
    assert run.state == "succeeded", run.log
    segmenter = run.model_version.metrics["segmenter"]
    assert segmenter["train"] == 3 and segmenter["held_out"] == 1
    assert segmenter["path"] == str(Path(run.model_version.artifact_path) / "segmenter")
    assert (Path(segmenter["path"]) / "config.json").is_file()
    assert f"STAGECRAFT_SAM_MODEL={segmenter['path']}" in run.log
    page = client.get(reverse("consistency:calibration", args=[demo_project.slug])).content.decode()
    assert "fine-tuned SAM mask decoder" in page and 'name="finetune_segmenter">' in page
