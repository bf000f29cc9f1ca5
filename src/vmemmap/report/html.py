"""The report page: one self-contained HTML file (inline CSS, inline SVG, a few lines of inline JS).

No external resource of any kind: no ``src``/``href`` to another file or host, no web fonts, no CDN.
Hovering a drawn region shows its SVG ``<title>`` (the browser's native tooltip) and, with JS on, the
same text in the figure's read-out line; without JS the page is complete. ``@media print`` keeps each
figure on one page and drops the navigation and the read-out lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1200px; padding: 16px 24px 48px; color: #111; background: #fff;
       font: 14px/1.45 "DejaVu Sans", Arial, Helvetica, sans-serif; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ccc; padding-bottom: 3px; }
p.sub { color: #444; margin: 0 0 10px; }
nav { margin: 8px 0 12px; }
nav a { margin-right: 14px; color: #1f4e8c; }
figure { margin: 8px 0 16px; }
figure .scroll { overflow-x: auto; }
svg.vm-svg, svg.ext-fig { max-width: 100%; height: auto; display: block; }
svg .region:hover rect, svg .e820:hover rect, svg .node:hover rect, svg .zone:hover rect,
svg .section-run:hover rect, svg .block-run:hover rect, svg .leaf-run:hover rect, svg .bar:hover rect,
svg .backing:hover rect, svg .ram-range:hover rect { stroke: #000; stroke-width: 2; }
svg .leaf-band:hover, svg .piece-band:hover { fill-opacity: 0.6; }
.readout { font: 12px "DejaVu Sans Mono", Consolas, monospace; color: #333; background: #f6f6f6;
           border: 1px solid #ddd; padding: 4px 8px; min-height: 1.6em; white-space: pre-wrap; margin: 4px 0; }
figcaption { color: #444; font-size: 13px; margin-top: 4px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
td.l, th.l, table.loads td, table.loads th { text-align: left; }
thead th { background: #eef2f7; }
b.best { color: #1d6b1d; }
.mono { font-family: "DejaVu Sans Mono", Consolas, monospace; }
.note { color: #555; font-size: 13px; }
.grid { display: flex; flex-wrap: wrap; gap: 16px; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  nav, .readout { display: none; }
  figure, table { break-inside: avoid; page-break-inside: avoid; }
  h2 { break-after: avoid; page-break-after: avoid; }
  a { color: inherit; text-decoration: none; }
  figure .scroll { overflow: visible; }
}
@page { size: A4 landscape; margin: 12mm; }
"""

# Hover read-out: copy the hovered region's <title> into its figure's read-out line. Native <title>
# tooltips work without it.
JS = """
(function () {
  document.querySelectorAll('figure').forEach(function (fig) {
    var out = fig.querySelector('.readout');
    if (!out) { return; }
    fig.addEventListener('mouseover', function (ev) {
      var el = ev.target;
      while (el && el !== fig) {
        var t = el.querySelector ? el.querySelector(':scope > title') : null;
        if (t) { out.textContent = t.textContent; return; }
        el = el.parentNode;
      }
    });
  });
})();
"""


def e(text: object) -> str:
    return escape(str(text), quote=True)


def figure(svg: str, caption: str, ident: str) -> str:
    return (f'<figure id="{e(ident)}"><div class="readout" aria-live="polite">hover a region for its range '
            f'and size</div><div class="scroll">{svg}</div><figcaption>{caption}</figcaption></figure>')


def table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "", raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they are trusted HTML from this package)."""
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{e(cls)}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document; ``sections`` = (id, heading, trusted inner HTML)."""
    nav = "".join(f'<a href="#{e(i)}">{e(h)}</a>' for i, h, _ in sections)
    body = "".join(f'<section id="{e(i)}"><h2>{e(h)}</h2>{inner}</section>' for i, h, inner in sections)
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(title)}</title><style>{CSS}</style></head>"
            f"<body><header><h1>{e(title)}</h1><p class=\"sub\">{subtitle}</p><nav>{nav}</nav></header>"
            f"<main>{body}</main><script>{JS}</script></body></html>\n")
