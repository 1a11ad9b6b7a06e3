"""No page of any app is served to an anonymous user, whatever app added it."""
import pytest
from django.urls import URLPattern, URLResolver, get_resolver

PUBLIC = {"login"}
ARG_VALUES = {"slug": "demo", "pk": "1", "path": "images/x.png", "kind": "pairs", "screen": "pairs", "version": "1",
              "target": "original", "fmt": "jsonl", "format": "jsonl", "task_id": "1", "run_id": "1", "job_id": "1"}


def all_patterns(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin":
                continue
            yield from all_patterns(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def concrete_url(route: str) -> str:
    import re

    def fill(match):
        name = match.group(2)
        return ARG_VALUES.get(name, "1")

    url = re.sub(r"<(?:(\w+):)?(\w+)>", fill, route)
    url = url.lstrip("^").rstrip("$").replace("(?P<path>.+)", "images/x.png").replace("\\", "")
    return "/" + url


@pytest.mark.django_db
def test_every_url_needs_a_login(client):
    checked = []
    for route, pattern in all_patterns():
        if pattern.name in PUBLIC:
            continue
        url = concrete_url(route)
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code in (301, 302, 401, 403, 405), (url, method, response.status_code)
            if response.status_code == 302:
                assert "/login/" in response.url, (url, response.url)
        checked.append(url)
    assert len(checked) > 20
