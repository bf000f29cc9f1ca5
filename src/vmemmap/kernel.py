"""The booted kernel: machine + era + memory model, wired as the kernel's boot does it.

:func:`boot` follows ``setup_arch()`` → ``start_kernel()`` for the memory side, in the era's order:

1. e820: the BIOS map, the kernel's own edits (6.x ``e820__range_update`` of page 0 and
   ``e820__range_remove`` of the legacy ROM area), ``max_pfn`` (``e820__end_of_ram_pfn``) clamped to
   ``MAX_ARCH_PFN``.
2. The address map of the era (:mod:`vmemmap.layout`), KASLR placement if asked.
3. memblock / bootmem with the node ranges (SRAT, or one faked node) and the early reservations.
4. The kernel image mapping and the direct map (``init_memory_mapping``: 4K/2M/1G by era and CPU).
5. ``NODE_DATA`` per node, zones (``free_area_init``), then the memory model's ``init()``
   (``sparse_init`` / ``alloc_node_mem_map``), then ``memmap_init`` writing ``page->flags`` links.

Kernel variables live at fixed virtual addresses in the kernel image (``Kernel.symbols``) and are read
through the page tables like everything else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np

from vmemmap.eras import MODEL_NAMES, Era, load_era
from vmemmap.errors import BootError, InputError, ModelNotBuildable
from vmemmap.kernel_memory import KernelMemory
from vmemmap.layout import Layout, build_layout
from vmemmap.machine import Machine
from vmemmap.memblock import NUMA_NO_NODE, Memblock
from vmemmap.paging import entry as pte
from vmemmap.paging.tables import PageTables
from vmemmap.physmem import PhysMem

_USAGE_SUBSECTION_MAP_OFFSET = 16  # struct mem_section_usage: rcu_head, then subsection_map[] (6.x)

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PMD_SIZE = 1 << 21
PUD_SIZE = 1 << 30
SZ_1M = 1 << 20
ISA_END_ADDRESS = 0x100000
MAX_ORDER_NR_PAGES = 1 << 10  # MAX_ORDER 11 (2.6.x .. 6.1)

# the kernel's protection values (arch/x86/include/asm/pgtable_types.h), read by name: a literal
# ``pte.__PAGE_KERNEL`` would be name-mangled inside class bodies
PAGE_KERNEL: int = getattr(pte, "__PAGE_KERNEL")  # 0x8000000000000163
PAGE_KERNEL_LARGE: int = getattr(pte, "__PAGE_KERNEL_LARGE")  # 0x80000000000001e3
PAGE_KERNEL_LARGE_EXEC: int = getattr(pte, "__PAGE_KERNEL_LARGE_EXEC")  # 0x1e3
_PAGE_NX: int = pte._PAGE_NX

#: zone upper limits on x86-64 (arch/x86/mm/init.c zone_sizes_init): DMA < 16 MiB, DMA32 < 4 GiB
ZONE_LIMITS = {"DMA": 0x1000, "DMA32": 0x100000}


@dataclass(frozen=True)
class PageFlagsLayout:
    """Where section, node and zone live in ``page->flags`` (include/linux/mm.h @ 2.6.21,
    include/linux/page-flags-layout.h @ 6.12; kernel-reference §2.8)."""

    sections_width: int
    nodes_width: int
    zones_width: int

    @property
    def sections_pgshift(self) -> int:
        return 64 - self.sections_width  # SECTIONS_PGOFF (0 width -> unused)

    @property
    def nodes_pgshift(self) -> int:
        return self.sections_pgshift - self.nodes_width

    @property
    def zones_pgshift(self) -> int:
        return self.nodes_pgshift - self.zones_width

    def links(self, section: int, nid: int, zone: int) -> int:
        """``set_page_links``: section, node and zone fields of a fresh ``page->flags``."""
        v = 0
        if self.sections_width:
            v |= (section & ((1 << self.sections_width) - 1)) << self.sections_pgshift
        if self.nodes_width:
            v |= (nid & ((1 << self.nodes_width) - 1)) << self.nodes_pgshift
        v |= (zone & ((1 << self.zones_width) - 1)) << self.zones_pgshift
        return v & 0xFFFF_FFFF_FFFF_FFFF


@dataclass
class Zone:
    """One zone of one node (``struct zone``: zone_start_pfn, spanned_pages, present_pages)."""

    nid: int
    idx: int
    name: str
    start_pfn: int
    end_pfn: int
    present_pages: int

    @property
    def spanned_pages(self) -> int:
        return self.end_pfn - self.start_pfn


@dataclass
class Node:
    """``pglist_data`` as far as memory models care."""

    nid: int
    ranges: list[tuple[int, int]]  # memory pfn ranges (memblock, early_node_map)
    start_pfn: int
    end_pfn: int
    pgdat: int = 0  # virtual address of NODE_DATA(nid)
    pgdat_phys: tuple[int, int] = (0, 0)

    @property
    def spanned_pages(self) -> int:
        return self.end_pfn - self.start_pfn

    @property
    def present_pages(self) -> int:
        return sum(e - s for s, e in self.ranges)


#: struct pglist_data: offsets of the fields memory models read. Only their cache lines matter for
#: costs; they are estimates from the structure's member order (node_zones[], node_zonelists[] first),
#: not read from a build (UNVERIFIED). The structure's size is era data (``Era.pgdat_size``: the
#: captures' NODE_DATA allocations), as is how ``alloc_node_data`` rounds it (``Era.node_data_roundup``).
PGDAT_LAYOUT: dict[str, dict[str, int]] = {
    "bootmem": {"node_mem_map": 0x1a40, "node_start_pfn": 0x1a50,
                "node_present_pages": 0x1a58, "node_spanned_pages": 0x1a60, "node_id": 0x1a68},
    "memblock": {"node_mem_map": 0x29e78, "node_start_pfn": 0x29e80,
                 "node_present_pages": 0x29e88, "node_spanned_pages": 0x29e90, "node_id": 0x29e98},
}

#: kernel symbol addresses in the 6.1 / 6.12 Debian cloud images (the oracle captures' KALLSYMS block).
CAPTURED_SYMBOLS: dict[str, dict[str, int]] = {
    "6.1": {
        "vmemmap_base": 0xFFFFFFFF82398470, "vmalloc_base": 0xFFFFFFFF82398478,
        "page_offset_base": 0xFFFFFFFF82398480, "phys_base": 0xFFFFFFFF82A1A010,
        "node_data": 0xFFFFFFFF82C368E0, "max_possible_pfn": 0xFFFFFFFF8334E5B0,
        "max_pfn": 0xFFFFFFFF8334E5B8, "max_low_pfn": 0xFFFFFFFF8334E5C8,
        "mem_section": 0xFFFFFFFF833AA798, "_end": 0xFFFFFFFF83830000,
    },
    "6.12": {
        "vmemmap_base": 0xFFFFFFFF82554598, "vmalloc_base": 0xFFFFFFFF825545A0,
        "page_offset_base": 0xFFFFFFFF825545A8, "phys_base": 0xFFFFFFFF82C2C010,
        "max_possible_pfn": 0xFFFFFFFF837715A0, "max_pfn": 0xFFFFFFFF837715A8,
        "max_low_pfn": 0xFFFFFFFF837715B8, "mem_section": 0xFFFFFFFF837CE338,
        "node_data": 0xFFFFFFFF837D61C0, "_end": 0xFFFFFFFF83C30000,
    },
}


@dataclass
class BootOptions:
    """What the command line and Kconfig would decide."""

    la57: bool | None = None  # None: 5-level when the CPU has LA57 and the era supports it
    kaslr_seed: int | None = None  # None: nokaslr
    gbpages: bool | None = None  # None: era default (CONFIG_DIRECT_GBPAGES) and CPU
    mem_section_size: int | None = None  # 32 for kernels with PAGE_EXTENSION (Debian generic)
    initrd: tuple[int, int] | None = None  # [start, end) where the boot loader put the initrd (RAMDISK:)
    kaslr_bases: tuple[int, int, int] | None = None  # (page_offset_base, vmalloc_base, vmemmap_base) as found


@dataclass
class VmemmapLeaf:
    """A populated vmemmap leaf run (boot facts, ``vmemmap`` in contract 3)."""

    vstart: int
    vend: int
    pstart: int
    page_size: int
    node: int


@dataclass
class Kernel:
    """A booted simulated kernel."""

    machine: Machine
    era: Era
    model_name: str
    options: BootOptions
    la57: bool
    layout: Layout
    phys: PhysMem
    memblock: Memblock
    tables: PageTables
    mem: KernelMemory
    numa_config: bool
    e820: list[tuple[int, int, str]]
    e820_updates: list[tuple[str, int, int, str, str]]
    max_pfn: int
    max_arch_pfn: int
    symbols: dict[str, int] = field(default_factory=dict)
    nodes: dict[int, Node] = field(default_factory=dict)
    zones: list[Zone] = field(default_factory=list)
    page_flags: PageFlagsLayout = field(default_factory=lambda: PageFlagsLayout(0, 0, 2))
    directmap: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, page size)
    vmemmap_leaves: list[VmemmapLeaf] = field(default_factory=list)
    populate_order: list[tuple[int, int, int, int]] = field(default_factory=list)  # (vstart, vend, pstart, node)
    image_end: int = 0
    table_queue: list[int] = field(default_factory=list)  # page-table pages handed out before bulk maps
    table_hooks: list = field(default_factory=list)  # early page-table allocators, innermost last
    model: object = None  # MemoryModel, set by boot()
    mem_section_size: int = 16
    max_possible_pfn: int = 0  # highest pfn RAM could ever reach (SRAT, hot-pluggable ranges included)
    memory_block_size: int = 0  # probe_memory_block_size() at boot (memory_dev_init)
    # memory added after boot by add_memory(): (start_pfn, end_pfn, nid, online type, zone name or "")
    added_memory: list[tuple[int, int, int, str, str]] = field(default_factory=list)
    _hotplug: object = None  # vmemmap.hotplug.Hotplug, made on first use (k.hotplug)

    @property
    def hotplug(self):  # noqa: ANN201 - vmemmap.hotplug.Hotplug (imported lazily: it imports this module)
        """The memory hot-plug interfaces (:class:`vmemmap.hotplug.Hotplug`): memory blocks, probe, add,
        online, offline, remove.  Made on first use, from the sections present at that moment."""
        if self._hotplug is None:
            from vmemmap.hotplug import Hotplug

            self._hotplug = Hotplug(self)
        return self._hotplug

    # ------------------------------------------------------------------ address helpers
    @property
    def page_offset(self) -> int:
        return self.layout.page_offset

    @property
    def start_kernel_map(self) -> int:
        return self.layout.start_kernel_map

    def sym(self, name: str) -> int:
        try:
            return self.symbols[name]
        except KeyError:
            raise InputError(f"kernel symbol {name} does not exist in this kernel") from None

    def pa(self, vaddr: int) -> int:
        """``__pa(x)`` = ``__phys_addr(x)`` (arch/x86/mm/physaddr.c, page_64.h; kernel-reference §2.6).

        Kernel-image addresses add ``phys_base`` (a variable since the relocatable kernel); direct-map
        addresses subtract ``PAGE_OFFSET`` (the ``page_offset_base`` variable with a dynamic layout).
        """
        if vaddr >= self.start_kernel_map:
            base = self.mem.load(self.sym("phys_base"), 8, "phys_base") if self.era.phys_base_variable else 0
            return vaddr - self.start_kernel_map + base
        return vaddr - self._page_offset_value()

    def va(self, phys: int) -> int:
        """``__va(x)`` = ``x + PAGE_OFFSET``."""
        return phys + self._page_offset_value()

    def _page_offset_value(self) -> int:
        if not self.layout.dynamic_layout:
            return self.page_offset  # __PAGE_OFFSET is a constant
        return self.mem.load(self.sym("page_offset_base"), 8, "page_offset_base")

    def zone_of(self, pfn: int) -> Zone | None:
        for z in self.zones:
            if z.start_pfn <= pfn < z.end_pfn:
                return z
        return None

    def nid_of_pfn(self, pfn: int) -> int | None:
        for n in self.nodes.values():
            if n.start_pfn <= pfn < n.end_pfn:
                return n.nid
        return None

    def is_ram_pfn(self, pfn: int) -> bool:
        return any(s <= pfn < e for n in self.nodes.values() for s, e in n.ranges)

    def ram_pfn_ranges(self) -> list[tuple[int, int, int]]:
        """(start_pfn, end_pfn, nid) memory ranges, sorted."""
        return sorted((s, e, n.nid) for n in self.nodes.values() for s, e in n.ranges)

    # ------------------------------------------------------------------ accounting
    def vmemmap_table_pages(self) -> dict[str, int]:
        """Page-table pages below the vmemmap window (the cost of mapping the memmap)."""
        return table_pages_in(self.tables, self.layout.vmemmap_base, self.layout.vmemmap_end + 1)


def table_pages_in(tables: PageTables, start: int, end: int) -> dict[str, int]:
    """Page-table pages that serve only ``[start, end)``: every table below the top-level entries
    whose whole span lies in the range (the vmemmap window's PUD/PMD/PTE pages, plus P4D with 5-level)."""
    levels = ["pgd", "p4d", "pud", "pmd", "pte"] if tables.levels == 5 else ["pgd", "pud", "pmd", "pte"]
    shifts = {"pgd": 48 if tables.levels == 5 else 39, "p4d": 39, "pud": 30, "pmd": 21, "pte": 12}
    out: dict[str, int] = {}

    def rec(table_phys: int, depth: int, base: int) -> None:
        level = levels[depth]
        tbl = tables.mem.table(table_phys >> 12)
        shift = shifts[level]
        for i in np.nonzero(tbl & np.uint64(1))[0]:
            lo = tables.canonical(base + (int(i) << shift)) if depth == 0 else base + (int(i) << shift)
            if lo + (1 << shift) <= start or lo >= end:
                continue
            e = int(tbl[i])
            if depth + 1 < len(levels) and not pte.is_leaf(e, level):
                child = pte.entry_phys(e, level)
                if depth > 0 or (start <= lo and lo + (1 << shift) <= end):
                    out[levels[depth + 1]] = out.get(levels[depth + 1], 0) + 1
                rec(child, depth + 1, lo)

    rec(tables.pgd_phys, 0, 0)
    return out


# ====================================================================== boot


def resolve_model(era: Era, machine: Machine, model: str | None) -> str:
    """The model to build: the asked one if the era can build it on this machine, else an error."""
    if model is None:
        return era.default_model_numa if machine.numa else era.default_model_uma
    if model not in MODEL_NAMES:
        raise InputError(f"unknown memory model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    rule = era.model_rule(model)
    if not rule.legal:
        raise ModelNotBuildable(f"{era.name} cannot build {model}: {rule.why}")
    if rule.numa == "never" and machine.numa:
        raise ModelNotBuildable(
            f"{era.name} cannot build {model} on NUMA machine {machine.name} ({len(machine.nodes)} nodes): {rule.why}"
        )
    if rule.numa == "only" and not machine.numa:
        raise ModelNotBuildable(f"{era.name} builds {model} only for NUMA machines: {rule.why}")
    return model


def legal_models(era: Era, machine: Machine) -> list[str]:
    """Every model the era can build for this machine (contract 4: `compare`)."""
    out = []
    for m in MODEL_NAMES:
        try:
            resolve_model(era, machine, m)
        except ModelNotBuildable:
            continue
        out.append(m)
    return out


#: the phases of :func:`boot`, in order, as :func:`boot_progress` reports them
BOOT_PHASES = ("e820", "boot allocator", "page tables", "nodes and zones", "memory model", "memmap_init")
_BOOT_PROGRESS: ContextVar[Callable[[str, int, int], None] | None] = ContextVar("boot_progress", default=None)


@contextmanager
def boot_progress(report: Callable[[str, int, int], None]) -> Iterator[None]:
    """Call ``report(phase, done, total)`` as each boot in the block enters a phase of BOOT_PHASES
    (``done`` phases finished of ``total``): the progress bar of a large machine's boot."""
    token = _BOOT_PROGRESS.set(report)
    try:
        yield
    finally:
        _BOOT_PROGRESS.reset(token)


def _phase(i: int) -> None:
    report = _BOOT_PROGRESS.get()
    if report is not None:
        report(BOOT_PHASES[i], i, len(BOOT_PHASES))


def boot(
    machine: Machine,
    era: Era | str,
    model: str | None = None,
    options: BootOptions | None = None,
) -> Kernel:
    """Boot ``machine`` with the ``era``'s kernel configured for memory ``model``."""
    from vmemmap.models import make_model

    era = load_era(era) if isinstance(era, str) else era
    options = options or BootOptions()
    model_name = resolve_model(era, machine, model)

    la57 = options.la57
    if la57 is None:
        la57 = bool(machine.cpu.la57 and era.la57_supported)
    elif la57 and not era.la57_supported:
        raise InputError(f"era {era.name} has no 5-level paging")
    elif la57 and not machine.cpu.la57:
        raise InputError(f"machine {machine.name} has no LA57 CPU feature: 5-level paging impossible")

    max_bits = era.max_physmem_bits(la57)
    max_arch_pfn = 1 << (max_bits - PAGE_SHIFT)

    # 1. e820 as the kernel keeps it
    _phase(0)
    e820 = [(e.start, e.end, e.type) for e in machine.e820]
    updates: list[tuple[str, int, int, str, str]] = []
    if era.boot_allocator == "memblock":
        # e820__memory_setup() → trim_bios_range(): page 0 becomes reserved, the legacy area goes
        e820, u = _e820_update(e820, 0, PAGE_SIZE, "usable", "reserved")
        updates += u
        e820, u = _e820_update(e820, 0xA0000, 0x100000, "usable", None)
        updates += u
    usable = _merge([(s, e) for s, e, t in e820 if t == "usable"])
    usable = [(_align_up(s, PAGE_SIZE), min(_align_down(e, PAGE_SIZE), max_arch_pfn << PAGE_SHIFT)) for s, e in usable]
    usable = [(s, e) for s, e in usable if s < e]
    if not usable:
        raise InputError(f"machine {machine.name} has no usable RAM below {max_bits} physical address bits")
    max_pfn = usable[-1][1] >> PAGE_SHIFT

    layout = build_layout(era, la57=la57, kaslr_seed=options.kaslr_seed, max_pfn=max_pfn,
                          kaslr_bases=options.kaslr_bases)
    if era.dynamic_memory_layout is False and layout.dynamic_layout:
        # what-if (eras.what_if): CONFIG_DYNAMIC_MEMORY_LAYOUT=n; X86_5LEVEL and RANDOMIZE_MEMORY select it
        if la57:
            raise InputError(f"{era.name} without CONFIG_DYNAMIC_MEMORY_LAYOUT has no 5-level paging (X86_5LEVEL selects it)")
        if options.kaslr_seed is not None or options.kaslr_bases is not None:
            raise InputError(f"{era.name} without CONFIG_DYNAMIC_MEMORY_LAYOUT has no memory KASLR (RANDOMIZE_MEMORY selects it)")
        layout = dataclasses.replace(layout, dynamic_layout=False, vmemmap_is_constant=True)

    # 3. boot allocator with node ranges
    _phase(1)
    numa_config = model_name != "flatmem"
    node_map = _node_ranges(machine, usable, numa_config)
    mb = Memblock(top_down=(era.boot_allocator == "memblock"))
    for nid, ranges in node_map.items():
        for s, e in ranges:
            mb.add(s, e, nid)

    phys = PhysMem()
    first_nid = min(node_map)

    table_queue: list[int] = []  # tables a caller allocated ahead, in the kernel's order

    table_hooks: list = []  # early allocators (alloc_low_pages while the direct map is built)

    def alloc_table(nid: int) -> int:
        if table_queue:
            return table_queue.pop(0)
        if table_hooks:
            return table_hooks[-1]()
        nid = nid if nid in node_map else first_nid
        return mb.alloc(PAGE_SIZE, PAGE_SIZE, nid, "page table", goal=era.max_dma_address)

    # kernel image and early reservations (memblock_reserve in setup_arch / reserve_bootmem)
    symbols, image_end = _place_symbols(era, model_name, la57, layout)
    img_start = era.physical_start
    img_end_phys = image_end - layout.start_kernel_map
    low_reserve = SZ_1M if era.boot_allocator == "memblock" else PAGE_SIZE  # 6.x reserves the first 1 MiB
    mb.reserve(0, low_reserve, "low memory")
    # brk: INIT_PGT_BUF_SIZE pages for the first direct-map tables (early_alloc_pgt_buf) follow .bss
    # static page tables in the image's .data (init_top_pgt, level4_kernel_pgt with 5 levels,
    # level3_kernel_pgt, level2_kernel_pgt: arch/x86/kernel/head_64.S), then brk
    levels = 5 if la57 else 4
    static = [img_end_phys + i * PAGE_SIZE for i in range(levels - 1)]
    brk_base = img_end_phys + len(static) * PAGE_SIZE
    brk = [brk_base + i * PAGE_SIZE for i in range(era.early_pgt_buf_pages)]
    mb.reserve(img_start, brk_base + len(brk) * PAGE_SIZE, "kernel image")
    table_queue.extend(static)
    if options.initrd is not None:
        mb.reserve(options.initrd[0], options.initrd[1], "initrd")  # early_reserve_initrd()

    tables = PageTables(phys, levels, alloc_table)
    kmem = KernelMemory(phys, tables)

    kernel = Kernel(
        machine=machine, era=era, model_name=model_name, options=options, la57=la57, layout=layout,
        phys=phys, memblock=mb, tables=tables, mem=kmem, numa_config=numa_config, e820=e820,
        e820_updates=updates, max_pfn=max_pfn, max_arch_pfn=max_arch_pfn, symbols=symbols,
        image_end=image_end, table_queue=table_queue, table_hooks=table_hooks,
        mem_section_size=options.mem_section_size or era.mem_section_size,
    )

    # 4. page tables: kernel image (level2_kernel_pgt, 2 MiB leaves) and the direct map
    _phase(2)
    img_map_end = _align_up(img_end_phys, PMD_SIZE)
    tables.map(layout.start_kernel_map, 0, img_map_end, PMD_SIZE, PAGE_KERNEL_LARGE_EXEC, 0)
    table_queue.clear()
    _build_direct_map(kernel, usable, brk)
    _setup_log_buf(kernel)

    # kernel variables every era has
    # max_low_pfn: setup_arch() sets it to the end of RAM below 4 GiB, then init_mem_mapping()
    # (arch/x86/mm/init.c, CONFIG_X86_64) raises it to max_pfn ("can we preserve max_low_pfn ?").
    max_low_pfn = max_pfn if era.boot_allocator == "memblock" else min(max_pfn, 0x100000)
    kernel.max_possible_pfn = _max_possible_pfn(machine, max_pfn, numa_config)
    for name, value in (("max_pfn", max_pfn), ("max_low_pfn", max_low_pfn),
                        ("max_possible_pfn", kernel.max_possible_pfn), ("phys_base", 0)):
        if name in symbols:
            kmem.store(symbols[name], value)
    if layout.dynamic_layout:
        kmem.store(symbols["page_offset_base"], layout.page_offset)
        kmem.store(symbols["vmalloc_base"], layout.vmalloc_start)
        kmem.store(symbols["vmemmap_base"], layout.vmemmap_base)

    # 5. nodes, NODE_DATA, zones, the memory model, struct page links
    _phase(3)
    _setup_nodes(kernel, node_map)
    _setup_zones(kernel)
    kernel.page_flags = _page_flags_layout(kernel)
    m = make_model(kernel, model_name)
    kernel.model = m
    _phase(4)
    m.init()
    _phase(5)
    _memmap_init(kernel)
    kernel.memory_block_size = probe_memory_block_size(kernel)
    report = _BOOT_PROGRESS.get()
    if report is not None:
        report("booted", len(BOOT_PHASES), len(BOOT_PHASES))
    return kernel


# ---------------------------------------------------------------------- memory blocks and hot-add

ONLINE_TYPES = ("offline", "online", "online_kernel", "online_movable")


def probe_memory_block_size(k: Kernel) -> int:
    """``memory_block_size_bytes()`` by the era's rule (``probe_memory_block_size`` in
    arch/x86/mm/init_64.c; kernel-reference §5.2): one implementation, in :mod:`vmemmap.kmem`."""
    from vmemmap.kmem import memory_block_size

    return memory_block_size(k)


def add_memory(k: Kernel, start: int, size: int, nid: int, online: str = "offline") -> None:
    """Hot-add ``[start, start+size)`` on ``nid`` and online it as ``online`` says: see
    :func:`vmemmap.hotplug.add_memory` (kept here for callers of the boot-time path)."""
    from vmemmap.hotplug import add_memory as _add_memory

    _add_memory(k, start, size, nid, online)


def zone_intersects(z: Zone | None, start_pfn: int, end_pfn: int) -> bool:
    """``zone_intersects`` (include/linux/mmzone.h): an empty zone intersects nothing."""
    return z is not None and z.spanned_pages > 0 and z.start_pfn < end_pfn and start_pfn < z.end_pfn


def default_kernel_zone(k: Kernel, nid: int, start_pfn: int, end_pfn: int) -> str:
    """``default_kernel_zone_for_pfn`` (mm/memory_hotplug.c @ 6.1): the first zone below ZONE_NORMAL that
    intersects the range, else ZONE_NORMAL."""
    names = k.era.zone_names
    for idx, name in enumerate(names[: names.index("Normal")]):
        z = next((z for z in k.zones if z.nid == nid and z.idx == idx), None)
        if zone_intersects(z, start_pfn, end_pfn):
            return name
    return "Normal"


def default_zone_for_pfn(k: Kernel, nid: int, start_pfn: int, end_pfn: int) -> str:
    """``default_zone_for_pfn`` (mm/memory_hotplug.c @ 6.1, online_policy contig-zones, movable_node off):
    inherit the one zone (kernel or movable) the range already touches, else the kernel zone."""
    kern = default_kernel_zone(k, nid, start_pfn, end_pfn)
    names = k.era.zone_names
    kz = next((z for z in k.zones if z.nid == nid and z.name == kern), None)
    mz = next((z for z in k.zones if z.nid == nid and z.idx == names.index("Movable")), None)
    in_kernel, in_movable = zone_intersects(kz, start_pfn, end_pfn), zone_intersects(mz, start_pfn, end_pfn)
    if in_kernel != in_movable:
        return kern if in_kernel else "Movable"
    return kern


# ---------------------------------------------------------------------- early allocations

LOG_BUF_DEFAULT = 1 << 17  # __LOG_BUF_LEN: 1 << CONFIG_LOG_BUF_SHIFT (17 in Debian's configs)
PRB_AVGBITS = 5  # kernel/printk/printk.c: average text bytes per record = 32
SIZEOF_PRB_DESC = 24  # struct prb_desc
SIZEOF_PRINTK_INFO = 88  # struct printk_info
LOG_ALIGN = 8  # __alignof__(struct printk_info)


def _memparse(text: str) -> int:
    """``memparse``: a number with an optional K/M/G/T suffix."""
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower()
    if t and t[-1] in mult:
        return int(t[:-1], 0) * mult[t[-1]]
    return int(t, 0)


def _setup_log_buf(k: Kernel) -> None:
    """``setup_log_buf(early=1)`` (kernel/printk/printk.c @ 6.1) for ``log_buf_len=`` on the command line:
    the text buffer, then ``len >> PRB_AVGBITS`` descriptors and infos, each ``memblock_alloc``."""
    size = 0
    for arg in k.machine.cmdline.split():
        if arg.startswith("log_buf_len="):
            try:
                size = _memparse(arg.split("=", 1)[1])
            except ValueError:
                size = 0
    if size <= LOG_BUF_DEFAULT or k.era.printk_log_buf == "none":
        return
    size = 1 << (size - 1).bit_length()  # log_buf_len_update(): roundup_pow_of_two
    allocs = [(size, "log_buf")]
    if k.era.printk_log_buf == "ringbuffer":
        count = size >> PRB_AVGBITS
        allocs += [(count * SIZEOF_PRB_DESC, "printk descs"), (count * SIZEOF_PRINTK_INFO, "printk infos")]
    for n, what in allocs:
        k.memblock.alloc(n, LOG_ALIGN, NUMA_NO_NODE, what)


# ---------------------------------------------------------------------- e820


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _align_down(x: int, a: int) -> int:
    return x // a * a


def _e820_update(
    e820: list[tuple[int, int, str]], start: int, end: int, old: str, new: str | None
) -> tuple[list[tuple[int, int, str]], list[tuple[str, int, int, str, str]]]:
    """``e820__range_update`` (entries of type ``old`` inside ``[start, end)`` become ``new``) or,
    with ``new=None``, ``e820__range_remove(start, size, old, check_type=true)``."""
    out: list[tuple[int, int, str]] = []
    hit = False
    for s, e, t in e820:
        if t != old or e <= start or s >= end:
            out.append((s, e, t))
            continue
        hit = True
        if s < start:
            out.append((s, start, t))
        if new is not None:
            out.append((max(s, start), min(e, end), new))
        if end < e:
            out.append((end, e, t))
    what = ("update", start, end, old, new) if new is not None else ("remove", start, end, old, "")
    return sorted(out), ([what] if hit else [])


# ---------------------------------------------------------------------- nodes


def _max_possible_pfn(machine: Machine, max_pfn: int, numa: bool) -> int:
    """``max_possible_pfn``: ``max_pfn`` (setup_arch), raised by every SRAT memory affinity entry,
    hot-pluggable or not: ``max_possible_pfn = max(max_possible_pfn, PFN_UP(end - 1))`` in
    ``acpi_numa_memory_affinity_init`` (drivers/acpi/numa/srat.c @ 6.1).  A kernel without NUMA (the
    FLATMEM model here) never parses SRAT."""
    top = max_pfn
    if numa:
        for n in machine.nodes:
            for _, e in n.ranges + n.hotplug:
                top = max(top, -(-(e - 1) // PAGE_SIZE))
    return top


def _node_ranges(machine: Machine, usable: list[tuple[int, int]], numa: bool) -> dict[int, list[tuple[int, int]]]:
    """Usable RAM per node (SRAT memory affinity, or one faked node 0: ``numa_init(dummy_numa_init)``)."""
    if not numa or not machine.nodes:
        return {0: list(usable)}
    out: dict[int, list[tuple[int, int]]] = {}
    for node in machine.nodes:
        for ns, ne in node.ranges:
            for s, e in usable:
                a, b = max(s, ns), min(e, ne)
                if a < b:
                    out.setdefault(node.nid, []).append((a, b))
    # memory outside every SRAT range belongs to no node: the kernel drops it (numa_meminfo_cover_memory)
    return {nid: _merge(r) for nid, r in sorted(out.items())}


def _setup_nodes(k: Kernel, node_map: dict[int, list[tuple[int, int]]]) -> None:
    """``alloc_node_data`` / ``setup_node_bootmem``: one pglist_data per node, on the node.

    The size is ``roundup(sizeof(pg_data_t), era.node_data_roundup)``: PAGE_SIZE up to 6.1
    (arch/x86/mm/numa.c), SMP_CACHE_BYTES in 6.12 (mm/numa.c), which is why 6.12's NODE_DATA is not
    page aligned (captures-6.12: ``NODE_DATA(0) allocated [mem 0x7da37680-0x7da61fff]``)."""
    lay = PGDAT_LAYOUT[k.era.boot_allocator]
    for nid, ranges in node_map.items():
        pr = [(s >> PAGE_SHIFT, e >> PAGE_SHIFT) for s, e in ranges]
        start, end = pr[0][0], pr[-1][1]
        node = Node(nid=nid, ranges=pr, start_pfn=start, end_pfn=end)
        size = _align_up(k.era.pgdat_size, k.era.node_data_roundup)
        # 6.x alloc_node_data(): memblock_phys_alloc_try_nid(size, SMP_CACHE_BYTES, nid) top-down on the
        # node; 2.6.2x setup_node_bootmem(): an e820 area found in the node, page aligned
        pa = k.memblock.alloc(size, 64 if k.era.boot_allocator == "memblock" else PAGE_SIZE, nid,
                              f"NODE_DATA({nid})")
        node.pgdat_phys = (pa, pa + size)
        node.pgdat = pa + k.page_offset
        k.nodes[nid] = node
        k.mem.store(node.pgdat + lay["node_start_pfn"], start)
        k.mem.store(node.pgdat + lay["node_present_pages"], node.present_pages)
        k.mem.store(node.pgdat + lay["node_spanned_pages"], node.spanned_pages)
        k.mem.store(node.pgdat + lay["node_id"], nid, 4)
        if "node_data" in k.symbols:
            k.mem.store(k.symbols["node_data"] + 8 * nid, node.pgdat)


def _setup_zones(k: Kernel) -> None:
    """``free_area_init``: zones DMA (< 16 MiB), DMA32 (< 4 GiB), Normal per node."""
    names = k.era.zone_names
    bounds = []
    lo = 0
    for i, name in enumerate(names):
        if name in ZONE_LIMITS:
            hi = min(ZONE_LIMITS[name], k.max_pfn)
        elif name == "Normal":
            hi = k.max_pfn
        else:
            hi = lo  # Movable / Device: empty at boot
        bounds.append((i, name, lo, max(lo, hi)))
        lo = max(lo, hi)
    for node in k.nodes.values():
        for i, name, zlo, zhi in bounds:
            # zone_spanned_pages_in_node (mm/page_alloc.c @ 6.1): the zone's range clamped to the node's
            # span -- holes inside the node count as spanned (hole-6G: DMA32 spans up to 4 GiB)
            s, e = max(zlo, node.start_pfn), min(zhi, node.end_pfn)
            if s >= e:
                continue
            pres = [(max(a, s), min(b, e)) for a, b in node.ranges if max(a, s) < min(b, e)]
            if not pres:
                continue  # spanned but never populated: left out (no struct zone user here needs it)
            k.zones.append(Zone(node.nid, i, name, s, e, sum(b - a for a, b in pres)))


def global_zone_ranges(k: Kernel) -> list[tuple[str, int, int]]:
    """``arch_zone_lowest/highest_possible_pfn``: the "Zone ranges" lines."""
    out = []
    lo = min(n.start_pfn for n in k.nodes.values())
    for name in k.era.zone_names:
        if name in ZONE_LIMITS:
            hi = max(lo, min(ZONE_LIMITS[name], k.max_pfn))
        elif name == "Normal":
            hi = max(lo, k.max_pfn)
        else:
            hi = lo
        out.append((name, lo, hi))
        lo = hi
    return out


def _page_flags_layout(k: Kernel) -> PageFlagsLayout:
    era = k.era
    classic_sparse = k.model_name in ("sparsemem", "sparsemem-extreme")
    vmemmap = k.model_name.startswith("vmemmap")
    sections = 0
    if classic_sparse or (vmemmap and era.section_in_page_flags_with_vmemmap):
        sections = era.sections_shift(k.la57)
    nodes = era.nodes_shift if k.numa_config else 0
    return PageFlagsLayout(sections, nodes, era.zones_width)


def _memmap_init(k: Kernel) -> None:
    """``memmap_init_zone`` → ``set_page_links``: every struct page of a zone gets its links.

    Written as fill regions (one per zone and node, or per section when the section number is part
    of ``page->flags``), never one Python step per page.
    """
    m = k.model
    sp = k.era.struct_page_size
    pf = k.page_flags
    per_section = pf.sections_width > 0
    pps = k.era.pages_per_section
    fill_tails = k.era.pfn_valid_rule == "subsection"  # 6.x init_unavailable_range() up to the section end
    for z in k.zones:
        start, end = z.start_pfn, z.end_pfn
        if fill_tails:
            node_zones = [x for x in k.zones if x.nid == z.nid]
            if z is node_zones[-1]:
                end = _align_up(end, pps)
            if z is node_zones[0]:
                start = _align_down(start, pps)
        for piece in m.memmap_pieces():  # type: ignore[attr-defined]
            s, e = max(start, piece.start_pfn), min(end, piece.end_pfn)
            if s >= e:
                continue
            if per_section:
                # the section field steps by one every PAGES_PER_SECTION struct pages: one stepped fill
                sec0 = s >> k.era.pfn_section_shift
                origin = piece.vaddr + ((sec0 << k.era.pfn_section_shift) - piece.start_pfn) * sp
                step = (pps * sp, {0: 1 << pf.sections_pgshift})
                _fill_pages(k, piece, s, e, pf.links(sec0, z.nid, z.idx), sp, origin, step)
            else:
                _fill_pages(k, piece, s, e, pf.links(0, z.nid, z.idx), sp)


def _fill_pages(k: Kernel, piece, s: int, e: int, flags: int, sp: int,  # noqa: ANN001
                origin: int | None = None, step: tuple[int, dict[int, int]] | None = None) -> None:
    v0 = piece.vaddr + (s - piece.start_pfn) * sp
    v1 = piece.vaddr + (e - piece.start_pfn) * sp
    k.mem.fill(v0, v1, v0 if origin is None else origin, sp, {0: flags}, step)


# ---------------------------------------------------------------------- direct map


def _build_direct_map(k: Kernel, usable: list[tuple[int, int]], brk: list[int] | None = None) -> None:
    """The 1:1 map of physical memory at PAGE_OFFSET.

    2.6.2x (bootmem eras): ``init_memory_mapping(0, end_pfn << PAGE_SHIFT)`` maps everything up to the
    end of RAM, holes included, with 2 MiB pages (1 GiB with ``direct_gbpages`` from 2.6.26).
    memblock eras: ``init_mem_mapping()`` (arch/x86/mm/init.c @ 6.1): the ISA range first, then
    ``memory_map_top_down()`` from the top of RAM down in growing steps, each memblock memory range
    split by ``split_mem_range`` + ``adjust_range_page_size_mask``. Page-table pages come from the brk
    buffer (``alloc_low_pages``) unless the range being mapped overlaps the brk itself
    (``can_use_brk_pgt``) or the buffer is used up; then from memblock, top-down inside what is
    already mapped (``[min_pfn_mapped, max_pfn_mapped)``).
    """
    era, cpu = k.era, k.machine.cpu
    gb = cpu.gbpages and (era.directmap_gbpages if k.options.gbpages is None else k.options.gbpages)
    use_2m = cpu.pse
    prot_large = PAGE_KERNEL_LARGE if cpu.nx else PAGE_KERNEL_LARGE & ~_PAGE_NX
    prot_4k = PAGE_KERNEL if cpu.nx else PAGE_KERNEL & ~_PAGE_NX
    done: list[tuple[int, int, int]] = []

    def init_memory_mapping(s: int, e: int, is_memory) -> None:  # noqa: ANN001
        for rs, re_, size in _split_mem_range(s, e, use_2m, gb, is_memory):
            if any(ds <= rs and re_ <= de for ds, de, _ in done):
                continue  # mapped already (a range mapped again keeps its mapping)
            k.tables.map(k.page_offset + rs, rs, re_ - rs, size, prot_4k if size == PAGE_SIZE else prot_large, 0)
            done.append((rs, re_, size))

    if era.boot_allocator == "bootmem":
        end = _align_up(usable[-1][1], PMD_SIZE if use_2m else PAGE_SIZE)
        init_memory_mapping(0, end, lambda s, e: True)
        k.directmap = sorted(done)
        return

    def is_memory(s: int, e: int) -> bool:
        return any(a <= s and e <= b for a, b in usable)

    brk = list(brk or [])
    brk_lo = min(brk) if brk else 0
    brk_hi = max(brk) + PAGE_SIZE if brk else 0
    state = {"brk_ok": True, "min": 0, "max": 0}

    def alloc_low_page() -> int:
        if brk and state["brk_ok"]:
            return brk.pop(0)
        if state["min"] < state["max"]:
            try:
                return k.memblock.alloc(PAGE_SIZE, PAGE_SIZE, NUMA_NO_NODE, "page table",
                                        goal=state["min"], limit=state["max"])
            except BootError:
                pass
        if brk:
            return brk.pop(0)
        return k.memblock.alloc(PAGE_SIZE, PAGE_SIZE, NUMA_NO_NODE, "page table")

    k.table_hooks.append(alloc_low_page)
    try:
        # the ISA range is always mapped regardless of memory holes
        init_memory_mapping(0, ISA_END_ADDRESS, is_memory)

        def init_range_memory_mapping(r_start: int, r_end: int) -> int:
            mapped = 0
            for ms, me in usable:
                s, e = min(max(ms, r_start), r_end), min(max(me, r_start), r_end)
                if s >= e:
                    continue
                state["brk_ok"] = max(s, brk_lo) >= min(e, brk_hi) if brk else True
                init_memory_mapping(s, e, is_memory)
                state["max"] = max(state["max"], e)
                mapped += e - s
                state["brk_ok"] = True
            return mapped

        map_start, map_end = ISA_END_ADDRESS, k.max_pfn << PAGE_SHIFT
        # start with the top-most PMD_SIZE range, found (and given back) through memblock
        addr = k.memblock.alloc(PMD_SIZE, PMD_SIZE, NUMA_NO_NODE, "init_mem_mapping probe", goal=map_start,
                                limit=map_end)
        k.memblock.free(addr, addr + PMD_SIZE)
        real_end = addr + PMD_SIZE
        step = PMD_SIZE
        state["min"] = real_end
        last_start = real_end
        mapped_ram = 0
        while last_start > map_start:
            start = max(_align_down(last_start - 1, step), map_start) if last_start > step else map_start
            mapped_ram += init_range_memory_mapping(start, last_start)
            last_start = start
            state["min"] = last_start
            if mapped_ram >= step:
                step <<= 21 - 12 - 1  # get_new_step_size(): PMD_SHIFT - PAGE_SHIFT - 1
        if real_end < map_end:
            init_range_memory_mapping(real_end, map_end)
    finally:
        k.table_hooks.remove(alloc_low_page)
    k.directmap = sorted(done)


def _split_mem_range(
    start: int, end: int, use_2m: bool, use_1g: bool, is_memory
) -> list[tuple[int, int, int]]:  # noqa: ANN001
    """``split_mem_range`` + ``adjust_range_page_size_mask`` (arch/x86/mm/init.c @ 6.12)."""
    out: list[tuple[int, int, int]] = []

    def save(s: int, e: int, size: int) -> None:
        if s < e:
            out.append((s, e, size))

    p = start
    # head: up to the first 2 MiB boundary, 4 KiB
    e = min(_align_up(p, PMD_SIZE), end)
    save(p, e, PAGE_SIZE)
    p = max(p, e)
    # 2 MiB up to the first 1 GiB boundary
    s2 = _align_up(p, PMD_SIZE)
    e2 = min(_align_up(p, PUD_SIZE), _align_down(end, PMD_SIZE))
    if s2 < e2:
        save(s2, e2, PMD_SIZE if use_2m else PAGE_SIZE)
        p = e2
    # 1 GiB middle
    s3 = _align_up(p, PUD_SIZE)
    e3 = _align_down(end, PUD_SIZE)
    if s3 < e3:
        save(s3, e3, PUD_SIZE if use_1g else (PMD_SIZE if use_2m else PAGE_SIZE))
        p = e3
    # 2 MiB tail
    s4 = _align_up(p, PMD_SIZE)
    e4 = _align_down(end, PMD_SIZE)
    if s4 < e4:
        save(s4, e4, PMD_SIZE if use_2m else PAGE_SIZE)
        p = e4
    save(p, end, PAGE_SIZE)
    # adjust_range_page_size_mask: a small range becomes 2M/1G if the whole aligned region is memory
    adj: list[tuple[int, int, int]] = []
    for s, e, size in out:
        if size == PAGE_SIZE and use_2m:
            a, b = _align_down(s, PMD_SIZE), _align_up(e, PMD_SIZE)
            if is_memory(a, b):
                size = PMD_SIZE
        if size == PMD_SIZE and use_1g:
            a, b = _align_down(s, PUD_SIZE), _align_up(e, PUD_SIZE)
            if is_memory(a, b):
                size = PUD_SIZE
        if size != PAGE_SIZE:
            s, e = _align_down(s, size), _align_up(e, size)
        adj.append((s, e, size))
    return adj


# ---------------------------------------------------------------------- symbols


def _place_symbols(era: Era, model: str, la57: bool, layout: Layout) -> tuple[dict[str, int], int]:
    """Kernel variables at addresses in the kernel image (.data / .bss).

    6.1 and 6.12 use the addresses of Debian's cloud images (the captures' KALLSYMS); other eras get
    a synthetic .data area near the image end. Large static arrays (the SPARSEMEM root array, the
    static ``mem_section[]``) extend .bss, which makes the image bigger — as it does in the kernel.
    """
    image_start = layout.start_kernel_map + era.physical_start
    captured = CAPTURED_SYMBOLS.get(era.name)
    syms: dict[str, int] = dict(captured) if captured else {}
    end = syms.pop("_end", image_start + era.kernel_image_bytes)
    cursor = image_start + era.kernel_image_bytes - 0x200000 if not captured else end - 0x100000

    def place(name: str, size: int, align: int = 8) -> None:
        nonlocal cursor, end
        if name in syms:
            return
        cursor = _align_up(cursor, align)
        syms[name] = cursor
        cursor += size
        if cursor > end:
            end = _align_up(cursor, PAGE_SIZE)

    for name in ("phys_base", "page_offset_base", "vmalloc_base", "vmemmap_base", "max_pfn",
                 "max_low_pfn", "max_possible_pfn", "mem_map", "end_pfn", "num_physpages"):
        place(name, 8)
    place("node_data", 8 * (1 << era.nodes_shift), 64)
    place("memnode", 64, 64)  # struct memnode (2.6.21 arch/x86_64 mmzone.h): one cache line
    extreme = model != "sparsemem"
    roots = era.nr_section_roots(la57, extreme)
    if era.mem_section_is_pointer:
        place("mem_section", 8)  # struct mem_section **mem_section, array allocated at boot
    elif extreme:
        place("mem_section", 8 * roots, 64)  # struct mem_section *mem_section[NR_SECTION_ROOTS]
    else:
        place("mem_section", era.mem_section_size * era.nr_mem_sections(la57), 64)  # static [][1]
    return syms, _align_up(end, PAGE_SIZE)
