"""report.html in a real browser: Debian's headless chromium decodes every chart and renders the page.

The browser is installed here when it is missing and this process can (root, apt-get); otherwise
the test skips and says why. A copy of the page gets a small script that writes each image's
``naturalWidth`` into the DOM once the page has loaded; ``--dump-dom`` returns that DOM. A copy
with one corrupted image proves the check can fail. A screenshot of the page is kept under the
test's tmp folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from quant_core.evaluation.html import render_html
from quant_core.evaluation.report import build_report
from tests.unit.test_report_html import CONFIG, PNG_SIGNATURE, _inputs

pytestmark = pytest.mark.integration

PROBE = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "qonline-image-check";
  out.textContent = JSON.stringify(Array.from(document.images, (img) => [img.complete, img.naturalWidth]));
  document.body.appendChild(out);
});
</script>"""
BROWSER_TIMEOUT = 90


def _find_browser() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _install_browser() -> str:
    """Where apt-get may run as root, ``apt-get install -y chromium`` (after an update if needed)."""
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        why = "not root" if os.name == "posix" and os.geteuid() != 0 else "no apt-get"
        pytest.skip(f"Debian's chromium is not installed and cannot be installed here ({why}); "
                    f"install it with `apt-get install -y chromium` to run the browser test")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = []
    for cmd in (["apt-get", "install", "-y", "-q", "chromium"], ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "chromium"]):
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200, check=False)
        log.append(f"$ {' '.join(cmd)} -> {res.returncode}: {res.stderr.strip()[-300:]}")
        if cmd[1] == "install" and res.returncode == 0 and _find_browser():
            return str(_find_browser())
    pytest.skip("Debian's chromium could not be installed with apt-get here: " + " | ".join(log))


@pytest.fixture(scope="module")
def chromium() -> str:
    return _find_browser() or _install_browser()


def _browser(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=BROWSER_TIMEOUT, check=False)
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr[-2000:]}"
    return res


def _image_check(chromium: str, page: str, where: Path) -> list[list[object]]:
    probe = where.with_name(where.stem + "-probe.html")
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    res = _browser(chromium, where.parent / "profile", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="qonline-image-check">(.*?)</pre>', res.stdout, re.S)
    assert found, f"the probe did not run: {res.stdout[-1000:]}"
    result: list[list[object]] = json.loads(found.group(1))
    return result


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("browser") / "report.html"
    path.write_text(render_html(build_report(_inputs(), CONFIG)), encoding="utf-8")
    return path


def test_every_image_decodes_in_chromium(chromium: str, report_html: Path) -> None:
    page = report_html.read_text(encoding="utf-8")
    images = _image_check(chromium, page, report_html)
    assert len(images) == 6
    assert all(done and width == 1000 for done, width in images), images

    # the check can fail: one image's data corrupted is an image that did not decode
    broken = re.sub(r'(src="data:image/png;base64,)[A-Za-z0-9+/]{40}', r"\1" + "A" * 40, page, count=1)
    images = _image_check(chromium, broken, report_html.with_name("broken.html"))
    assert [width for _done, width in images].count(0) == 1, images


def test_the_page_renders_to_a_screenshot(chromium: str, report_html: Path) -> None:
    from PIL import Image

    shot = report_html.with_name("report-screenshot.png")
    _browser(chromium, report_html.parent / "profile", "--window-size=1280,4200", f"--screenshot={shot}",
             report_html.as_uri())
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 100_000
    with Image.open(shot) as img:
        assert img.size == (1280, 4200)
        rgb = img.convert("RGB")
        # not a blank page: many colours (charts), and the top has dark text on white
        assert len(rgb.getcolors(maxcolors=1 << 20) or []) > 200
        assert min(rgb.crop((0, 0, 1280, 200)).getextrema()[0]) < 80
