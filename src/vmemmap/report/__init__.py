"""``vmemmap report``: one self-contained HTML page about a machine under a kernel era.

Sections (each drawn from the booted model; see :mod:`vmemmap.report.svg`):

1. the kernel virtual address map of the era (:mod:`vmemmap.layout`), vmemmap highlighted, KASLR
   placement when a seed is given;
2. the physical map: the kernel's e820 table, NUMA nodes, zones, present sections and memory blocks
   with their states (:mod:`vmemmap.hotplug` ``memory_dev_init`` blocks);
3. how the vmemmap leaves map each node's struct pages onto backing memory (``k.vmemmap_leaves``);
4. the ``vmemmap compare`` table (:func:`vmemmap.compare.compare`);
5. optionally (``cost=``) a ``vmemmap cost`` run drawn as bar charts;
6. optionally (``figures=``) the SVG figures of a directory, e.g. what ``vmemmap experiment --out DIR``
   wrote, inlined (checked to load nothing, ids prefixed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmemmap.eras import Era
from vmemmap.machine import Machine
from vmemmap.report import html as H
from vmemmap.report.svg import (address_map_svg, bar_chart_svg, block_runs, embed_svg, leaf_runs,
                                physical_map_svg, section_runs, size_text, vmemmap_leaves_svg)

__all__ = ["Report", "build_report", "CostSpec"]


@dataclass(frozen=True)
class CostSpec:
    """A small ``vmemmap cost`` run to draw: workload, CPU preset, operations per model, seed."""

    workload: str = "pfn_to_page-random"
    cpu: str = "k8"
    ops: int = 20_000
    seed: int = 1


@dataclass
class Report:
    html: str
    machine: str
    era: str
    model: str
    sections: list[str] = field(default_factory=list)
    #: the page's drawings as standalone SVG documents (name -> text), for ``--svg-dir``
    drawings: dict[str, str] = field(default_factory=dict)

    def summary(self, output: str) -> dict[str, Any]:
        return {"output": output, "machine": self.machine, "era": self.era, "model": self.model,
                "bytes": len(self.html.encode()), "sections": list(self.sections)}


def _hx(v: int) -> str:
    return f"{v:#x}"


def _layout_section(k: Any, drawings: dict[str, str]) -> str:
    lay = k.layout
    svg = address_map_svg(lay)
    drawings["address-map"] = svg
    kaslr = (f"KASLR on (seed {lay.kaslr_seed}): page_offset_base, vmalloc_base and vmemmap_base placed by "
             f"kernel_randomize_memory() with this seed (a layout the kernel could produce)."
             if lay.kaslr_seed is not None else "KASLR off (nokaslr): the bases are the era's defaults.")
    cap = (f"{H.e(lay.era)} with {lay.levels}-level paging. vmemmap "
           f"{'is the constant' if lay.vmemmap_is_constant else 'is read from vmemmap_base ='} "
           f"<span class=\"mono\">{lay.vmemmap_base:#x}</span>. {H.e(kaslr)}")
    rows = [[f"{r.start:016x}", f"{r.end:016x}", size_text(r.size), r.description] for r in lay.regions]
    return (H.figure(svg, cap, "address-map-figure")
            + H.table(["start", "end", "size", "region (mm.txt)"], rows, "regions mono"))


def _physical_section(k: Any, drawings: dict[str, str]) -> str:
    blocks = None
    hp = k.hotplug
    if hp.supported:
        blocks = list(hp.blocks.values())
    svg = physical_map_svg(k, blocks=blocks)
    drawings["physical-map"] = svg
    cap = (f"{H.e(k.machine.description)}")
    parts = [H.figure(svg, cap, "physical-map-figure")]
    parts.append("<h3>e820 (as the kernel keeps it)</h3>")
    parts.append(H.table(["start", "end", "size", "type"],
                         [[f"{s:#018x}", f"{e - 1:#018x}", size_text(e - s), t] for s, e, t in k.e820], "mono"))
    parts.append("<h3>nodes and zones</h3>")
    nrows = []
    for n in sorted(k.nodes.values(), key=lambda x: x.nid):
        rng = ", ".join(f"{s << 12:#x}-{(e << 12) - 1:#x}" for s, e in n.ranges)
        zs = ", ".join(f"{z.name} {size_text(z.present_pages << 12)}" for z in k.zones
                       if z.nid == n.nid and z.present_pages)
        nrows.append([str(n.nid), rng, size_text(n.present_pages << 12), zs])
    parts.append(H.table(["node", "RAM ranges", "present", "zones (present)"], nrows))
    st = getattr(k.model, "sections", None)
    if st is not None:
        runs = section_runs(st.present_array())
        shift = k.era.pfn_section_shift + 12
        total = sum(b - a for a, b in runs)
        srows = [[f"{a}-{b - 1}", str(b - a), f"{a << shift:#x}", f"{(b << shift) - 1:#x}"] for a, b in runs[:200]]
        parts.append(f"<h3>sections present: {total} of {size_text(1 << shift)} in {len(runs)} runs</h3>")
        parts.append(H.table(["sections", "count", "start", "end"], srows, "mono"))
        if len(runs) > 200:
            parts.append(f'<p class="note">first 200 of {len(runs)} runs shown</p>')
    else:
        parts.append(f'<p class="note">{H.e(k.model_name)} has no mem_section table.</p>')
    if blocks:
        br = block_runs(blocks)
        parts.append(f"<h3>memory blocks: {len(blocks)} of {size_text(hp.block_size)} in {len(br)} runs</h3>")
        parts.append(H.table(["blocks", "state", "node", "zone", "start", "end"],
                             [[f"memory{r.first}" + (f"-{r.last}" if r.last != r.first else ""), r.state,
                               str(r.nid), r.zone or "none", f"{r.start_pfn << 12:#x}",
                               f"{(r.end_pfn << 12) - 1:#x}"] for r in br[:200]]))
    else:
        parts.append(f'<p class="note">No memory blocks: the {H.e(k.era.name)} {H.e(k.model_name)} kernel has '
                     f'no memory hot-plug sysfs blocks here.</p>')
    return "".join(parts)


def _leaves_section(k: Any, drawings: dict[str, str]) -> str:
    svg = vmemmap_leaves_svg(k)
    if svg is not None:
        drawings["vmemmap-leaves"] = svg
    if svg is None:
        return (f'<p class="note">{H.e(k.model_name)} ({H.e(k.model.config)}) has no vmemmap: its memmap '
                f'lives in the direct map ({len(k.model.memmap_pieces())} pieces), so there are no vmemmap '
                f'leaves to draw.</p>')
    runs = leaf_runs(k)
    cap = ("Left: each node's RAM; middle: the struct pages describing it in the vmemmap window "
           "(pfn_to_page = vmemmap + pfn); right: the physical pages holding them, allocated on the node "
           "they describe (vmemmap_populate → vmemmap_alloc_block_buf).")
    rows = [[str(r.node), f"{r.vstart:#x}", f"{r.vend - 1:#x}", size_text(r.vend - r.vstart),
             f"{(r.vend - r.vstart) // r.page_size} x {size_text(r.page_size)}", f"{r.pstart:#x}",
             "" if r.contiguous else "span"] for r in runs[:200]]
    out = H.figure(svg, cap, "vmemmap-leaves-figure") + H.table(
        ["node", "virtual start", "virtual end", "size", "leaves", "backing start", ""], rows, "mono")
    if len(runs) > 200:
        out += f'<p class="note">first 200 of {len(runs)} leaf runs shown</p>'
    return out


def _compare_section(res: dict[str, Any]) -> str:
    from vmemmap.compare import OPS

    rs = res["results"]
    m = res["machine"]
    head = [""] + [r["model"] + (" (what-if)" if r["what_if"] else "") for r in rs]
    rows: list[list[str]] = []

    def row(label: str, vals: list[str]) -> None:
        rows.append([H.e(label)] + vals)

    row("config", [H.e(r["config"]) for r in rs])
    row("memmap", [H.e(size_text(r["memmap_bytes"])) for r in rs])
    row("  describing holes", [H.e(size_text(r["memmap_hole_bytes"])) for r in rs])
    row("  pieces", [str(r["memmap_pieces"]) for r in rs])
    row("sections present", ["-" if r["sections"] is None else str(r["sections"]) for r in rs])
    row("memmap page tables", [H.e(size_text(r["memmap_pagetable_bytes"])) if r["memmap_pagetable_bytes"]
                               else "shares direct map" for r in rs])
    row("TLB entries for memmap", [H.e(", ".join(f"{v} x {k}" for k, v in r["memmap_tlb_entries"].items()))
                                   for r in rs])
    for op in OPS:
        best = min(r["loads_per_op"][op] for r in rs)
        row(f"{op} loads", [f'<b class="best">{r["loads_per_op"][op]}</b>' if r["loads_per_op"][op] == best
                            else str(r["loads_per_op"][op]) for r in rs])
    row("hotplug", ["yes" if r["hotplug"] else "no" for r in rs])
    row("vmemmap base", [H.e(r["vmemmap_base"]) for r in rs])
    out = (f'<p>{H.e(m["name"])} ({H.e(size_text(int(m["ram"], 16)))} RAM, {m["nodes"]} node(s)) under '
           f'{H.e(res["era"])}: struct page {res["struct_page_size"]} B, operations on pfn '
           f'<span class="mono">{H.e(res["sample_pfn"])}</span>; fewest loads in bold.</p>'
           + H.table(head, rows, "compare", raw=True))
    lrows = [[H.e(r["model"])] + [H.e(", ".join(r["loads"][op]) or "-") for op in ("pfn_to_page", "page_to_pfn",
                                                                                   "pfn_valid")] for r in rs]
    out += "<h3>loads per operation (what the kernel reads)</h3>" + H.table(
        ["model", "pfn_to_page", "page_to_pfn", "pfn_valid"], lrows, "loads", raw=True)
    if res["refused"]:
        out += "<ul class=\"note\">" + "".join(f"<li>{H.e(r['model'])}: {H.e(r['why'])}</li>"
                                              for r in res["refused"]) + "</ul>"
    return out


def _cost_section(res: dict[str, Any]) -> str:
    rs = res["results"]
    charts = [
        bar_chart_svg("cycles per operation", [(r["model"], r["cycles_per_op"]) for r in rs], "cost-cycles-svg",
                      "cycles"),
        bar_chart_svg("TLB misses (page walks) per operation", [(r["model"], r["tlb_misses_per_op"]) for r in rs],
                      "cost-tlb-svg", "walks"),
        bar_chart_svg("kernel loads per operation", [(r["model"], r["loads_per_op"]) for r in rs], "cost-loads-svg",
                      "loads"),
        bar_chart_svg("DRAM accesses per operation", [(r["model"], r["cache_misses_per_op"]) for r in rs],
                      "cost-dram-svg", "accesses"),
    ]
    ops = rs[0]["ops"] if rs else 0
    cap = (f"{H.e(res['workload'])} on {H.e(res['machine'])} under {H.e(res['_era'])}, CPU preset "
           f"{H.e(res['cpu'])}, {ops} operations per model (vmemmap cost).")
    body = '<div class="grid">' + "".join(f"<div>{c}</div>" for c in charts) + "</div>"
    return (f'<figure id="cost-figure"><div class="readout">hover a bar for its value</div>{body}'
            f"<figcaption>{cap}</figcaption></figure>")


FIGURES_BUDGET = 4 << 20  # bytes of inlined figures at most: the page stays a few MB


def _figures_section(directory: Path) -> str:
    from vmemmap.errors import InputError

    if not directory.is_dir():
        raise InputError(f"--figures {directory}: not a directory")
    files = sorted(directory.glob("*.svg"))
    if not files:
        raise InputError(f"--figures {directory}: no .svg files in it")
    parts, skipped, used = [], [], 0
    for i, f in enumerate(files):
        try:
            svg = embed_svg(f.read_text(encoding="utf-8", errors="replace"), f"fig{i}")
        except (ValueError, OSError) as ex:
            skipped.append(f"{f.name}: {ex}")
            continue
        if used + len(svg) > FIGURES_BUDGET:
            skipped.append(f"{f.name}: over the {FIGURES_BUDGET >> 20} MiB budget for figures")
            continue
        used += len(svg)
        parts.append(f'<figure class="ext" id="figure-{i}"><div class="scroll">{svg}</div>'
                     f"<figcaption>{H.e(f.name)}</figcaption></figure>")
    out = f'<p class="note">SVG figures from {H.e(directory)} (e.g. <code>vmemmap experiment --out DIR</code>).</p>'
    out += "".join(parts)
    if skipped:
        out += '<ul class="note">' + "".join(f"<li>not included: {H.e(x)}</li>" for x in skipped) + "</ul>"
    return out


def build_report(machine: Machine, era: Era, model: str | None = None, la57: bool | None = None,
                 kaslr_seed: int | None = None, cost: CostSpec | None = None,
                 progress: Callable[[str], None] | None = None, with_compare: bool = True,
                 figures: Path | str | None = None) -> Report:
    """Boot ``machine`` under ``era`` and render the report page (``with_compare=False`` leaves out the
    compare table, which boots every other legal model: the slow part on a 64 TiB machine)."""
    from vmemmap.compare import compare
    from vmemmap.kernel import BootOptions, boot

    def step(msg: str) -> None:
        if progress:
            progress(msg)

    step(f"booting {machine.name} with {era.name}")
    k = boot(machine, era, model, BootOptions(la57=la57, kaslr_seed=kaslr_seed))
    sections: list[tuple[str, str, str]] = []
    drawings: dict[str, str] = {}
    step("drawing the address map")
    sections.append(("address-map", "Kernel virtual address map", _layout_section(k, drawings)))
    step("drawing the physical map")
    sections.append(("physical-map", "Physical memory map", _physical_section(k, drawings)))
    step("drawing the vmemmap leaves")
    sections.append(("vmemmap-leaves", "vmemmap leaves and their backing", _leaves_section(k, drawings)))
    if with_compare:
        step("running compare (booting every other legal model)")
        # the kernel booted above is one of compare's models unless KASLR moved it: reuse it
        mine = {k.model_name: k} if k.options == BootOptions(la57=la57) else {}
        sections.append(("compare", "Memory models compared",
                         _compare_section(compare(machine, era, la57=la57, kernels=mine))))
    if cost is not None:
        from vmemmap.cost.cpu import load_cpu
        from vmemmap.cost.run import cost as run_cost

        step(f"simulating {cost.workload} on {cost.cpu}")
        res = run_cost(machine, era, load_cpu(cost.cpu), cost.workload, cost.ops, cost.seed, None, la57)
        sections.append(("cost", "Cost (simulated TLBs and caches)", _cost_section(res)))
    if figures is not None:
        step(f"inlining the figures of {figures}")
        sections.append(("figures", "Experiment figures", _figures_section(Path(figures))))
    lay = k.layout
    sub = (f"machine <b>{H.e(machine.name)}</b> ({H.e(size_text(machine.ram_bytes))} RAM, {machine.nr_nodes} "
           f"node(s)) · era <b>{H.e(era.name)}</b> · model <b>{H.e(k.model_name)}</b> · {lay.levels}-level paging"
           f" · KASLR {'seed %d' % lay.kaslr_seed if lay.kaslr_seed is not None else 'off'}"
           f" · generated by vmemmap {H.e(_version())}")
    title = f"vmemmap report: {machine.name} under {era.name}"
    step("writing HTML")
    doc = H.page(title, sub, sections)
    return Report(doc, machine.name, era.name, k.model_name, [s[0] for s in sections], drawings)


def _version() -> str:
    from vmemmap import __version__

    return __version__
