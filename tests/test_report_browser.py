"""`vmemmap report` in a real browser: Debian's chromium, headless, driven by playwright.

The report is written the way the README says (``vmemmap report -o FILE``) and opened from disk. Checks:
no console error and no uncaught exception; no request but the file itself (self-contained at run
time); the address map's SVG has the expected regions with their mm.txt labels; the vmemmap window's
tooltip (its SVG ``<title>``) gives its range and size, and hovering it puts that text in the figure's
read-out line; a full-page screenshot (kept under the test's temporary folder) is a PNG of the viewport's
width and the page's height, and is not blank; print emulation hides the navigation, keeps the drawings
and renders a PDF.

playwright drives the chromium that ``scripts/install-capture-deps.sh`` installs (``apt-get install
chromium``; never ``playwright install``). Without chromium (or playwright) the tests skip, except under
CI (``CI=true``), where they fail so that a machine without the browser cannot pass silently.
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from vmemmap.cli import main
from vmemmap.eras import load_era
from vmemmap.kernel import BootOptions, boot
from vmemmap.machine import load_machine
from vmemmap.report.svg import size_text

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1280, "height": 900}


def _chromium() -> str:
    """Debian's chromium and an importable playwright, else skip (fail under CI=true)."""
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    msg = None
    if exe is None:
        msg = "chromium not installed (run scripts/install-capture-deps.sh as root: apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            msg = "playwright not installed (pip install -e '.[test]')"
    if msg is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI: {msg}")
        pytest.skip(msg)
    assert exe is not None
    return exe


def png_info(data: bytes) -> tuple[int, int, int]:
    """(width, height, bytes per pixel) from the IHDR, after checking the chunk CRCs and that the
    image data inflates to exactly ``height * (1 + width * bpp)`` bytes (a complete 8-bit image)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) == crc, kind
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert ihdr is not None
    width, height, depth, colour, _, _, interlace = ihdr
    assert depth == 8 and interlace == 0
    bpp = {2: 3, 6: 4, 0: 1, 4: 2}[colour]
    assert len(zlib.decompress(idat)) == height * (1 + width * bpp)
    return width, height, bpp


PIXEL_STATS = """async (b64) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + b64;
  await img.decode();
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let n = 0, s = 0, s2 = 0, dark = 0;
  const colours = new Set();
  for (let i = 0; i < d.length; i += 4) {
    const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    n++; s += y; s2 += y * y;
    if (y < 128) dark++;
    if (colours.size < 5000) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
  }
  const mean = s / n;
  return {w: c.width, h: c.height, mean: mean, variance: s2 / n - mean * mean, dark: dark / n,
          colours: colours.size};
}"""


def pixel_stats(browser: Any, png: bytes) -> dict[str, float]:
    """Decode the screenshot with the browser's own image decoder in a blank page (not the report)."""
    page = browser.new_page()
    try:
        return page.evaluate(PIXEL_STATS, base64.b64encode(png).decode())
    finally:
        page.close()


def write_report(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["report", *args, "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.parametrize("args", [
    ("--machine", "opteron-2007", "--era", "6.1"),
    ("--machine", "server-64t", "--era", "6.1", "--kaslr-seed", "7", "--no-compare"),
], ids=["opteron-2007-6.1", "server-64t-6.1-kaslr"])
def test_report_in_chromium(tmp_path: Path, args: tuple[str, ...]) -> None:
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    machine, era = args[1], args[3]
    seed = int(args[args.index("--kaslr-seed") + 1]) if "--kaslr-seed" in args else None
    html = write_report(tmp_path, *args)
    k = boot(load_machine(machine), load_era(era), options=BootOptions(kaslr_seed=seed))
    vm = k.layout.vmemmap
    url = html.resolve().as_uri()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            problems: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load")
            assert requests == [url]  # nothing but the file itself
            assert page.title() == f"vmemmap report: {machine} under {era}"

            # the address map: the expected regions, labelled, each with a non-empty box
            for ident, label in (("region-direct-map", "direct map"), ("region-vmalloc", "vmalloc"),
                                 ("region-vmemmap", "vmemmap"), ("region-kernel-text", "kernel text"),
                                 ("region-modules", "modules")):
                g = page.locator(f"#address-map-svg #{ident}")
                assert g.count() == 1, ident
                assert (g.locator("text.label").text_content() or "").startswith(label + " · ")
                box = g.locator("rect").bounding_box()
                assert box is not None and box["width"] > 100 and box["height"] > 10, (ident, box)
            assert page.locator("#address-map-svg .region").count() == len(k.layout.regions)

            # the vmemmap window's tooltip: description, range, size
            tip = page.locator("#region-vmemmap > title").text_content()
            assert tip == f"{vm.description}\n{vm.start:#018x} - {vm.end:#018x}\nsize {size_text(vm.size)}"
            page.hover("#region-vmemmap rect")
            readout = page.locator("#address-map-figure .readout")
            assert readout.text_content() == tip
            if seed is not None:
                assert page.locator("#kaslr-window").count() == 1

            # the other drawings are there and laid out
            for sel in ("#physical-map-svg", "#vmemmap-leaves-svg"):
                box = page.locator(sel).bounding_box()
                assert box is not None and box["width"] > 600 and box["height"] > 150, (sel, box)
            nodes = page.locator("#physical-map-svg .node").evaluate_all(
                "els => [...new Set(els.map(e => e.dataset.nid))].sort()")
            assert nodes == sorted(str(n) for n in k.nodes)
            assert page.locator("#compare table.compare").count() == (0 if "--no-compare" in args else 1)

            # full-page screenshot: kept next to the report in the test's temporary folder
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            data = shot.read_bytes()
            width, height, _ = png_info(data)
            doc_w, doc_h = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            assert width == VIEWPORT["width"] == doc_w  # nothing sticks out sideways
            assert height == doc_h > 2000
            st = pixel_stats(browser, data)
            assert (st["w"], st["h"]) == (width, height)
            assert st["variance"] > 200 and 0.005 < st["dark"] < 0.5 and st["colours"] > 50, st
            assert problems == []

            # print: navigation and read-outs hidden, drawings kept, a PDF renders
            page.emulate_media(media="print")
            assert page.locator("nav").is_hidden() and readout.is_hidden()
            assert page.locator("#address-map-svg").is_visible()
            assert page.locator("#region-vmemmap rect").bounding_box()["height"] > 10
            pshot = tmp_path / "report-print.png"
            page.screenshot(path=str(pshot), full_page=True)
            pst = pixel_stats(browser, pshot.read_bytes())
            assert pst["variance"] > 200 and pst["colours"] > 50, pst
            pdf = page.pdf(path=str(tmp_path / "report.pdf"), landscape=True, prefer_css_page_size=True)
            assert pdf.startswith(b"%PDF-") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page/") + \
                pdf.count(b"/Type /Page ") + pdf.count(b"/Type /Page>") >= 2
            assert problems == []
        finally:
            browser.close()
