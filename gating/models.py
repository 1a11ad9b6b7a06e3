from django.conf import settings
from django.db import models
from django.db.models import Q

from core.models import ModelVersion, Product, Project
from generation.models import Generation


class GateDecision(models.Model):
    """Which model versions and thresholds decided a generation, and why. Re-gating adds a new
    current decision and keeps the old one, so no decision is ever silently replaced."""

    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="gate_decisions")
    decision = models.CharField(max_length=20, choices=[("passed", "passed"), ("rejected", "rejected")])
    reasons = models.JSONField(default=list)
    reward_score = models.FloatField(null=True, blank=True)
    reward_threshold = models.FloatField()
    reward_model = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    consistency_passed = models.BooleanField(null=True, blank=True)
    consistency_model = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    is_current = models.BooleanField(default=True)
    regated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["generation"], condition=Q(is_current=True), name="one_current_gate_decision")
        ]


class GatingRun(models.Model):
    """Gated generation for a set of products: generate → score → gate → retry, with progress."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="gating_runs")
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    backends = models.JSONField(default=list)
    candidates_per_attempt = models.PositiveSmallIntegerField(default=2)
    progress = models.FloatField(default=0.0)
    log = models.TextField(blank=True)
    summary = models.JSONField(default=dict, blank=True)
    celery_task_id = models.CharField(max_length=255, blank=True)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class GatingItem(models.Model):
    """One product in a run; its state survives a worker crash so the run resumes where it was."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        PASSED = "passed"
        NEEDS_HUMAN = "needs_human", "needs human"
        FAILED = "failed"

    run = models.ForeignKey(GatingRun, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="gating_items")
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    passed_generation = models.ForeignKey(Generation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    log = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "product"], name="gating_item_unique_product")]
