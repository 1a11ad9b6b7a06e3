"""A QA user reviews ads that passed the gate with the keyboard only, in headless Chromium."""
import os
import shutil

import pytest

from annotate.models import ImageLabel, ImageTask
from gating import services

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian chromium is not installed (apt-get install chromium)"),
]
# Playwright's sync API runs an event loop in this thread; the ORM calls below are ordinary blocking calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        browser.close()


def test_qa_approves_rejects_and_bulk_approves_by_keyboard(live_server, browser_page, make_ad, demo_project, qa_user):
    ads = [make_ad(reward=0.9, consistent=True) for _ in range(4)]
    for ad in ads:
        services.gate_generation(ad)
    page = browser_page
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", "qa")
    page.fill("input[name=password]", "correct-horse-9")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/p/{demo_project.slug}/qa/?sort=created_at")
    page.wait_for_selector(".ad.current")

    page.keyboard.press("a")  # approve the first
    page.wait_for_selector(f'.ad[data-id="{ads[0].id}"].done')
    page.keyboard.press("6")  # toggle "missing shadow"
    page.keyboard.press("r")  # reject the second with that tag
    page.wait_for_selector(f'.ad[data-id="{ads[1].id}"].done')
    page.keyboard.press("x")  # select the third
    page.keyboard.press("ArrowRight")
    page.keyboard.press("x")  # and the fourth
    page.keyboard.press("Shift+A")
    page.wait_for_selector(f'.ad[data-id="{ads[3].id}"].done')
    page.screenshot(path=str(live_server_screenshot()))

    labels = {label.generation_id: label for label in ImageLabel.objects.filter(source="qa")}
    assert labels[ads[0].id].background_appropriate is True
    assert (labels[ads[1].id].background_appropriate, labels[ads[1].id].reason_tags) == (False, ["missing_shadow"])
    assert labels[ads[2].id].product_intact is True and labels[ads[3].id].product_intact is True
    assert list(ImageTask.objects.values_list("generation_id", flat=True)) == [ads[1].id]


def live_server_screenshot():
    from django.conf import settings

    folder = settings.DATA_DIR / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "qa-grid.png"
