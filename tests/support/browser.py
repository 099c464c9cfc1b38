"""Real-browser tests of the web UI: headless Chromium driven by Selenium through Debian's
chromedriver, the accessibility rules of axe-core run inside the page, and screenshots.

The browser is Debian's ``chromium`` and ``chromium-driver`` packages, never one that
Selenium Manager downloads: the driver's path is given to ``Service`` and the browser's to
``binary_location``, so Selenium has nothing to look up. The browser reaches loopback
addresses only (everything else goes to a proxy that is not there), starts from an empty
profile in a temporary folder, and has a fixed window, so screenshots come out the same size.

axe-core comes from npm, pinned below by version and integrity, unpacked into
``${XDG_CACHE_HOME:-~/.cache}/jobqueue/axe-core-<version>/``. ``python -m browser`` (``make
browser-tools``) fetches it; the tests fetch it too if the cache has none.

Injecting axe with WebDriver's ``execute_script`` works under the UI's Content-Security-Policy
(``script-src 'self'``): scripts from WebDriver run through DevTools, which page CSP does not
govern. ``tests/integration/test_browser_harness.py`` checks that on a page served with one.
"""

from __future__ import annotations

import base64
import collections.abc
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import typing

from cluster import build, versions

if typing.TYPE_CHECKING:
    from selenium import webdriver
    from selenium.webdriver.remote import webelement

# The current axe-core 4.x when pinned (`npm view axe-core version dist.integrity`). A new pin
# takes both lines: the integrity is checked against what npm reports and what it downloaded.
AXE_VERSION: typing.Final = "4.14.1"
AXE_INTEGRITY: typing.Final = (
    "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2r"
    "hu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
)
AXE_FILES: typing.Final = ("axe.min.js", "LICENSE")

WINDOW: typing.Final = (1280, 900)
# Chromium sends these past its proxy; its resolver rules match addresses as well as names.
LOOPBACK: typing.Final = ("localhost", "127.0.0.1", "[::1]")
DEFAULT_IMPACTS: typing.Final = ("serious", "critical")
HOW_TO_GET: typing.Final = (
    "`make browser-tools` installs Debian's chromium and chromium-driver (as root) and fetches"
    " axe-core from npm"
)

_T = typing.TypeVar("_T")


class ToolsMissing(Exception):
    """Chromium, chromedriver or axe-core is not here; the message says how to get it."""


class Violation(typing.TypedDict):
    """One axe rule the page breaks: its id, impact, one-line help and where."""

    id: str
    impact: str
    help: str
    targets: list[str]


# --- the tools ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tools:
    chromedriver: pathlib.Path
    chromium: pathlib.Path  # the browser itself, not Debian's /usr/bin/chromium launcher script
    axe: pathlib.Path


def _missing(what: str) -> ToolsMissing:
    return ToolsMissing(f"{what}: {HOW_TO_GET}")


def chromedriver_path() -> pathlib.Path:
    found = shutil.which("chromedriver")
    if found is None:
        raise _missing("chromedriver is not installed (Debian's chromium-driver package)")
    return pathlib.Path(found).resolve()


def chromium_path(chromedriver: pathlib.Path) -> pathlib.Path:
    """The browser that goes with ``chromedriver``: Debian installs both in /usr/lib/chromium/
    (the two must be the same version). /usr/bin/chromium is a shell script that adds the
    flags of /etc/chromium.d/ and runs that binary; the tests give their own flags."""
    beside = chromedriver.parent / "chromium"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    raise _missing(f"chromium is not installed: no {beside} beside {chromedriver}")


def tools() -> Tools:
    """Chromium, its chromedriver and axe-core (fetched into the cache if it has none)."""
    chromedriver = chromedriver_path()
    return Tools(chromedriver, chromium_path(chromedriver), axe_script_path())


def axe_folder() -> pathlib.Path:
    return versions.cache_root() / f"axe-core-{AXE_VERSION}"


def _sri_sha512(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def axe_script_path() -> pathlib.Path:
    """The pinned ``axe.min.js``, fetched with ``npm pack`` into the cache the first time."""
    folder = axe_folder()
    if all((folder / name).is_file() for name in AXE_FILES):
        return folder / "axe.min.js"
    npm = shutil.which("npm")
    if npm is None:
        raise _missing(f"axe-core {AXE_VERSION} is not in {folder}, and npm is not installed")
    with build._locked(versions.cache_root() / "axe-core.lock"):
        if all((folder / name).is_file() for name in AXE_FILES):
            return folder / "axe.min.js"
        partial = pathlib.Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
        try:
            _npm_pack_axe(npm, partial)
            partial.rename(folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return folder / "axe.min.js"


def _npm_pack_axe(npm: str, into: pathlib.Path) -> None:
    spec = f"axe-core@{AXE_VERSION}"
    print(f"[browser] fetching {spec} from npm into {axe_folder()}", file=sys.stderr, flush=True)
    command = [npm, "pack", spec, "--json", "--ignore-scripts", "--pack-destination", str(into)]
    done = subprocess.run(command, cwd=into, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise _missing(f"`{' '.join(command)}` exited {done.returncode}: {done.stderr.strip()}")
    (packed,) = json.loads(done.stdout)
    if packed["integrity"] != AXE_INTEGRITY:
        raise RuntimeError(f"npm reports {spec} as {packed['integrity']}, pinned {AXE_INTEGRITY}")
    tarball = into / packed["filename"]
    data = tarball.read_bytes()
    if _sri_sha512(data) != AXE_INTEGRITY:
        raise RuntimeError(f"{tarball.name} is {_sri_sha512(data)}, pinned {AXE_INTEGRITY}")
    with tarfile.open(tarball) as package:
        for name in AXE_FILES:
            member = package.extractfile(f"package/{name}")
            if member is None:
                raise RuntimeError(f"{tarball.name} has no package/{name}")
            (into / name).write_bytes(member.read())
    tarball.unlink()


# --- the browser --------------------------------------------------------------------------------


def chromium_arguments(
    user_data_dir: pathlib.Path,
    *,
    window: tuple[int, int] = WINDOW,
    reachable: collections.abc.Sequence[str] = (),
) -> list[str]:
    """The command line of a test browser. Every request but those to loopback addresses
    (which Chromium never sends through a proxy) and to ``reachable`` hosts goes to a proxy on
    the discard port, which refuses it; no name resolves but ``localhost`` and those hosts."""
    arguments = [
        "--headless=new",
        f"--user-data-dir={user_data_dir}",
        f"--window-size={window[0]},{window[1]}",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--metrics-recording-only",
        "--proxy-server=http://127.0.0.1:9",
        "--host-resolver-rules="
        + ", ".join(["MAP * ~NOTFOUND", *(f"EXCLUDE {host}" for host in (*LOOPBACK, *reachable))]),
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    ]
    if reachable:
        arguments.append("--proxy-bypass-list=" + ";".join(reachable))
    if os.geteuid() == 0:
        arguments.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return arguments


@contextlib.contextmanager
def chromium(
    *,
    window: tuple[int, int] = WINDOW,
    reachable: collections.abc.Sequence[str] = (),
    page_load_timeout: float = 30.0,
) -> collections.abc.Iterator[webdriver.Chrome]:
    """A headless Chromium under Selenium, quit (and its profile deleted) on exit.
    ``reachable`` names hosts beyond loopback the page may load from (a pod's address)."""
    from selenium import webdriver
    from selenium.webdriver.chrome import service

    found = tools()
    with tempfile.TemporaryDirectory(
        prefix="jobqueue-chromium-", ignore_cleanup_errors=True
    ) as scratch:
        options = webdriver.ChromeOptions()
        options.binary_location = str(found.chromium)
        for argument in chromium_arguments(
            pathlib.Path(scratch) / "profile", window=window, reachable=reachable
        ):
            options.add_argument(argument)
        log = pathlib.Path(scratch) / "chromedriver.log"
        driver_service = service.Service(
            executable_path=str(found.chromedriver), log_output=str(log)
        )
        try:
            driver = webdriver.Chrome(options=options, service=driver_service)
        except Exception as error:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
            raise RuntimeError(
                f"Chromium did not start: {error}\nchromedriver log:\n{tail}"
            ) from error
        try:
            driver.set_page_load_timeout(page_load_timeout)
            _size_viewport(driver, window)
            yield driver
        finally:
            driver.quit()


def _size_viewport(driver: webdriver.Chrome, viewport: tuple[int, int]) -> None:
    """Makes the page's viewport ``viewport``: headless Chromium's ``--window-size`` is the
    outer window, and its frame takes some of it (143 pixels of the height in Chromium 156)."""
    frame = driver.execute_script("return [outerWidth - innerWidth, outerHeight - innerHeight]")
    driver.set_window_size(viewport[0] + frame[0], viewport[1] + frame[1])
    got = tuple(driver.execute_script("return [innerWidth, innerHeight]"))
    if got != viewport:
        raise RuntimeError(f"Chromium's viewport is {got}, not {viewport}")


# --- waiting ------------------------------------------------------------------------------------


def wait_for(
    driver: webdriver.Chrome,
    condition: collections.abc.Callable[[webdriver.Chrome], _T | typing.Literal[False]],
    *,
    timeout: float = 10.0,
    what: str = "condition",
) -> _T:
    """``condition(driver)`` once it is truthy, polled by Selenium's ``WebDriverWait``;
    fails the test after ``timeout`` seconds, naming ``what``."""
    from selenium.common import exceptions
    from selenium.webdriver.support import wait

    try:
        return wait.WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)
    except exceptions.TimeoutException:
        raise AssertionError(f"{what} did not happen within {timeout}s") from None


def wait_for_element(
    driver: webdriver.Chrome, css: str, *, timeout: float = 10.0
) -> webelement.WebElement:
    """The element ``css`` selects, once it is displayed."""
    from selenium.webdriver.common import by
    from selenium.webdriver.support import expected_conditions

    return wait_for(
        driver,
        expected_conditions.visibility_of_element_located((by.By.CSS_SELECTOR, css)),
        timeout=timeout,
        what=f"{css} shown",
    )


def wait_for_text(driver: webdriver.Chrome, css: str, text: str, *, timeout: float = 10.0) -> None:
    """Until the element ``css`` selects contains ``text``."""
    from selenium.webdriver.common import by
    from selenium.webdriver.support import expected_conditions

    wait_for(
        driver,
        expected_conditions.text_to_be_present_in_element((by.By.CSS_SELECTOR, css), text),
        timeout=timeout,
        what=f"{text!r} in {css}",
    )


# --- axe ----------------------------------------------------------------------------------------


@functools.cache
def _axe_source(path: pathlib.Path) -> str:
    return path.read_text()


_RUN_AXE: typing.Final = """
const [options, done] = arguments;
axe.run(document, options).then(
    (results) => done({violations: results.violations}),
    (error) => done({error: String(error && error.stack || error)}),
);
"""


def axe_violations(
    driver: webdriver.Chrome,
    impacts: collections.abc.Collection[str] = DEFAULT_IMPACTS,
    *,
    options: collections.abc.Mapping[str, object] | None = None,
    timeout: float = 30.0,
) -> list[Violation]:
    """The axe rules the current page breaks with one of ``impacts``. axe.min.js is injected
    through WebDriver (unaffected by the page's CSP) unless the page has it already;
    ``options`` go to ``axe.run`` (``{"runOnly": ["wcag2a", "wcag2aa"]}``)."""
    source = _axe_source(axe_script_path())
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(source)
    driver.set_script_timeout(timeout)
    run_options = {"resultTypes": ["violations"], **(options or {})}
    outcome = driver.execute_async_script(_RUN_AXE, run_options)
    if "error" in outcome:
        raise AssertionError(f"axe.run failed: {outcome['error']}")
    return [
        Violation(
            id=found["id"],
            impact=found["impact"],
            help=found["help"],
            targets=[_target_text(node["target"]) for node in found["nodes"]],
        )
        for found in outcome["violations"]
        if found["impact"] in impacts
    ]


def _target_text(target: list[str | list[str]]) -> str:
    """An axe target: a selector per frame, a list of selectors per shadow root crossed."""
    return " >>frame>> ".join(
        part if isinstance(part, str) else " >>shadow>> ".join(part) for part in target
    )


def describe(violations: collections.abc.Sequence[Violation]) -> str:
    """For an assertion message: a line per rule broken, with where."""
    if not violations:
        return "no axe violations"
    return "\n".join(
        f"{found['impact']} {found['id']}: {found['help']} ({', '.join(found['targets'])})"
        for found in violations
    )


# --- screenshots --------------------------------------------------------------------------------


def screenshot(driver: webdriver.Chrome, path: pathlib.Path) -> pathlib.Path:
    """A PNG of the whole page, beyond the window's height, taken through DevTools."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def main() -> int:
    try:
        found = tools()
    except ToolsMissing as error:
        print(f"browser: {error}", file=sys.stderr)
        return 1
    for tool in (found.chromedriver, found.chromium):
        version = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
        print(version.stdout.strip())
    print(f"axe-core {AXE_VERSION}: {found.axe}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
