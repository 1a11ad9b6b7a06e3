import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotate.models import ImageLabel
from core.models import CatalogImage, Product, SourceImage
from core.services.imports import ImportFailed, import_folder, import_hfpc_labels, import_manifest, import_path
from generation.models import Generation


def stored_files(settings):
    return sorted(p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file())


def test_manifest_import_creates_products_and_catalog(project, sample_dir, settings):
    report = import_manifest(project, sample_dir / "manifest.jsonl")
    assert report.errors == []
    assert Product.objects.filter(project=project).count() == 8
    assert SourceImage.objects.filter(product__project=project).count() == 8
    assert CatalogImage.objects.filter(project=project, kind="staged").count() == 18
    assert CatalogImage.objects.filter(project=project, kind="stage").count() == 15
    orange = Product.objects.get(project=project, external_id="fruit-orange")
    assert orange.category == "fruit" and orange.source_image.width > 0
    assert len(stored_files(settings)) == 41


def test_reimport_is_a_no_op(project, sample_dir, settings):
    import_manifest(project, sample_dir / "manifest.jsonl")
    files_before = stored_files(settings)
    again = import_manifest(project, sample_dir / "manifest.jsonl")
    assert (again.created, again.skipped, again.errors) == (0, 41, [])
    assert stored_files(settings) == files_before
    assert Product.objects.count() == 8


def test_same_photo_in_two_projects_is_stored_once(project, sample_dir, settings):
    from core.models import Project

    other = Project.objects.create(name="Other", slug="other")
    import_manifest(project, sample_dir / "manifest.jsonl")
    import_manifest(other, sample_dir / "manifest.jsonl")
    assert Product.objects.count() == 16
    assert len(stored_files(settings)) == 41


def test_manifest_reports_bad_lines_and_keeps_good_ones(project, sample_dir, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"kind": "product_plain", "file": str(sample_dir / "products/fruit-orange.jpg"), "category": "fruit"}),
        "{not json",
        json.dumps({"kind": "product_plain", "file": "broken.jpg", "category": "fruit"}),
        json.dumps({"kind": "product_plain", "file": "missing.jpg"}),
        json.dumps({"kind": "spaceship", "file": "x.jpg"}),
    ]))
    report = import_manifest(project, manifest)
    assert report.created == 1
    assert [e.split(":")[0] for e in report.errors] == ["line 2", "line 3", "line 4", "line 5"]
    assert "corrupt" in report.errors[1]
    assert Product.objects.count() == 1


def test_folder_import_takes_category_from_subfolder(project, sample_dir):
    report = import_folder(project, sample_dir / "staged", kind="catalog")
    assert report.created == 18 and not report.errors
    assert set(CatalogImage.objects.values_list("category", flat=True)) == {"can", "berry_bowl", "vase"}


def test_folder_import_needs_a_kind(project, sample_dir):
    with pytest.raises(ImportFailed, match="products or catalog"):
        import_path(project, sample_dir / "staged")


def hfpc_file(tmp_path, sample_dir, lines):
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    return path


def test_hfpc_labels_import_with_local_paths(project, sample_dir, tmp_path):
    labels = hfpc_file(tmp_path, sample_dir, [
        {"origin": str(sample_dir / "products/fruit-orange.jpg"), "generation": str(sample_dir / "stages/1.jpg"), "label": 1},
        {"origin": str(sample_dir / "products/fruit-orange.jpg"), "generation": str(sample_dir / "stages/2.jpg"), "label": 0},
        {"origin": str(sample_dir / "products/fruit-banana.jpg"), "generation": str(sample_dir / "stages/3.jpg"), "label": 1},
    ])
    report = import_hfpc_labels(project, labels)
    assert (report.created, report.errors) == (3, [])
    assert Product.objects.count() == 2
    assert Generation.objects.filter(backend="imported").count() == 3
    verdicts = sorted(ImageLabel.objects.values_list("source", "background_appropriate"))
    assert verdicts == [("import", False), ("import", True), ("import", True)]
    again = import_hfpc_labels(project, labels)
    assert (again.created, again.skipped) == (0, 3)
    assert ImageLabel.objects.count() == 3


def test_hfpc_url_without_network_is_a_clear_error(project, sample_dir, tmp_path):
    labels = hfpc_file(tmp_path, sample_dir, [
        {"origin": "http://127.0.0.1:9/origin.jpg", "generation": str(sample_dir / "stages/1.jpg"), "label": 1},
        {"origin": str(sample_dir / "products/fruit-orange.jpg"), "generation": str(sample_dir / "stages/1.jpg"), "label": 2},
    ])
    report = import_hfpc_labels(project, labels)
    assert report.created == 0
    assert "could not be fetched" in report.errors[0] and "local paths" in report.errors[0]
    assert "label' 0 or 1" in report.errors[1]
    assert Generation.objects.count() == 0 and Product.objects.count() == 0


def test_import_command_detects_hfpc_and_reports(project, sample_dir, tmp_path, capsys):
    labels = hfpc_file(tmp_path, sample_dir, [
        {"origin": str(sample_dir / "products/fruit-orange.jpg"), "generation": str(sample_dir / "stages/1.jpg"), "label": 1},
    ])
    call_command("import_data", str(labels), "--project", project.name)
    assert "1 created" in capsys.readouterr().out
    assert ImageLabel.objects.count() == 1
    with pytest.raises(CommandError, match="no such manifest"):
        call_command("import_data", str(tmp_path / "nope.jsonl"), "--project", project.name, "--format", "manifest")
