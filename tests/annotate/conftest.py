"""Fixtures of the annotation tests: small generated images stored through the real storage service."""
import itertools

import numpy as np
import pytest

from core.models import Product, SourceImage
from core.services.storage import store_pixels
from generation.models import Generation

_colour = itertools.count(1)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Users are made per test; the production hasher's deliberate slowness is not what we test here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _pixels(size=24):
    n = next(_colour)
    img = np.zeros((size, size, 3), dtype=np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = (n * 37) % 256, (n * 91) % 256, (n * 53) // 256 % 256
    img[0, 0] = [n % 256, n // 256 % 256, 7]  # unique content per call
    return img


def make_product(project, title="Juice", generations=3, backend="test-backend", scores=None):
    product = Product.objects.create(project=project, title=title, category="juice carton")
    stored = store_pixels(_pixels())
    SourceImage.objects.create(product=product, image=stored.name, sha256=stored.decoded.sha256,
                               width=stored.decoded.width, height=stored.decoded.height)
    for i in range(generations):
        stored = store_pixels(_pixels())
        Generation.objects.create(
            product=product, backend=backend, backend_version="1", params_hash="h", seed=i,
            status=Generation.Status.SUCCEEDED, image=stored.name, sha256=stored.decoded.sha256,
            width=stored.decoded.width, height=stored.decoded.height,
            reward_score=scores[i] if scores else None,
        )
    return product


@pytest.fixture
def queued_project(project):
    """2 products x 3 generations -> 6 comparison tasks and 6 image tasks, 1 label per item."""
    from annotate.services import create_tasks

    for title in ("Juice", "Milk"):
        make_product(project, title)
    create_tasks(project, seed=1)
    return project


@pytest.fixture
def annotators(make_user):
    from core.roles import ANNOTATOR

    return [make_user(f"ann{i}", ANNOTATOR) for i in range(3)]
