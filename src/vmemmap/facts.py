"""Facts about a booted kernel, as plain data (the JSON contracts 2, 3 and 4 of DESIGN.md).

Nothing here computes a cost: loads come from running the model's operations, page-table figures from
the tables in simulated memory, memmap figures from the model's own allocations.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterator
from typing import Any

from vmemmap.errors import InputError, PageFault
import numpy as np

from vmemmap.kernel import Kernel, global_zone_ranges
from vmemmap.models.sections import USAGE_SUBSECTION_MAP_OFFSET

PAGE_SHIFT = 12


def hx(v: int) -> str:
    """Lowercase hex string, the JSON convention of DESIGN.md."""
    return f"{v:#x}"


# ---------------------------------------------------------------------- translate (contract 2)

OPS = {"pfn": "pfn_to_page", "phys": "phys_to_page", "virt": "virt_to_page", "page": "page_to_pfn"}


def parse_int(text: str, what: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise InputError(f"{what} must be a number (decimal or 0x-hex), got {text!r}") from None
    if v < 0 or v >= 1 << 64:
        raise InputError(f"{what} {text} is out of the 64-bit range")
    return v


def walk_json(k: Kernel, vaddr: int) -> list[dict[str, Any]]:
    """The page-table walk of ``vaddr`` as the MMU reads it: every level's entry."""
    try:
        w = k.tables.walk(vaddr)
    except PageFault:
        return []
    except InputError:
        return []
    return [{"level": s.level, "index": s.index, "entry": hx(s.entry)} for s in w.steps]


def translate(k: Kernel, kind: str, value: int) -> dict[str, Any]:
    """Run one conversion on the booted kernel and report it (DESIGN.md contract 2)."""
    m = k.model
    if kind not in OPS:
        raise InputError(f"translate takes pfn, phys, virt or page, not {kind!r}")
    op = OPS[kind]
    if kind == "pfn":
        if value >= k.max_arch_pfn:
            raise InputError(f"pfn {value:#x} is beyond MAX_PHYSMEM_BITS ({k.era.max_physmem_bits(k.la57)} bits)")
        res = m.pfn_to_page(value)
        pfn, page = value, res.value
    elif kind == "phys":
        if value >> PAGE_SHIFT >= k.max_arch_pfn:
            raise InputError(f"physical address {value:#x} is beyond MAX_PHYSMEM_BITS")
        res = m.phys_to_page(value)
        pfn, page = value >> PAGE_SHIFT, res.value
    elif kind == "virt":
        lay = k.layout
        in_direct = lay.page_offset <= value < lay.page_offset + (k.max_pfn << PAGE_SHIFT)
        in_image = value >= lay.start_kernel_map and value < k.image_end
        if not (in_direct or in_image):
            raise InputError(
                f"{value:#x} is not a direct-map or kernel-image address: virt_to_page() is only valid there "
                f"(direct map {lay.page_offset:#x}-{lay.page_offset + (k.max_pfn << PAGE_SHIFT) - 1:#x})"
            )
        res = m.virt_to_page(value)
        page = res.value
        with k.mem.record():
            pfn = k.pa(value) >> PAGE_SHIFT
    else:
        if value % k.era.struct_page_size and k.model_name.startswith("vmemmap"):
            pass
        res = m.page_to_pfn(value)
        pfn, page = res.value, value
    valid = bool(m.pfn_valid(pfn).value) if pfn < k.max_arch_pfn else False
    phys = pfn << PAGE_SHIFT if kind != "phys" else value
    nid = zone = None
    if valid:
        try:
            nid = m.page_to_nid(page).value if k.numa_config else 0
            zone = k.era.zone_names[m.page_zonenum(page)]
        except PageFault:
            nid = zone = None
    return {
        "machine": k.machine.name,
        "era": k.era.name,
        "model": k.model_name,
        "pfn": hx(pfn),
        "phys": hx(phys),
        "virt": hx(k.layout.page_offset + (pfn << PAGE_SHIFT)),
        "page": hx(page),
        "section": m.section_of(pfn),
        "nid": nid,
        "zone": zone,
        "valid": valid,
        "op": op,
        "value": hx(res.value),
        "loads": [ld.to_json() for ld in res.loads],
        "walk": walk_json(k, page),
    }


# ---------------------------------------------------------------------- boot facts (contract 3)


def section_rows(k: Kernel) -> list[dict[str, Any]]:
    return list(iter_section_rows(k))


def iter_section_rows(k: Kernel) -> Iterator[dict[str, Any]]:
    """Every present section: number, raw ``section_mem_map`` word, decoded flags and memmap, the
    ``struct mem_section`` address, first pfn and (6.x) the sub-section map — read from kernel memory
    in bulk (one vectorised read per field, not one page walk per section)."""
    st = getattr(k.model, "sections", None)
    if st is None:
        return
    nrs = st.present_array()
    if len(nrs) == 0:
        return
    raws = st.words_array(nrs)
    shift = np.uint64(k.era.pfn_section_shift)
    pfns = nrs.astype(np.uint64) << shift
    maps = (raws & np.uint64(st.era.section_map_mask)) + pfns * np.uint64(k.era.struct_page_size)
    addrs = st.addrs_array(nrs)
    submaps = None
    if k.era.subsection_shift:
        usages = k.mem.peek_u64_array(addrs + np.uint64(8))
        submaps = np.zeros(len(nrs), dtype=np.uint64)
        have = usages != 0
        if have.any():
            submaps[have] = k.mem.peek_u64_array(usages[have] + np.uint64(USAGE_SUBSECTION_MAP_OFFSET))
    names = st.era.section_flags
    flag_cache: dict[int, list[str]] = {}
    for i, nr in enumerate(nrs.tolist()):
        raw = int(raws[i])
        low = raw & ((1 << len(names)) - 1)
        if low not in flag_cache:
            flag_cache[low] = [n for b, n in enumerate(names) if (low >> b) & 1]
        row: dict[str, Any] = {
            "nr": nr,
            "raw": hex(raw),
            "flags": flag_cache[low],
            "mem_map": hex(int(maps[i])),
            "section": hex(int(addrs[i])),
            "pfn": hex(int(pfns[i])),
        }
        if submaps is not None:
            row["subsection_map"] = hex(int(submaps[i]))
        yield row


def pagetable_bytes(k: Kernel) -> int:
    return sum(k.tables.table_pages().values()) * 4096


def memmap_figures(k: Kernel) -> dict[str, int]:
    """struct pages allocated, and how many describe pfns that hold no RAM."""
    sp = k.era.struct_page_size
    pages = 0
    hole = 0
    ram = k.ram_pfn_ranges()
    for p in k.model.memmap_pieces():
        n = p.end_pfn - p.start_pfn
        inside = sum(max(0, min(e, p.end_pfn) - max(s, p.start_pfn)) for s, e, _ in ram)
        pages += n
        hole += n - inside
    return {"memmap_pages": pages, "memmap_bytes": pages * sp, "hole_pages": hole, "hole_bytes": hole * sp}


def memmap_mapping(k: Kernel) -> dict[str, Any]:
    """How the memmap is mapped: leaves (TLB entries) per page size over its virtual ranges, and the
    page-table pages that exist only for it (the vmemmap window's tables)."""
    spans: dict[int, list[tuple[int, int]]] = {}
    for p in k.model.memmap_pieces():
        v0 = p.vaddr
        v1 = p.vaddr + (p.end_pfn - p.start_pfn) * k.era.struct_page_size
        for run in k.tables.runs(v0, v1):
            size = run.page_size
            spans.setdefault(size, []).append((max(run.vaddr, v0) // size, (min(run.end, v1) - 1) // size))
    counts: dict[str, int] = {}
    for size, iv in sorted(spans.items()):
        total, cur = 0, None
        for a, b in sorted(iv):  # merge leaf-index intervals: a leaf shared by two pieces is one TLB entry
            if cur and a <= cur[1] + 1:
                cur = (cur[0], max(cur[1], b))
            else:
                if cur:
                    total += cur[1] - cur[0] + 1
                cur = (a, b)
        if cur:
            total += cur[1] - cur[0] + 1
        counts[_size_name(size)] = total
    vm_tables = {}
    if k.model_name.startswith("vmemmap"):
        vm_tables = k.vmemmap_table_pages()
    return {
        "tlb_entries": counts,
        "pagetable_pages": vm_tables,
        "pagetable_bytes": sum(vm_tables.values()) * 4096,
    }


def _size_name(size: int) -> str:
    return {4096: "4K", 1 << 21: "2M", 1 << 30: "1G"}.get(size, f"{size}")


def boot_json(k: Kernel) -> dict[str, Any]:
    """DESIGN.md contract 3. ``sections`` is a generator (a 64 TiB machine has 512 Ki of them):
    write it with :func:`vmemmap.jsonout.dump` or turn it into a list."""
    mm = memmap_figures(k)
    lay = k.layout
    return {
        "machine": k.machine.name,
        "era": k.era.name,
        "model": k.model_name,
        "la57": k.la57,
        "max_pfn": hx(k.max_pfn),
        "page_offset_base": hx(lay.page_offset),
        "vmalloc_base": hx(lay.vmalloc_start),
        "vmemmap_base": hx(lay.vmemmap_base),
        "vmemmap_is_constant": lay.vmemmap_is_constant,
        "e820": [{"start": hx(s), "end": hx(e), "type": t} for s, e, t in k.e820],
        "nodes": [
            {"nid": n.nid, "start_pfn": hx(n.start_pfn), "end_pfn": hx(n.end_pfn),
             "present_pages": n.present_pages, "spanned_pages": n.spanned_pages,
             "node_data": hx(n.pgdat_phys[0])}
            for n in k.nodes.values()
        ],
        "zones": [
            {"nid": z.nid, "zone": z.name, "start_pfn": hx(z.start_pfn), "spanned_pages": z.spanned_pages,
             "present_pages": z.present_pages}
            for z in k.zones
        ],
        "zone_ranges": [{"zone": n, "start_pfn": hx(s), "end_pfn": hx(e)} for n, s, e in global_zone_ranges(k)],
        "sections": ({"nr": r["nr"], "raw": r["raw"], "flags": r["flags"]}
                     | ({"subsection_map": r["subsection_map"]} if "subsection_map" in r else {})
                     for r in iter_section_rows(k)),
        "vmemmap": [
            {"start": hx(v.vstart), "end": hx(v.vend), "page_size": v.page_size, "node": v.node,
             "phys": hx(v.pstart)}
            for v in k.vmemmap_leaves
        ],
        "directmap": [{"start": hx(s), "end": hx(e), "page_size": size} for s, e, size in k.directmap],
        "memmap_bytes": mm["memmap_bytes"],
        "memmap_hole_bytes": mm["hole_bytes"],
        "pagetable_bytes": pagetable_bytes(k),
        "vmemmap_pagetable_bytes": memmap_mapping(k)["pagetable_bytes"],
    }


@dataclass(frozen=True)
class OpCost:
    op: str
    loads: tuple[str, ...]


def sample_pfn(k: Kernel) -> int:
    """A RAM pfn on the last node, away from the edges (the same for every model of one machine)."""
    s, e, _ = k.ram_pfn_ranges()[-1]
    return s + (e - s) // 2


def op_loads(k: Kernel, pfn: int | None = None) -> dict[str, list[str]]:
    """Run each operation once on a RAM pfn and list the kernel loads it made."""
    m = k.model
    pfn = sample_pfn(k) if pfn is None else pfn
    page = m.pfn_to_page(pfn).value
    virt = k.layout.page_offset + (pfn << PAGE_SHIFT)
    out = {}
    for name, res in (
        ("pfn_to_page", m.pfn_to_page(pfn)),
        ("page_to_pfn", m.page_to_pfn(page)),
        ("virt_to_page", m.virt_to_page(virt)),
        ("page_address", m.page_address(page)),
        ("pfn_valid", m.pfn_valid(pfn)),
        ("page_to_nid", m.page_to_nid(page)),
    ):
        out[name] = [ld.what for ld in res.loads]
    return out


# ---------------------------------------------------------------------- boot messages


def unavailable_ranges(k: Kernel) -> list[tuple[int, str, int]]:
    """``memmap_init`` (mm/mm_init.c @ 6.1): the "N pages in unavailable ranges" holes.

    Walks memory ranges in order with a global ``hole_pfn``; a hole before a range is charged to the
    zone being initialised, and the tail up to the section end to the last populated zone of the last
    node (``zone_id``/``nid`` left over from the loop), exactly as the kernel does.
    """
    out: list[tuple[int, str, int]] = []
    hole_pfn = 0
    zone_id, nid_last = 0, 0
    end_pfn = 0
    for start_pfn, end_pfn, nid in k.ram_pfn_ranges():
        for z in [z for z in k.zones if z.nid == nid]:
            s, e = max(z.start_pfn, start_pfn), min(z.end_pfn, end_pfn)
            zone_id, nid_last = z.idx, nid
            if s >= e:
                continue
            if hole_pfn < start_pfn:
                out.append((nid, z.name, start_pfn - hole_pfn))
            hole_pfn = end_pfn
    end = -(-end_pfn // k.era.pages_per_section) * k.era.pages_per_section
    if hole_pfn < end:
        out.append((nid_last, k.era.zone_names[zone_id], end - hole_pfn))
    return out


def boot_facts(k: Kernel):  # noqa: ANN201
    """The :class:`vmemmap.bootlog.BootFacts` of a booted kernel."""
    from vmemmap.bootlog import BootFacts, PopulatedPmd

    era = k.era
    numa_nodes: list[tuple[int, int, int]] = []
    if k.numa_config and k.machine.nodes and len(k.machine.nodes) > 1:
        for n in k.machine.nodes:
            for s, e in n.ranges:
                numa_nodes.append((n.nid, s, e))
    leaves: list[PopulatedPmd] = []
    expand = era.vmemmap_message_at_boot  # the printed lines are computed PMD by PMD
    for lf in k.vmemmap_leaves:
        if not expand:
            leaves.append(PopulatedPmd(lf.vstart, lf.vend, lf.pstart, lf.node))
            continue
        for v in range(lf.vstart, lf.vend, lf.page_size) if lf.page_size != 4096 else [lf.vstart]:
            if lf.page_size == 4096:
                leaves.append(PopulatedPmd(lf.vstart, lf.vend, lf.pstart, lf.node))
            else:
                leaves.append(PopulatedPmd(v, v + lf.page_size, lf.pstart + (v - lf.vstart), lf.node))
    sizes = {4096: "4k", 1 << 21: "2M", 1 << 30: "1G"}
    return BootFacts(
        era=era,
        e820=tuple((e.start, e.end, e.type) for e in k.machine.e820),
        e820_updates=tuple(k.e820_updates),
        max_pfn=k.max_pfn,
        max_arch_pfn=k.max_arch_pfn,
        numa_nodes=tuple(numa_nodes),
        node_data=tuple((n.nid, n.pgdat_phys[0], n.pgdat_phys[1]) for n in k.nodes.values()),
        zones=tuple(global_zone_ranges(k)),
        early_node_map=tuple(sorted((nid, s, e) for s, e, nid in k.ram_pfn_ranges())),
        node_spans=tuple((n.nid, n.start_pfn, n.end_pfn) for n in k.nodes.values()),
        holes=tuple(unavailable_ranges(k)),
        vmemmap=tuple(leaves),
        vmemmap_page_size=k.vmemmap_leaves[0].page_size if k.vmemmap_leaves else (1 << 21),
        page_offset=k.layout.page_offset,
        directmap=tuple((s, e, sizes[size]) for s, e, size in k.directmap),
        gbpages=any(size == 1 << 30 for _, _, size in k.directmap),
    )
