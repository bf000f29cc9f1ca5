"""Facts: what a capture's snapshot shows (*expected*) and what our booted kernel says (*got*).

A fact is a name (starting with its category, DESIGN.md contract 8) and a JSON-friendly value:
addresses are lowercase hex strings, counts integers, ranges ``[start, end)`` pairs of hex strings.
Both sides are built as ``{name: value}`` dicts with the same names; :mod:`vmemmap.conform.compare`
pairs them.  The rules behind each category are in docs/conformance.md.

Memory blocks are not modelled by the engine; :func:`memory_blocks` applies drivers/base/memory.c's
boot-time rules (6.1) to the booted kernel's sections and zones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vmemmap.conform.capture import (
    parse_node_data,
    Capture,
    PtRun,
    Snapshot,
    _need,
    dmesg_lines,
    parse_initmem,
    parse_kcore,
    parse_memory_blocks,
    parse_memsections,
    parse_nodes,
    parse_ptwalk,
    parse_zoneinfo,
)
from vmemmap.errors import InputError

PAGE_SHIFT = 12
EARLY = 1 << 3  # SECTION_IS_EARLY in 6.1's enum (include/linux/mmzone.h)
SZ_4K, SZ_2M, SZ_1G = 1 << 12, 1 << 21, 1 << 30
SIZE_NAMES = {SZ_4K: "4K", SZ_2M: "2M", SZ_1G: "1G"}
LEVEL_OF = {SZ_4K: "PTE", SZ_2M: "PMD", SZ_1G: "PUD"}
CATEGORIES = ("base", "max_pfn", "node", "zone", "block", "root", "section", "subsection", "vmemmap", "directmap",
              "placement", "hotplug")

def hx(v: int) -> str:
    return f"{v:#x}"


def _rng(ranges: list[tuple[int, int]]) -> list[list[str]]:
    return [[hx(s), hx(e)] for s, e in ranges]


def merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(r for r in ranges if r[1] > r[0]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def subtract(ranges: list[tuple[int, int]], cut: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    cut = merge(cut)
    for s, e in merge(ranges):
        cur = s
        for a, b in cut:
            if b <= cur or a >= e:
                continue
            if a > cur:
                out.append((cur, a))
            cur = max(cur, b)
        if cur < e:
            out.append((cur, e))
    return out


def compress(nums: list[int]) -> str:
    """``0-15 32-39``: sorted numbers as runs."""
    out: list[str] = []
    nums = sorted(set(nums))
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return " ".join(out)


def node_of(phys: int, node_ranges: dict[int, tuple[int, int]]) -> int | None:
    """Node whose span (``Initmem setup node`` range) holds ``phys``."""
    for nid, (s, e) in node_ranges.items():
        if s <= phys < e:
            return nid
    return None


# ---------------------------------------------------------------------- the direct map rule


@dataclass(frozen=True)
class Leafrun:
    """A run of direct-map leaves of one size over physical ``[start, end)`` with one permission set."""

    start: int
    end: int
    size: int
    perms: tuple[str, ...] = ()


def _perms(flags: tuple[str, ...]) -> tuple[str, ...]:
    """Permission bits of a PTWALK run (RW/ro, x/NX, GLB): PSE only tells the level."""
    return tuple(f for f in flags if f != "PSE")


def directmap_structure(capture_runs: list[Leafrun], model_runs: list[Leafrun]) -> tuple[dict[str, Any], int]:
    """Un-split the capture's direct map where a model large leaf sits over a CPA split.

    For every 1 GiB / 2 MiB leaf the model maps, if the capture maps the same physical span completely
    with *smaller* leaves whose permissions are not all alike (``set_memory_ro``/``set_memory_x``
    splitting a large page, arch/x86/mm/pat/set_memory.c ``__split_large_page``), the span counts as
    one leaf of the model's size.  Returns the capture's coverage summary ``{1G, 2M, 4K}`` (merged
    physical ranges mapped by leaves of that size after un-splitting) and the number of spans un-split.
    """
    by_size: dict[int, list[tuple[int, int]]] = {SZ_1G: [], SZ_2M: [], SZ_4K: []}
    for r in capture_runs:
        by_size.setdefault(r.size, []).append((r.start, r.end))
    undone = 0
    for size in (SZ_1G, SZ_2M):
        small = sorted((r for r in capture_runs if r.size < size), key=lambda r: r.start)
        if not small:
            continue
        spans: set[int] = set()
        for m in model_runs:
            if m.size != size:
                continue
            for r in small:
                a, b = max(m.start, r.start), min(m.end, r.end)
                if a < b:
                    spans.update(range(a // size * size, b, size))
        for L in sorted(spans):
            inside = [r for r in capture_runs if r.start < L + size and r.end > L]
            covered = merge([(max(r.start, L), min(r.end, L + size)) for r in inside])
            full = covered == [(L, L + size)]
            mixed = len({r.perms for r in inside}) > 1
            if full and mixed and all(r.size < size for r in inside):
                undone += 1
                for s in list(by_size):
                    if s < size:
                        by_size[s] = subtract(by_size[s], [(L, L + size)])
                by_size[size] = merge(by_size[size] + [(L, L + size)])
    return {SIZE_NAMES[s]: _rng(merge(v)) for s, v in sorted(by_size.items(), reverse=True)}, undone


# ---------------------------------------------------------------------- expected (the capture)


@dataclass
class Expected:
    facts: dict[str, Any]
    notes: list[str]
    capture_dm: list[Leafrun]
    node_ranges: dict[int, tuple[int, int]]
    has_directmap: bool = True  # the snapshot holds a PTWALK_DIRECTMAP block


def expected_facts(cap: Capture, snap: Snapshot | None = None) -> Expected:
    """Every fact the snapshot shows (first snapshot by default).

    Snapshot 0 must hold KCORE, MEMSECTIONS and both PTWALK blocks (else :class:`InputError`); a later
    snapshot of a hot-plug capture yields the facts of whichever blocks it holds.  The boot-log facts
    (``node[N].range``, ``placement.node_data``) belong to snapshot 0 only.
    """
    first = snap is None or snap is cap.first
    snap = snap or cap.first
    where = cap.path
    f: dict[str, Any] = {}
    notes: list[str] = []

    def block(name: str):  # noqa: ANN202
        return _need(snap, name, where) if first else snap.block(name)

    kb = block("KCORE")
    kc = parse_kcore(kb) if kb is not None else {}
    for name in ("page_offset_base", "vmalloc_base", "vmemmap_base"):
        if name in kc:
            f[f"base.{name}"] = hx(kc[name])
    for name in ("max_pfn", "max_low_pfn", "max_possible_pfn"):
        if name in kc:
            f[f"max_pfn.{name}"] = hx(kc[name])

    nodes = parse_initmem(dmesg_lines(cap))
    if first:
        for nid, (s, e) in sorted(nodes.items()):
            f[f"node[{nid}].range"] = _rng([(s, e)])[0]
    nb = snap.block("NODES")
    if nb is not None:
        for nid, blocks in sorted(parse_nodes(nb).items()):
            f[f"node[{nid}].blocks"] = compress(blocks)

    zb = snap.block("ZONEINFO")
    if zb is not None:
        for z in parse_zoneinfo(zb):
            key = f"zone[{z.nid}].{z.zone}"
            f[f"{key}.spanned"] = z.spanned
            f[f"{key}.present"] = z.present
            if z.start_pfn is not None:
                f[f"{key}.start_pfn"] = hx(z.start_pfn)

    mb = snap.block("MEMORY_BLOCKS")
    if mb is not None:
        blocks = parse_memory_blocks(mb)
        f["block.block_size_bytes"] = hx(blocks.block_size)
        f["block.blocks"] = compress(list(blocks.blocks))
        for nr, b in sorted(blocks.blocks.items()):
            f[f"block[memory{nr}].state"] = b.state
            f[f"block[memory{nr}].valid_zones"] = b.valid_zones
            f[f"block[memory{nr}].node"] = b.node

    msb = block("MEMSECTIONS")
    ms = parse_memsections(msb) if msb is not None else None
    if ms is not None:
        f["root.indices"] = sorted(ms.roots)
        f["root.per_root"] = ms.per_root
        f["section.sizeof"] = ms.sizeof
        f["section.present"] = compress(list(ms.sections))
        for nr, row in sorted(ms.sections.items()):
            f[f"section[{nr}].raw"] = hx(row.raw)
        for nr, row in sorted(ms.sections.items()):
            if len(row.u) >= 3:
                f[f"subsection[{nr}]"] = hx(row.u[2])

    vb = block("PTWALK_VMEMMAP")
    vw = parse_ptwalk(vb) if vb is not None else None
    if vw is not None:
        f["vmemmap.ranges"] = _rng(merge([(r.vstart, r.vend) for r in vw.runs]))
        f["vmemmap.leaf_sizes"] = sorted({r.level for r in vw.runs})
        for level in ("PUD", "PMD", "PTE"):
            if level in vw.leafcount or any(r.level == level for r in vw.runs):
                f[f"vmemmap.leafcount.{level}"] = vw.leafcount.get(level, 0)
        f["vmemmap.node"] = _vm_nodes([(r.vstart, r.vend, r.pstart) for r in vw.runs], nodes)

    # placement: where memblock put the boot-time structures (the physical addresses themselves)
    if first:
        for nid, start in sorted(parse_node_data(dmesg_lines(cap)).items()):
            f[f"placement.node_data[{nid}]"] = hx(start)
    if ms is not None:
        f["placement.mem_section"] = hx(ms.mem_section)
        for r, addr in sorted(ms.roots.items()):
            f[f"placement.root[{r}]"] = hx(addr)
        for nr, row in sorted(ms.sections.items()):
            if row.raw & EARLY:  # boot sections: memblock; hot-added ones come from the slab (not modelled)
                f[f"placement.usage[{nr}]"] = hx(row.usage)
        if vw is not None:
            early = {nr for nr, row in ms.sections.items() if row.raw & EARLY}
            f["placement.vmemmap"] = [[hx(a), hx(b), hx(c)] for a, b, c in _phys_runs(_early_runs(
                [(r.vstart, r.vend, r.pstart) for r in vw.runs], early, ms.vmemmap_base))]

    db = block("PTWALK_DIRECTMAP")
    cap_dm: list[Leafrun] = []
    if db is not None:
        dw = parse_ptwalk(db)
        cap_dm = [Leafrun(r.pstart, r.pend, r.page_size, _perms(r.flags)) for r in dw.runs]
        f["directmap.coverage"] = _rng(merge([(r.start, r.end) for r in cap_dm]))
        if dw.levels:
            f["directmap.levels"] = dw.levels
    return Expected(f, notes, cap_dm, nodes, has_directmap=db is not None)


def _early_runs(runs: list[tuple[int, int, int]], early: set[int], base: int) -> list[tuple[int, int, int]]:
    """The parts of vmemmap runs that hold the memmap of boot (EARLY) sections: those come from
    memblock at boot; hot-added sections' memmap comes from the page allocator, which we do not model."""
    sec = (1 << 15) * 64  # memmap bytes per section (64-byte struct page, 6.1)
    out = []
    for vs, ve, ps in runs:
        a = vs
        while a < ve:
            nr = (a - base) // sec
            b = min(ve, base + (nr + 1) * sec)
            if nr in early:
                out.append((a, b, ps + (a - vs)))
            a = b
    return out


def _phys_runs(runs: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Virtual runs merged while both virtual and physical addresses continue."""
    out: list[list[int]] = []
    for vs, ve, ps in sorted(runs):
        if out and out[-1][1] == vs and out[-1][2] + (vs - out[-1][0]) == ps:
            out[-1][1] = ve
        else:
            out.append([vs, ve, ps])
    return [(a, b, c) for a, b, c in out]


def _vm_nodes(runs: list[tuple[int, int, int]], nodes: dict[int, tuple[int, int]]) -> list[list[Any]]:
    """Virtual vmemmap ranges merged by the node their backing memory lies on."""
    out: list[list[Any]] = []
    for vs, ve, ps in sorted(runs):
        nid = node_of(ps, nodes)
        if out and out[-1][1] == vs and out[-1][2] == nid:
            out[-1][1] = ve
        else:
            out.append([vs, ve, nid])
    return [[hx(a), hx(b), n] for a, b, n in out]


# ---------------------------------------------------------------------- got (the model)


@dataclass
class ModelBlock:
    nr: int
    state: str
    valid_zones: str
    node: int


def memory_blocks(k) -> tuple[int, dict[int, ModelBlock]]:  # noqa: ANN001
    """Memory blocks as drivers/base/memory.c @ 6.1 creates and prints them.

    Boot memory: ``memory_dev_init`` → ``add_memory_block(nr)`` for every block with a present section,
    state ``MEM_ONLINE``.  The node and zone come from ``memory_block_add_nid`` →
    ``early_node_zone_for_memory_block``: the one populated zone of the node that intersects the block
    (``zone_intersects`` on the zone's span), ``NULL`` when two zones (or two nodes) do;
    ``valid_zones_show`` of an online block prints that zone's name, or ``none`` for ``NULL``.

    Hot-added memory (:mod:`vmemmap.hotplug`, which keeps the blocks): blocks are created offline on the added node;
    an online block shows the zone it was onlined to; an offline one shows
    ``zone_for_pfn_range(MMOP_ONLINE)`` (``default_zone_for_pfn``) followed by the other zones
    ``print_allowed_zone`` accepts (the kernel zone for MMOP_ONLINE_KERNEL, ZONE_MOVABLE).
    """
    hp = k.hotplug
    out: dict[int, ModelBlock] = {}
    for nr, b in sorted(hp.blocks.items()):
        out[nr] = ModelBlock(nr, b.state, hp.valid_zones(b), b.nid)
    bsize = hp.block_size
    return bsize, out


def got_facts(k, exp: Expected) -> dict[str, Any]:  # noqa: ANN001
    """The same facts from a booted kernel (values read from kernel memory where the kernel keeps them)."""
    f: dict[str, Any] = {}
    mem = k.mem
    for name in ("page_offset_base", "vmalloc_base", "vmemmap_base", "max_pfn", "max_low_pfn",
                 "max_possible_pfn"):
        cat = "base" if name.endswith("_base") else "max_pfn"
        if name in k.symbols:
            f[f"{cat}.{name}"] = hx(mem.peek(k.symbols[name], 8))

    for nid, n in sorted(k.nodes.items()):
        # the "Initmem setup node" line: the boot span (memblock ranges), not the pgdat span that
        # onlining hot-added memory grows (resize_pgdat_range)
        f[f"node[{nid}].range"] = _rng([(n.ranges[0][0] << PAGE_SHIFT, n.ranges[-1][1] << PAGE_SHIFT)])[0]
    bsize, blocks = memory_blocks(k)
    by_node: dict[int, list[int]] = {}
    for b in blocks.values():
        by_node.setdefault(b.node, []).append(b.nr)
    for nid in sorted(k.nodes):
        f[f"node[{nid}].blocks"] = compress(by_node.get(nid, []))

    for nid in sorted(k.nodes):
        for idx, zname in enumerate(k.era.zone_names):
            z = next((z for z in k.zones if z.nid == nid and z.idx == idx), None)
            key = f"zone[{nid}].{zname}"
            f[f"{key}.spanned"] = z.spanned_pages if z else 0
            f[f"{key}.present"] = z.present_pages if z else 0
            if z and z.present_pages:
                f[f"{key}.start_pfn"] = hx(z.start_pfn)

    f["block.block_size_bytes"] = hx(bsize)
    f["block.blocks"] = compress(list(blocks))
    for nr, b in sorted(blocks.items()):
        f[f"block[memory{nr}].state"] = b.state
        f[f"block[memory{nr}].valid_zones"] = b.valid_zones
        f[f"block[memory{nr}].node"] = b.node

    st = getattr(k.model, "sections", None)
    if st is None:
        raise InputError(f"{k.model_name} has no mem_section: conform needs the vmemmap model")
    f["root.indices"] = sorted(st.roots)
    f["root.per_root"] = st.per_root
    f["section.sizeof"] = st.ms_size
    nrs = [int(x) for x in st.present_array()]
    f["section.present"] = compress(nrs)
    import numpy as np

    words = st.words_array(np.asarray(nrs, dtype=np.int64))
    for nr, w in zip(nrs, words.tolist()):
        f[f"section[{nr}].raw"] = hx(int(w))
    for nr in nrs:
        f[f"subsection[{nr}]"] = hx(st.subsection_map(nr))

    leaves = k.vmemmap_leaves
    f["vmemmap.ranges"] = _rng(merge([(v.vstart, v.vend) for v in leaves]))
    f["vmemmap.leaf_sizes"] = sorted({LEVEL_OF[v.page_size] for v in leaves})
    counts: dict[str, int] = {}
    for v in leaves:
        counts[LEVEL_OF[v.page_size]] = counts.get(LEVEL_OF[v.page_size], 0) + (v.vend - v.vstart) // v.page_size
    for level, n in counts.items():
        f[f"vmemmap.leafcount.{level}"] = n
    # where the backing lies, judged by the capture's node spans (not the exact address: docs)
    f["vmemmap.node"] = _vm_nodes([(v.vstart, v.vend, v.pstart) for v in leaves], exp.node_ranges)

    for nid, n in sorted(k.nodes.items()):
        f[f"placement.node_data[{nid}]"] = hx(n.pgdat_phys[0])
    if "mem_section" in k.symbols:
        f["placement.mem_section"] = hx(mem.peek(k.symbols["mem_section"], 8))
    for r, va in sorted(st.roots.items()):
        f[f"placement.root[{r}]"] = hx(va)
    for nr, w in zip(nrs, words.tolist()):
        if int(w) & EARLY:
            f[f"placement.usage[{nr}]"] = hx(st.usage_of(nr))
    early = {nr for nr, w in zip(nrs, words.tolist()) if int(w) & EARLY}
    f["placement.vmemmap"] = [[hx(a), hx(b), hx(c)] for a, b, c in _phys_runs(_early_runs(
        [(v.vstart, v.vend, v.pstart) for v in leaves], early, k.layout.vmemmap_base))]

    model_dm = [Leafrun(s, e, size) for s, e, size in k.directmap]
    f["directmap.coverage"] = _rng(merge([(r.start, r.end) for r in model_dm]))
    f["directmap.levels"] = k.tables.levels
    got_struct: dict[int, list[tuple[int, int]]] = {SZ_1G: [], SZ_2M: [], SZ_4K: []}
    for r in model_dm:
        got_struct[r.size].append((r.start, r.end))
    for size, v in sorted(got_struct.items(), reverse=True):
        f[f"directmap.{SIZE_NAMES[size]}"] = _rng(merge(v))
    return f


def expected_structure(exp: Expected, k) -> int:  # noqa: ANN001
    """Add the direct map's large-page structure to ``exp`` (it needs the model's leaves: see
    :func:`directmap_structure`); returns the number of CPA splits undone."""
    if not exp.has_directmap:
        return 0
    model_dm = [Leafrun(s, e, size) for s, e, size in k.directmap]
    struct, undone = directmap_structure(exp.capture_dm, model_dm)
    for name, v in struct.items():
        exp.facts[f"directmap.{name}"] = v
    return undone


__all__ = [
    "CATEGORIES", "Expected", "expected_facts", "got_facts", "expected_structure", "memory_blocks",
    "directmap_structure", "Leafrun", "compress", "PtRun",
]
