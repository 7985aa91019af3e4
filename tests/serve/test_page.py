"""The explorer page in a real headless browser: Debian's chromium driven by playwright, against `lzn serve`
processes on tiny models. `make test` installs chromium when it is missing (the `chromium` target); without
it these tests skip, except under CI, where they fail."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing() -> str | None:
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return f"{CHROMIUM} is not installed (make test installs it: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser():
    why = _missing()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests must run in CI: {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
                                     args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser):
    """A new page at a server's address: (page, the addresses it requested, its script errors)."""
    pages = []

    def opener(url: str, width: int = 1280, height: int = 900):
        page = browser.new_page(viewport={"width": width, "height": height})
        requests: list[str] = []
        errors: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        pages.append(page)
        return page, requests, errors

    yield opener
    for page in pages:
        page.close()


def expect(locator):
    """playwright's assertion with a timeout (the page's Content-Security-Policy forbids wait_for_function's eval)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def draw_stroke(page) -> None:
    """A "7": a bar and a diagonal, with the mouse."""
    page.locator("#pad").scroll_into_view_if_needed()
    box = page.locator("#pad").bounding_box()
    x, y, s = box["x"], box["y"], box["width"]
    page.mouse.move(x + 0.3 * s, y + 0.25 * s)
    page.mouse.down()
    for u, v in ((0.72, 0.25), (0.55, 0.5), (0.42, 0.78)):
        page.mouse.move(x + u * s, y + v * s, steps=8)
    page.mouse.up()


def test_draw_a_stroke_then_a_class_then_samples(joint_server, open_page):
    page, requests, errors = open_page(joint_server.url + "/")
    page.wait_for_selector("body[data-ready]")  # /info and /zones answered
    draw_stroke(page)
    page.wait_for_selector("#predicted-class")
    assert page.inner_text("#predicted-class") in [str(i) for i in range(10)]
    assert page.locator("#probs button").count() == 10
    expect(page.locator("#nearest img")).to_have_count(8)
    page.click("#probs button[data-class='3']")  # click a class: its samples
    expect(page.locator("#samples img")).to_have_count(8)
    assert page.inner_text("#samples-title") == "8 samples of class 3"
    loaded = "[...document.querySelectorAll('#samples img')].every(i => i.complete && i.naturalWidth === 8)"
    assert page.evaluate(loaded)
    assert page.locator("#error").is_hidden()
    assert "no text type" in page.inner_text("#text-panel")  # what this model cannot do, said on the page
    origin = joint_server.url
    assert all(u.startswith(origin) or u.startswith("data:") for u in requests), requests  # nothing remote
    assert errors == []


def test_a_bad_upload_shows_an_error(joint_server, open_page):
    page, _, errors = open_page(joint_server.url + "/")
    page.wait_for_selector("body[data-ready]")
    page.set_input_files("#upload", files=[{"name": "notes.png", "mimeType": "image/png",
                                            "buffer": b"these bytes are not an image"}])
    page.wait_for_selector("#error:not([hidden])")
    assert "not a readable PNG or JPEG image" in page.inner_text("#error")
    draw_stroke(page)  # the page and the server go on
    page.wait_for_selector("#predicted-class")
    assert page.locator("#error").is_hidden() and errors == []


def test_phone_size_text_model_with_a_token(text_server, open_page):
    page, _, errors = open_page(text_server.url + "/?token=s3cret", width=390, height=844)
    page.wait_for_selector("body[data-ready]")
    assert "?token" not in page.url  # the secret leaves the address bar
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    assert "no label side" in page.inner_text("#prediction")  # what this model cannot do
    assert "no label side" in page.inner_text("#classes")
    page.fill("#caption", "a fat zero")
    page.click("#caption-generate")
    expect(page.locator("#caption-images img")).to_have_count(8)
    draw_stroke(page)  # no classes: the nearest images of the drawing
    expect(page.locator("#nearest img")).to_have_count(8)
    assert page.locator("#error").is_hidden() and errors == []


def test_a_wrong_token_is_said_on_the_page(text_server, open_page):
    page, _, _ = open_page(text_server.url + "/?token=wrong")
    assert "missing or wrong token" in page.inner_text("body")  # the server's 401, not a blank page
