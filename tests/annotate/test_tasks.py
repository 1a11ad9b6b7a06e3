"""Task creation: pairs of the same product, idempotent, active selection when a reward model is promoted."""
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotate import services
from annotate.models import Assignment, ComparisonTask, ImageTask
from core.models import ModelVersion
from generation.models import Generation

from .conftest import make_product


def test_pairs_are_of_the_same_product_and_creation_is_idempotent(project):
    project.labels_per_item = 3
    project.save()
    juice = make_product(project, "Juice", generations=4)
    milk = make_product(project, "Milk", generations=2)
    Generation.objects.create(product=milk, backend="x", backend_version="1", params_hash="f", seed=9,
                              status=Generation.Status.FAILED)  # failed generations are not queued
    report = services.create_tasks(project, seed=0)
    assert (report.comparisons, report.images, report.policy) == (6 + 1, 6, "random")
    for task in ComparisonTask.objects.select_related("generation_a", "generation_b"):
        assert task.generation_a.product_id == task.generation_b.product_id
        assert task.labels_required == 3 and task.assignments.count() == 3
    assert ImageTask.objects.count() == 6 and Assignment.objects.filter(kind="image").count() == 18
    again = services.create_tasks(project, seed=1)
    assert (again.comparisons, again.images, again.skipped) == (0, 0, 13)
    assert ComparisonTask.objects.filter(generation_a__product=juice).count() == 6


def test_without_a_promoted_reward_model_priority_is_random(project):
    make_product(project, generations=5)
    services.create_tasks(project, seed=0)
    priorities = list(ComparisonTask.objects.values_list("priority", flat=True))
    assert len(set(priorities)) == 10 and all(0 <= p < 1 for p in priorities)


def test_active_selection_favours_close_scores_and_products_with_few_labels(project, annotator):
    from annotate.models import ImageLabel

    reward = ModelVersion.objects.create(project=project, kind="reward", version=3, status="promoted")
    close = make_product(project, "Close", generations=2, scores=[0.51, 0.50])
    far = make_product(project, "Far", generations=2, scores=[0.95, 0.05])
    busy = make_product(project, "Busy", generations=2, scores=[0.51, 0.50])
    Generation.objects.update(reward_model=reward)
    for generation in busy.generations.all():  # this product already has labels
        ImageLabel.objects.create(generation=generation, annotator=annotator, background_appropriate=True)
    report = services.create_tasks(project, images=False, seed=0)
    assert report.policy == "active selection (reward model v3)"
    by_product = {t.generation_a.product_id: t.priority for t in ComparisonTask.objects.select_related("generation_a")}
    assert by_product[close.pk] > by_product[busy.pk] > by_product[far.pk]


def test_scores_of_an_unpromoted_model_are_not_trusted(project):
    ModelVersion.objects.create(project=project, kind="reward", version=2, status="promoted")
    old = ModelVersion.objects.create(project=project, kind="reward", version=1, status="retired")
    make_product(project, "Far", generations=2, scores=[0.95, 0.05])
    Generation.objects.update(reward_model=old)
    services.create_tasks(project, images=False, seed=0)
    # unknown scores: the "uncertain" part is 0.5, not the near-zero of a 0.9 gap
    assert ComparisonTask.objects.get().priority == pytest.approx(0.7 * 0.5 + 0.3, abs=2e-3)


def test_pair_priority_policy():
    import random

    rng = lambda: random.Random(0)  # noqa: E731
    assert services.pair_priority(0.50, 0.51, 0, rng()) > services.pair_priority(0.2, 0.8, 0, rng())
    assert services.pair_priority(0.5, 0.6, 0, rng()) > services.pair_priority(0.5, 0.6, 20, rng())
    assert services.pair_priority(None, 0.6, 0, rng()) == pytest.approx(0.7 * 0.5 + 0.3, abs=2e-3)
    assert services.image_priority(0.49, 0.5, 0, rng()) > services.image_priority(0.95, 0.5, 0, rng())


def test_queue_serves_uncertain_pairs_first(project, annotator):
    reward = ModelVersion.objects.create(project=project, kind="reward", version=1, status="promoted")
    make_product(project, "Far", generations=2, scores=[0.9, 0.1])
    close = make_product(project, "Close", generations=2, scores=[0.40, 0.41])
    Generation.objects.update(reward_model=reward)
    services.create_tasks(project, images=False, seed=0)
    first = services.next_assignment(annotator, project, "pair")
    assert first.comparison_task.generation_a.product_id == close.pk


def test_create_tasks_command(project, capsys):
    make_product(project, generations=3)
    call_command("create_annotation_tasks", project.slug, "--no-images")
    assert "3 comparison tasks and 0 image tasks created" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no project"):
        call_command("create_annotation_tasks", "nope")


def test_make_demo_tasks_builds_composites_and_gold(demo_project, capsys):
    call_command("make_demo_tasks", "--project", demo_project.slug, "--max-products", "2", "--per-product", "2")
    out = capsys.readouterr().out
    assert "4 demo generations, 2 broken ones (gold)" in out
    gens = Generation.objects.filter(backend="demo-composite")
    assert gens.count() == 6 and all(g.image and g.width > 200 for g in gens)
    # per product: 3 generations -> 3 pairs; the 2 pairs with the broken one are gold, answer = the intact side
    assert ComparisonTask.objects.count() == 6
    gold = ComparisonTask.objects.filter(is_gold=True)
    assert gold.count() == 4
    for task in gold:
        broken_side = "a" if task.generation_a.params["broken"] else "b"
        assert task.gold_choice == {"a": "b", "b": "a"}[broken_side]
        assert not task.assignments.exists()
    assert ImageTask.objects.filter(is_gold=True, gold_product_intact=False).count() == 2
    demo_project.refresh_from_db()
    assert demo_project.gold_rate == pytest.approx(0.1)
    call_command("make_demo_tasks", "--project", demo_project.slug, "--max-products", "2", "--per-product", "2")
    assert Generation.objects.filter(backend="demo-composite").count() == 6  # idempotent
    assert "0 comparison tasks and 0 image tasks created" in capsys.readouterr().out
