from django.db import transaction

from core.models import Product, Project, SourceImage
from core.services.storage import store_image


def add_product(project: Project, *, title: str, category: str, image_bytes: bytes, image_name: str,
                brand: str = "") -> Product:
    """Validate and store the photo first, so a bad file creates no product."""
    stored = store_image(image_bytes, name=image_name)
    with transaction.atomic():
        product = Product.objects.create(project=project, title=title, category=category, brand=brand)
        SourceImage.objects.create(product=product, image=stored.name, sha256=stored.decoded.sha256,
                                   width=stored.decoded.width, height=stored.decoded.height)
    return product
