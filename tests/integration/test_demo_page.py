"""The upload page of `make demo` in headless Chromium, calling a real TorchServe (tiny model) across origins.

The page is served by its own command (``python -m deploy.demo.page``) from two local origins: one that the
server's ``cors_allowed_origin`` names, where the browser lets the page read the answers, and one it does not,
where the browser refuses them. Images are generated here; nothing is checked in.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from deploy import ROOT
from deploy.server import free_port
from tests.conftest import run_server
from tests.images import corrupt_jpeg, jpeg

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
# Done: a label is shown, or an error is.
SETTLED = "document.getElementById('label').textContent || document.getElementById('error').style.display === 'block'"


def start_page(port: int, api: str) -> subprocess.Popen:
    """`make demo`'s command on ``port``; returns once the page answers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.demo.page", "--port", str(port), "--api", api],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return proc
        except requests.ConnectionError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"the page server did not answer on port {port}: {proc.communicate()[0]}")


@pytest.fixture(scope="module")
def origins() -> dict[str, str]:
    return {"allowed": f"http://127.0.0.1:{free_port()}", "refused": f"http://127.0.0.1:{free_port()}"}


@pytest.fixture(scope="module")
def cors_server(tiny_mar, tmp_path_factory, origins):
    """TorchServe with the checked-in configuration, but allowing this test's page origin."""
    yield from run_server(tiny_mar, tmp_path_factory.mktemp("ts-cors"), {"cors_allowed_origin": origins["allowed"]})


@pytest.fixture(scope="module")
def pages(cors_server, origins):
    """The page served from both origins, each pointed at the server with ``?api=`` as a person would."""
    procs = []
    try:
        for url in origins.values():
            procs.append(start_page(int(url.rsplit(":", 1)[1]), cors_server.inference_url))
        yield {name: f"{url}/?api={cors_server.inference_url}" for name, url in origins.items()}
    finally:
        for proc in procs:
            proc.terminate()
            proc.communicate(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed: `make system-deps` installs the Debian package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def pick(browser, url: str, path: Path):
    """Open the page at ``url``, pick a file as a person would, wait until it shows an answer or an error."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url)
    page.set_input_files("#file", path)
    page.wait_for_function(SETTLED, timeout=120_000)
    return page


def test_page_from_an_allowed_origin_classifies_and_overlays(browser, pages, cors_server, tmp_path):
    image = jpeg((160, 96), seed=7)
    expected = requests.post(
        cors_server.predict_url, data=image, headers={"Content-Type": "image/jpeg"}, timeout=60
    ).json()
    (tmp_path / "art.jpg").write_bytes(image)
    page = pick(browser, pages["allowed"], tmp_path / "art.jpg")
    try:
        assert not page.is_visible("#error"), f"an error was shown: {page.inner_text('#error')}"
        shown = page.inner_text("#label")
        assert shown.lower() == expected["label"], f"page shows {shown!r}, the server answers {expected['label']!r}"
        rows = page.eval_on_selector_all(
            "#top3 li", "items => items.map(i => [i.dataset.label, i.dataset.probability])"
        )
        assert [label for label, _ in rows] == [t["label"] for t in expected["top_k"][:3]], (
            f"top 3 on the page {rows} != the server's {expected['top_k']}"
        )
        for (label, p), want in zip(rows, expected["top_k"], strict=False):
            assert abs(float(p) - want["probability"]) < 1e-5, f"{label}: page {p}, server {want['probability']}"
        assert page.inner_text("#top3").count("%") == 3, f"probabilities not shown: {page.inner_text('#top3')!r}"

        page.wait_for_selector("#heat[data-grid='4x4']", timeout=60_000)  # tiny_vgg's map is 4x4
        assert page.is_visible("#heat"), "the overlay canvas is hidden"
        size, centre, edge = page.evaluate(
            """() => {
                const c = document.getElementById('heat'), ctx = c.getContext('2d');
                const alpha = (x, y) => ctx.getImageData(x, y, 1, 1).data[3];
                return [[c.width, c.height], alpha(c.width / 2, c.height / 2), alpha(1, c.height / 2)];
            }"""
        )
        assert size == [640, 384], f"the overlay must match the picture (160x96 drawn at 640 px wide): {size}"
        assert centre == 255, f"no map drawn in the centre of the overlay (alpha {centre})"
        assert edge == 0, f"the map must cover only the centred square the model sees; alpha at the left edge {edge}"
        opacity = float(page.eval_on_selector("#heat", "c => getComputedStyle(c).opacity"))
        assert 0 < opacity < 1, f"the overlay must be semi-transparent over the picture (opacity {opacity})"

        assert not page.is_visible("#review-note"), "the tiny model has no review policy, so no review note"
        for review, words in ((True, "should check"), (False, "trusted without a check")):
            answer = dict(expected, review=review, review_below=0.97, review_max_error=0.05)
            page.evaluate("a => showPrediction(a)", answer)
            note = page.inner_text("#review-note")
            assert page.is_visible("#review-note") and words in note and "97.0 %" in note, f"review={review}: {note!r}"
            assert "at most 5.0 % of which are wrong" in note, f"the note must state the policy's promise: {note!r}"
    finally:
        page.close()


def test_dropping_a_picture_classifies_it(browser, pages):
    page = browser.new_page()
    try:
        page.goto(pages["allowed"])
        page.evaluate(
            """async (b64) => {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                const data = new DataTransfer();
                data.items.add(new File([bytes], "dropped.jpg", {type: "image/jpeg"}));
                document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: data}));
            }""",
            base64.b64encode(jpeg(seed=9)).decode(),
        )
        page.wait_for_function(SETTLED, timeout=120_000)
        assert page.inner_text("#label"), f"no label after a drop: {page.inner_text('body')[:500]}"
    finally:
        page.close()


def test_page_from_an_origin_not_allowed_is_refused_by_the_browser(browser, pages, cors_server, origins, tmp_path):
    image = jpeg(seed=8)
    direct = requests.post(
        cors_server.predict_url,
        data=image,
        headers={"Content-Type": "image/jpeg", "Origin": origins["refused"]},
        timeout=60,
    )
    assert direct.status_code == 200, f"the server itself must answer: {direct.status_code} {direct.text[:200]}"
    assert direct.headers.get("Access-Control-Allow-Origin") == origins["allowed"], dict(direct.headers)

    (tmp_path / "art.jpg").write_bytes(image)
    page = pick(browser, pages["refused"], tmp_path / "art.jpg")
    try:
        assert page.inner_text("#label") == "", f"a label was shown despite CORS: {page.inner_text('#label')!r}"
        assert page.get_attribute("#error", "data-code") == "unreachable", page.inner_text("#error")
        message = page.inner_text("#error")
        assert "could not be reached" in message and origins["refused"] in message, message
    finally:
        page.close()


@pytest.mark.parametrize(
    ("name", "data", "code", "title"),
    [
        ("broken.jpg", corrupt_jpeg(), "400", "could not be read as a picture"),
        ("drawing.svg", SVG, "415", "kind of file is not supported"),
        # Over max_request_size, TorchServe's frontend answers 413 without CORS headers: the page says why.
        ("huger.jpg", jpeg() + bytes(28 * 2**20), "too_large", "too large"),
    ],
)
def test_page_explains_a_4xx_in_words(browser, pages, tmp_path, name, data, code, title):
    (tmp_path / name).write_bytes(data)  # Chromium types the file by its extension, as for a person's file
    page = pick(browser, pages["allowed"], tmp_path / name)
    try:
        assert page.inner_text("#label") == "", f"a label was shown for {name}: {page.inner_text('#label')!r}"
        assert page.get_attribute("#error", "data-code") == code, page.inner_text("#error")
        assert title in page.inner_text("#error-title"), page.inner_text("#error")
        if code.isdigit():
            assert f"Server answer {code}" in page.inner_text("#error-detail"), page.inner_text("#error")
    finally:
        page.close()


def test_make_demo_serves_only_the_page(pages):
    base = pages["allowed"].split("/?", 1)[0]
    assert requests.get(f"{base}/index.html", timeout=5).status_code == 200, "the page under /index.html"
    for path in ("/page.py", "/__init__.py", "/favicon.ico"):
        r = requests.get(f"{base}{path}", timeout=5)
        assert r.status_code == 404, f"{path} served: {r.status_code}"
