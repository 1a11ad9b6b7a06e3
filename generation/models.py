from django.conf import settings
from django.db import models
from django.db.models import Q

from core.models import CatalogImage, ModelVersion, Product


class Generation(models.Model):
    """One generated ad for a product, with the provenance needed to reproduce and audit it."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class Gate(models.TextChoices):
        PENDING = "pending", "Not gated yet"
        PASSED = "passed", "Passed the gate"
        REJECTED = "rejected", "Rejected by the gate"
        NEEDS_HUMAN = "needs_human", "Needs a human"

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="generations")
    backend = models.CharField(max_length=100)
    backend_version = models.CharField(max_length=50)
    params = models.JSONField(default=dict, blank=True)
    params_hash = models.CharField(max_length=64, help_text="sha256 of the canonical JSON of params")
    seed = models.BigIntegerField(default=0)
    candidate_index = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    image = models.ImageField(upload_to="images/", max_length=300, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    product_mask = models.ImageField(upload_to="masks/", max_length=300, blank=True)
    retrieval_source = models.ForeignKey(
        CatalogImage, null=True, blank=True, on_delete=models.SET_NULL, related_name="generations"
    )
    metadata = models.JSONField(default=dict, blank=True)
    reward_score = models.FloatField(null=True, blank=True)
    reward_model = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="reward_scored"
    )
    consistency = models.JSONField(null=True, blank=True, help_text="per-metric values, pass/fail, reasons")
    consistency_passed = models.BooleanField(null=True, blank=True)
    consistency_model = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="consistency_checked"
    )
    gate_status = models.CharField(max_length=20, choices=Gate.choices, default=Gate.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Re-running a backend with the same parameters and seed never duplicates an ad.
            models.UniqueConstraint(
                fields=["product", "backend", "backend_version", "params_hash", "seed", "candidate_index"],
                name="generation_unique_run",
            ),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | ~Q(image=""), name="succeeded_generation_has_image"
            ),
        ]
        indexes = [models.Index(fields=["gate_status", "created_at"]), models.Index(fields=["backend"])]

    def __str__(self) -> str:
        return f"{self.backend} #{self.pk} for {self.product_id}"


class GenerationJob(models.Model):
    """One background generation request (a product, every product of a project, or a catalog index
    build): the page polls it for progress and shows its log."""

    class Kind(models.TextChoices):
        PRODUCT = "product", "Generate for a product"
        PROJECT = "project", "Generate for all products"
        INDEX = "index", "Build the catalog index"

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    project = models.ForeignKey("core.Project", on_delete=models.CASCADE, related_name="generation_jobs")
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.CASCADE, related_name="generation_jobs")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.PRODUCT)
    backends = models.JSONField(default=list, blank=True, help_text="backend names, in order")
    options = models.JSONField(default=dict, blank=True, help_text="seed, num_candidates, params, with_parallax")
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    progress = models.FloatField(default=0.0)
    log = models.TextField(blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="created, reused, failed, products_done, ...")
    celery_task_id = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="how many times a worker started it")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="generation_job_progress_fraction"),
            models.CheckConstraint(condition=~Q(kind="product") | Q(product__isnull=False), name="product_job_has_product"),
        ]
        indexes = [models.Index(fields=["project", "created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.state})"

    @property
    def finished(self) -> bool:
        return self.state in (self.State.SUCCEEDED, self.State.FAILED)
