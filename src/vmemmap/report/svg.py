"""The report's drawings as standalone SVG strings (usable in the HTML report and in docs).

Three pictures, all drawn from the booted model, never from typed-in numbers:

* :func:`address_map_svg` -- the kernel virtual address map of an era (``vmemmap.layout``: the rows of
  the era's ``Documentation/x86/x86_64/mm.txt``), one row per region, lowest address on top as mm.txt
  lists them. Region sizes run from 4 KiB (vsyscall) to 64 PiB (5-level user space), so rows are drawn
  to a log scale (height grows by a fixed step per doubling) and every size is written out.
* :func:`physical_map_svg` -- the physical address space in lanes: the kernel's e820 table (after
  ``e820__memory_setup`` / ``trim_bios_range``), NUMA nodes, zones, present ``mem_section`` runs and
  memory blocks (``memory_dev_init``). One piecewise scale for all lanes: each stretch between two
  boundaries gets a width that grows with log2 of its size.
* :func:`vmemmap_leaves_svg` -- SPARSEMEM_VMEMMAP only: each node's RAM (pfn ranges, from
  ``memmap_pieces()``), the virtual range of its struct pages in the vmemmap window, and the physical
  pages backing those leaves (``vmemmap_populate`` → ``vmemmap_alloc_block_buf`` on the node:
  ``k.vmemmap_leaves``), linked band by band.

Everything is aggregated into runs (present sections, memory blocks, leaf runs): a 64 TiB machine with
524,288 sections draws a handful of elements. Every drawn region carries ``id``/``data-*`` attributes
and an SVG ``<title>`` (the native hover tooltip) giving its range and size.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from vmemmap.layout import Layout, Region

if TYPE_CHECKING:
    from vmemmap.kernel import Kernel

__all__ = [
    "address_map_svg",
    "physical_map_svg",
    "vmemmap_leaves_svg",
    "bar_chart_svg",
    "embed_svg",
    "size_text",
    "row_height",
    "section_runs",
    "block_runs",
    "leaf_runs",
]

SVG_NS = "http://www.w3.org/2000/svg"
PAGE_SHIFT = 12

# colours (print-friendly: mid saturation, text stays black)
REGION_COLOURS = {
    "user": "#d9d9d9",
    "direct-map": "#8fb8e8",
    "vmalloc": "#9fd89f",
    "vmemmap": "#ffb347",
    "kernel-text": "#c9a0dc",
    "modules": "#e3b5e8",
    "ldt-remap": "#c8e0e0",
    "kasan": "#e8d28f",
    "cpu-entry-area": "#a8d8d0",
    "espfix": "#a8d8d0",
    "efi": "#d8c8a8",
    "fixmap": "#b8c8f0",
    "vsyscall": "#f0b8b8",
}
E820_COLOURS = {
    "usable": "#9fd89f",
    "reserved": "#bdbdbd",
    "ACPI data": "#e8d28f",
    "ACPI NVS": "#e3b56f",
    "unusable": "#e88f8f",
    "persistent (type 7)": "#8fb8e8",
    "persistent (type 12)": "#8fb8e8",
    "soft reserved": "#d8c8a8",
}
NODE_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
                "#9c755f", "#bab0ac")
ZONE_COLOURS = {"DMA": "#f0b8b8", "DMA32": "#b8c8f0", "Normal": "#9fd89f", "Movable": "#e8d28f",
                "HighMem": "#d8c8a8", "Device": "#c9a0dc"}
FONT = "font-family:DejaVu Sans,Arial,Helvetica,sans-serif"
MONO = "font-family:DejaVu Sans Mono,Consolas,monospace"


def node_colour(nid: int) -> str:
    return NODE_COLOURS[nid % len(NODE_COLOURS)]


def size_text(n: int) -> str:
    """``1 TiB``, ``1.5 GiB``, ``552 KiB``, ``4 KiB``, ``12 B`` (binary units, at most 2 decimals)."""
    for unit, shift in (("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{n} B"


def _e(s: object) -> str:
    return escape(str(s), quote=True)


def _tip(title: str, start: int, end_excl: int) -> str:
    """The hover text of a drawn range: what, range (inclusive end, as mm.txt and e820 print), size."""
    return f"{title}\n{start:#018x} - {end_excl - 1:#018x}\nsize {size_text(end_excl - start)}"


def _svg_open(width: float, height: float, ident: str, label: str) -> str:
    return (f'<svg xmlns="{SVG_NS}" id="{_e(ident)}" class="vm-svg" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="{_e(label)}" '
            f'style="{FONT};font-size:12px">')


def _defs(hatch: str) -> str:
    """The hatch pattern for holes, under an id unique to its drawing (several share one page)."""
    return (f'<defs><pattern id="{hatch}" width="6" height="6" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f4f4f4"/>'
            '<line x1="0" y1="0" x2="0" y2="6" stroke="#c8c8c8" stroke-width="2"/></pattern></defs>')


# ====================================================================== kernel virtual address map

ROW_MIN = 16.0  # px for a 4 KiB (or smaller) region
ROW_STEP = 2.2  # px added per doubling of the size
GAP_ROW = 22.0  # an unlisted gap or the non-canonical hole


def row_height(size: int) -> float:
    """Height of a region's row: ``ROW_MIN + ROW_STEP * log2(size / 4 KiB)`` (log scale)."""
    return ROW_MIN + ROW_STEP * max(0.0, math.log2(max(size, 1)) - PAGE_SHIFT)


def _region_id(name: str) -> str:
    return "region-" + "".join(c if c.isalnum() or c == "-" else "-" for c in name)


def _kaslr_window(layout: Layout) -> tuple[int, int] | None:
    """``[vaddr_start, vaddr_end)`` of ``kernel_randomize_memory()`` when the layout is randomised."""
    if layout.kaslr_seed is None:
        return None
    from vmemmap.layout import kaslr_plan

    try:
        plan = kaslr_plan(layout.era, la57=layout.la57, max_pfn=layout.max_pfn)
    except Exception:  # noqa: BLE001 - the window is decoration; the map itself is drawn anyway
        return None
    return plan.vaddr_start, plan.vaddr_end


KASLR_REGIONS = ("direct-map", "vmalloc", "vmemmap")


def address_map_svg(layout: Layout, width: int = 960) -> str:
    """The kernel virtual address map: a row per region (log-scale heights), vmemmap highlighted."""
    rows: list[tuple[str, Region | None, int, int]] = []  # kind, region, start, end exclusive
    prev_end: int | None = None
    for r in layout.regions:
        if prev_end is not None and r.start > prev_end:
            kind = "noncanonical" if prev_end <= (1 << 63) <= r.start else "gap"
            rows.append((kind, None, prev_end, r.start))
        rows.append(("region", r, r.start, r.end + 1))
        prev_end = r.end + 1
    x_addr, x_bar, bar_w = 8, 178, 300
    x_desc = x_bar + bar_w + 14
    top = 34
    heights = [row_height(e - s) if kind == "region" else GAP_ROW for kind, _, s, e in rows]
    total = top + sum(heights) + 20
    kwin = _kaslr_window(layout)
    out = [_svg_open(width, total, "address-map-svg", f"{layout.era} kernel virtual address map"),
           _defs("am-hatch")]
    out.append(f'<text x="{x_addr}" y="16" style="font-weight:bold">start address</text>'
               f'<text x="{x_bar}" y="16" style="font-weight:bold">region (row height: log2 of size)</text>'
               f'<text x="{x_desc}" y="16" style="font-weight:bold">mm.txt description</text>')
    y = float(top)
    ys: list[tuple[float, float, int, int]] = []
    for (kind, r, s, e), h in zip(rows, heights):
        ys.append((y, h, s, e))
        mid = y + h / 2 + 4
        if kind != "region":
            label = "non-canonical hole" if kind == "noncanonical" else "not listed in mm.txt"
            cls = "gapline"
            out.append(f'<g class="{cls}" data-start="{s:#x}" data-end="{e - 1:#x}" data-size="{e - s}">'
                       f'<title>{_e(_tip(label, s, e))}</title>'
                       f'<path d="M{x_bar} {y + h / 2:.1f} l15 -5 l15 10 l15 -10 l15 10 l15 -5" fill="none" '
                       f'stroke="#888"/>'
                       f'<text x="{x_bar + 84}" y="{mid:.1f}" style="font-size:11px;fill:#555">{_e(label)} '
                       f'({_e(size_text(e - s))})</text></g>')
            y += h
            continue
        assert r is not None
        hole = r.hole
        vm = r.name == "vmemmap"
        cls = "region" + (" hole" if hole else "") + (" vmemmap-window" if vm else "")
        fill = "url(#am-hatch)" if hole else REGION_COLOURS.get(r.name, "#cfe3e3")
        stroke = ' stroke="#b34700" stroke-width="3"' if vm else ' stroke="#555" stroke-width="0.7"'
        name = r.name.replace("-", " ")
        fs = 11 if h < 22 else 12
        kaslr = layout.kaslr_seed is not None and r.name in KASLR_REGIONS
        label = f"{name} · {size_text(r.size)}" + (" · KASLR" if kaslr else "")
        out.append(f'<g class="{cls}" id="{_region_id(r.name)}" data-name="{_e(r.name)}" data-start="{r.start:#x}" '
                   f'data-end="{r.end:#x}" data-size="{r.size}">'
                   f'<title>{_e(_tip(r.description, r.start, r.end + 1))}</title>'
                   f'<rect x="{x_bar}" y="{y:.1f}" width="{bar_w}" height="{h - 1:.1f}" fill="{fill}"{stroke}/>'
                   f'<text x="{x_addr}" y="{y + fs:.1f}" style="{MONO};font-size:11px">{r.start:016x}</text>'
                   f'<text class="label" x="{x_bar + 8}" y="{mid:.1f}" style="pointer-events:none;font-size:{fs}px'
                   f'{";font-weight:bold" if vm else ""}">{_e(label)}</text>'
                   f'<text x="{x_desc}" y="{mid:.1f}" style="font-size:11px'
                   f'{";fill:#666" if hole else ""}">{_e(r.description)}</text></g>')
        y += h
    if kwin is not None:
        lo, hi = kwin
        y0 = next((yy for yy, hh, s, e in ys if s <= lo < e), None)
        y1 = next((yy + hh for yy, hh, s, e in ys if s < hi <= e), None)
        if y0 is not None and y1 is not None:
            xb = x_bar - 12
            out.append(f'<g id="kaslr-window" data-start="{lo:#x}" data-end="{hi - 1:#x}">'
                       f'<title>{_e(_tip("KASLR randomisation window (kernel_randomize_memory)", lo, hi))}</title>'
                       f'<path d="M{xb + 8} {y0:.1f} h-8 V{y1:.1f} h8" fill="none" stroke="#b34700" '
                       f'stroke-width="2"/>'
                       f'<text transform="translate({xb - 4},{(y0 + y1) / 2:.1f}) rotate(-90)" text-anchor="middle" '
                       f'style="font-size:11px;fill:#b34700">KASLR window</text></g>')
    out.append(f'<text x="{x_addr}" y="{total - 6:.0f}" style="font-size:11px;fill:#555">Lowest address on top '
               f'(as mm.txt). Not to linear scale: a row is {ROW_MIN:g} px for 4 KiB plus {ROW_STEP:g} px per '
               f'doubling of its size; sizes are written out. Hatched rows are holes.</text>')
    out.append("</svg>")
    return "".join(out)


# ====================================================================== runs (aggregation)


def section_runs(nrs: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive present section numbers as ``(first, last_exclusive)`` runs (vectorised)."""
    if len(nrs) == 0:
        return []
    nrs = np.asarray(nrs, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(nrs) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(nrs)]))
    return [(int(nrs[a]), int(nrs[b - 1]) + 1) for a, b in zip(starts.tolist(), ends.tolist())]


@dataclass(frozen=True)
class BlockRun:
    first: int  # first block number
    last: int  # last block number (inclusive)
    start_pfn: int
    end_pfn: int
    nid: int
    state: str
    zone: str | None


def block_runs(blocks: Iterable[Any]) -> list[BlockRun]:
    """Adjacent memory blocks with the same node, state and zone as one run."""
    out: list[BlockRun] = []
    for b in sorted(blocks, key=lambda x: x.nr):
        if out:
            p = out[-1]
            if p.last + 1 == b.nr and p.end_pfn == b.start_pfn and (p.nid, p.state, p.zone) == (b.nid, b.state, b.zone):
                out[-1] = BlockRun(p.first, b.nr, p.start_pfn, b.start_pfn + b.nr_pages, p.nid, p.state, p.zone)
                continue
        out.append(BlockRun(b.nr, b.nr, b.start_pfn, b.start_pfn + b.nr_pages, b.nid, b.state, b.zone))
    return out


@dataclass(frozen=True)
class LeafRun:
    vstart: int
    vend: int
    pstart: int
    pend: int  # the backing's end (pstart + size when physically contiguous)
    page_size: int
    node: int
    contiguous: bool


def leaf_runs(k: Kernel, limit: int = 400) -> list[LeafRun]:
    """``k.vmemmap_leaves`` with runs merged when contiguous in both virtual and physical address and on
    the same node; beyond ``limit`` runs, virtually adjacent runs of one node are merged further and
    their backing drawn as the span it covers (``contiguous=False``)."""
    out: list[LeafRun] = []
    for v in sorted(k.vmemmap_leaves, key=lambda x: x.vstart):
        n = v.vend - v.vstart
        if out:
            p = out[-1]
            if p.vend == v.vstart and p.pend == v.pstart and p.node == v.node and p.page_size == v.page_size:
                out[-1] = LeafRun(p.vstart, v.vend, p.pstart, v.pstart + n, p.page_size, p.node, p.contiguous)
                continue
        out.append(LeafRun(v.vstart, v.vend, v.pstart, v.pstart + n, v.page_size, v.node, True))
    if len(out) > limit:
        merged: list[LeafRun] = []
        for r in out:
            if merged and merged[-1].vend == r.vstart and merged[-1].node == r.node:
                p = merged[-1]
                merged[-1] = LeafRun(p.vstart, r.vend, min(p.pstart, r.pstart), max(p.pend, r.pend),
                                     min(p.page_size, r.page_size), p.node, False)
            else:
                merged.append(r)
        out = merged
    return out


# ====================================================================== piecewise scales


class PiecewiseScale:
    """x (or y) position of an address: the span between consecutive breakpoints gets a length that grows
    with log2 of its size (``1 + log2(size / 4 KiB)`` units), so 4 KiB and 64 TiB stretches are both
    visible; within a stretch the position is linear."""

    def __init__(self, points: Iterable[int], length: float, offset: float = 0.0) -> None:
        pts = sorted(set(points))
        if len(pts) < 2:
            pts = [pts[0], pts[0] + 1] if pts else [0, 1]
        self.points = pts
        w = [1.0 + max(0.0, math.log2(max(b - a, 1)) - PAGE_SHIFT) for a, b in zip(pts, pts[1:])]
        scale = length / sum(w)
        self.pos = [offset]
        for x in w:
            self.pos.append(self.pos[-1] + x * scale)

    def __call__(self, addr: int) -> float:
        import bisect

        pts = self.points
        if addr <= pts[0]:
            return self.pos[0]
        if addr >= pts[-1]:
            return self.pos[-1]
        i = bisect.bisect_right(pts, addr) - 1
        a, b = pts[i], pts[i + 1]
        return self.pos[i] + (self.pos[i + 1] - self.pos[i]) * (addr - a) / (b - a)


class CompressedScale:
    """Linear over the given intervals, with each gap between them drawn as a fixed ``gap`` px break."""

    def __init__(self, intervals: Sequence[tuple[int, int]], length: float, offset: float = 0.0,
                 gap: float = 14.0, min_len: float = 3.0) -> None:
        iv = sorted((a, b) for a, b in intervals if b > a)
        merged: list[list[int]] = []
        for a, b in iv:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.iv = [(a, b) for a, b in merged] or [(0, 1)]
        total = sum(b - a for a, b in self.iv)
        avail = max(length - gap * (len(self.iv) - 1) - min_len * len(self.iv), length * 0.2)
        self.starts: list[float] = []
        self.lens: list[float] = []
        pos = offset
        for a, b in self.iv:
            ln = min_len + avail * (b - a) / total
            self.starts.append(pos)
            self.lens.append(ln)
            pos += ln + gap
        self.end = pos - gap

    def __call__(self, addr: int) -> float:
        for (a, b), s, ln in zip(self.iv, self.starts, self.lens):
            if addr < a:
                return s
            if addr <= b:
                return s + ln * (addr - a) / (b - a)
        return self.end

    def breaks(self) -> list[float]:
        """Mid-points of the gaps (where a break mark is drawn)."""
        return [s + ln + 7 for s, ln in zip(self.starts[:-1], self.lens[:-1])]


# ====================================================================== physical map


def _lane_rect(x0: float, x1: float, y: float, h: float, fill: str, tip: str, cls: str, label: str = "",
               ident: str = "", extra: str = "") -> str:
    w = max(x1 - x0, 1.0)
    idattr = f' id="{_e(ident)}"' if ident else ""
    text = ""
    if label and w > 6.6 * len(label) + 8:
        text = (f'<text x="{x0 + 4:.1f}" y="{y + h / 2 + 4:.1f}" style="pointer-events:none;font-size:11px">'
                f'{_e(label)}</text>')
    elif label and w > 24:
        n = max(1, int((w - 8) / 6.4) - 1)
        text = (f'<text x="{x0 + 3:.1f}" y="{y + h / 2 + 4:.1f}" style="pointer-events:none;font-size:10px">'
                f'{_e(label[:n])}…</text>')
    return (f'<g class="{cls}"{idattr}{extra}><title>{_e(tip)}</title>'
            f'<rect x="{x0:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}" stroke="#555" '
            f'stroke-width="0.5"/>{text}</g>')


def physical_map_svg(k: Kernel, width: int = 1100, blocks: Iterable[Any] | None = None) -> str:
    """The physical address space in lanes (e820, nodes, zones, sections present, memory blocks)."""
    era = k.era
    e820 = list(k.e820)
    nodes = sorted(k.nodes.values(), key=lambda n: n.nid)
    zones = [z for z in k.zones if z.present_pages]
    st = getattr(k.model, "sections", None)
    sec_shift = era.pfn_section_shift + PAGE_SHIFT
    runs = section_runs(st.present_array()) if st is not None else []
    bruns = block_runs(blocks) if blocks is not None else []
    top_addr = max([e for _, e, _ in e820] + [n.end_pfn << PAGE_SHIFT for n in nodes])
    pts: set[int] = {0, top_addr}
    for s, e, _ in e820:
        pts.update((s, e))
    for n in nodes:
        for s, e in n.ranges:
            pts.update((s << PAGE_SHIFT, e << PAGE_SHIFT))
    for z in zones:
        pts.update((z.start_pfn << PAGE_SHIFT, z.end_pfn << PAGE_SHIFT))
    for a, b in runs:
        pts.update((a << sec_shift, b << sec_shift))
    for r in bruns:
        pts.update((r.start_pfn << PAGE_SHIFT, r.end_pfn << PAGE_SHIFT))
    x0, lw = 130.0, float(width - 140)
    sc = PiecewiseScale(pts, lw, x0)
    lane_h, lane_gap = 26.0, 10.0
    lanes = ["e820 (kernel)", "NUMA nodes", "zones", "sections present", "memory blocks"]
    top = 30.0
    axis_y = top + len(lanes) * (lane_h + lane_gap)
    height = axis_y + 110
    out = [_svg_open(width, height, "physical-map-svg", f"{k.machine.name} physical memory map"),
           _defs("pm-hatch")]
    out.append(f'<text x="8" y="18" style="font-weight:bold">{_e(k.machine.name)}: physical address space '
               f'0 - {top_addr:#x} ({_e(size_text(top_addr))})</text>')
    for i, name in enumerate(lanes):
        out.append(f'<text x="8" y="{top + i * (lane_h + lane_gap) + lane_h / 2 + 4:.1f}" '
                   f'style="font-size:12px">{_e(name)}</text>')
    # background: holes (no e820 entry)
    y = top
    out.append(f'<rect x="{x0}" y="{y}" width="{lw}" height="{lane_h}" fill="url(#pm-hatch)" stroke="#999" '
               f'stroke-width="0.5"><title>no e820 entry: hole</title></rect>')
    for s, e, t in e820:
        out.append(_lane_rect(sc(s), sc(e), y, lane_h, E820_COLOURS.get(t, "#cfe3e3"), _tip(f"e820 {t}", s, e),
                              f"e820 e820-{t.replace(' ', '-')}", t, extra=f' data-type="{_e(t)}"'))
    y += lane_h + lane_gap
    for n in nodes:
        for s, e in n.ranges:
            a, b = s << PAGE_SHIFT, e << PAGE_SHIFT
            out.append(_lane_rect(sc(a), sc(b), y, lane_h, node_colour(n.nid), _tip(f"node {n.nid} memory", a, b),
                                  "node", f"node {n.nid}", extra=f' data-nid="{n.nid}"'))
    y += lane_h + lane_gap
    for z in zones:
        a, b = z.start_pfn << PAGE_SHIFT, z.end_pfn << PAGE_SHIFT
        out.append(_lane_rect(sc(a), sc(b), y, lane_h, ZONE_COLOURS.get(z.name, "#cfe3e3"),
                              _tip(f"node {z.nid} zone {z.name} ({z.present_pages} pages present)", a, b),
                              "zone", f"{z.name}", extra=f' data-zone="{_e(z.name)}" data-nid="{z.nid}"'))
    y += lane_h + lane_gap
    if st is None:
        out.append(f'<text x="{x0 + 6}" y="{y + lane_h / 2 + 4:.1f}" style="font-size:11px;fill:#555">'
                   f'{_e(k.model_name)}: no mem_section table</text>')
    for a, b in runs:
        pa, pb = a << sec_shift, b << sec_shift
        out.append(_lane_rect(sc(pa), sc(pb), y, lane_h, "#8fb8e8",
                              _tip(f"sections {a}-{b - 1} present ({b - a} x {size_text(1 << sec_shift)})", pa, pb),
                              "section-run", f"sections {a}-{b - 1}", extra=f' data-first="{a}" data-count="{b - a}"'))
    y += lane_h + lane_gap
    if not bruns:
        out.append(f'<text x="{x0 + 6}" y="{y + lane_h / 2 + 4:.1f}" style="font-size:11px;fill:#555">'
                   f'no memory blocks (no memory hot-plug sysfs for {_e(k.model_name)} in {_e(era.name)})</text>')
    for r in bruns:
        a, b = r.start_pfn << PAGE_SHIFT, r.end_pfn << PAGE_SHIFT
        fill = "#9fd89f" if r.state == "online" else "#e8d28f"
        name = f"memory{r.first}" + (f"-{r.last}" if r.last != r.first else "")
        out.append(_lane_rect(sc(a), sc(b), y, lane_h, fill,
                              _tip(f"{name} {r.state} node {r.nid} zone {r.zone or 'none'} "
                                   f"({r.last - r.first + 1} blocks)", a, b),
                              f"block-run block-{r.state}", f"{name} {r.state}",
                              extra=f' data-state="{_e(r.state)}" data-nid="{r.nid}"'))
    # axis: tick at every breakpoint, labels where there is room (two staggered rows)
    out.append(f'<line x1="{x0}" y1="{axis_y}" x2="{x0 + lw}" y2="{axis_y}" stroke="#333"/>')
    last_right = [-1e9, -1e9]
    for i, p in enumerate(sc.points):
        x = sc.pos[i]
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{axis_y + 4}" stroke="#000" '
                   f'stroke-opacity="0.12"/>')
        text = f"{p:#x}"
        tw = 6.1 * len(text)
        anchor = "end" if x + tw / 2 > x0 + lw + 8 else ("start" if x - tw / 2 < 4 else "middle")
        left = x - tw if anchor == "end" else (x if anchor == "start" else x - tw / 2)
        for row in (0, 1):
            if left > last_right[row] + 8:
                last_right[row] = left + tw
                ty = axis_y + 16 + row * 14
                out.append(f'<text x="{x:.1f}" y="{ty}" text-anchor="{anchor}" style="{MONO};font-size:10px">'
                           f'{text}</text>')
                break
    out.append(f'<text x="8" y="{axis_y + 58}" style="font-size:11px;fill:#555">Piecewise scale: each stretch '
               f'between two boundaries is 1 + log2(size / 4 KiB) units wide, linear inside; hover for exact '
               f'ranges.</text>')
    # legend
    lx = 8.0
    ly = axis_y + 76
    seen_types = list(dict.fromkeys(t for _, _, t in e820))
    for t in seen_types:
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{E820_COLOURS.get(t, "#cfe3e3")}" '
                   f'stroke="#555" stroke-width="0.5"/><text x="{lx + 16}" y="{ly + 10}" '
                   f'style="font-size:11px">{_e(t)}</text>')
        lx += 30 + 6.5 * len(t)
    out.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="url(#pm-hatch)" stroke="#555" '
               f'stroke-width="0.5"/><text x="{lx + 16}" y="{ly + 10}" style="font-size:11px">hole</text>')
    out.append("</svg>")
    return "".join(out)


# ====================================================================== vmemmap leaves → backing


def _band(xa: float, ya0: float, ya1: float, xb: float, yb0: float, yb1: float, fill: str, tip: str,
          cls: str) -> str:
    c = (xa + xb) / 2
    d = (f"M{xa:.1f} {ya0:.1f} C{c:.1f} {ya0:.1f} {c:.1f} {yb0:.1f} {xb:.1f} {yb0:.1f} L{xb:.1f} {yb1:.1f} "
         f"C{c:.1f} {yb1:.1f} {c:.1f} {ya1:.1f} {xa:.1f} {ya1:.1f} Z")
    return (f'<path class="{cls}" d="{d}" fill="{fill}" fill-opacity="0.35" stroke="{fill}">'
            f'<title>{_e(tip)}</title></path>')


def vmemmap_leaves_svg(k: Kernel, width: int = 1100, height: int = 520) -> str | None:
    """RAM (per node) → struct pages in the vmemmap window → physical backing of the leaves; ``None`` when
    the model has no vmemmap (FLATMEM, DISCONTIGMEM, classic SPARSEMEM)."""
    runs = leaf_runs(k)
    if not runs:
        return None
    sp = k.era.struct_page_size
    pieces = k.model.memmap_pieces()
    nodes = sorted(k.nodes.values(), key=lambda n: n.nid)
    top, bot = 46.0, float(height - 40)
    span = bot - top
    col_w = 150.0
    xa, xb, xc = 10.0, width / 2 - col_w / 2, width - col_w - 10.0
    ram_iv = [(s << PAGE_SHIFT, e << PAGE_SHIFT) for n in nodes for s, e in n.ranges]
    sa = CompressedScale([(p.start_pfn << PAGE_SHIFT, p.end_pfn << PAGE_SHIFT) for p in pieces] + ram_iv, span, top)
    sb = CompressedScale([(r.vstart, r.vend) for r in runs], span, top)
    sc = CompressedScale(ram_iv + [(r.pstart, r.pend) for r in runs], span, top)
    page = {4096: "4 KiB", 1 << 21: "2 MiB", 1 << 30: "1 GiB"}
    sizes = sorted({r.page_size for r in runs})
    out = [_svg_open(width, height, "vmemmap-leaves-svg", "vmemmap leaves and their backing")]
    out.append(f'<text x="{xa}" y="18" style="font-weight:bold">RAM described (pfns)</text>'
               f'<text x="{xb}" y="18" style="font-weight:bold">vmemmap window (virtual)</text>'
               f'<text x="{xc}" y="18" style="font-weight:bold">leaf backing (physical)</text>'
               f'<text x="{xa}" y="34" style="font-size:11px;fill:#555">struct page = {sp} B: '
               f'{size_text(1 << 21)} of memmap describes {size_text((1 << 21) // sp << PAGE_SHIFT)} of RAM</text>'
               f'<text x="{xb}" y="34" style="font-size:11px;fill:#555">'
               f'{_e(", ".join(page.get(s, str(s)) for s in sizes))} leaves</text>')
    for col, scale in ((xa, sa), (xc, sc)):
        for n in nodes:
            for s, e in n.ranges:
                a, b = s << PAGE_SHIFT, e << PAGE_SHIFT
                out.append(f'<g class="ram-range" data-nid="{n.nid}"><title>{_e(_tip(f"node {n.nid} RAM", a, b))}'
                           f'</title><rect x="{col}" y="{scale(a):.1f}" width="{col_w}" '
                           f'height="{max(scale(b) - scale(a), 1):.1f}" fill="{node_colour(n.nid)}" '
                           f'fill-opacity="{0.35 if col == xa else 0.15}" stroke="#555" stroke-width="0.5"/></g>')
    for p in pieces:
        a, b = p.start_pfn << PAGE_SHIFT, p.end_pfn << PAGE_SHIFT
        va, vb = p.vaddr, p.vaddr + (p.end_pfn - p.start_pfn) * sp
        tip = (f"node {p.nid}: pfns {p.start_pfn:#x}-{p.end_pfn - 1:#x} ({size_text(b - a)} of address space)\n"
               f"struct pages {va:#018x} - {vb - 1:#018x} ({size_text(vb - va)})")
        out.append(_band(xa + col_w, sa(a), sa(b), xb, sb(va), sb(vb), node_colour(p.nid), tip, "piece-band"))
    for i, r in enumerate(runs):
        y0, y1 = sb(r.vstart), sb(r.vend)
        n = r.vend - r.vstart
        leaves = n // r.page_size
        tip = (_tip(f"vmemmap leaf run on node {r.node}: {leaves} x {page.get(r.page_size, r.page_size)}",
                    r.vstart, r.vend)
               + f"\nbacked by {r.pstart:#x} - {r.pend - 1:#x}" + ("" if r.contiguous else " (span, not contiguous)"))
        out.append(f'<g class="leaf-run" id="leaf-run-{i}" data-node="{r.node}" data-leaves="{leaves}" '
                   f'data-page-size="{r.page_size}"><title>{_e(tip)}</title>'
                   f'<rect x="{xb}" y="{y0:.1f}" width="{col_w}" height="{max(y1 - y0, 1.5):.1f}" '
                   f'fill="{node_colour(r.node)}" stroke="#333" stroke-width="0.6"/>'
                   + (f'<text x="{xb + 4}" y="{(y0 + y1) / 2 + 4:.1f}" '
                      f'style="pointer-events:none;font-size:10px;fill:#fff">'
                      f'{leaves} x {_e(page.get(r.page_size, str(r.page_size)))}</text>' if y1 - y0 > 14 else "")
                   + "</g>")
        p0, p1 = sc(r.pstart), sc(r.pend)
        btip = _tip(f"backing of leaf run {i} (node {r.node})", r.pstart, r.pend)
        out.append(f'<g class="backing" data-node="{r.node}"><title>{_e(btip)}'
                   f'</title><rect x="{xc}" y="{p0:.1f}" width="{col_w}" height="{max(p1 - p0, 2):.1f}" '
                   f'fill="{node_colour(r.node)}" stroke="#333" stroke-width="0.6"/></g>')
        out.append(_band(xb + col_w, y0, y1, xc, p0, max(p1, p0 + 2), node_colour(r.node),
                         f"leaf run {i} -> backing on node {r.node}", "leaf-band"))
    for scale, x in ((sa, xa), (sb, xb), (sc, xc)):
        for yy in scale.breaks():
            out.append(f'<text x="{x + col_w / 2}" y="{yy + 4:.1f}" text-anchor="middle" '
                       f'style="font-size:10px;fill:#777">≈ gap ≈</text>')
    ly = height - 14
    lx = xa
    for n in nodes:
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{node_colour(n.nid)}"/>'
                   f'<text x="{lx + 16}" y="{ly}" style="font-size:11px">node {n.nid}</text>')
        lx += 70
    out.append(f'<text x="{lx + 10}" y="{ly}" style="font-size:11px;fill:#555">Each column is linear over what '
               f'it shows, gaps compressed (≈ gap ≈).</text>')
    out.append("</svg>")
    return "".join(out)


# ====================================================================== bar charts (cost)


def bar_chart_svg(title: str, items: Sequence[tuple[str, float]], ident: str, unit: str = "",
                  width: int = 520) -> str:
    """A horizontal bar chart (one bar per memory model), values written at the bars' ends."""
    bar_h, gap, top = 22.0, 8.0, 30.0
    left = 16.0 + 7.0 * max((len(n) for n, _ in items), default=8)
    height = top + len(items) * (bar_h + gap) + 10
    vmax = max((v for _, v in items), default=0.0) or 1.0
    avail = width - left - 90
    out = [_svg_open(width, height, ident, title)]
    out.append(f'<text x="8" y="18" style="font-weight:bold">{_e(title)}</text>')
    y = top
    for name, v in items:
        w = avail * v / vmax
        out.append(f'<g class="bar" data-model="{_e(name)}" data-value="{v:.6g}"><title>{_e(name)}: {v:.4g} {_e(unit)}'
                   f'</title><text x="8" y="{y + bar_h / 2 + 4:.1f}" style="font-size:12px">{_e(name)}</text>'
                   f'<rect x="{left}" y="{y:.1f}" width="{max(w, 1):.1f}" height="{bar_h}" fill="#4e79a7"/>'
                   f'<text x="{left + max(w, 1) + 6:.1f}" y="{y + bar_h / 2 + 4:.1f}" style="font-size:12px">'
                   f'{v:.3g}</text></g>')
        y += bar_h + gap
    out.append("</svg>")
    return "".join(out)


# ====================================================================== figures from other tools


_PROLOGUE = re.compile(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<metadata\b.*?</metadata>", re.S)
_ID_REF = re.compile(r'(\bid="|href="#|url\(#)([^")]+)')
_FORBIDDEN = {"script", "foreignObject", "image", "iframe", "audio", "video", "a"}


def embed_svg(text: str, prefix: str) -> str:
    """An SVG file (e.g. a matplotlib figure of ``vmemmap experiment``) made fit to inline in the report:
    XML prologue, DOCTYPE and ``<metadata>`` dropped, every ``id`` (and ``#id`` reference) prefixed so that
    several figures can share a page. Raises ``ValueError`` when the file is not well-formed SVG or would
    load or run anything (script, foreignObject, image, a link or ``url()`` outside the document, an
    ``on*`` handler, ``@import``)."""
    body = _PROLOGUE.sub("", text).strip()
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise ValueError(f"not well-formed XML: {e}") from None
    if root.tag != f"{{{SVG_NS}}}svg":
        raise ValueError("not an SVG document")
    for el in root.iter():
        local = el.tag.rsplit("}", 1)[-1]
        if local in _FORBIDDEN:
            raise ValueError(f"has a <{local}> element")
        for k, v in el.attrib.items():
            name = k.rsplit("}", 1)[-1]
            if name.lower().startswith("on"):
                raise ValueError(f"has an event handler ({name})")
            if name == "href" and not v.startswith("#"):
                raise ValueError("links outside the document")  # the address itself is not repeated
            if "url(" in v and not all(u.startswith("#") for u in re.findall(r"url\(\s*['\"]?([^)'\"]*)", v)):
                raise ValueError("refers to an external url()")
        if local == "style" and el.text and ("@import" in el.text or re.search(r"url\(\s*['\"]?[^#\s'\")]", el.text)):
            raise ValueError("its stylesheet loads something")
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    body = _ID_REF.sub(lambda m: m.group(1) + (f"{prefix}-{m.group(2)}" if m.group(2) in ids else m.group(2)), body)
    return re.sub(r"<svg\b", '<svg class="ext-fig"', body, count=1)
