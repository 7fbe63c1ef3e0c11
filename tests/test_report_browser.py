"""The reproduction report in a real browser: headless Chromium loads a report made from a tiny dataset (digits,
the data and CMI stages; the network stages skipped with their reasons) and we check that the page logs no
console error, that every image loads, and that a screenshot is not blank.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: it reads commands on
fd 3 and writes replies and events on fd 4, each a NUL-terminated JSON message), so no websocket client is
needed. Skipped when no browser is installed; CI installs Debian's ``chromium`` (.ci/run)."""

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pytest
from PIL import Image
from test_reproduce import finished_report  # noqa: F401 - a fixture

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BINARY = next((path for path in map(shutil.which, BROWSERS) if path), None)
pytestmark = pytest.mark.skipif(BINARY is None, reason="no headless browser (chromium, chromium-browser or "
                                                       "google-chrome) on PATH")
IMAGES = ("JSON.stringify(Array.from(document.images).map(i => "
          "({src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})))")


class Browser:
    """One headless Chromium with a DevTools session on a pipe."""

    def __init__(self, binary: str):
        to_child, self.write = os.pipe()
        self.read, from_child = os.pipe()
        # the child's ends far above 3 and 4, so that wiring them onto 3 and 4 cannot overwrite one with the other
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child, from_child)]
        os.close(to_child)
        os.close(from_child)

        def wire():
            os.dup2(ends[0], 3)
            os.dup2(ends[1], 4)

        self.profile = tempfile.mkdtemp(prefix="phasediff-chromium-")
        self.process = subprocess.Popen(
            [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage",
             "--disable-background-networking", f"--user-data-dir={self.profile}", "about:blank"],
            preexec_fn=wire, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for fd in ends:
            os.close(fd)
        self.buffer, self.last_id, self.events = b"", 0, []

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.read], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("the browser did not answer in time")
            chunk = os.read(self.read, 1 << 20)
            if not chunk:
                raise RuntimeError(f"the browser exited: {self.process.stderr.read().decode()[-2000:]}")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self.last_id += 1
        request = {"id": self.last_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        os.write(self.write, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline)
            if message.get("id") == self.last_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline)
            if message.get("method") == method:
                return message
            self.events.append(message)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.write)
        os.close(self.read)
        shutil.rmtree(self.profile, ignore_errors=True)


def errors_of(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions, error log entries (failed resources among them) and failed loads."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            found.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        elif method == "Network.loadingFailed":
            found.append(f"load failed: {params.get('errorText')}")
    return found


def visit(path) -> tuple[list[dict], list[str], np.ndarray]:
    """(the page's images, its errors, a 1280 x 1600 screenshot as grey levels) of a local HTML file."""
    browser = Browser(BINARY)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1600, "deviceScaleFactor": 1,
                                                            "mobile": False}, session=session)
        browser.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        images = json.loads(browser.send("Runtime.evaluate", {"expression": IMAGES, "returnByValue": True},
                                         session=session)["result"]["value"])
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(shot))).convert("L"), dtype=float)
        return images, errors_of(browser.events), pixels
    finally:
        browser.close()


def test_the_report_loads_without_errors_with_every_image_and_is_not_blank(finished_report):  # noqa: F811
    out, _ = finished_report
    images, errors, pixels = visit(out / "index.html")
    assert errors == []
    assert len(images) >= 4  # the sample grid and the three CMI figures
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in images), images
    assert {i["src"].split("/")[1].split("-")[0] for i in images} == {"data", "cmi"}
    assert pixels.shape == (1600, 1280)
    assert pixels.std() > 10 and len(np.unique(pixels)) > 16  # text, tables and figures, not an empty page


def test_the_browser_check_sees_a_broken_image(finished_report, tmp_path):  # noqa: F811
    """The checks above can fail: a missing figure is reported as an image that did not load and an error."""
    out, _ = finished_report
    page = (out / "index.html").read_text()
    first = page.index('src="stages/') + len('src="')
    broken = out / f"broken-{tmp_path.name}.html"
    broken.write_text(page[:first] + "stages/missing.png" + page[first + page[first:].index('"'):])
    images, errors, _ = visit(broken)
    assert [i for i in images if i["src"] == "stages/missing.png" and i["width"] == 0]
    assert errors
