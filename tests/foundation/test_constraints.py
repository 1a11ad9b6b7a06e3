import pytest
from django.db import IntegrityError, transaction

from annotate.models import ComparisonTask, ImageLabel, PairwiseLabel
from core.models import ModelVersion, Product
from generation.models import Generation


@pytest.fixture
def product(project):
    return Product.objects.create(project=project, title="Orange juice", category="juice carton")


def make_generation(product, seed, **extra):
    return Generation.objects.create(product=product, backend="copy-paste", backend_version="1", params_hash="p",
                                     seed=seed, status="succeeded", image=f"images/{seed}.png", **extra)


def test_one_pairwise_label_per_annotator_per_task(project, product, annotator):
    task = ComparisonTask.objects.create(project=project, generation_a=make_generation(product, 1),
                                         generation_b=make_generation(product, 2))
    PairwiseLabel.objects.create(task=task, annotator=annotator, choice="a")
    with pytest.raises(IntegrityError), transaction.atomic():
        PairwiseLabel.objects.create(task=task, annotator=annotator, choice="b")
    assert PairwiseLabel.objects.get(task=task).choice == "a"


def test_one_image_label_per_annotator_per_generation(product, annotator):
    generation = make_generation(product, 1)
    ImageLabel.objects.create(generation=generation, annotator=annotator, background_appropriate=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        ImageLabel.objects.create(generation=generation, annotator=annotator, background_appropriate=False)


def test_image_label_must_say_something(product, annotator):
    with pytest.raises(IntegrityError), transaction.atomic():
        ImageLabel.objects.create(generation=make_generation(product, 1), annotator=annotator)


def test_comparison_needs_two_different_generations(project, product):
    generation = make_generation(product, 1)
    with pytest.raises(IntegrityError), transaction.atomic():
        ComparisonTask.objects.create(project=project, generation_a=generation, generation_b=generation)


def test_only_one_promoted_model_per_kind_and_project(project):
    ModelVersion.objects.create(project=project, kind="reward", version=1, status="promoted")
    ModelVersion.objects.create(project=project, kind="consistency", version=1, status="promoted")
    ModelVersion.objects.create(project=project, kind="reward", version=2, status="candidate")
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(project=project, kind="reward", version=3, status="promoted")
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(project=project, kind="reward", version=2, status="candidate")


def test_same_backend_params_and_seed_never_duplicate_a_generation(product):
    make_generation(product, 7)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_generation(product, 7)
    make_generation(product, 7, candidate_index=1)  # the next candidate of the same run is fine


def test_a_succeeded_generation_has_an_image(product):
    with pytest.raises(IntegrityError), transaction.atomic():
        Generation.objects.create(product=product, backend="x", backend_version="1", params_hash="p",
                                  status="succeeded", image="")
