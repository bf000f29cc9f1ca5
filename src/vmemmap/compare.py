"""``vmemmap compare``: every memory model the era can build for a machine, side by side.

For each legal model the machine is booted, and the figures come from what the boot built and from
running the operations: memmap bytes (and how much of it describes holes), page-table pages that
exist only to map the memmap, the TLB entries (leaves, by page size) that cover the memmap, and the
kernel loads of each operation on the same RAM pfn. Nothing here is a typed-in cost.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vmemmap.eras import MODEL_NAMES, Era
from vmemmap.errors import ModelNotBuildable
from vmemmap.facts import hx, memmap_figures, memmap_mapping, op_loads, sample_pfn
from vmemmap.kernel import BootOptions, Kernel, boot, legal_models, resolve_model
from vmemmap.machine import Machine

PTE_BUDGET = 256 << 20

OPS = ("pfn_to_page", "page_to_pfn", "virt_to_page", "page_address", "pfn_valid", "page_to_nid")


def compare(machine: Machine, era: Era, la57: bool | None = None, progress: bool = False,
            kernels: dict[str, Kernel] | None = None) -> dict[str, Any]:
    """Boot every legal model and collect comparable facts (DESIGN.md contract 4).

    ``kernels`` maps a model name to a kernel the caller already booted from the same ``machine``,
    ``era`` and ``BootOptions(la57=la57)`` (no KASLR): that model is read from it instead of booted again
    (``vmemmap report`` passes its own kernel). A kernel of another machine, era or paging mode is an
    error."""
    kernels = dict(kernels or {})
    for name, kk in kernels.items():
        if not (kk.machine is machine or kk.machine == machine) or not (kk.era is era or kk.era == era) \
                or kk.model_name != name or kk.options != BootOptions(la57=la57):
            raise ValueError(f"compare: the kernel given for {name} was not booted from {machine.name} "
                             f"under {era.name} with model {name} and BootOptions(la57={la57})")
    models = legal_models(era, machine)
    refused = []
    for m in MODEL_NAMES:
        if m in models:
            continue
        try:
            resolve_model(era, machine, m)
        except ModelNotBuildable as e:
            refused.append({"model": m, "why": str(e)})
    # base pages for a huge memmap need one PTE page per 2 MiB of memmap, all held in simulated
    # memory: skip the what-if when that would exceed what this tool holds in RAM
    memmap_est = machine.ram_bytes // 4096 * era.struct_page_size
    if "vmemmap-4k" in models and memmap_est // 512 > PTE_BUDGET:
        models.remove("vmemmap-4k")
        refused.append({"model": "vmemmap-4k", "why": f"not run: a base-page vmemmap for {memmap_est >> 30} GiB of "
                        f"memmap needs {memmap_est // 512 >> 20} MiB of PTE pages (limit {PTE_BUDGET >> 20} MiB)"})
    results = []
    pfn: int | None = None
    iterator: Any = models
    if progress:
        from rich.progress import track

        from vmemmap.console import make_console

        iterator = track(models, description=f"booting {len(models)} models", transient=True,
                         console=make_console(stderr=True))  # progress on stderr, never in the output
    for model in iterator:
        k = kernels.get(model) or boot(machine, era, model, BootOptions(la57=la57))
        if pfn is None:
            pfn = sample_pfn(k)
        mf = memmap_figures(k)
        mm = memmap_mapping(k)
        ol = op_loads(k, pfn)
        rule = era.model_rule(model)
        st = getattr(k.model, "sections", None)
        results.append({
            "model": model,
            "config": k.model.config,
            "what_if": rule.what_if,
            "note": rule.why,
            "memmap_bytes": mf["memmap_bytes"],
            "memmap_pages": mf["memmap_pages"],
            "memmap_hole_bytes": mf["hole_bytes"],
            "memmap_pieces": len(k.model.memmap_pieces()),
            "memmap_pagetable_bytes": mm["pagetable_bytes"],
            "memmap_pagetable_pages": mm["pagetable_pages"],
            "memmap_tlb_entries": mm["tlb_entries"],
            "sections": int(len(st.present_array())) if st is not None else None,
            "loads": ol,
            "loads_per_op": {op: len(v) for op, v in ol.items()},
            "hotplug": k.model.supports_hotplug,
            "hotplug_note": k.model.hotplug_note,
            "vmemmap_base": hx(k.layout.vmemmap_base),
            "vmemmap_is_constant": k.layout.vmemmap_is_constant,
        })
    return {
        "machine": {"name": machine.name, "description": machine.description, "ram": hx(machine.ram_bytes),
                    "nodes": max(1, len(machine.nodes))},
        "era": era.name,
        "struct_page_size": era.struct_page_size,
        "sample_pfn": hx(pfn or 0),
        "results": results,
        "refused": refused,
    }


def _size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.2f} {unit}".replace(".00 ", " ")
    return f"{n} B"


def render(res: dict[str, Any], console: Console) -> None:
    """The human table: one column per model, one row per fact."""
    rs = res["results"]
    m = res["machine"]
    t = Table(title=f"{m['name']} ({_size(int(m['ram'], 16))} RAM, {m['nodes']} node(s)) under {res['era']}: "
                    f"struct page {res['struct_page_size']} B, ops on pfn {res['sample_pfn']}")
    t.add_column("", style="cyan", no_wrap=True)
    for r in rs:
        t.add_column(r["model"] + (" (what-if)" if r["what_if"] else ""), justify="right")

    def row(label: str, fn) -> None:  # noqa: ANN001
        t.add_row(label, *[fn(r) for r in rs])

    row("memmap", lambda r: _size(r["memmap_bytes"]))
    row("  describing holes", lambda r: _size(r["memmap_hole_bytes"]))
    row("  pieces", lambda r: str(r["memmap_pieces"]))
    row("sections present", lambda r: "-" if r["sections"] is None else str(r["sections"]))
    row("memmap page tables", lambda r: _size(r["memmap_pagetable_bytes"]) if r["memmap_pagetable_bytes"]
        else "shares direct map")
    row("TLB entries for memmap", lambda r: ", ".join(f"{v} x {k}" for k, v in r["memmap_tlb_entries"].items()))
    for op in OPS:
        best = min(r["loads_per_op"][op] for r in rs)
        row(f"{op} loads", lambda r, op=op: (f"[bold green]{r['loads_per_op'][op]}[/]"
                                             if r["loads_per_op"][op] == best else str(r["loads_per_op"][op])))
    row("hotplug", lambda r: "yes" if r["hotplug"] else "no")
    console.print(t)
    console.print("loads per operation (what the kernel reads):")
    for r in rs:
        parts = [f"{op}: {', '.join(r['loads'][op]) or '-'}" for op in ("pfn_to_page", "page_to_pfn", "pfn_valid")]
        console.print(f"  [bold]{r['model']}[/]  " + escape(" | ".join(parts)))
    for r in res["refused"]:
        console.print(f"  [dim]{escape(r['model'])}: {escape(r['why'])}[/]")
