"""The real-browser harness of the web UI's tests (``tests/support/browser.py``), proven on
small pages served from loopback with the strict Content-Security-Policy the UI sends: the
browser starts, waits for a change a same-origin script makes, axe-core runs in the page (its
injection not stopped by the CSP) and finds the rule a page breaks, a screenshot covers the
whole page, and the browser reaches nothing beyond loopback unless told. Skipped, saying how
to get them, where Chromium or axe-core are missing; under ``CI=true`` that fails instead."""

from __future__ import annotations

import collections.abc
import contextlib
import http.server
import pathlib
import socket
import struct
import threading

import browser
import deploy_files
import pytest
from selenium import webdriver
from selenium.common import exceptions

CSP = "default-src 'self'"

PAGES: dict[str, tuple[str, str]] = {
    "/": (
        "text/html",
        """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Harness page</title>
  <link rel="stylesheet" href="/style.css">
  <script src="/page.js"></script>
  <script>document.title = "inline script ran";</script>
</head>
<body>
  <main>
    <h1>Harness page</h1>
    <button type="button" id="show">Show details</button>
    <p id="status" aria-live="polite">Nothing shown</p>
    <div class="tall"></div>
  </main>
</body>
</html>""",
    ),
    "/broken.html": (
        "text/html",
        """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Broken page</title></head>
<body>
  <main><h1>Broken page</h1><img src="/dot.svg"></main>
  <p>Outside every landmark.</p>
</body>
</html>""",
    ),
    # Inline style attributes are refused by the CSP too: the height comes from here.
    "/style.css": ("text/css", ".tall { height: 2000px; }"),
    "/page.js": (
        "text/javascript",
        """window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(event.effectiveDirective);
});
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("show").addEventListener("click", () => {
    document.getElementById("status").textContent = "Details shown";
  });
});""",
    ),
    "/dot.svg": (
        "image/svg+xml",
        '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><circle r="4"/></svg>',
    ),
}


class _Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path not in PAGES:
            self.send_error(404)
            return
        content_type, body = PAGES[self.path]
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> collections.abc.Iterator[str]:
    with _serving("127.0.0.1") as url:
        yield url


@pytest.fixture(scope="module")
def driver() -> collections.abc.Iterator[webdriver.Chrome]:
    _require_tools()
    with browser.chromium() as started:
        yield started


def _require_tools() -> None:
    try:
        browser.tools()
    except browser.ToolsMissing as missing:
        deploy_files.missing_tool(str(missing))


@contextlib.contextmanager
def _serving(host: str) -> collections.abc.Iterator[str]:
    """The pages on ``host``, a free port, from a thread; yields the base URL."""
    server = http.server.ThreadingHTTPServer((host, 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _png_size(path: pathlib.Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_a_click_changes_the_page_through_a_same_origin_script(
    driver: webdriver.Chrome, site: str
) -> None:
    driver.get(site + "/")
    status = browser.wait_for_element(driver, "#status")
    assert status.text == "Nothing shown"
    browser.wait_for_element(driver, "#show").click()
    browser.wait_for_text(driver, "#status", "Details shown")


def test_the_csp_is_in_force_and_does_not_stop_axe(driver: webdriver.Chrome, site: str) -> None:
    driver.get(site + "/")
    # The page's inline script was refused, and the page saw the refusal.
    assert driver.title == "Harness page"
    assert driver.execute_script("return window.cspViolations") == ["script-src-elem"]
    found = browser.axe_violations(driver)
    assert found == [], browser.describe(found)
    assert driver.execute_script("return typeof window.axe.version") == "string"
    # Injecting and running axe through WebDriver broke no rule of the page's policy.
    assert driver.execute_script("return window.cspViolations") == ["script-src-elem"]


def test_axe_finds_the_rules_a_page_breaks_by_impact(driver: webdriver.Chrome, site: str) -> None:
    driver.get(site + "/broken.html")
    serious = browser.axe_violations(driver)
    assert [found["id"] for found in serious] == ["image-alt"], browser.describe(serious)
    assert serious[0]["impact"] == "critical"
    assert serious[0]["targets"] == ["img"]
    assert "critical image-alt: Images must have alternative text (img)" in browser.describe(
        serious
    )
    # Content outside the landmarks is only moderate: left out unless asked for.
    moderate = browser.axe_violations(driver, impacts=("moderate",))
    assert "region" in [found["id"] for found in moderate], browser.describe(moderate)


def test_a_screenshot_covers_the_whole_page(
    driver: webdriver.Chrome, site: str, tmp_path: pathlib.Path
) -> None:
    driver.get(site + "/")
    browser.wait_for_element(driver, ".tall")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    assert height > browser.WINDOW[1], "the page should be taller than the window"
    shot = browser.screenshot(driver, tmp_path / "shots" / "page.png")
    assert _png_size(shot) == (browser.WINDOW[0], height)


def test_the_browser_reaches_loopback_only(driver: webdriver.Chrome, site: str) -> None:
    for url in ("http://example.com/", "http://192.0.2.1/"):  # a name, an address
        with pytest.raises(exceptions.WebDriverException, match="ERR_PROXY_CONNECTION_FAILED"):
            driver.get(url)
    driver.get(site.replace("127.0.0.1", "localhost") + "/")
    assert driver.title == "Harness page"


def _outgoing_address() -> str | None:
    """This machine's address towards the outside, if it has one: connecting a UDP socket
    sends nothing, it only picks the route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_a_host_named_reachable_is_reached(driver: webdriver.Chrome) -> None:
    address = _outgoing_address()
    if address is None:
        pytest.skip("this machine has no address beyond loopback to serve from")
    with _serving(address) as url:
        with pytest.raises(exceptions.WebDriverException, match="ERR_PROXY_CONNECTION_FAILED"):
            driver.get(url + "/")
        with browser.chromium(reachable=[address]) as started:
            started.get(url + "/")
            assert started.title == "Harness page"


def test_missing_tools_skip_saying_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    # deploy_files.missing_tool, which fails instead under CI=true, is tested with promtool.
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no chromedriver there
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"chromedriver is not.*make browser-tools"):
        _require_tools()
