from django.conf import settings
from django.db import models
from django.db.models import Q


class Project(models.Model):
    """A campaign or catalogue. Gate thresholds and labelling settings live here."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    # Gate policy: a generation goes live only when both scores pass.
    reward_threshold = models.FloatField(default=0.5)
    consistency_rules = models.JSONField(default=dict, blank=True)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    # Labelling: how many different annotators label each queue item.
    labels_per_item = models.PositiveSmallIntegerField(default=1)
    gold_rate = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(labels_per_item__gte=1), name="project_labels_per_item_positive"),
            models.CheckConstraint(condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=1), name="project_gold_rate_fraction"),
            models.CheckConstraint(condition=Q(max_attempts__gte=1), name="project_max_attempts_positive"),
        ]

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="products")
    title = models.CharField(max_length=300)
    category = models.CharField(max_length=120, help_text="Category text, e.g. 'orange juice carton'")
    brand = models.CharField(max_length=120, blank=True)
    external_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["title"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"], condition=~Q(external_id=""), name="product_external_id_unique"
            ),
        ]
        indexes = [models.Index(fields=["project", "category"])]

    def __str__(self) -> str:
        return self.title

    @property
    def source_image(self):
        return self.source_images.order_by("id").first()


class StoredImage(models.Model):
    """Common fields of every stored picture: content-addressed file plus its size."""

    image = models.ImageField(upload_to="images/", max_length=300)
    sha256 = models.CharField(max_length=64, db_index=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    mask = models.ImageField(upload_to="masks/", max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True


class SourceImage(StoredImage):
    """The original product photo on a plain background (the reference for every check)."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="source_images")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["product", "sha256"], name="source_image_unique_per_product")]


class CatalogImage(StoredImage):
    """A staged reference photo: retrieval candidates for copy-paste staging."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="catalog_images")
    category = models.CharField(max_length=120, blank=True)
    kind = models.CharField(max_length=30, default="staged", help_text="staged (with a product) or stage (empty)")
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    embedding_model = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=500, blank=True)
    license = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["project", "sha256"], name="catalog_image_unique_per_project")]
        indexes = [models.Index(fields=["project", "category"])]


class ModelVersion(models.Model):
    class Kind(models.TextChoices):
        REWARD = "reward", "Reward model"
        CONSISTENCY = "consistency", "Consistency checker"
        INPAINTER = "inpainter", "Learned inpainter"

    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        PROMOTED = "promoted"
        RETIRED = "retired"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CANDIDATE)
    artifact_path = models.CharField(max_length=500, blank=True)
    backbone = models.CharField(max_length=200, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    training_snapshot = models.JSONField(default=dict, blank=True, help_text="label ids, split, counts")
    code_version = models.CharField(max_length=64, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    promoted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["project", "kind", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "kind", "version"], name="model_version_number_unique"),
            models.UniqueConstraint(
                fields=["project", "kind"], condition=Q(status="promoted"), name="one_promoted_model_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} v{self.version} ({self.status})"


class TrainingRun(models.Model):
    """One background training/evaluation job; the UI polls it for progress and the log."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    kind = models.CharField(max_length=20, choices=ModelVersion.Kind.choices)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    progress = models.FloatField(default=0.0)
    log = models.TextField(blank=True)
    history = models.JSONField(default=list, blank=True, help_text="per-epoch losses for the curve")
    params = models.JSONField(default=dict, blank=True)
    celery_task_id = models.CharField(max_length=255, blank=True)
    model_version = models.OneToOneField(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_run"
    )
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="training_progress_fraction")
        ]
