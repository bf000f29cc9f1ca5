"""`vmemmap report`: one self-contained HTML file per machine and era.

Checks the page's structure (well-formed inline SVG, the expected regions with their ranges and sizes
read back from the model), self-containment (nothing fetched from anywhere: no src, no external href, no
url() but in-document fragments), the aggregation that keeps a 64 TiB machine small, the run helpers
against naive versions, and the command line (--json summary, -o -, one-line errors).
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from vmemmap.cli import main
from vmemmap.eras import era_names, load_era
from vmemmap.kernel import BootOptions, boot
from vmemmap.layout import build_layout
from vmemmap.machine import builtin_machines, load_machine
from vmemmap.report import CostSpec, build_report
from vmemmap.report.svg import (PiecewiseScale, address_map_svg, block_runs, embed_svg, leaf_runs, row_height,
                                section_runs, size_text)

SVG = "{http://www.w3.org/2000/svg}"
VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "area", "base", "col", "embed", "source", "track"}


class _Checker(HTMLParser):
    """Collects tags and attributes; checks every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.tags: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for k, v in attrs:
            self.attrs.append((tag, k, v))
        if tag not in VOID:
            self.stack.append(tag)
        self._in_script = tag == "script"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for k, v in attrs:
            self.attrs.append((tag, k, v))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def check_self_contained(doc: str) -> _Checker:
    """The page is complete on its own: well nested, no resource fetched from anywhere."""
    assert doc.startswith("<!DOCTYPE html>")
    p = _Checker()
    p.feed(doc)
    p.close()
    assert p.errors == [] and p.stack == [], (p.errors, p.stack)
    for tag, k, v in p.attrs:
        assert k not in ("src", "srcset", "action", "formaction", "poster", "data"), (tag, k, v)
        if k in ("href", "xlink:href"):
            assert v is not None and v.startswith("#"), (tag, k, v)
    for tag in ("link", "img", "iframe", "object", "embed", "image", "audio", "video", "source", "foreignobject"):
        assert tag not in p.tags, tag
    assert p.tags.count("script") == 1  # ours, inline
    assert "@import" not in doc
    for m in re.finditer(r"url\(([^)]*)\)", doc):
        assert m.group(1).startswith("#"), m.group(0)
    # namespace names (xmlns="http://www.w3.org/2000/svg", xmlns:xlink=...) are identifiers, never fetched
    assert re.search(r"(?i)https?://", re.sub(r'\bxmlns(:\w+)?="[^"]*"', "", doc)) is None
    for js in p.scripts:  # no fetch, no dynamic loading in the inline script
        for word in ("fetch(", "XMLHttpRequest", "import(", "WebSocket", "eval(", ".src"):
            assert word not in js, word
    return p


def svgs(doc: str) -> dict[str, ET.Element]:
    """Every inline <svg>, parsed as XML (so each is well formed), by id (``svg-N`` when it has none)."""
    out = {}
    for i, m in enumerate(re.finditer(r"<svg\b.*?</svg>", doc, re.S)):
        el = ET.fromstring(m.group(0))
        out[el.get("id") or f"svg-{i}"] = el
    return out


def by_id(root: ET.Element, ident: str) -> ET.Element:
    for el in root.iter():
        if el.get("id") == ident:
            return el
    raise AssertionError(f"no element #{ident}")


def title_of(el: ET.Element) -> str:
    t = el.find(f"{SVG}title")
    assert t is not None and t.text
    return t.text


# ---------------------------------------------------------------------- helpers


def test_size_text() -> None:
    assert size_text(4096) == "4 KiB"
    assert size_text(1 << 40) == "1 TiB"
    assert size_text(3 << 29) == "1.5 GiB"
    assert size_text(0x8A000) == "552 KiB"  # the 6.1 fixmap row: ffffffffff576000..ffffffffff5fffff
    assert size_text(64 << 50) == "64 PiB"
    assert size_text(100) == "100 B"


def test_row_height_is_log_scale() -> None:
    """Each doubling adds the same height; 64 TiB is not 2^34 times as tall as 4 KiB."""
    h4k, h8k, h2m, h1g = row_height(4096), row_height(8192), row_height(1 << 21), row_height(1 << 30)
    assert (h1g - h2m) == pytest.approx(9 * (h8k - h4k))
    assert row_height(1 << 46) / row_height(4096) < 10


@given(st.sets(st.integers(0, 5000), max_size=300))
@settings(max_examples=60, deadline=None)
def test_section_runs_match_naive(nrs: set[int]) -> None:
    arr = np.array(sorted(nrs), dtype=np.int64)
    runs = section_runs(arr)
    assert [n for a, b in runs for n in range(a, b)] == sorted(nrs)
    assert all(b2 > a2 and a2 > b1 for (a1, b1), (a2, b2) in zip(runs, runs[1:]))  # maximal: a gap between runs


@given(st.lists(st.integers(1, 1 << 40), min_size=2, max_size=30, unique=True))
@settings(max_examples=60, deadline=None)
def test_piecewise_scale_monotonic(points: list[int]) -> None:
    sc = PiecewiseScale(points, 1000.0, 10.0)
    pts = sorted(points)
    xs = [sc(p) for p in pts]
    assert xs[0] == pytest.approx(10.0) and xs[-1] == pytest.approx(1010.0)
    assert all(b > a for a, b in zip(xs, xs[1:]))
    # a stretch's width is 1 + log2(size / 4 KiB) units (at least 1)
    w = [1 + max(0.0, math.log2(b - a) - 12) for a, b in zip(pts, pts[1:])]
    unit = 1000.0 / sum(w)
    for (a, b), wi in zip(zip(pts, pts[1:]), w):
        assert sc(b) - sc(a) == pytest.approx(wi * unit)


# ---------------------------------------------------------------------- the address map


@pytest.mark.parametrize("era,la57,seed", [("2.6.21-seed", False, None), ("6.1", False, None),
                                           ("6.1", True, 7), ("4.20", False, 3)])
def test_address_map_regions_and_tooltips(era: str, la57: bool, seed: int | None) -> None:
    lay = build_layout(load_era(era), la57=la57, kaslr_seed=seed)
    root = ET.fromstring(address_map_svg(lay))
    for r in lay.regions:
        el = by_id(root, "region-" + r.name)
        tip = title_of(el)
        assert tip.splitlines() == [r.description, f"{r.start:#018x} - {r.end:#018x}", f"size {size_text(r.size)}"]
        assert int(el.get("data-start"), 16) == r.start and int(el.get("data-size")) == r.size
        rect = el.find(f"{SVG}rect")
        assert float(rect.get("height")) == pytest.approx(row_height(r.size) - 1, abs=0.06)
    vm = by_id(root, "region-vmemmap")
    assert "vmemmap-window" in vm.get("class")
    assert int(vm.get("data-start"), 16) == lay.vmemmap_base
    # rows top to bottom in address order
    ys = [float(by_id(root, "region-" + r.name).find(f"{SVG}rect").get("y")) for r in lay.regions]
    assert ys == sorted(ys)
    kw = [el for el in root.iter() if el.get("id") == "kaslr-window"]
    assert len(kw) == (1 if seed is not None else 0)
    if seed is not None:
        from vmemmap.layout import kaslr_plan

        plan = kaslr_plan(era, la57=la57)
        assert int(kw[0].get("data-start"), 16) == plan.vaddr_start
        assert int(kw[0].get("data-end"), 16) == plan.vaddr_end - 1
        for name in ("direct-map", "vmalloc", "vmemmap"):
            assert "KASLR" in "".join(by_id(root, "region-" + name).itertext())


# ---------------------------------------------------------------------- whole reports


def test_report_structure_qemu_2g() -> None:
    m = load_machine("qemu-2g")
    rep = build_report(m, load_era("6.1"))
    doc = rep.html
    check_self_contained(doc)
    assert rep.sections == ["address-map", "physical-map", "vmemmap-leaves", "compare"]
    for s in rep.sections:
        assert f'<section id="{s}">' in doc and f'href="#{s}"' in doc
    figs = svgs(doc)
    assert set(figs) == {"address-map-svg", "physical-map-svg", "vmemmap-leaves-svg"}
    k = boot(m, "6.1")
    # physical map: one e820 rectangle per kernel e820 entry, with its exact range in the title
    phys = figs["physical-map-svg"]
    e820 = [el for el in phys.iter() if "e820" in (el.get("class") or "").split()]
    assert [(t.splitlines()[0], t.splitlines()[1]) for t in map(title_of, e820)] == [
        (f"e820 {t}", f"{s:#018x} - {e - 1:#018x}") for s, e, t in k.e820]
    runs = [el for el in phys.iter() if el.get("class") == "section-run"]
    present = k.model.sections.present_array()
    assert sum(int(el.get("data-count")) for el in runs) == len(present) == 16
    blocks = [el for el in phys.iter() if (el.get("class") or "").startswith("block-run")]
    assert {el.get("data-state") for el in blocks} == {"online"}
    # leaves: the leaf runs' leaves add up to the 2 MiB pages mapping the memmap (32 MiB / 2 MiB)
    lv = figs["vmemmap-leaves-svg"]
    leaves = [el for el in lv.iter() if el.get("class") == "leaf-run"]
    assert sum(int(el.get("data-leaves")) for el in leaves) == 16
    assert {int(el.get("data-page-size")) for el in leaves} == {1 << 21}
    # the compare table has a column per legal model
    from vmemmap.kernel import legal_models

    head = re.search(r'<table class="compare"><thead><tr>(.*?)</tr>', doc).group(1)
    assert head.count("<th>") == 1 + len(legal_models(load_era("6.1"), m))


def test_leaf_runs_cover_the_vmemmap_on_their_node() -> None:
    """Every run's backing lies in RAM of the node it describes (vmemmap_alloc_block_buf on the node),
    and the runs cover exactly the leaves the kernel populated."""
    k = boot(load_machine("opteron-2007"), "2.6.21-seed")
    runs = leaf_runs(k)
    assert sum(r.vend - r.vstart for r in runs) == sum(v.vend - v.vstart for v in k.vmemmap_leaves)
    assert {r.node for r in runs} == set(k.nodes)
    for r in runs:
        node = k.nodes[r.node]
        assert any(s << 12 <= r.pstart and r.pend <= e << 12 for s, e in node.ranges), r
    assert all(a.vend <= b.vstart for a, b in zip(runs, runs[1:]))


def test_block_runs_aggregate() -> None:
    k = boot(load_machine("numa-2s-256g"), "6.1")
    blocks = list(k.hotplug.blocks.values())
    runs = block_runs(blocks)
    assert sum(r.last - r.first + 1 for r in runs) == len(blocks)
    assert len(runs) < len(blocks)
    for r in runs:
        inside = [b for b in blocks if r.first <= b.nr <= r.last]
        assert {(b.nid, b.state, b.zone) for b in inside} == {(r.nid, r.state, r.zone)}


def test_flatmem_report_says_there_are_no_leaves() -> None:
    rep = build_report(load_machine("sparse-holes"), load_era("2.6.24"), model="flatmem", with_compare=False)
    check_self_contained(rep.html)
    figs = svgs(rep.html)
    assert "vmemmap-leaves-svg" not in figs
    assert "has no vmemmap" in rep.html and "no mem_section table" in rep.html
    assert rep.sections == ["address-map", "physical-map", "vmemmap-leaves"]


def test_report_with_cost_draws_one_bar_per_model() -> None:
    m = load_machine("qemu-2g")
    rep = build_report(m, load_era("6.1"), cost=CostSpec(ops=300))
    check_self_contained(rep.html)
    assert rep.sections[-1] == "cost"
    figs = svgs(rep.html)
    from vmemmap.cost.cpu import load_cpu
    from vmemmap.cost.run import cost

    res = cost(m, load_era("6.1"), load_cpu("k8"), "pfn_to_page-random", 300, 1)
    cyc = figs["cost-cycles-svg"]
    bars = {el.get("data-model"): float(el.get("data-value")) for el in cyc.iter() if el.get("class") == "bar"}
    assert bars == {r["model"]: pytest.approx(r["cycles_per_op"], rel=1e-5) for r in res["results"]}


# every built-in machine and era. On server-64t (64 TiB) compare boots every legal model again (2.6.26 and
# 2.6.31 populate its vmemmap section by section, about 30 s per boot): there the compare table is left out
# (--no-compare); the table itself is checked on every other machine and era.
NO_COMPARE = {"server-64t"}
MATRIX = [pytest.param(m.name, e, marks=[pytest.mark.slow] if m.name in ("server-64t", "numa-2s-256g") else [],
                       id=f"{m.name}-{e}") for m in builtin_machines() for e in era_names()]


@pytest.mark.parametrize("machine,era", MATRIX)
def test_every_builtin_machine_and_era(machine: str, era: str) -> None:
    m = load_machine(machine)
    e = load_era(era)
    rep = build_report(m, e, with_compare=machine not in NO_COMPARE)
    assert rep.sections == ["address-map", "physical-map", "vmemmap-leaves"] + \
        ([] if machine in NO_COMPARE else ["compare"])
    doc = rep.html
    check_self_contained(doc)
    assert len(doc.encode()) < 1 << 20  # aggregated: well under 1 MiB even for 524,288 sections
    figs = svgs(doc)
    am = figs["address-map-svg"]
    la57 = bool(m.cpu.la57 and e.la57_supported)
    k_layout = build_layout(e, la57=la57)
    names = {el.get("data-name") for el in am.iter() if "region" in (el.get("class") or "").split()}
    assert names == {r.name for r in k_layout.regions}
    for need in ("direct-map", "vmalloc", "vmemmap", "kernel-text", "modules"):
        assert need in names
    phys = figs["physical-map-svg"]
    assert sum(1 for _ in phys.iter()) < 3000
    # the nodes with RAM below MAX_PHYSMEM_BITS (server-64t under 2.6.x keeps 1 or 8 TiB); FLATMEM: node 0
    top = 1 << e.max_physmem_bits(la57)
    nodes = {n.nid for n in m.nodes if any(s < top for s, _ in n.ranges)} or {0}
    if rep.model == "flatmem":
        nodes = {0}
    assert {int(el.get("data-nid")) for el in phys.iter() if el.get("class") == "node"} == nodes


# ---------------------------------------------------------------------- command line


def test_cli_json_summary(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["report", "--machine", "qemu-numa2", "--era", "6.1", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary == {"output": str(out), "machine": "qemu-numa2", "era": "6.1", "model": "vmemmap",
                       "bytes": len(out.read_bytes()),
                       "sections": ["address-map", "physical-map", "vmemmap-leaves", "compare"]}
    check_self_contained(out.read_text())


def test_cli_stdout_and_errors(tmp_path: Path) -> None:
    r = CliRunner()
    res = r.invoke(main, ["report", "-m", "qemu-2g", "--no-compare", "-o", "-"])
    assert res.exit_code == 0
    check_self_contained(res.output)
    assert 'id="compare"' not in res.output
    for args, msg in ((["-o", str(tmp_path / "missing" / "r.html")], "cannot write"),
                      (["--json", "-o", "-"], "give the HTML a file"),
                      (["--era", "2.6.24", "--kaslr-seed", "1", "-o", str(tmp_path / "x.html")], "no memory KASLR"),
                      (["-m", "no-such-machine"], "")):
        res = r.invoke(main, ["report", "--no-compare", *args])
        assert res.exit_code == 2, (args, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vmemmap: error: ") and msg in lines[0]
        assert "Traceback" not in res.output


def test_cli_help_has_example() -> None:
    res = CliRunner().invoke(main, ["report", "--help"])
    assert res.exit_code == 0 and "Example:" in res.output and "vmemmap report" in res.output


def test_kaslr_report_places_vmemmap_where_the_kernel_does() -> None:
    m = load_machine("numa-2s-256g")
    rep = build_report(m, load_era("6.1"), kaslr_seed=11, with_compare=False)
    k = boot(m, "6.1", options=BootOptions(kaslr_seed=11))
    am = svgs(rep.html)["address-map-svg"]
    vm = by_id(am, "region-vmemmap")
    assert int(vm.get("data-start"), 16) == k.layout.vmemmap_base != build_layout(load_era("6.1")).vmemmap_base
    assert "KASLR on (seed 11)" in rep.html
    by_id(am, "kaslr-window")


# ---------------------------------------------------------------------- inlined figures (vmemmap experiment)

# the shape of a matplotlib SVG: prologue, DOCTYPE, metadata, <use xlink:href>, clip-path url(#...)
MPL_SVG = """<?xml version="1.0" encoding="utf-8" standalone="no"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"
  "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<svg xmlns:xlink="http://www.w3.org/1999/xlink" width="200pt" height="100pt" viewBox="0 0 200 100"
     xmlns="http://www.w3.org/2000/svg" version="1.1">
 <metadata><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></metadata>
 <defs><path id="m1" d="M 0 0 L 4 4"/><clipPath id="p1"><rect x="0" y="0" width="200" height="100"/></clipPath></defs>
 <g id="figure_1"><path d="M 10 10 L 90 90" clip-path="url(#p1)" style="stroke: #000"/>
  <use xlink:href="#m1" x="20" y="20"/><text>cycles / op</text></g>
</svg>
"""


def test_embed_svg_prefixes_ids_and_drops_the_prologue() -> None:
    out = embed_svg(MPL_SVG, "fig3")
    assert "<?xml" not in out and "DOCTYPE" not in out and "metadata" not in out
    root = ET.fromstring(out)
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    assert ids == {"fig3-m1", "fig3-p1", "fig3-figure_1"}
    assert 'xlink:href="#fig3-m1"' in out and "url(#fig3-p1)" in out
    assert root.get("class") == "ext-fig"


@pytest.mark.parametrize("bad,why", [
    ('<image href="http://example.org/x.png"/>', "<image>"),
    ('<use xlink:href="other.svg#m1"/>', "outside the document"),
    ('<script>alert(1)</script>', "<script>"),
    ('<rect onclick="x()"/>', "event handler"),
    ('<rect style="fill: url(http://example.org/#g)"/>', "url()"),
    ('<style>@import "x.css";</style>', "stylesheet"),
    ('<rect', "not well-formed"),
])
def test_embed_svg_refuses_what_would_load_or_run(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        embed_svg(MPL_SVG.replace("<text>cycles / op</text>", bad), "f")


def test_report_inlines_figures(tmp_path: Path) -> None:
    (tmp_path / "a.svg").write_text(MPL_SVG)
    (tmp_path / "b.svg").write_text(MPL_SVG)  # same ids: prefixed apart
    (tmp_path / "evil.svg").write_text(MPL_SVG.replace("<text>", '<use xlink:href="https://x.org/a.svg#m"/><text>'))
    rep = build_report(load_machine("qemu-2g"), load_era("6.1"), with_compare=False, figures=tmp_path)
    check_self_contained(rep.html)
    assert rep.sections[-1] == "figures"
    figs = svgs(rep.html)
    all_ids = [el.get("id") for f in figs.values() for el in f.iter() if el.get("id")]
    assert len(all_ids) == len(set(all_ids))
    assert "fig0-m1" in all_ids and "fig1-m1" in all_ids
    assert "not included: evil.svg: links outside the document" in rep.html
    res = CliRunner().invoke(main, ["report", "--no-compare", "--figures", str(tmp_path / "none"), "-o",
                                    str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "not a directory" in res.output
