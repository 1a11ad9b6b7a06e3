"""Quality statistics as ML engineers and QA see them."""
import pytest
from django.urls import reverse

from annotate import services
from annotate.models import ComparisonTask, ImageLabel, ImageTask, PairwiseLabel
from annotate.selectors import quality_stats

from .conftest import make_product


@pytest.fixture
def rated(project, annotators):
    """3 pairs labelled by ann0 and ann1 (agree on 2 of 3), one gold pair, image labels with gold."""
    make_product(project, generations=3)
    services.create_tasks(project, seed=0)
    tasks = list(ComparisonTask.objects.order_by("id"))
    ann0, ann1, _ = annotators
    for task, c0, c1, t0, t1 in zip(tasks, "aab", "abb", (1000, 3000, 5000), (2000, 2000, 2000)):
        PairwiseLabel.objects.create(task=task, annotator=ann0, choice=c0, time_spent_ms=t0)
        PairwiseLabel.objects.create(task=task, annotator=ann1, choice=c1, time_spent_ms=t1)
    services.mark_gold(tasks[0], "a")  # ann0 right, ann1 right
    services.mark_gold(tasks[2], "a")  # ann0 wrong (b), ann1 wrong (b)
    services.mark_gold(tasks[1], "a")  # ann0 right (a), ann1 wrong (b)
    image_task = ImageTask.objects.order_by("id").first()
    services.mark_gold(image_task, {"background_appropriate": True, "product_intact": False})
    ImageLabel.objects.create(generation=image_task.generation, task=image_task, annotator=ann0,
                              background_appropriate=True, product_intact=False, time_spent_ms=800)
    return project


def test_gold_accuracy_speed_and_agreement(rated):
    stats = quality_stats(rated)
    rows = {r["username"]: r for r in stats["annotators"]}
    assert (rows["ann0"]["gold_correct"], rows["ann0"]["gold"]) == (3, 4)  # 2 of 3 pairs + the image
    assert (rows["ann1"]["gold_correct"], rows["ann1"]["gold"]) == (1, 3)
    assert rows["ann0"]["pair_median_s"] == pytest.approx(3.0)
    assert rows["ann0"]["image_median_s"] == pytest.approx(0.8)
    assert rows["ann1"]["pair_median_s"] == pytest.approx(2.0)
    # ann0: a a b, ann1: a b b -> p_o = 2/3, p_e = (2*1 + 1*2)/9 = 4/9, kappa = (2/3-4/9)/(5/9) = 0.4
    (pair,) = stats["pair_agreement"]["pairs"]
    assert pair["items"] == 3 and pair["kappa"] == pytest.approx(0.4)
    # alpha: o_aa=2, o_bb=2, o_ab=o_ba=1 -> n_a=n_b=3, alpha = 1 - 5*2/18 = 4/9
    assert stats["pair_agreement"]["alpha"] == pytest.approx(4 / 9)


def test_stats_page_shows_the_numbers_and_charts(client, rated, qa_user, ml_engineer, annotator):
    client.force_login(annotator)
    assert client.get(reverse("annotate:stats", args=[rated.slug])).status_code == 403
    client.force_login(qa_user)
    page = client.get(reverse("annotate:stats", args=[rated.slug])).content.decode()
    assert "<svg" in page and "Accuracy on gold items" in page
    assert "<td>ann0</td><td>3</td><td>1</td>" in page and "3 / 4" in page and "75%" in page
    assert "0.444" in page and "0.400" in page
    assert "Create tasks" not in page  # the button is for ML engineers
    client.force_login(ml_engineer)
    assert "Create tasks" in client.get(reverse("annotate:stats", args=[rated.slug])).content.decode()
