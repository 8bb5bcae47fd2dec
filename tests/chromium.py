"""Render a report page in headless Chromium (Debian package ``chromium``; ``make chromium`` installs it).

``probe(page)`` loads a copy of the page with a small script that, once everything has loaded, records every
<img>'s natural size and where the element ``#summary`` lies, and returns that as a dict. ``screenshot(page, png)``
writes what a 1280x800 window shows. Run as a script to take a screenshot:
``python tests/chromium.py REPORT/index.html shot.png``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--virtual-time-budget=10000", "--run-all-compositor-stages-before-draw"]  # fmt: skip
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images).map(i => ({alt: i.alt, w: i.naturalWidth, h: i.naturalHeight,
                                                       complete: i.complete}));
  const s = document.getElementById("summary");
  const r = s ? s.getBoundingClientRect() : null;
  const out = {imgs, viewport: [innerWidth, innerHeight], text: s ? s.innerText : "",
               summary: r ? {top: r.top + scrollY, bottom: r.bottom + scrollY, width: r.width} : null,
               scroll_width: document.documentElement.scrollWidth};
  const pre = document.createElement("pre");
  pre.id = "sonoshift-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def available() -> bool:
    return Path(CHROMIUM).is_file()


def _run(args: list[str], width: int, height: int) -> str:
    with tempfile.TemporaryDirectory(prefix="sonoshift-chromium-") as profile:
        cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def probe(page: Path, width: int = 1280, height: int = 800) -> dict:
    """Load ``page`` (a copy with the probe script) in a ``width`` x ``height`` window; return the probe's dict."""
    with tempfile.TemporaryDirectory(prefix="sonoshift-page-") as d:
        copy = Path(d) / "index.html"
        copy.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
        dom = _run(["--dump-dom", copy.as_uri()], width, height)
    m = re.search(r'<pre id="sonoshift-probe">(.*?)</pre>', dom, re.S)
    if m is None:
        raise RuntimeError("the probe script did not run (no #sonoshift-probe in the dumped DOM)")
    text = m.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
    return json.loads(text)


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 800) -> Path:
    """Write a ``width`` x ``height`` screenshot of the top of ``page`` to ``png``."""
    png = Path(png).resolve()
    _run([f"--screenshot={png}", page.resolve().as_uri()], width, height)
    return png


if __name__ == "__main__":
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2])))
