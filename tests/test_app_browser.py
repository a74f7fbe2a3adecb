"""vadapters studio in a real browser: Debian's headless chromium renders every tab of an in-process launch.

The browser is driven over the DevTools protocol through `--remote-debugging-pipe` (no Selenium, Playwright or
websocket package needed): navigate, click, read the DOM, take screenshots. Checks: each tab renders (expected
labels in the DOM, the tab selected, a screenshot that is not blank); the slow test also runs every tab's main
action through the UI (Generate, Segment, Adapt, Train + Stop) and, with `VADAPTERS_UPDATE_SCREENSHOTS=1`, writes
the screenshots to `docs/screenshots/` for the README.

CI installs chromium with `apt-get install -y --no-install-recommends chromium fonts-dejavu-core`; without it
these tests skip.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("gradio")

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (apt-get install -y --no-install-recommends chromium fonts-dejavu-core)",
)
REPO = pathlib.Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "docs" / "screenshots"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
    "--disable-dev-shm-usage",
]
EXPECTED = {  # labels that only the selected tab shows
    "generate": ["Prompt", "Adapter stack", "Resolution sweep"],
    "segment": ["SAM checkpoint", "A click adds", "Ground truth mask"],
    "adapt": ["Corruptions (in order)", "Images per domain", "Run stream"],
    "train": ["Run name", "Config overrides", "Stop"],
}


class Browser:
    """A minimal DevTools-protocol client over chromium's `--remote-debugging-pipe` (fd 3 in, fd 4 out)."""

    def __init__(self, width: int = 1280, height: int = 1000) -> None:
        self.profile = tempfile.mkdtemp(prefix="vadapters-chromium-")
        cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank"]
        shell = 'exec "$@" 3<&0 4>&1 0</dev/null 1>/dev/null'
        self.proc = subprocess.Popen(
            ["bash", "-c", shell, "chromium", *cmd],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._id, self._buffer = 0, b""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Runtime.enable", session=True)
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.call("Emulation.setDeviceMetricsOverride", metrics, session=True)

    def call(self, method: str, params: dict | None = None, session: bool = False, timeout: float = 60) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        self.proc.stdin.write(json.dumps(message).encode() + b"\0")
        self.proc.stdin.flush()
        deadline = time.time() + timeout
        while time.time() < deadline:
            while b"\0" not in self._buffer:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe during {method}")
                self._buffer += chunk
            raw, _, self._buffer = self._buffer.partition(b"\0")
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(method)

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url}, session=True)

    def wait_for(self, expression: str, timeout: float = 60, what: str = "") -> object:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                value = self.js(expression)
            except RuntimeError:  # the page is still loading (no document.body yet)
                value = None
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what or expression}")

    def text(self) -> str:
        return self.js("document.body ? document.body.innerText : ''") or ""

    def click(self, label: str, index: int = -1) -> None:
        """Click a visible button whose text is `label` (the last one by default)."""
        found = self.js(
            f"""(() => {{
              const all = Array.from(document.querySelectorAll('button')).filter(
                (b) => b.offsetParent !== null && b.textContent.trim() === {json.dumps(label)});
              if (!all.length) return false;
              all.at({index}).click(); return true; }})()"""
        )
        assert found, f"no visible button {label!r}"

    def fill(self, label: str, value: str) -> None:
        """Type `value` into the visible textbox whose label is `label`."""
        ok = self.js(
            f"""(() => {{
              const labels = Array.from(document.querySelectorAll('label')).filter(
                (l) => l.offsetParent !== null && l.textContent.trim().startsWith({json.dumps(label)}));
              for (const l of labels) {{
                const box = l.querySelector('textarea, input') ||
                  (l.htmlFor && document.getElementById(l.htmlFor));
                if (!box) continue;
                const proto = box.tagName === 'TEXTAREA' ? HTMLTextAreaElement : HTMLInputElement;
                Object.getOwnPropertyDescriptor(proto.prototype, 'value').set.call(box, {json.dumps(value)});
                box.dispatchEvent(new Event('input', {{bubbles: true}}));
                box.dispatchEvent(new Event('change', {{bubbles: true}}));
                box.dispatchEvent(new Event('blur', {{bubbles: true}}));
                return true;
              }}
              return false; }})()"""
        )
        assert ok, f"no visible textbox labelled {label!r}"

    def screenshot(self, full_page: bool = False) -> np.ndarray:
        from PIL import Image

        params: dict = {"format": "png"}
        if full_page:  # the whole page, not only the viewport
            width, height = self.js("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width, "height": height,
                                                             "scale": 1})  # fmt: skip
        data = self.call("Page.captureScreenshot", params, session=True)["data"]
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=10)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def assert_not_blank(image: np.ndarray) -> None:
    grey = image.mean(axis=2)
    assert grey.std() > 10, "the screenshot is (nearly) one colour"
    assert len(np.unique(image.reshape(-1, 3)[::7], axis=0)) > 50, "too few colours: the page did not render"


def selected_tab(browser: Browser) -> str:
    return browser.js(
        "(document.querySelector('button[role=\"tab\"][aria-selected=\"true\"]') || {}).textContent || ''"
    ).strip()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from vadapters.apps.studio import build_demo, launch

    root = tmp_path_factory.mktemp("studio_browser")
    demo = build_demo([str(root)], max_queue=8)
    _, url, _ = launch(demo, host="127.0.0.1", port=None, prevent_thread_lock=True, quiet=True)
    demo.test_root = root
    try:
        yield url.rstrip("/"), root
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    try:
        yield b
    finally:
        b.close()


@pytest.mark.parametrize("tab", list(EXPECTED))
def test_each_tab_renders(browser, app_url, tab):
    url, _ = app_url
    browser.goto(f"{url}/?tab={tab}")
    browser.wait_for(f"document.body && document.body.innerText.includes({json.dumps(EXPECTED[tab][0])})",
                     what=f"the {tab} tab")  # fmt: skip
    assert selected_tab(browser).lower() == tab
    text = browser.text()
    assert "vadapters studio" in text
    for label in EXPECTED[tab]:
        assert label in text, f"{label!r} missing from the {tab} tab"
    others = [label for name, labels in EXPECTED.items() if name != tab for label in labels[:1]]
    assert not any(label in text for label in others), "another tab's content is visible"
    assert_not_blank(browser.screenshot())


def _save(image: np.ndarray, name: str, out: pathlib.Path) -> None:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out / f"studio-{name}.png", optimize=True)


@pytest.mark.slow
def test_every_tab_main_action_through_the_ui(browser, app_url, tmp_path):
    """Click through each tab's main action; screenshots go to docs/screenshots with VADAPTERS_UPDATE_SCREENSHOTS=1."""
    import vadapters
    from vadapters.methods.res_adapter import ResAdapterConfig
    from vadapters.pipelines import load_pipeline

    url, root = app_url
    out = SCREENSHOTS if os.environ.get("VADAPTERS_UPDATE_SCREENSHOTS") == "1" else tmp_path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = load_pipeline(None)
    vadapters.inject(pipe, ResAdapterConfig(rank=2, alpha=2.0), adapter_name="res")
    vadapters.save_pretrained(pipe, str(root / "adapters" / "res"), ["res"])

    gallery_count = "document.querySelectorAll('.gallery-item img, button.thumbnail-item img').length"

    browser.goto(f"{url}/?tab=train")
    browser.wait_for("document.body.innerText.includes('Run name')")
    browser.fill("Run name", "browser-run")
    browser.fill("Batch size", "2")
    browser.fill("Resolutions", "16,24")
    browser.fill("Preview every N steps", "4")
    browser.click("Train")
    browser.wait_for("/step ([5-9]|[1-9][0-9]+) \\//.test(document.body.innerText)", timeout=180, what="step 5")
    browser.wait_for(gallery_count + " >= 1", timeout=60, what="a sample preview")
    browser.click("Stop")
    browser.wait_for("document.body.innerText.includes('adapter saved in')", timeout=180, what="the saved adapter")
    assert "stopped at step" in browser.text()
    shot = browser.screenshot(full_page=True)
    assert_not_blank(shot)
    _save(shot, "train", out)
    assert (root / "outputs" / "studio" / "runs" / "browser-run" / "adapter_config.json").is_file()

    browser.goto(f"{url}/?tab=generate")
    browser.wait_for("document.body.innerText.includes('Adapter stack')")
    browser.fill("Adapter stack", "outputs/studio/runs/browser-run:1.0")
    browser.fill("Resolution sweep", "16,32,48")
    browser.click("Generate")
    browser.wait_for(gallery_count + " >= 6", timeout=180, what="6 generated images")
    browser.wait_for(
        "Array.from(document.querySelectorAll('.gallery-item img, button.thumbnail-item img'))"
        ".every((i) => i.complete && i.naturalWidth > 0)",
        what="the images to load",
    )
    assert "with adapters" in browser.text()
    shot = browser.screenshot(full_page=True)
    assert_not_blank(shot)
    _save(shot, "generate", out)

    browser.goto(f"{url}/?tab=segment")
    browser.wait_for("document.body.innerText.includes('A click adds')")
    browser.click("Load example")
    browser.wait_for("!document.body.innerText.includes('Drop Image Here')", timeout=60, what="the example image")
    browser.click("Segment")
    browser.wait_for(gallery_count + " >= 2", timeout=120, what="SAM mask and ground truth")
    assert "prompt-free" in browser.text()
    shot = browser.screenshot(full_page=True)
    assert_not_blank(shot)
    _save(shot, "segment", out)

    browser.goto(f"{url}/?tab=adapt")
    browser.wait_for("document.body.innerText.includes('Run stream')")
    browser.click("Run stream")
    browser.wait_for(
        '/"lame"[^}]*"segments"[^0-9]*4/.test(document.body.innerText)', timeout=240, what="the last method's summary"
    )
    browser.wait_for(  # the error plot (a PNG with one line per method) has arrived
        "Array.from(document.images).some(i => i.complete && i.naturalWidth >= 400)", timeout=60, what="the plot"
    )
    time.sleep(3.0)
    shot = browser.screenshot(full_page=True)
    assert_not_blank(shot)
    _save(shot, "adapt", out)
