"""Boot messages of the era's kernel, rendered from boot facts (DESIGN.md contract 3).

The simulated kernel fills a :class:`BootFacts`; :func:`render_boot_log` prints what that era's
x86-64 kernel prints for the same facts, line by line and without timestamps (``dmesg -t``), in the
kernel's order: e820 map (and, 4.x+, the e820 updates and ``last_pfn``), the NUMA setup, the
vmemmap populate lines (only where ``era.vmemmap_message_at_boot``), then the zone ranges.

Formats are data: :data:`_PROFILES` holds one :class:`LogProfile` per kernel version
(``era.version``), each format string copied from the kernel source named in its docstring /
comment. Which vmemmap message style applies comes from ``era.vmemmap_message`` and which e820 style
from ``era.e820_format``.

Sources (citations as in kernel-reference.md §0):

* 6.1: every rendered line checked byte for byte against the real 6.1 boot logs in
  ``shared/oracle/captures`` (base-2G, numa2-2G, la57-6G); the populate line against dimm-hot.log.
* 2.6.21: ``e820_print_map()`` in arch/x86_64/kernel/e820.c (torvalds/linux @ 076422d2af7e, the
  2.6.2x file), ``numa_initmem_init()`` / ``setup_node_bootmem()`` in arch/x86_64/mm/numa.c
  (sagsango/linux-2.6.20 @ b705d5d8), ``acpi_numa_memory_affinity_init()`` in
  arch/x86_64/mm/srat.c (torvalds/linux @ 05d1fa4bf6a1; the cumulative ``nd->start-nd->end`` print,
  its ``end--`` removed in Oct 2005), ``free_area_init_nodes()`` in mm/page_alloc.c as added by
  Mel Gorman's arch-independent zone sizing (2.6.19).
* 2.6.24: ``free_area_init_nodes()`` in mm/page_alloc.c (fulei0920/linux-2.6.24 @ d18aa49960d4),
  ``%p`` in lib/vsprintf.c (same tree: zero-padded to ``2*sizeof(void *)`` hex digits, no ``0x``),
  the populate line of 0889eba5b38f (arch/x86_64/mm/init.c, ``printk(KERN_DEBUG " [%lx-%lx]
  PMD ->%p on node %d\\n", addr, addr + PMD_SIZE - 1, p, node)``).
* 2.6.26: ``vmemmap_populate()`` / ``vmemmap_populate_print_last()`` in arch/x86/mm/init_64.c
  (c2b91e2eec96; text read from the index, id 142950019), SRAT per-entry print of Suresh Siddha's
  "srat, x86_64: Add support for nodes spanning other nodes" (March 2008).
* 2.6.31: hex ``%0#10lx`` zone/early_node_map lines (real 2.6.27-2.6.33 dmesg logs in the index
  and David Rientjes' Feb 2010 "empty" patch, whose context is the 2.6.3x code).
"""

from __future__ import annotations

from dataclasses import dataclass
from vmemmap.eras import Era

PAGE_SHIFT = 12
PMD_SIZE = 1 << 21
PAGE_SIZE = 1 << PAGE_SHIFT


@dataclass(frozen=True)
class PopulatedPmd:
    """One vmemmap PMD (or, for base pages, one PTE) populated at boot, in populate order."""

    vstart: int  # vmemmap virtual start of the leaf
    vend: int  # exclusive
    pstart: int  # physical start of the backing block
    node: int


@dataclass(frozen=True)
class BootFacts:
    """What the simulated kernel learned and did at boot, as the boot messages need it."""

    era: Era
    e820: tuple[tuple[int, int, str], ...]  # BIOS map: (start, end_excl, type name)
    e820_updates: tuple[tuple[str, int, int, str, str], ...]  # ('update'|'remove', start, end_excl, old, new)
    max_pfn: int
    max_arch_pfn: int
    numa_nodes: tuple[tuple[int, int, int], ...]  # SRAT memory affinity (nid, start, end_excl)
    node_data: tuple[tuple[int, int, int], ...]  # (nid, phys start, end_excl) of each NODE_DATA
    zones: tuple[tuple[str, int, int], ...]  # (name, start_pfn, end_pfn_excl); end == start: empty
    early_node_map: tuple[tuple[int, int, int], ...]  # (nid, start_pfn, end_pfn_excl), sorted
    node_spans: tuple[tuple[int, int, int], ...]  # (nid, start_pfn, end_pfn_excl)
    holes: tuple[tuple[int, str, int], ...]  # (nid, zone name, pages) unavailable ranges (6.x)
    vmemmap: tuple[PopulatedPmd, ...]  # in populate order
    vmemmap_page_size: int  # 2 MiB (PMD) or 4 KiB (base pages)
    page_offset: int  # direct-map base
    directmap: tuple[tuple[int, int, str], ...]  # init_memory_mapping ranges (start, end_excl, size)
    gbpages: bool  # 1 GiB pages used for the direct map


# --------------------------------------------------------------------------------------------------
# Per-version format table
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogProfile:
    """The printk formats one kernel version uses for the boot lines we render.

    Fields holding ``str.format`` templates use the named fields documented next to them; ``None``
    means the version does not print that line.
    """

    # e820 (style itself comes from era.e820_format)
    e820_old_types: dict[str, str]  # type name -> text in e820_print_map()'s switch (old style)
    e820_updates: bool  # e820__range_update()/e820__range_remove() lines (4.x+)
    last_pfn: bool  # e820_end_pfn(): "last_pfn = %#lx max_arch_pfn = %#lx"
    gbpages_msg: bool  # init_gbpages(): "Using GB pages for direct mapping"
    # NUMA
    srat: str  # {nid} {pxm} {start} {end} (end meaning given by srat_mode)
    srat_mode: str  # 'cumulative' (2.6.2x: merged node range, end excl.) | 'entry' | 'entry-incl'
    numa_merge: bool  # numa_cleanup_meminfo() "NUMA: Node %d [mem ..] + [mem ..] -> [mem ..]"
    no_numa: tuple[str, str]  # dummy_numa_init()/numa_initmem_init(): {start} {end}
    no_numa_end_incl: bool  # Faking a node end printed inclusive (6.x) or exclusive (2.6.2x)
    node_setup: str | None  # setup_node_bootmem(): {nid} {start} {end} (end exclusive)
    node_data: str | None  # NODE_DATA line: {nid} {start} {end} (end inclusive)
    node_data_first: bool  # 6.x: NODE_DATA lines after the SRAT block (no per-node setup line)
    node_data_offnode: str | None  # "    NODE_DATA(%d) on node %d": {nid} {tnid}
    # zones (free_area_init_nodes / free_area_init)
    zones: str  # 'pfn-dec' | 'pfn-hex' | 'mem'
    movable_header: str | None
    early_map_header: str  # {n} = number of ranges
    initmem_line: str | None  # 6.x free_area_init_node(): {nid} {start} {end}
    holes: bool  # init_unavailable_range() "On node %d, zone %s: %lld pages in unavailable ranges"


_OLD_TYPES = {
    # arch/x86_64/kernel/e820.c e820_print_map() @ 2.6.21; anything else prints "type %u"
    "usable": "(usable)",
    "reserved": "(reserved)",
    "ACPI data": "(ACPI data)",
    "ACPI NVS": "(ACPI NVS)",
}
# arch/x86/kernel/e820.c e820_print_type() @ 2.6.31 also names E820_UNUSABLE (UNVERIFIED text)
_OLD_TYPES_31 = {**_OLD_TYPES, "unusable": "(unusable)"}

#: E820 type numbers for the old "type %u" fallback (include/asm-x86/e820.h, arch/x86/include/asm/e820.h)
_E820_TYPE_NUMBERS = {
    "usable": 1, "reserved": 2, "ACPI data": 3, "ACPI NVS": 4, "unusable": 5,
    "persistent (type 7)": 7, "persistent (type 12)": 12, "PRAM": 12,
    "soft reserved": 0xEFFFFFFF,
}

_SRAT_2621 = "SRAT: Node {nid} PXM {pxm} {start:x}-{end:x}"  # printk "%Lx-%Lx" nd->start, nd->end
_SRAT_2626 = "SRAT: Node {nid} PXM {pxm} {start:x}-{end:x}"  # printk "%lx-%lx" start, end (per entry)
# drivers/acpi/numa.c (4.20) / drivers/acpi/numa/srat.c (6.x), pr_fmt "ACPI: "; 6.1 capture checked.
_SRAT_6X = "ACPI: SRAT: Node {nid} PXM {pxm} [mem {start:#010x}-{end:#010x}]"

_PROFILE_2621 = LogProfile(
    e820_old_types=_OLD_TYPES, e820_updates=False, last_pfn=False, gbpages_msg=False,
    srat=_SRAT_2621, srat_mode="cumulative", numa_merge=False,
    no_numa=("No NUMA configuration found", "Faking a node at {start:016x}-{end:016x}"),
    no_numa_end_incl=False,
    node_setup="Bootmem setup node {nid} {start:016x}-{end:016x}",
    node_data=None, node_data_first=False, node_data_offnode=None,
    zones="pfn-dec", movable_header=None,
    early_map_header="early_node_map[{n}] active PFN ranges",
    initmem_line=None, holes=False,
)
_PROFILE_2624 = LogProfile(
    **{**_PROFILE_2621.__dict__, "movable_header": "Movable zone start PFN for each node"},
)
_PROFILE_2626 = LogProfile(
    **{**_PROFILE_2624.__dict__, "srat": _SRAT_2626, "srat_mode": "entry",
       # setup_node_bootmem() of the bootmem era (2.6.27-2.6.3x text; 2.6.26 UNVERIFIED)
       "node_data": "  NODE_DATA [{start:016x} - {end:016x}]"},
)
_PROFILE_2631 = LogProfile(
    **{**_PROFILE_2626.__dict__, "e820_old_types": _OLD_TYPES_31, "last_pfn": True,
       "gbpages_msg": True, "zones": "pfn-hex"},
)
_PROFILE_420 = LogProfile(
    e820_old_types=_OLD_TYPES, e820_updates=True, last_pfn=True, gbpages_msg=True,
    srat=_SRAT_6X, srat_mode="entry-incl", numa_merge=True,
    no_numa=("No NUMA configuration found", "Faking a node at [mem {start:#018x}-{end:#018x}]"),
    no_numa_end_incl=True,
    node_setup=None,
    node_data="NODE_DATA({nid}) allocated [mem {start:#010x}-{end:#010x}]",
    node_data_first=True,
    node_data_offnode="    NODE_DATA({nid}) on node {tnid}",
    zones="mem", movable_header="Movable zone start for each node",
    early_map_header="Early memory node ranges",
    initmem_line="Initmem setup node {nid} [mem {start:#018x}-{end:#018x}]",
    holes=False,  # init_unavailable_range()'s message is 5.x+
)
_PROFILE_6X = LogProfile(**{**_PROFILE_420.__dict__, "holes": True})

#: kernel version (``Era.version``) -> formats
_PROFILES: dict[str, LogProfile] = {
    "2.6.21": _PROFILE_2621,
    "2.6.24": _PROFILE_2624,
    "2.6.26": _PROFILE_2626,
    "2.6.31": _PROFILE_2631,
    "4.20": _PROFILE_420,
    "6.1": _PROFILE_6X,
    "6.12": _PROFILE_6X,
}


def profile_for(era: Era) -> LogProfile:
    """The format profile of an era: exact version, else the closest older one."""
    if era.version in _PROFILES:
        return _PROFILES[era.version]

    def key(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split("."))

    older = [v for v in _PROFILES if key(v) <= key(era.version)]
    return _PROFILES[max(older, key=key) if older else "2.6.21"]


# --------------------------------------------------------------------------------------------------
# e820
# --------------------------------------------------------------------------------------------------


def _e820_lines(f: BootFacts, prof: LogProfile) -> list[str]:
    """``e820_print_map("BIOS-e820")`` (2.6.x) / ``e820__print_table("BIOS-e820")`` (4.x, 6.x).

    Old (arch/x86_64/kernel/e820.c @ 2.6.21, arch/x86/kernel/e820.c @ 2.6.31):
    ``printk(" %s: %016Lx - %016Lx ", who, addr, addr + size)`` then ``(usable)`` etc. — the end is
    exclusive. New (arch/x86/kernel/e820.c @ 6.1): ``pr_info("%s: [mem %#018Lx-%#018Lx] ", who,
    addr, addr + size - 1)`` then the type name — the end is inclusive.
    """
    lines = ["BIOS-provided physical RAM map:"]
    for start, end, typ in f.e820:
        if f.era.e820_format == "new":
            lines.append(f"BIOS-e820: [mem {start:#018x}-{end - 1:#018x}] {typ}")
        else:
            text = prof.e820_old_types.get(typ)
            if text is None:
                num = _E820_TYPE_NUMBERS.get(typ)
                if num is None and typ.startswith("type "):
                    num = int(typ.split()[1], 0)
                text = f"type {num if num is not None else typ}"
            lines.append(f" BIOS-e820: {start:016x} - {end:016x} {text}")
    return lines


def _e820_update_lines(f: BootFacts) -> list[str]:
    """``e820__range_update()`` / ``e820__range_remove()`` (arch/x86/kernel/e820.c @ 6.1).

    ``printk(KERN_DEBUG "e820: update [mem %#010Lx-%#010Lx] ", start, end - 1)``, the old type,
    `` ==> ``, the new type; remove prints the old type only when it checks one (else a trailing
    space remains). Checked against the 6.1 captures.
    """
    out = []
    for op, start, end, old, new in f.e820_updates:
        head = f"e820: {op} [mem {start:#010x}-{end - 1:#010x}] "
        if op == "update":
            out.append(f"{head}{old} ==> {new}")
        else:
            out.append(f"{head}{old}")
    return out


def _e820_end_pfn(f: BootFacts, limit_pfn: int) -> int:
    """``e820_end_pfn(limit_pfn, E820_TYPE_RAM)`` over the e820 table after the kernel's updates."""
    table = _apply_updates(f.e820, f.e820_updates)
    last = 0
    for start, end, typ in table:
        if typ != "usable":
            continue
        s, e = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        if s >= limit_pfn:
            continue
        if e > limit_pfn:
            last = limit_pfn
            break
        last = max(last, e)
    return min(last, f.max_arch_pfn)


def _apply_updates(
    e820: tuple[tuple[int, int, str], ...], updates: tuple[tuple[str, int, int, str, str], ...]
) -> list[tuple[int, int, str]]:
    """The kernel's e820_table after e820__range_update/remove (type changes on overlaps)."""
    table = list(e820)
    for op, ustart, uend, old, new in updates:
        out: list[tuple[int, int, str]] = []
        for start, end, typ in table:
            if typ != old or end <= ustart or start >= uend:
                out.append((start, end, typ))
                continue
            if start < ustart:
                out.append((start, ustart, typ))
            if op == "update":
                out.append((max(start, ustart), min(end, uend), new))
            if end > uend:
                out.append((uend, end, typ))
        table = out
    return table


def _last_pfn_lines(f: BootFacts) -> list[str]:
    """``e820_end_pfn()``'s ``pr_info("last_pfn = %#lx max_arch_pfn = %#lx\\n")``.

    setup_arch() calls it for max_pfn, then again for max_low_pfn (limit 4 GiB) when max_pfn is
    above 4 GiB (la57-6G capture: two lines).
    """
    lines = [f"last_pfn = {f.max_pfn:#x} max_arch_pfn = {f.max_arch_pfn:#x}"]
    four_g = 1 << (32 - PAGE_SHIFT)
    if f.max_pfn > four_g:
        lines.append(f"last_pfn = {_e820_end_pfn(f, four_g):#x} max_arch_pfn = {f.max_arch_pfn:#x}")
    return lines


# --------------------------------------------------------------------------------------------------
# NUMA
# --------------------------------------------------------------------------------------------------


def _nid_of_pfn(f: BootFacts, pfn: int) -> int | None:
    for nid, s, e in f.early_node_map:
        if s <= pfn < e:
            return nid
    for nid, s, e in f.node_spans:
        if s <= pfn < e:
            return nid
    return None


def _numa_lines(f: BootFacts, prof: LogProfile) -> list[str]:
    """NUMA discovery and node setup lines.

    * SRAT memory affinity: ``acpi_numa_memory_affinity_init()``. 2.6.21/2.6.24 print the node's
      cumulative range ``%Lx-%Lx`` (nd->start, nd->end, end exclusive); 2.6.26+ the entry
      ``%lx-%lx`` (start, end); 4.20+/6.x ``SRAT: Node %u PXM %u [mem %#010Lx-%#010Lx]%s%s`` with
      pr_fmt "ACPI: " and an inclusive end. PXM is taken equal to the node id (QEMU's numbering;
      BootFacts has no PXM). The hotplug/non-volatile suffixes need SRAT flags we do not have.
    * 6.x ``numa_cleanup_meminfo()`` merge lines, computed from the SRAT blocks.
    * ``NODE_DATA(%d) allocated [mem %#010Lx-%#010Lx]`` (6.x ``alloc_node_data()``) /
      ``Bootmem setup node %d %016lx-%016lx`` + ``  NODE_DATA [%016lx - %016lx]`` (2.6.x
      ``setup_node_bootmem()``).
    * No SRAT: ``No NUMA configuration found`` + ``Faking a node at ...`` (from 0 to max_pfn).

    Not printed (facts missing): ``SRAT: PXM %u -> APIC %u -> Node %u`` (CPU affinity),
    2.6.2x ``NUMA: Using %d for the hash shift.`` (memnode_shift), ``  bootmap [...] pages %lx``
    (bootmem bitmap), 2.6.21 ``end_pfn_map = %lu``.
    """
    lines: list[str] = []
    if f.numa_nodes:
        merged: dict[int, tuple[int, int]] = {}
        for nid, start, end in f.numa_nodes:
            if prof.srat_mode == "cumulative":
                s0, e0 = merged.get(nid, (start, end))
                merged[nid] = (min(s0, start), max(e0, end))
                s, e = merged[nid]
                lines.append(prof.srat.format(nid=nid, pxm=nid, start=s, end=e))
            elif prof.srat_mode == "entry":
                lines.append(prof.srat.format(nid=nid, pxm=nid, start=start, end=end))
            else:
                lines.append(prof.srat.format(nid=nid, pxm=nid, start=start, end=end - 1))
        if prof.numa_merge:
            lines += _numa_merge_lines(f)
    else:
        s = 0
        e = f.max_pfn << PAGE_SHIFT
        lines.append(prof.no_numa[0])
        lines.append(prof.no_numa[1].format(start=s, end=e - 1 if prof.no_numa_end_incl else e))
    if prof.node_data_first:
        for nid, start, end in f.node_data:
            if prof.node_data:
                lines.append(prof.node_data.format(nid=nid, start=start, end=end - 1))
            tnid = _nid_of_pfn(f, start >> PAGE_SHIFT)
            if prof.node_data_offnode and tnid is not None and tnid != nid:
                lines.append(prof.node_data_offnode.format(nid=nid, tnid=tnid))
    else:
        nd = {nid: (s, e) for nid, s, e in f.node_data}
        for nid, spfn, epfn in f.node_spans:
            if prof.node_setup:
                lines.append(prof.node_setup.format(
                    nid=nid, start=spfn << PAGE_SHIFT, end=epfn << PAGE_SHIFT))
            if prof.node_data and nid in nd:
                s, e = nd[nid]
                lines.append(prof.node_data.format(nid=nid, start=s, end=e - 1))
    return lines


def _numa_merge_lines(f: BootFacts) -> list[str]:
    """``numa_cleanup_meminfo()`` (arch/x86/mm/numa.c @ 6.1): drop blocks without memory, clip to
    max_pfn, then join same-node blocks whose hole does not overlap another node's block, printing
    ``NUMA: Node %d [mem %#010Lx-%#010Lx] + [mem %#010Lx-%#010Lx] -> [mem %#010Lx-%#010Lx]``.
    """
    mem = [(s << PAGE_SHIFT, e << PAGE_SHIFT) for _, s, e in f.early_node_map]
    high = f.max_pfn << PAGE_SHIFT
    blks: list[list[int]] = []
    for nid, start, end in f.numa_nodes:
        if mem and not any(start < me and end > ms for ms, me in mem):
            continue  # moved to numa_reserved_meminfo
        end = min(end, high)
        if start >= end:
            continue
        blks.append([nid, start, end])
    out = []
    i = 0
    while i < len(blks):
        j = i + 1
        while j < len(blks):
            bi, bj = blks[i], blks[j]
            if bi[0] != bj[0]:
                j += 1
                continue
            start, end = min(bi[1], bj[1]), max(bi[2], bj[2])
            if any(bk[0] != bi[0] and start < bk[2] and end > bk[1] for bk in blks):
                j += 1
                continue
            out.append(
                f"NUMA: Node {bi[0]} [mem {bi[1]:#010x}-{bi[2] - 1:#010x}] + "
                f"[mem {bj[1]:#010x}-{bj[2] - 1:#010x}] -> [mem {start:#010x}-{end - 1:#010x}]"
            )
            bi[1], bi[2] = start, end
            del blks[j]
        i += 1
    return out


# --------------------------------------------------------------------------------------------------
# vmemmap populate messages
# --------------------------------------------------------------------------------------------------


def _p(value: int) -> str:
    """``%p`` on x86-64: 2.6.x lib/vsprintf.c pads to ``2*sizeof(void *)`` = 16 lowercase hex digits,
    no ``0x``; 6.x with ``no_hash_pointers`` prints the same raw form (dimm-hot.log)."""
    return f"{value & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def _populate_addrs(f: BootFacts) -> list[int]:
    """The loop variable ``addr`` each PMD was allocated at.

    ``vmemmap_populate(start_page, nr, node)`` walks ``addr`` from the section's first struct page;
    only the first PMD of a call can start unaligned, and only when the section's memmap does not
    start on a PMD boundary (56-byte struct page: 1.75 MiB per 128 MiB section) and the section
    straddling the PMD's start was not populated (no memory there). The section map is read from
    ``early_node_map`` (sparse_memory_present_with_active_regions) and the vmemmap base is the
    2^41-aligned block holding the PMDs (0xffffe20000000000 / 0xffffea0000000000 in 2.6.x).
    """
    era = f.era
    per_sec = era.pages_per_section * era.struct_page_size
    addrs = [p.vstart for p in f.vmemmap]
    if per_sec % PMD_SIZE == 0 or not f.vmemmap:
        return addrs
    base = f.vmemmap[0].vstart & ~((1 << 41) - 1)
    pps = era.pages_per_section

    def present(sec: int) -> bool:
        lo, hi = sec * pps, (sec + 1) * pps
        return any(s < hi and e > lo for _, s, e in f.early_node_map)

    for i, pmd in enumerate(f.vmemmap):
        off = pmd.vstart - base
        sec = off // per_sec
        if sec * per_sec == off or present(sec):
            continue
        nxt = (sec + 1) * per_sec
        while nxt < off + PMD_SIZE and not present(nxt // per_sec):
            nxt += per_sec
        if nxt < off + PMD_SIZE:
            addrs[i] = base + nxt
    return addrs


def render_vmemmap_lines(f: BootFacts, style: str | None = None) -> list[str]:
    """The vmemmap populate messages of the era, whether or not they reach dmesg at boot.

    * ``per-pmd`` (2.6.24, 0889eba5b38f): one ``" [%lx-%lx] PMD ->%p on node %d"`` per allocated PMD:
      ``addr, addr + PMD_SIZE - 1, p, node`` (p = direct-map address of the 2 MiB block).
    * ``coalesced`` (2.6.26 c2b91e2eec96 .. 6.x): ``" [%lx-%lx] PMD -> [%p-%p] on node %d"`` with
      ``addr_start, addr_end-1, p_start, p_end-1, node_start``. A new run starts when
      ``p_end != p || node_start != node`` — the *backing* is tested for contiguity, not the virtual
      range, so a run may span a virtual gap. ``addr_end = addr + PMD_SIZE``, ``p_end = p +
      PMD_SIZE`` (both exclusive, printed ``-1``). ``vmemmap_populate_print_last()`` flushes the
      last run (end of sparse_init; hot-plug calls it after each add, so for hot-plug pass the
      PMDs of one add per call: virtio-mem.log shows contiguous adds printed as separate lines).
    * ``none``: nothing.

    Base-page (4 KiB) populates print nothing in any era (2.6.27+ ``vmemmap_pte_populate`` branch and
    ``vmemmap_populate_basepages()`` have no message).
    """
    style = style or f.era.vmemmap_message
    if style == "none" or f.vmemmap_page_size != PMD_SIZE or not f.vmemmap:
        return []
    addrs = _populate_addrs(f)
    po = f.page_offset
    lines: list[str] = []
    if style == "per-pmd":
        for addr, pmd in zip(addrs, f.vmemmap):
            lines.append(f" [{addr:x}-{addr + PMD_SIZE - 1:x}] PMD ->{_p(po + pmd.pstart)} on node {pmd.node}")
        return lines
    if style != "coalesced":
        raise ValueError(f"unknown vmemmap message style {style!r}")
    addr_start = addr_end = 0
    p_start: int | None = None
    p_end: int | None = None
    node_start = 0
    for addr, pmd in zip(addrs, f.vmemmap):
        p = po + pmd.pstart
        if p_end != p or node_start != pmd.node:
            if p_start is not None:
                lines.append(_coalesced(addr_start, addr_end, p_start, p_end or 0, node_start))
            addr_start, node_start, p_start = addr, pmd.node, p
        addr_end = addr + PMD_SIZE
        p_end = p + PMD_SIZE
    if p_start is not None:  # vmemmap_populate_print_last()
        lines.append(_coalesced(addr_start, addr_end, p_start, p_end or 0, node_start))
    return lines


def _coalesced(a0: int, a1: int, p0: int, p1: int, node: int) -> str:
    return f" [{a0:x}-{a1 - 1:x}] PMD -> [{_p(p0)}-{_p(p1 - 1)}] on node {node}"


# --------------------------------------------------------------------------------------------------
# zones
# --------------------------------------------------------------------------------------------------


def _zone_lines(f: BootFacts, prof: LogProfile) -> list[str]:
    """``free_area_init_nodes()`` (mm/page_alloc.c; 6.x ``free_area_init()`` in mm/mm_init.c).

    * 2.6.21/2.6.24/2.6.26: ``Zone PFN ranges:`` / ``  %-8s %8lu -> %8lu`` (every zone but
      Movable, empty ones as equal numbers), 2.6.24+ ``Movable zone start PFN for each node``,
      ``early_node_map[%d] active PFN ranges`` / ``  %3d: %8lu -> %8lu``.
    * 2.6.31: the same with ``%0#10lx`` (``empty`` only from 2.6.34).
    * 4.20/6.x: ``Zone ranges:`` / ``  %-8s [mem %#018Lx-%#018Lx]`` or ``  %-8s empty``,
      ``Movable zone start for each node``, ``Early memory node ranges`` /
      ``  node %3d: [mem %#018Lx-%#018Lx]``, ``Initmem setup node %d [mem %#018Lx-%#018Lx]``, then
      (5.x+) ``On node %d, zone %s: %lld pages in unavailable ranges``.

    The per-node ``  Node %d: ...`` movable-start lines need kernelcore=/movablecore= facts we do not
    have (they only print when ZONE_MOVABLE is configured).
    """
    lines: list[str] = []
    zones = [z for z in f.zones if z[0] != "Movable"]
    if prof.zones == "mem":
        lines.append("Zone ranges:")
        for name, s, e in zones:
            if s == e:
                lines.append(f"  {name:<8s} empty")
            else:
                lines.append(f"  {name:<8s} [mem {s << PAGE_SHIFT:#018x}-{(e << PAGE_SHIFT) - 1:#018x}]")
    else:
        lines.append("Zone PFN ranges:")
        for name, s, e in zones:
            lines.append(f"  {name:<8s} {_pfn(prof, s)} -> {_pfn(prof, e)}")
    if prof.movable_header:
        lines.append(prof.movable_header)
    lines.append(prof.early_map_header.format(n=len(f.early_node_map)))
    for nid, s, e in f.early_node_map:
        if prof.zones == "mem":
            lines.append(f"  node {nid:3d}: [mem {s << PAGE_SHIFT:#018x}-{(e << PAGE_SHIFT) - 1:#018x}]")
        else:
            lines.append(f"  {nid:3d}: {_pfn(prof, s)} -> {_pfn(prof, e)}")
    if prof.initmem_line:
        for nid, s, e in f.node_spans:
            lines.append(prof.initmem_line.format(
                nid=nid, start=s << PAGE_SHIFT, end=(e << PAGE_SHIFT) - 1))
    if prof.holes:
        for nid, zname, pages in f.holes:
            lines.append(f"On node {nid}, zone {zname}: {pages} pages in unavailable ranges")
    return lines


def _pfn(prof: LogProfile, v: int) -> str:
    """``%8lu`` (2.6.2x) or ``%0#10lx`` (2.6.31: ``0x`` counted in the width of 10)."""
    return f"{v:8d}" if prof.zones == "pfn-dec" else f"{v:#010x}"


# --------------------------------------------------------------------------------------------------
# the whole log
# --------------------------------------------------------------------------------------------------

def render_boot_log(f: BootFacts) -> list[str]:
    """The era kernel's boot messages for these facts, in the kernel's order, without timestamps.

    Order (setup_arch() and what it calls): e820 map; (4.x+) e820 updates; (2.6.31+) last_pfn and
    ``Using GB pages for direct mapping`` (``init_gbpages()``, when 1 GiB pages are used); NUMA
    setup (initmem_init); (2.6.x) vmemmap populate lines from ``sparse_init()`` in paging_init(),
    which precede the zone lines; zone ranges (free_area_init_nodes). On 4.20/6.x the populate
    lines are ``pr_debug`` and never reach dmesg at boot (``era.vmemmap_message_at_boot`` false).

    6.x ``init_memory_mapping: [mem ...]`` and its per-range ``[mem ...] page 2M`` lines are
    ``pr_debug`` in 6.1 and absent from the real 6.1 captures, so they are not printed.
    """
    prof = profile_for(f.era)
    lines = _e820_lines(f, prof)
    if prof.e820_updates:
        lines += _e820_update_lines(f)
    if prof.last_pfn:
        lines += _last_pfn_lines(f)
    if prof.gbpages_msg and f.gbpages:
        lines.append("Using GB pages for direct mapping")
    lines += _numa_lines(f, prof)
    if f.era.vmemmap_message_at_boot:
        lines += render_vmemmap_lines(f)
    lines += _zone_lines(f, prof)
    return lines


__all__ = ["BootFacts", "LogProfile", "PopulatedPmd", "profile_for", "render_boot_log",
           "render_vmemmap_lines"]
