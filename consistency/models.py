"""Human corrections of product masks, used by the consistency checker and its calibration."""
from django.conf import settings
from django.db import models
from django.db.models import Q

from core.models import SourceImage
from generation.models import Generation


class MaskCorrection(models.Model):
    """A product mask drawn or fixed by a person (QA, annotator or ML engineer).

    target "original": the mask of a SourceImage (in the source photo's own frame); the latest one
    also becomes `SourceImage.mask`, so every later check of that product uses it.
    target "generated": the mask of the product in a Generation's image; the next check of that
    generation uses it instead of segmenting the generated image.
    """

    class Target(models.TextChoices):
        ORIGINAL = "original", "Original product photo"
        GENERATED = "generated", "Generated image"

    target = models.CharField(max_length=20, choices=Target.choices)
    source_image = models.ForeignKey(SourceImage, null=True, blank=True, on_delete=models.CASCADE,
                                     related_name="mask_corrections")
    generation = models.ForeignKey(Generation, null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="mask_corrections",
                                   help_text="the generation whose page the correction was made from")
    mask = models.ImageField(upload_to="masks/", max_length=300)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    coverage = models.FloatField(default=0.0, help_text="share of the image inside the mask")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="mask_corrections")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(target="original", source_image__isnull=False)
                           | Q(target="generated", generation__isnull=False)),
                name="mask_correction_has_its_image",
            ),
            models.CheckConstraint(condition=Q(coverage__gte=0) & Q(coverage__lte=1),
                                   name="mask_correction_coverage_fraction"),
        ]
        indexes = [models.Index(fields=["generation", "target", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.target} mask by {self.created_by_id} at {self.created_at:%Y-%m-%d %H:%M}"
