from django.db.models import Count, Prefetch

from core.models import CatalogImage, Product, Project, SourceImage


def projects_with_counts():
    return Project.objects.annotate(
        product_count=Count("products", distinct=True), catalog_count=Count("catalog_images", distinct=True)
    )


def project_products(project: Project):
    return (
        Product.objects.filter(project=project)
        .prefetch_related(Prefetch("source_images", queryset=SourceImage.objects.order_by("id")))
        .annotate(generation_count=Count("generations"))
    )


def project_catalog(project: Project):
    return CatalogImage.objects.filter(project=project).order_by("category", "id")


def queue_counts(project: Project) -> dict[str, int]:
    from annotate.models import ComparisonTask, ImageTask
    from generation.models import Generation

    return {
        "comparison_tasks": ComparisonTask.objects.filter(project=project).count(),
        "image_tasks": ImageTask.objects.filter(project=project).count(),
        "generations": Generation.objects.filter(product__project=project).count(),
    }
