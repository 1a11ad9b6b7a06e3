"""Every page: anonymous users go to the login page; each role gets what it may see."""
import pytest
from django.urls import reverse

from core.models import Product


@pytest.fixture
def urls(demo_project):
    product = Product.objects.filter(project=demo_project).first()
    return {
        "home": reverse("home"),
        "project": reverse("project_detail", args=[demo_project.slug]),
        "product": reverse("product_detail", args=[demo_project.slug, product.pk]),
        "product_add": reverse("product_add", args=[demo_project.slug]),
        "media": reverse("media", args=[product.source_image.image.name]),
        "admin": reverse("admin:index"),
        "api_schema": reverse("api-schema"),
    }


EXPECTED = {  # page: (annotator, ml_engineer, qa)
    "home": (200, 200, 200),
    "project": (200, 200, 200),
    "product": (200, 200, 200),
    "product_add": (403, 200, 403),
    "media": (200, 200, 200),
    "admin": (302, 302, 302),  # the admin site is for staff only
    "api_schema": (200, 200, 200),
}


@pytest.mark.parametrize("page", sorted(EXPECTED))
def test_anonymous_users_are_sent_to_login(client, urls, page):
    response = client.get(urls[page])
    if page.startswith("api"):
        assert response.status_code in (401, 403)
        return
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login") if page == "admin" else reverse("login"))


@pytest.mark.parametrize("page", sorted(EXPECTED))
def test_each_role_sees_what_it_may(client, urls, annotator, ml_engineer, qa_user, page):
    for user, expected in zip((annotator, ml_engineer, qa_user), EXPECTED[page]):
        client.force_login(user)
        assert client.get(urls[page]).status_code == expected, (user.username, page)


def test_login_page_is_public_and_logs_in(client, annotator):
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"username": "ann", "password": "correct-horse-9"})
    assert response.status_code == 302 and response.url == reverse("home")


def test_project_page_lists_products_catalog_and_queues(client, annotator, demo_project):
    client.force_login(annotator)
    page = client.get(reverse("project_detail", args=[demo_project.slug])).content.decode()
    assert "Products (8)" in page and "Catalog (33)" in page
    assert 'id="queue-comparisons">0<' in page
    assert "Add a product" not in page  # annotators cannot add products


def test_media_outside_storage_is_not_served(client, annotator):
    client.force_login(annotator)
    assert client.get("/media/../config/settings.py").status_code == 404
    assert client.get("/media/images/nope.png").status_code == 404
