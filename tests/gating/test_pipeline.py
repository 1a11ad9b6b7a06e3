"""Gated generation end to end on the demo photos: generate → check → gate → retry → needs human."""
import pytest

from core.models import Product
from gating import services
from gating.models import GateDecision, GatingItem, GatingRun
from generation.models import Generation


@pytest.fixture
def orange(demo_project):
    return Product.objects.get(project=demo_project, external_id="fruit-orange")


def run_for(project, product, user, **kwargs):
    return services.start_gating_run(project, user, product_ids=[product.id], backends=["paste-on-stage"],
                                     candidates_per_attempt=1, enqueue=False, **kwargs)


def test_a_product_is_generated_checked_and_gated(demo_project, orange, ml_engineer):
    run = services.run_gating(run_for(demo_project, orange, ml_engineer).id)
    item = run.items.get()
    assert run.state == "succeeded" and run.progress == 1.0
    generations = Generation.objects.filter(product=orange)
    assert generations.count() == item.attempts >= 1
    assert all(g.consistency_passed is not None for g in generations)
    decisions = GateDecision.objects.filter(generation__product=orange, is_current=True)
    assert decisions.count() == generations.count()
    if item.state == "passed":
        assert item.passed_generation.gate_status == "passed"
        assert "reward not gated: no promoted reward model yet" in item.passed_generation.gate_decisions.get().reasons
    else:
        assert item.state == "needs_human" and item.attempts == demo_project.max_attempts
    assert run.summary["per_backend"]["paste-on-stage"]["total"] == generations.count()


def test_nothing_passes_marks_needs_human_after_max_attempts(demo_project, orange, ml_engineer):
    demo_project.max_attempts = 2
    demo_project.consistency_rules = {"require_reward_model": True}  # no reward model exists: nothing can pass
    demo_project.save()
    run = services.run_gating(run_for(demo_project, orange, ml_engineer).id)
    item = run.items.get()
    assert (item.state, item.attempts) == ("needs_human", 2)
    assert "needs a human" in item.log
    assert set(Generation.objects.filter(product=orange).values_list("gate_status", flat=True)) == {"rejected"}
    assert run.summary["rejection_reasons"]["no reward"] == 2


def test_a_run_interrupted_mid_product_resumes_without_duplicates(demo_project, orange, ml_engineer):
    demo_project.max_attempts = 2
    demo_project.consistency_rules = {"require_reward_model": True}
    demo_project.save()
    first = services.run_gating(run_for(demo_project, orange, ml_engineer).id)
    made = set(Generation.objects.filter(product=orange).values_list("id", flat=True))
    # As if the worker died after the first attempt: the item is still running with one attempt done.
    run = run_for(demo_project, orange, ml_engineer)
    GatingItem.objects.filter(run=run).update(state="running", attempts=1)
    GatingRun.objects.filter(pk=run.pk).update(state="running")
    resumed = services.run_gating(run.id)
    assert resumed.items.get().attempts == 2 and first.items.get().attempts == 2
    assert set(Generation.objects.filter(product=orange).values_list("id", flat=True)) == made


def test_a_backend_that_cannot_run_is_logged_and_counted_as_an_attempt(demo_project, orange, ml_engineer):
    demo_project.max_attempts = 1
    demo_project.save()
    run = services.start_gating_run(demo_project, ml_engineer, product_ids=[orange.id],
                                    backends=["category-diffusion"], enqueue=False)
    item = services.run_gating(run.id).items.get()
    assert item.state == "needs_human" and "STAGECRAFT_SD_INPAINT_MODEL" in item.log
    assert not Generation.objects.filter(product=orange).exists()
