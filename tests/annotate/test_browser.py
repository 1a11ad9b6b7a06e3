"""An annotator labels with the keyboard only, in headless Chromium against the live server."""
import json
import os
from pathlib import Path

import pytest

from annotate.exchange import export_lines
from annotate.models import ImageLabel, PairwiseLabel
from tests.conftest import wait_for

# Playwright's sync API runs an event loop in this thread; the ORM checks below are synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_persistent_server_connections():
    """The live server answers each request in a new thread: close its database connection after each
    request (CONN_MAX_AGE=0), or the threads' open connections block dropping the PostgreSQL test database."""
    from django.db import connections

    db = connections.settings["default"]
    old = db.get("CONN_MAX_AGE", 0)
    db["CONN_MAX_AGE"] = 0
    yield
    db["CONN_MAX_AGE"] = old


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1300, "height": 850})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_default_timeout(15_000)
        if os.environ.get("ANNOTATE_BROWSER_DEBUG"):
            page.on("console", lambda m: print("console:", m.text))
            page.on("response", lambda r: print("response:", r.status, r.request.method, r.url))
        yield page
        # ORM calls made while Playwright's loop runs get their own connection (asgiref's context-local
        # storage): close it here, in that same context, so the test database can be dropped.
        from django.db import connections

        connections.close_all()
        browser.close()
        assert errors == [], errors


def shown(page) -> str:
    return page.locator("#labeller").get_attribute("data-assignment")


def press_and_wait_next(page, key):
    before = shown(page)
    page.keyboard.press(key)
    page.wait_for_function(f"document.getElementById('labeller').dataset.assignment !== '{before}'")
    return shown(page)


def test_keyboard_only_labelling_with_undo(live_server, page, queued_project, annotator):
    page.goto(live_server.url + "/login/")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", "correct-horse-9")
    page.keyboard.press("Enter")
    page.wait_for_url(live_server.url + "/")

    # --- pairs: tag + 1, arrow right, 3, undo, 4 ---------------------------------------------
    page.goto(f"{live_server.url}/p/{queued_project.slug}/label/pairs/")
    page.wait_for_selector("#lab-stage:not([hidden])")
    first = shown(page)
    page.keyboard.press("?")
    assert page.locator("#lab-help").is_visible()
    page.keyboard.press("Escape")
    assert page.locator("#lab-help").is_hidden()
    page.keyboard.press("w")
    assert page.locator('.tag[data-tag="poor_aesthetics"]').get_attribute("aria-pressed") == "true"
    second = press_and_wait_next(page, "1")
    assert page.locator('.tag[data-tag="poor_aesthetics"]').get_attribute("aria-pressed") == "false"
    third = press_and_wait_next(page, "ArrowRight")
    fourth = press_and_wait_next(page, "3")
    assert len({first, second, third, fourth}) == 4
    wait_for(lambda: PairwiseLabel.objects.count() == 3, timeout=10, message="3 pair labels")
    page.keyboard.press("z")  # undo the tie: the third item comes back
    page.wait_for_function(f"document.getElementById('labeller').dataset.assignment === '{third}'")
    assert "Undone" in page.locator("#lab-status").inner_text()
    assert PairwiseLabel.objects.count() == 2
    assert press_and_wait_next(page, "4") == fourth  # the item that was on screen before the undo
    wait_for(lambda: PairwiseLabel.objects.count() == 3, timeout=10, message="the re-labelled pair")
    labels = {str(label.task.assignments.get(annotator=annotator).pk): label
              for label in PairwiseLabel.objects.select_related("task")}
    assert (labels[first].choice, labels[first].reason_tags) == ("a", ["poor_aesthetics"])
    assert (labels[second].choice, labels[second].reason_tags) == ("b", [])
    assert labels[third].choice == "both_bad"
    assert all(label.time_spent_ms > 0 for label in labels.values())
    page.wait_for_function("document.getElementById('lab-done').textContent === '3'")  # after the 201s arrive
    exported = "".join(export_lines(queued_project, "pair", "jsonl"))
    assert sorted(json.loads(line)["choice"] for line in exported.splitlines()) == ["a", "b", "both_bad"]
    # the rest of the queue (6 pairs): then the screen says so and shows no images
    press_and_wait_next(page, "3")
    press_and_wait_next(page, "3")
    page.keyboard.press("3")
    page.wait_for_function("document.getElementById('lab-status').textContent.includes('All done')")
    assert page.locator("#lab-stage").is_hidden() and page.locator("#lab-controls").is_hidden()
    wait_for(lambda: PairwiseLabel.objects.count() == 6, timeout=10, message="all 6 pairs labelled")

    # --- images: 1 3 = fine; q 2 4 = bad background, product changed -------------------------
    page.goto(f"{live_server.url}/p/{queued_project.slug}/label/images/")
    page.wait_for_selector("#lab-stage:not([hidden])")
    page.keyboard.press("1")
    press_and_wait_next(page, "3")
    page.keyboard.press("q")
    page.keyboard.press("2")
    press_and_wait_next(page, "4")
    wait_for(lambda: ImageLabel.objects.count() == 2, timeout=10, message="2 image labels")
    got = sorted(ImageLabel.objects.values_list("background_appropriate", "product_intact", "reason_tags"))
    assert got == [(False, False, ["inappropriate_background"]), (True, True, [])]
    # an annotator never sees a score, and the screen has no reward data
    assert "reward" not in page.content().lower()
