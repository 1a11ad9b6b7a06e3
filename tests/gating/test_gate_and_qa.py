import io
import json
import zipfile

import pytest
from django.urls import reverse

from annotate.models import ImageLabel, ImageTask
from gating import services
from gating.models import GateDecision
from generation.models import Generation


def test_gate_decision_records_versions_thresholds_and_reasons(make_ad, demo_project):
    ad = make_ad(reward=0.31, consistent=True)
    demo_project.reward_threshold = 0.55
    demo_project.save()
    decision = services.gate_generation(ad)
    ad.refresh_from_db()
    assert ad.gate_status == "rejected"
    assert (decision.decision, decision.reasons, decision.reward_threshold) == ("rejected", ["reward 0.31 < 0.55"], 0.55)


def test_regate_keeps_the_old_decision_and_never_touches_approved_ads(make_ad, demo_project, qa_user, ml_engineer):
    approved, other = make_ad(reward=0.6, consistent=True), make_ad(reward=0.6, consistent=True)
    for ad in (approved, other):
        services.gate_generation(ad)
    services.review(approved, qa_user, approve=True)
    demo_project.reward_threshold = 0.7  # a stricter threshold after a model change
    demo_project.save()
    counts = services.regate(demo_project, ml_engineer)
    assert counts == {"kept_approved": 1, "changed": 1}
    approved.refresh_from_db(), other.refresh_from_db()
    assert approved.gate_status == "passed" and other.gate_status == "rejected"
    history = list(GateDecision.objects.filter(generation=other).order_by("created_at").values_list("decision", "is_current"))
    assert history == [("passed", False), ("rejected", True)]
    assert services.regate(demo_project, ml_engineer, include_approved=True)["changed"] == 1


def test_qa_reject_of_a_passed_ad_is_a_label_and_goes_to_annotators(make_ad, qa_user):
    ad = make_ad(reward=0.9, consistent=True)
    services.gate_generation(ad)
    services.review(ad, qa_user, approve=False, reason_tags=["product_changed"])
    label = ImageLabel.objects.get(generation=ad)
    assert (label.source, label.product_intact, label.background_appropriate) == ("qa", False, None)
    task = ImageTask.objects.get(generation=ad)
    assert task.priority == services.DISAGREEMENT_PRIORITY
    services.review(ad, qa_user, approve=True)  # QA changes its mind: one label, updated
    assert ImageLabel.objects.get(generation=ad).product_intact is True


@pytest.fixture
def passed_ads(make_ad):
    ads = [make_ad(reward=0.9 - i / 10, consistent=True, backend=("copy-paste", "paste-on-stage")[i % 2]) for i in range(4)]
    for ad in ads:
        services.gate_generation(ad)
    make_ad(reward=0.1, consistent=True)  # rejected: never shown to QA
    services.gate_generation(Generation.objects.order_by("-id").first())
    return ads


def test_qa_grid_shows_only_passed_unreviewed_ads_with_filters(client, qa_user, demo_project, passed_ads):
    client.force_login(qa_user)
    url = reverse("gating:qa", args=[demo_project.slug])
    page = client.get(url).content.decode()
    assert page.count('class="thumb large ad"') == 4
    assert client.get(url, {"backend": "paste-on-stage"}).content.decode().count('class="thumb large ad"') == 2
    assert client.get(url, {"min_reward": "0.75"}).content.decode().count('class="thumb large ad"') == 2
    services.review(passed_ads[0], qa_user, approve=True)
    assert client.get(url).content.decode().count('class="thumb large ad"') == 3


def test_review_endpoint_bulk_approves_and_rejects_bad_requests(client, qa_user, demo_project, passed_ads):
    client.force_login(qa_user)
    url = reverse("gating:qa_review", args=[demo_project.slug])
    ok = client.post(url, json.dumps({"ids": [a.id for a in passed_ads[:3]], "decision": "approve"}),
                     content_type="application/json")
    assert ok.status_code == 200 and ok.json()["reviewed"] == 3
    bad_tag = client.post(url, json.dumps({"ids": [passed_ads[3].id], "decision": "reject", "reason_tags": ["ugly"]}),
                          content_type="application/json")
    assert bad_tag.status_code == 400 and "unknown reason tags" in bad_tag.json()["error"]
    assert client.post(url, "{}", content_type="application/json").status_code == 400
    assert ImageLabel.objects.filter(source="qa").count() == 3


def test_export_holds_exactly_the_approved_ads(client, qa_user, demo_project, passed_ads):
    services.review(passed_ads[0], qa_user, approve=True)
    services.review(passed_ads[1], qa_user, approve=True)
    services.review(passed_ads[2], qa_user, approve=False, reason_tags=["poor_aesthetics"])
    client.force_login(qa_user)
    response = client.get(reverse("gating:export", args=[demo_project.slug]))
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    rows = [json.loads(line) for line in archive.read("approved.jsonl").decode().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted([passed_ads[0].id, passed_ads[1].id])
    assert all(archive.read(row["image_file"]) for row in rows)
    csv_lines = archive.read("approved.csv").decode().splitlines()
    assert len(csv_lines) == 3 and csv_lines[0].startswith("id,product_title")


def test_api_lists_approved_ads_since_a_time(client, qa_user, annotator, demo_project, passed_ads):
    services.review(passed_ads[0], qa_user, approve=True)
    client.force_login(qa_user)
    url = reverse("gating:api_approved")
    body = client.get(url, {"project": demo_project.slug}).json()
    assert body["count"] == 1 and body["results"][0]["image_url"].startswith("http://testserver/media/images/")
    assert client.get(url, {"project": demo_project.slug, "since": "2999-01-01T00:00:00Z"}).json()["count"] == 0
    assert client.get(reverse("gating:api_approved_detail", args=[passed_ads[0].id])).status_code == 200
    assert client.get(reverse("gating:api_approved_detail", args=[passed_ads[1].id])).status_code == 404
    client.force_login(annotator)
    assert client.get(url, {"project": demo_project.slug}).status_code == 403


def test_dashboard_reports_pass_rate_and_qa_override_rate(client, ml_engineer, qa_user, demo_project, passed_ads):
    services.review(passed_ads[0], qa_user, approve=True)
    services.review(passed_ads[1], qa_user, approve=False, reason_tags=["bad_edges"])
    from gating.selectors import dashboard

    stats = dashboard(demo_project)
    assert (stats["gated"], stats["passed"], stats["qa_reviewed"]) == (5, 4, 2)
    assert stats["pass_rate"] == pytest.approx(0.8) and stats["qa_override_rate"] == pytest.approx(0.5)
    assert stats["labels_since_retrain"] == 2
    client.force_login(ml_engineer)
    page = client.get(reverse("gating:dashboard", args=[demo_project.slug])).content.decode()
    assert 'id="pass-rate">80 %' in page and 'id="override-rate">0.50' in page


@pytest.mark.parametrize("name, args, expected", [
    ("gating:qa", "slug", (403, 200, 200)),
    ("gating:dashboard", "slug", (403, 200, 200)),
    ("gating:export", "slug", (403, 200, 200)),
])
def test_roles_on_gating_pages(client, annotator, ml_engineer, qa_user, demo_project, name, args, expected):
    url = reverse(name, args=[demo_project.slug])
    for user, status in zip((annotator, ml_engineer, qa_user), expected):
        client.force_login(user)
        assert client.get(url).status_code == status


def test_only_qa_reviews_and_only_ml_engineers_start_runs(client, annotator, ml_engineer, demo_project, passed_ads):
    client.force_login(ml_engineer)
    review = client.post(reverse("gating:qa_review", args=[demo_project.slug]),
                         json.dumps({"ids": [passed_ads[0].id], "decision": "approve"}), content_type="application/json")
    assert review.status_code == 403
    client.force_login(annotator)
    assert client.post(reverse("gating:start_run", args=[demo_project.slug])).status_code == 403


def test_qa_rejections_are_in_the_next_reward_training_snapshot(make_ad, demo_project, qa_user):
    from annotate.models import ImageLabel as Label
    from rewardmodel.services import snapshot_labels

    approved, rejected = make_ad(reward=0.9, consistent=True), make_ad(reward=0.9, consistent=True)
    for ad in (approved, rejected):
        services.gate_generation(ad)
    services.review(approved, qa_user, approve=True)
    services.review(rejected, qa_user, approve=False, reason_tags=["inappropriate_background"])
    snapshot = snapshot_labels(demo_project)
    qa_label_ids = set(Label.objects.filter(source="qa").values_list("id", flat=True))
    assert qa_label_ids <= set(snapshot.image_ids)
    verdicts = sorted(example.appropriate for example in snapshot.examples if hasattr(example, "appropriate"))
    assert verdicts == [False, True]
