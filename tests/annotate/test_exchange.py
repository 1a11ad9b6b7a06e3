"""Export and idempotent import of labels (JSONL, CSV, HFPC)."""
import csv
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from annotate import exchange
from annotate.models import Assignment, ImageLabel, PairwiseLabel
from annotate.services import next_assignment, submit_image_label, submit_pair_label


@pytest.fixture
def labelled(queued_project, annotators):
    """ann0 labels 3 pairs and 2 images."""
    ann = annotators[0]
    for choice in ("a", "b", "tie"):
        claim = next_assignment(ann, queued_project, "pair")
        submit_pair_label(ann, claim.pk, choice, ["poor_aesthetics", "missing_shadow"] if choice == "a" else [], 1500)
    for background in (True, False):
        claim = next_assignment(ann, queued_project, "image")
        submit_image_label(ann, claim.pk, background, True, [] if background else ["inappropriate_background"], 900)
    return queued_project


def export(project, queue, fmt):
    return "".join(exchange.export_lines(project, queue, fmt))


def test_jsonl_export_holds_every_label(labelled):
    records = [json.loads(line) for line in export(labelled, "pair", "jsonl").splitlines()]
    assert sorted(r["choice"] for r in records) == ["a", "b", "tie"]
    first = next(r for r in records if r["choice"] == "a")
    assert first["annotator"] == "ann0" and first["reason_tags"] == ["poor_aesthetics", "missing_shadow"]
    assert first["time_spent_ms"] == 1500 and first["generation_a"] != first["generation_b"]
    images = [json.loads(line) for line in export(labelled, "image", "jsonl").splitlines()]
    assert sorted(r["background_appropriate"] for r in images) == [False, True]


def test_csv_export(labelled):
    rows = list(csv.DictReader(io.StringIO(export(labelled, "pair", "csv"))))
    assert len(rows) == 3 and set(rows[0]) == set(exchange.PAIR_FIELDS)
    assert "poor_aesthetics;missing_shadow" in {r["reason_tags"] for r in rows}


def test_hfpc_export_label_is_background_appropriate(labelled, settings):
    records = [json.loads(line) for line in export(labelled, "image", "hfpc").splitlines()]
    assert sorted(r["label"] for r in records) == [0, 1]
    for r in records:
        assert set(r) == {"origin", "generation", "label"}
        assert r["origin"].startswith(str(settings.MEDIA_ROOT)) and open(r["generation"], "rb").read(4) == b"\x89PNG"
    with pytest.raises(exchange.AnnotateError, match="single-image"):
        export(labelled, "pair", "hfpc")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_import_round_trip_is_idempotent(labelled, tmp_path, fmt):
    for queue in ("pair", "image"):
        path = tmp_path / f"{queue}.{fmt}"
        path.write_text(export(labelled, queue, fmt))
        before = sorted(_label_tuples(queue))
        (PairwiseLabel if queue == "pair" else ImageLabel).objects.all().delete()
        Assignment.objects.filter(kind=queue).update(done_at=None, annotator=None, expires_at=None)
        report = exchange.import_labels(labelled, path, queue)
        assert (report.created, report.skipped, report.errors) == (len(before), 0, [])
        assert sorted(_label_tuples(queue)) == before
        # the imported labels count towards the queue: those slots are done
        assert Assignment.objects.filter(kind=queue, done_at__isnull=False).count() == len(before)
        again = exchange.import_labels(labelled, path, queue)
        assert (again.created, again.skipped, again.errors) == (0, len(before), [])
        assert sorted(_label_tuples(queue)) == before


def _label_tuples(queue):
    if queue == "pair":
        return PairwiseLabel.objects.values_list("task_id", "annotator__username", "choice", "reason_tags")
    return ImageLabel.objects.values_list("generation_id", "annotator__username", "background_appropriate",
                                          "product_intact", "reason_tags")


def test_contradicting_and_bad_records_are_refused_with_line_numbers(labelled, tmp_path):
    records = [json.loads(line) for line in export(labelled, "pair", "jsonl").splitlines()]
    changed = dict(records[0], choice="both_bad" if records[0]["choice"] != "both_bad" else "a")
    lines = [json.dumps(records[1]), json.dumps(changed), "{not json", json.dumps(dict(records[1], annotator="ghost")),
             json.dumps(dict(records[1], choice="maybe"))]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    before = sorted(_label_tuples("pair"))
    report = exchange.import_labels(labelled, path, "pair")
    assert report.created == 0 and report.skipped == 1
    assert report.errors[0].startswith("line 2: duplicate label: ann0 already labelled this pair")
    assert report.errors[1].startswith("line 3: not valid JSON")
    assert "line 4: no user 'ghost'" in report.errors[2]
    assert report.errors[3].startswith("line 5: choice must be one of")
    assert sorted(_label_tuples("pair")) == before  # the stored labels are kept


def test_import_of_a_pair_shown_the_other_way_round(labelled, tmp_path, annotators):
    record = json.loads(export(labelled, "pair", "jsonl").splitlines()[0])
    flipped = dict(record, annotator="ann1", generation_a=record["generation_b"], generation_b=record["generation_a"],
                   choice={"a": "b", "b": "a"}.get(record["choice"], record["choice"]))
    path = tmp_path / "flip.jsonl"
    path.write_text(json.dumps(flipped) + "\n")
    assert exchange.import_labels(labelled, path, "pair").created == 1
    stored = PairwiseLabel.objects.get(annotator__username="ann1")
    assert stored.task_id == record["task"] and stored.choice == record["choice"]


def test_hfpc_import_is_delegated_and_idempotent(labelled, tmp_path):
    path = tmp_path / "hfpc.jsonl"
    path.write_text(export(labelled, "image", "hfpc"))
    first = exchange.import_labels(labelled, path, "image", "hfpc")
    assert first.created == 2 and not first.errors
    again = exchange.import_labels(labelled, path, "image", "hfpc")
    assert again.created == 0 and again.skipped == 2


def test_commands_export_and_import(labelled, tmp_path, capsys):
    out = tmp_path / "pairs.csv"
    call_command("export_labels", labelled.slug, "--queue", "pair", "--format", "csv", "-o", str(out))
    assert len(out.read_text().splitlines()) == 4
    call_command("import_labels", labelled.slug, str(out), "--queue", "pair")
    assert "0 created, 3 already present, 0 errors" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_labels", labelled.slug, str(tmp_path / "missing.jsonl"))


def test_export_api_for_ml_and_qa(client, labelled, ml_engineer, qa_user):
    for user in (ml_engineer, qa_user):
        client.force_login(user)
        response = client.get(reverse("annotate:api_export", args=[labelled.slug]) + "?queue=image&format=csv")
        assert response.status_code == 200 and response["Content-Type"] == "text/csv"
        assert len(b"".join(response.streaming_content).decode().splitlines()) == 3
    bad = client.get(reverse("annotate:api_export", args=[labelled.slug]) + "?queue=pair&format=xml")
    assert bad.status_code == 400 and "unknown export format" in bad.json()["detail"]
