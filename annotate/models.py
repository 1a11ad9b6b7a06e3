from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from core.models import Project
from generation.models import Generation

REASON_TAGS = [
    ("inappropriate_background", "Inappropriate background"),
    ("poor_aesthetics", "Poor aesthetics"),
    ("product_changed", "Product changed"),
    ("bad_edges", "Bad edges / halo"),
    ("wrong_scale", "Wrong scale or perspective"),
    ("missing_shadow", "Missing shadow"),
]


class ComparisonTask(models.Model):
    """Two generations of the same product, to be compared by annotators."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="comparison_tasks")
    generation_a = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="+")
    generation_b = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="+")
    labels_required = models.PositiveSmallIntegerField(default=1)
    is_gold = models.BooleanField(default=False)
    gold_choice = models.CharField(max_length=10, blank=True)
    priority = models.FloatField(default=0.0, help_text="higher is served first (active selection)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(generation_a=F("generation_b")), name="comparison_of_two_images"),
            models.UniqueConstraint(fields=["generation_a", "generation_b"], name="comparison_pair_unique"),
        ]
        indexes = [
            models.Index(fields=["project", "-priority", "id"]),
            models.Index(fields=["project"], condition=Q(is_gold=True), name="comparison_task_gold"),
        ]

    def clean(self):
        if self.generation_a.product_id != self.generation_b.product_id:
            raise ValidationError("A comparison needs two generations of the same product.")


class PairwiseLabel(models.Model):
    class Choice(models.TextChoices):
        A = "a", "A better"
        B = "b", "B better"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both bad"

    task = models.ForeignKey(ComparisonTask, on_delete=models.CASCADE, related_name="labels")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="pairwise_labels")
    choice = models.CharField(max_length=10, choices=Choice.choices)
    reason_tags = models.JSONField(default=list, blank=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "annotator"], name="one_pairwise_label_per_annotator")]


class ImageTask(models.Model):
    """One generation to be judged on its own (background appropriate? product intact?)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="image_tasks")
    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="image_tasks")
    labels_required = models.PositiveSmallIntegerField(default=1)
    is_gold = models.BooleanField(default=False)
    gold_background_appropriate = models.BooleanField(null=True, blank=True)
    gold_product_intact = models.BooleanField(null=True, blank=True)
    priority = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["generation"], name="one_image_task_per_generation")]
        indexes = [
            models.Index(fields=["project", "-priority", "id"]),
            models.Index(fields=["project"], condition=Q(is_gold=True), name="image_task_gold"),
        ]


class ImageLabel(models.Model):
    class Source(models.TextChoices):
        ANNOTATOR = "annotator"
        QA = "qa"
        IMPORT = "import"

    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="image_labels")
    task = models.ForeignKey(ImageTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="labels")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="image_labels")
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.ANNOTATOR)
    background_appropriate = models.BooleanField(null=True)
    product_intact = models.BooleanField(null=True)
    reason_tags = models.JSONField(default=list, blank=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["generation", "annotator"], name="one_image_label_per_annotator"),
            models.CheckConstraint(
                condition=Q(background_appropriate__isnull=False) | Q(product_intact__isnull=False),
                name="image_label_says_something",
            ),
        ]


class Assignment(models.Model):
    """One labelling slot of a queue item, and the claim an annotator holds on it.

    A regular task gets `labels_required` slots when it is queued. Claiming a slot sets `annotator`
    and `expires_at`; submitting a label sets `done_at`. A claim that expires without a label is
    free again for anyone (the row is reused). Gold tasks get no pre-made slots: each annotator
    gets an ad-hoc slot (slot=None) when a gold item is mixed into their queue.
    """

    class Kind(models.TextChoices):
        PAIR = "pair", "Pairwise comparison"
        IMAGE = "image", "Single image"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    comparison_task = models.ForeignKey(
        ComparisonTask, null=True, blank=True, on_delete=models.CASCADE, related_name="assignments"
    )
    image_task = models.ForeignKey(ImageTask, null=True, blank=True, on_delete=models.CASCADE, related_name="assignments")
    slot = models.PositiveSmallIntegerField(null=True, blank=True, help_text="0..labels_required-1; null for gold")
    priority = models.FloatField(default=0.0, help_text="copied from the task: the queue order")
    is_gold = models.BooleanField(default=False)
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="assignments"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="pair", comparison_task__isnull=False, image_task__isnull=True)
                           | Q(kind="image", image_task__isnull=False, comparison_task__isnull=True)),
                name="assignment_has_one_task_of_its_kind",
            ),
            # One annotator never holds two slots of the same item.
            models.UniqueConstraint(fields=["comparison_task", "annotator"], name="assignment_pair_annotator_unique"),
            models.UniqueConstraint(fields=["image_task", "annotator"], name="assignment_image_annotator_unique"),
            models.UniqueConstraint(fields=["comparison_task", "slot"], name="assignment_pair_slot_unique"),
            models.UniqueConstraint(fields=["image_task", "slot"], name="assignment_image_slot_unique"),
            models.CheckConstraint(condition=Q(done_at__isnull=True) | Q(annotator__isnull=False),
                                   name="assignment_done_has_annotator"),
        ]
        indexes = [
            # The queue scan: open slots of a project in priority order.
            models.Index(fields=["project", "kind", "-priority", "id"], name="assignment_open_queue",
                         condition=Q(done_at__isnull=True)),
            models.Index(fields=["annotator", "project", "kind", "expires_at"], name="assignment_by_annotator"),
        ]

    @property
    def task(self):
        return self.comparison_task if self.kind == self.Kind.PAIR else self.image_task

    @property
    def task_id(self):
        return self.comparison_task_id if self.kind == self.Kind.PAIR else self.image_task_id
