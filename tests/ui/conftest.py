"""Fixtures for the web UI tests: one `registry agent -dev` and one headless Chromium
(Debian's chromium + chromium-driver) per module, screenshots under tests/ui/artifacts/.

Under REGISTRY_TESTS_STRICT=1 a missing browser or driver is a failure, never a skip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import pytest

# The agent launcher shared with the py-consul suite (tests/conftest.py), loaded by path so
# that the two conftest modules do not shadow each other.
_spec = importlib.util.spec_from_file_location(
    "registry_tests_conftest", Path(__file__).resolve().parent.parent / "conftest.py"
)
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
start_registry, stop_registry, http, wait_for = (
    _shared.start_registry, _shared.stop_registry, _shared.http, _shared.wait_for
)

HERE = Path(__file__).resolve().parent
ARTIFACTS = Path(os.environ.get("UI_ARTIFACTS", HERE / "artifacts"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
STRICT = os.environ.get("REGISTRY_TESTS_STRICT") == "1"
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"

# The flags this machine needs: no sandbox as root, no GPU, and no traffic off the machine.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1366,768",
    "--lang=en-US",
]


@pytest.fixture(scope="module")
def agent():
    tmp = Path(tempfile.mkdtemp(prefix="registry-ui-"))
    reg = start_registry(tmp)
    yield reg
    stop_registry(reg)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        msg = f"missing {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if STRICT:
            pytest.fail(msg)
        pytest.skip(msg)
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="registry-ui-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # window.confirm() dialogs are answered by the tests themselves.
    opts.unhandled_prompt_behavior = "ignore"
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def png_info(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decoded image data) of a PNG: enough to
    tell a rendered page from a blank one without an imaging library."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos = 8
    width = height = 0
    idat = bytearray()
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(bytes(idat))
    return width, height, len(set(raw[:2_000_000]))


# Console messages that are the API's documented answers, not faults: Consul answers 404
# for a KV key or folder that does not exist and for an unknown node, and Chromium logs every
# non-2xx fetch as "Failed to load resource".
EXPECTED_404 = ("/v1/kv/", "/v1/internal/ui/node/")


class Ui:
    """A browser on the agent's UI, with the waits and checks the tests share."""

    def __init__(self, driver, agent):
        self.driver = driver
        self.agent = agent
        self.base = agent.base_url

    def open(self, path: str):
        self.driver.get(self.base + path)
        self.wait_js("return document.readyState === 'complete'")

    def wait_js(self, script: str, timeout: float = 10.0, *args):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(
            lambda d: d.execute_script(script, *args), message=f"waiting for: {script}"
        )

    def wait_css(self, css: str, timeout: float = 10.0):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, css)), message=f"waiting for {css}"
        )

    def wait_gone(self, css: str, timeout: float = 10.0):
        self.wait_js(f"return document.querySelector({css!r}) === null", timeout)

    def text(self, css: str) -> str:
        return self.wait_css(css).text

    def mark(self):
        """Marks the page; `assert_same_page` then proves no reload happened since."""
        self.driver.execute_script("window.__registryUiMark = 42")

    def assert_same_page(self):
        assert self.driver.execute_script("return window.__registryUiMark") == 42, "the page reloaded"

    def console_errors(self) -> list[str]:
        out = []
        for entry in self.driver.get_log("browser"):
            if entry["level"] != "SEVERE":
                continue
            msg = entry["message"]
            if "status of 404" in msg and any(p in msg for p in EXPECTED_404):
                continue
            out.append(msg)
        return out

    def screenshot(self, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        width, height, distinct = png_info(path)
        assert width >= 300 and height >= 300, f"{path}: {width}x{height}"
        assert distinct > 16, f"{path} looks blank ({distinct} distinct bytes)"
        return path

    def accessibility_violations(self) -> list[str]:
        """axe-core's WCAG 2 A/AA rules on the current page: one line per violation."""
        if not AXE.is_file():
            pytest.fail(f"{AXE} missing (tests/ui/run.sh runs npm ci)")
        if not self.driver.execute_script("return !!window.axe"):
            self.driver.execute_script(AXE.read_text())
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa']}})"
            ".then((r) => done(r.violations.map((v) => v.id + ': ' + v.help + ' -> '"
            " + v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', '))))"
            ".catch((e) => done(['axe failed: ' + e]));"
        )
        return result

    def viewport(self, width: int, height: int, mobile: bool):
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )


@pytest.fixture
def ui(browser, agent):
    u = Ui(browser, agent)
    u.viewport(1366, 768, False)
    browser.get_log("browser")  # drop what earlier tests left
    yield u
    errors = u.console_errors()
    assert not errors, f"console errors: {errors}"
