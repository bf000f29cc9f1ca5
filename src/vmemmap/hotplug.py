"""Memory hotplug: probe, add, online, offline, remove -- the 6.1 SPARSEMEM_VMEMMAP engine, and every era/model.

Models mm/memory_hotplug.c, mm/sparse.c, mm/sparse-vmemmap.c, arch/x86/mm/init_64.c and
drivers/base/memory.c at v6.1 (kernel-reference.md §5; §4.2 for the populate helpers):

* **Memory blocks** (drivers/base/memory.c): ``memory_block_size_bytes()`` (``Kernel.memory_block_size``,
  ``probe_memory_block_size``), one ``memoryN`` per block with a present section (``memory_dev_init``);
  ``phys_index`` is the block id, ``state`` online/offline, ``valid_zones`` per ``valid_zones_show`` /
  ``print_allowed_zone``, ``node``, ``removable`` always 1 (53cdc1cb29e8, CONFIG_MEMORY_HOTREMOVE).
* **Add** (``add_memory`` → ``__add_memory``): ``register_memory_resource`` (``mhp_range_allowed`` →
  -E2BIG; a busy ``System RAM`` region → -EEXIST), ``add_memory_resource`` (``check_hotplug_memory_range``:
  block-size alignment → -EINVAL; ``node_possible`` → -EINVAL), x86 ``arch_add_memory``
  (``init_memory_mapping`` for the direct map, ``add_pages`` → ``__add_pages`` → ``sparse_add_section``
  per section: ``sparse_index_init``, ``section_activate`` with a kzalloc'd ``mem_section_usage``,
  ``fill_subsection_map``, ``populate_section_memmap`` → ``vmemmap_populate_hugepages`` (2 MiB PMDs,
  node-local), ``__section_mark_present``, ``sparse_init_one_section``; ``vmemmap_populate_print_last``;
  ``update_end_of_memory_vars``), ``create_memory_block_devices`` (offline), then auto-online as
  ``memhp_default_state=`` says.
* **Online** (``memory_block_online`` → ``online_pages``): ``zone_for_pfn_range`` (online_policy
  contig-zones: ``default_zone_for_pfn``; ``online_kernel`` → ``default_kernel_zone_for_pfn``;
  ``online_movable`` → ZONE_MOVABLE), ``move_pfn_range_to_zone`` (``resize_zone_range``,
  ``resize_pgdat_range``, ``memmap_init_range`` → ``set_page_links``), MEM_GOING_ONLINE notifier (with
  the cancel path), present pages, ``online_mem_sections`` (SECTION_IS_ONLINE).
* **Offline** (``memory_block_offline`` → ``offline_pages``): ``mem->zone`` NULL → -EINVAL; holes →
  -EINVAL; ``start_isolate_page_range`` fails on unmovable pages → -EBUSY; MEM_GOING_OFFLINE notifier
  (cancel path); ``offline_mem_sections``, present pages, ``remove_pfn_range_from_zone`` →
  ``shrink_zone_span`` + ``update_pgdat_span``; "Offlined Pages %ld".
* **Remove** (``remove_memory`` → ``try_remove_memory``): an online block → -EBUSY
  (``check_memblock_offlined_cb``); ``remove_memory_block_devices``; x86 ``arch_remove_memory`` =
  ``__remove_pages`` → ``sparse_remove_section`` → ``section_deactivate`` (clear sub-section bits; when
  empty clear HAS_MEM_MAP, kfree the usage map, ``depopulate_section_memmap`` → ``vmemmap_free`` →
  ``remove_pagetable``: PMD leaves cleared, backing and emptied page-table pages freed; the section word
  zeroed) and ``kernel_physical_mapping_remove`` (direct map torn down, empty tables freed);
  ``release_mem_region_adjustable``.
* **Device drivers** above ``add_memory``/``remove_memory`` (what ``vmemmap conform`` replays):
  ACPI memory devices (drivers/acpi/acpi_memhotplug.c @ 6.1: ``acpi_memory_device_add`` →
  ``acpi_memory_enable_device`` → ``__add_memory`` per range, "add_memory failed" /
  "acpi_memory_enable_device() error" when none was enabled; eject through drivers/acpi/scan.c
  ``acpi_scan_hot_remove``: offline every block, then ``__remove_memory``) and virtio-mem in Sub Block
  Mode (drivers/virtio/virtio_mem.c @ 6.1: whole memory blocks plugged upwards with
  ``add_memory_driver_managed``, unplugged from the top with ``offline_and_remove_memory``).

**memmap_on_memory** (kernel-reference §4.5; ``memory_hotplug.memmap_on_memory=`` on ``k.machine.cmdline``,
:meth:`Hotplug._memmap_on_memory_param`): an add with ``MHP_MEMMAP_ON_MEMORY`` (the ACPI memory driver;
``probe`` and virtio-mem pass MHP_NONE) takes each block's vmemmap PMDs from a :class:`Altmap` over the
block's own first pages (``altmap_alloc_block_buf``, no fallback), when
:meth:`Hotplug.mhp_supports_memmap_on_memory` holds.  Scope by era (``[hotplug] memmap_on_memory``):
6.1 ``single-block`` -- only an add of exactly one memory block (``mhp_supports_memmap_on_memory(size)``);
6.12 ``per-block`` -- ``create_altmaps_and_memory_blocks``, one ``kmemdup``'d altmap per block.  Online
(``memory_block_online``: ``mhp_init_memmap_on_memory``, ``online_pages`` of the rest,
``adjust_present_page_count``) puts the memmap pages in the zone's span and present pages but never in the
page allocator; offline (``memory_block_offline``: ``offline_pages`` of the rest, then
``mhp_deinit_memmap_on_memory``) leaves them allocated in the altmap; remove (6.12
``remove_memory_blocks_and_altmaps``, 6.1 ``try_remove_memory`` with ``mhp_altmap.alloc =
nr_vmemmap_pages``) gives them back with ``vmem_altmap_free`` and frees the altmap.

**Eras and models** (the era TOML's ``[hotplug]`` table, read into ``Hotplug.rules``; no version tests
in code): ``probe`` adds one section per write in 2.6.2x (``add_memory(nid, addr, PAGES_PER_SECTION <<
PAGE_SHIFT)``, drivers/base/memory.c @ v2.6.24) and a whole aligned block from 4.x; the block size is
``kmem.probe_memory_block_size`` (kernel-reference §5.2); 2.6.x ``arch_add_memory`` puts hot-added
memory in the node's ZONE_NORMAL at add (``__add_zone``: ``grow_zone_span``, ``memmap_init_zone``), its
``store_mem_state`` matches only ``online`` (strncmp 6: ``online_movable`` is ``online``), and it has no
x86 offline (-EINVAL without CONFIG_MEMORY_HOTREMOVE) nor remove (x86 ``arch_remove_memory`` is 3.9).
FLATMEM refuses with -EINVAL (MEMORY_HOTPLUG depends on SPARSEMEM). **Classic SPARSEMEM** (any era):
each new section's memmap comes from :meth:`Hotplug._kmalloc_section_memmap` (mm/sparse.c
``kmalloc_section_memmap`` → ``__kmalloc_section_memmap``: ``alloc_pages`` of ``get_order(memmap)`` in the
direct map, else :meth:`Hotplug._vmalloc` with 4 KiB PTEs in the vmalloc area), encoded in the section
word and never mapped into the vmemmap window; remove frees it (``__kfree_section_memmap``: ``vfree`` or
``free_pages``). **DISCONTIGMEM** (2.6.21 only, ``MEMORY_HOTPLUG_RESERVE``): :meth:`Hotplug._reserve_add`
onlines pages of a hot-add area the boot pre-sized into ``node_mem_map`` (models/discontigmem.py,
srat.c ``reserve_hotadd``); no reserved area → -EINVAL; no memory sysfs, no probe, no remove.

The run-time page allocator (buddy + slab) is not modelled page by page. Its stand-in is documented
here and used for everything hotplug allocates at run time (memmap backing, page-table pages, usage
maps): **the node's free memory in the boot allocator, first fit from the lowest address, zone by zone
in GFP_KERNEL zonelist order (Normal, DMA32, DMA), then the other nodes**. Lowest-first because since
5.10 ``memblock_free_all`` hands boot memory to the buddy allocator at the *tail* of the free lists
(``__free_pages_core`` with FPI_TO_TAIL), so the lowest free blocks come out first and successive order-9
allocations split one order-10 block upwards: the real kernel's hot-add memmap is ascending and
contiguous (dimm-hot.log: ``[ffffea0004000000-ffffea0004ffffff] PMD -> [ffff888005800000-...]``), and so
is ours; the exact address differs by whatever the running kernel allocated since boot. Memory onlined
to a kernel zone joins that allocator (and leaves it when offlined); ZONE_MOVABLE memory never does
(GFP_KERNEL cannot use it). "Unmovable pages" (offline -EBUSY) are therefore exactly the allocations
living in the block: boot reservations (kernel image, memmap, page tables, ...) and, in hot-added kernel
memory, the memmap and tables of later adds.

Deviations, each chosen so that a failing step leaves the state exactly as it was:

* A hot-add that runs out of memory half-way is undone completely (the x86 kernel leaves the direct map
  of the range in place, and keeps a root allocated by ``sparse_index_init``); a *successful* add keeps a
  new root after its remove, as the kernel does (``section_deactivate`` never frees roots).
* Notifier error injection (memory-notifier-error-inject) is evaluated before
  ``move_pfn_range_to_zone`` writes the struct pages, so a cancelled online leaves the memmap untouched
  (the kernel leaves initialised struct pages behind; nothing reads them).
* Ranges above the direct-map region (KASLR shrinks it to RAM + 10 TiB padding) are refused with
  -ERANGE: 6.1 does not check and would map over vmalloc space; 6.11+ checks ``PHYSMEM_END`` in
  ``add_pages`` and returns -ERANGE.
* Removing boot memory is not modelled (one-line input error); the 4 KiB fallback of
  ``vmemmap_populate_hugepages`` is not modelled (a failed 2 MiB allocation is -ENOMEM).
* Sub-section hotplug of device memory (:meth:`Hotplug.add_pages` / :meth:`Hotplug.remove_pages`, the
  ``arch_add_memory`` / ``arch_remove_memory`` steps of ``memremap_pages`` / ``memunmap_pages``; 6.x
  only): ranges aligned to 2 MiB sub-sections, one bit each in ``ms->usage->subsection_map``; a memmap
  smaller than a section's is mapped with 4 KiB PTEs (x86 ``vmemmap_populate`` → base pages), a whole
  section's with a 2 MiB PMD, which a partial remove fills with ``PAGE_UNUSED`` and frees once all of it
  is (``vmemmap_pmd_is_unused``).  Every section is checked before the first changes (the kernel stops
  or WARNs half-way); ZONE_DEVICE zone spans and ``memmap_init_zone_device`` are not modelled; a
  sub-section add into a boot (EARLY) section, or into a PMD left mapped by a partial remove, is an
  input error.
* virtio-mem plugs and unplugs whole memory blocks only (a request that is not a multiple of the memory
  block size is an input error): its 2 MiB sub-blocks inside a block are not modelled.
"""

from __future__ import annotations

import errno as _errno
import gc
import hashlib
from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING, Any

from vmemmap.errors import BootError, InputError, VmemmapError
from vmemmap.memblock import cut_ranges

if TYPE_CHECKING:
    from vmemmap.kernel import Kernel, Zone

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PMD_SIZE = 1 << 21
SZ_16M = 16 << 20
SZ_4G = 4 << 30
PAGE_UNUSED = 0xFD  # arch/x86/mm/init_64.c @ 6.1: the fill marking unused parts of a 2 MiB vmemmap PMD
PAGEBLOCK_NR_PAGES = 1 << 9  # x86_64: pageblock_order = HUGETLB_PAGE_ORDER (PMD_SHIFT - PAGE_SHIFT)
VMEM_ALTMAP_KMALLOC = 64  # kmemdup(sizeof(struct vmem_altmap)) = 7 longs + a bool = 64 bytes (kmalloc-64)
KMALLOC_ALIGN = 64  # kzalloc(sizeof(struct mem_section_usage)) of 6.1 (56 bytes) comes from kmalloc-64

#: the MMOP_* online types (drivers/base/memory.c @ 6.1 ``online_type_to_str``) and the script's short names
ONLINE_TYPES = ("offline", "online", "online_kernel", "online_movable")
KIND_ALIASES = {"online": "online", "kernel": "online_kernel", "online_kernel": "online_kernel",
                "movable": "online_movable", "online_movable": "online_movable"}
NOTIFIER_EVENTS = ("MEM_GOING_ONLINE", "MEM_GOING_OFFLINE")


class HotplugError(VmemmapError):
    """A hot-plug step the kernel refuses: ``errno`` is negative (``-EINVAL``), ``reason`` one line."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.errno = -getattr(_errno, name)
        self.reason = reason
        super().__init__(f"errno {self.errno} ({name}): {reason}")


@dataclass
class MemoryBlock:
    """``struct memory_block`` (include/linux/memory.h @ 6.1) as sysfs shows it."""

    nr: int  # block id = phys_index
    start_pfn: int
    nr_pages: int
    nid: int
    state: str  # "online" | "offline" (MEM_ONLINE / MEM_OFFLINE; going-offline is transient)
    zone: str | None  # mem->zone: the zone when online; None = spans several zones (prints "none")
    online_type: str = "offline"  # mem->online_type last requested
    early: bool = False  # boot memory (memory_dev_init)
    add_zone: str | None = None  # 2.6.x: the zone arch_add_memory put the block in (online uses it)
    #: memmap_on_memory: pages at the block's start holding its own memmap (6.1 ``mem->nr_vmemmap_pages`` =
    #: ``mhp_altmap.alloc``; 6.12 ``mem->altmap->free``); 0 when the memmap came from the page allocator
    nr_vmemmap_pages: int = 0

    @property
    def name(self) -> str:
        return f"memory{self.nr}"

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.nr_pages


@dataclass
class StepResult:
    """What one hot-plug operation did: the kernel's messages, and the error if it failed."""

    ok: bool
    messages: list[str] = field(default_factory=list)
    error: HotplugError | None = None


@dataclass
class Altmap:
    """``struct vmem_altmap`` (include/linux/memremap.h @ 6.1/6.12; kernel-reference §4.5): pfns of the
    hot-added range itself that back its vmemmap (memmap_on_memory).  ``kmalloc`` is the physical address of
    the struct when it was ``kmemdup``'d (6.12 ``create_altmaps_and_memory_blocks``; 0: on the stack, 6.1)."""

    base_pfn: int
    end_pfn: int
    free: int
    reserve: int = 0
    alloc: int = 0
    align: int = 0
    kmalloc: int = 0

    def alloc_block_buf(self, size: int) -> int | None:
        """``altmap_alloc_block_buf`` (mm/sparse-vmemmap.c): whole pages from ``base_pfn + reserve + alloc +
        align`` aligned to the request's lowest set bit; ``None`` past ``free``.  Returns a physical address."""
        if size % PAGE_SIZE:
            return None
        pfn = self.base_pfn + self.reserve + self.alloc + self.align  # vmem_altmap_next_pfn
        nr_pfns = size >> PAGE_SHIFT
        nr_align = nr_pfns & -nr_pfns  # 1UL << find_first_bit(&nr_pfns, BITS_PER_LONG)
        nr_align = -(-pfn // nr_align) * nr_align - pfn
        if nr_pfns + nr_align > self.free - self.alloc - self.align:  # vmem_altmap_nr_free
            return None
        self.alloc += nr_pfns
        self.align += nr_align
        return (pfn + nr_align) << PAGE_SHIFT

    def free_pages(self, nr_pfns: int) -> None:
        """``vmem_altmap_free``: the pages go back to the altmap, not to the page allocator."""
        self.alloc -= nr_pfns


def _kstrtobool(text: str | None) -> bool | None:
    """``kstrtobool`` (lib/kstrtox.c @ 6.x): the first character decides (y/t/1/e true, n/f/0/d false,
    "on"/"off"); anything else is -EINVAL (``None``)."""
    if not text:
        return None
    c = text[0]
    if c in "yYtT1eE":
        return True
    if c in "nNfF0dD":
        return False
    if c in "oO" and len(text) > 1:
        return {"n": True, "f": False}.get(text[1].lower())
    return None


class Hotplug:
    """The hot-plug interfaces of one booted kernel (``k.hotplug``)."""

    def __init__(self, k: Kernel) -> None:
        from vmemmap.kmem import memory_block_size

        self.k = k
        #: the era's [hotplug] rules (eras/*.toml) and how this model hot-adds: "sparse" (any SPARSEMEM
        #: model: sections), "reserve" (2.6.21 DISCONTIGMEM), "no: why", "unmodelled: why"
        self.rules: dict[str, Any] = dict(k.era.hotplug)
        self.how: str = self.rules.get(k.model_name, "sparse")
        self.supported = self.how == "sparse" and hasattr(k.model, "sections")
        self.vmemmap = hasattr(k.model, "leaf_size")  # SPARSEMEM_VMEMMAP; else classic SPARSEMEM memmaps
        # memory_block_size_bytes() by the era's rule (kmem.probe_memory_block_size, kernel-reference §5.2)
        self.block_size = memory_block_size(k) if self.supported else 1 << k.era.section_size_bits
        self.pps = k.era.pages_per_section
        self.block_pages = self.block_size >> PAGE_SHIFT
        self.sections_per_block = max(1, self.block_pages // self.pps)
        self.blocks: dict[int, MemoryBlock] = {}
        self.resources: list[tuple[int, int]] = []  # hot-added System RAM [start, end), sorted
        # mhp_default_online_type: the era's Debian default (6.1 offline, 6.12 online), then memhp_default_state=
        self.default_online_type = k.era.memhp_default_online_type
        for arg in k.machine.cmdline.split():
            if arg.startswith("memhp_default_state=") and arg.split("=", 1)[1] in ONLINE_TYPES:
                self.default_online_type = arg.split("=", 1)[1]
        self.messages: list[str] = []
        self.inject: dict[str, int] = {}  # notifier-error-inject: event -> errno (negative)
        self._roots_before: set[int] = set()
        self.vmalloc_used: list[tuple[int, int]] = []  # vmalloc'd section memmaps (classic SPARSEMEM fallback)
        self.acpi_devices: dict[str, list[tuple[int, int]]] = {}  # ACPI memory devices: enabled (start, size)
        # memmap_on_memory: the era's scope ("none", "single-block" 6.1, "per-block" 6.12), the boot
        # parameter's mode ("disable", "enable", "force") and each memory block's altmap (mem->altmap)
        self.mom_scope: str = str(self.rules.get("memmap_on_memory", "none")) if self.vmemmap else "none"
        self.memmap_mode: str = self._memmap_on_memory_param()
        #: what the kernel printed about hotplug while booting (set_memmap_mode's waste report)
        self.boot_messages: list[str] = []
        if self.memmap_mode == "force":
            # set_memmap_mode() @ 6.12: pr_info_once("Memory hotplug will waste %ld pages in each memory
            # block\n", memory_block_memmap_on_memory_pages() - PFN_UP(memory_block_memmap_size()))
            exact = -(-self.block_pages * self.k.era.struct_page_size // PAGE_SIZE)
            self.boot_messages.append(
                f"Memory hotplug will waste {self.memmap_on_memory_pages() - exact} pages in each memory block")
        self.altmaps: dict[int, Altmap] = {}
        self.virtio_mem: dict[str, dict[str, Any]] = {}  # virtio-mem devices (SBM): region, node, plugged blocks
        #: device memory added by :meth:`add_pages` (ZONE_DEVICE, sub-section granular): (start, end, nid)
        self.device_ranges: list[tuple[int, int, int]] = []
        #: vmemmap pages mapped with 4 KiB PTEs by a sub-section add (``vmemmap_populate_basepages``): va -> pa
        self.vmemmap_ptes: dict[int, int] = {}
        if self.supported:
            self._boot_blocks()

    # ------------------------------------------------------------------ memmap_on_memory
    def _memmap_on_memory_param(self) -> str:
        """``memory_hotplug.memmap_on_memory=`` from the command line (the last one wins; mode 0444, fixed
        after boot).  6.1: ``module_param(memmap_on_memory, bool, 0444)`` -- ``param_set_bool``, a bare
        parameter is true, ``force`` is ``kstrtobool`` 'f', false.  6.12 (era ``memmap_on_memory_force``):
        ``set_memmap_mode`` -- ``force``/``FORCE`` is MEMMAP_ON_MEMORY_FORCE, else ``kstrtobool``; a bare
        parameter is refused (the ops have no KERNEL_PARAM_OPS_FL_NOARG).  A value the parser refuses
        leaves the default, disabled.  Without CONFIG_MHP_MEMMAP_ON_MEMORY (the era's scope "none", or
        classic SPARSEMEM) the mode is always "disable"."""
        mode = "disable"
        if self.mom_scope == "none":
            return mode
        force_ok = bool(self.rules.get("memmap_on_memory_force", False))
        for arg in self.k.machine.cmdline.split():
            name, eq, val = arg.partition("=")
            if name.replace("-", "_") != "memory_hotplug.memmap_on_memory":
                continue
            value: str | None = val if eq else None
            if force_ok:
                if value in ("force", "FORCE"):
                    mode = "force"
                    continue
            elif value is None:
                value = "1"  # param_set_bool: no value means "1"
            b = _kstrtobool(value)
            if b is not None:
                mode = "enable" if b else "disable"
        return mode

    def memmap_on_memory_pages(self) -> int:
        """``memory_block_memmap_on_memory_pages`` (6.12): PFN_UP of the block's memmap size
        (``memory_block_memmap_size`` = block pages x sizeof(struct page)), padded to whole pageblocks in
        force mode."""
        pages = -(-self.block_pages * self.k.era.struct_page_size // PAGE_SIZE)
        if self.memmap_mode == "force":
            pb = PAGEBLOCK_NR_PAGES
            pages = -(-pages // pb) * pb
        return pages

    def mhp_supports_memmap_on_memory(self, size: int | None = None) -> bool:
        """``mhp_supports_memmap_on_memory`` (mm/memory_hotplug.c).

        6.1 (``(size)``): the feature on, ``size == memory_block_size_bytes()``, the memmap of ``size``
        (pages x sizeof(struct page)) PMD-aligned and the remaining size pageblock-aligned.
        6.12 (``(void)``, per memory block): the feature on, the block's memmap size page-aligned, its
        pages (force: padded) pageblock-aligned, not the whole block, and ``arch_supports_memmap_on_memory``
        (generic: the memmap size a multiple of PMD_SIZE)."""
        if self.mom_scope == "none" or self.memmap_mode == "disable":
            return False
        sp = self.k.era.struct_page_size
        pb_bytes = PAGEBLOCK_NR_PAGES << PAGE_SHIFT
        if self.mom_scope == "single-block":
            size = self.block_size if size is None else size
            vmemmap_size = (size // PAGE_SIZE) * sp
            return (size == self.block_size and vmemmap_size % PMD_SIZE == 0
                    and (size - vmemmap_size) % pb_bytes == 0)
        vmemmap_size = self.block_pages * sp
        pages = self.memmap_on_memory_pages()
        if vmemmap_size % PAGE_SIZE or pages % PAGEBLOCK_NR_PAGES or pages == self.block_pages:
            return False
        return vmemmap_size % PMD_SIZE == 0

    # ------------------------------------------------------------------ blocks
    def _boot_blocks(self) -> None:
        """``memory_dev_init``: a block for every block-sized range with a present section, online; its
        node and zone from ``memory_block_add_nid`` → ``early_node_zone_for_memory_block`` (the one zone
        of the one node whose span intersects the block, else NULL).

        Computed over arrays of blocks: each RAM range and each zone marks the run of blocks it
        intersects (two bisections), so the cost grows with ranges, zones and nodes; only the
        ``MemoryBlock`` records themselves are one per block. :meth:`_boot_blocks_reference` is the
        block-by-block rule; tests prove both give the same blocks."""
        import numpy as np

        k = self.k
        st = k.model.sections  # type: ignore[attr-defined]
        nrs = np.asarray(st.present_array(), dtype=np.int64)
        if nrs.size == 0:
            return
        bp = self.block_pages
        q = np.sort(nrs // self.sections_per_block)
        nrb = q[np.concatenate(([True], q[1:] != q[:-1]))]  # the blocks, ascending, each once
        lo = nrb * bp
        hi = lo + bp

        def span(start: int, end: int) -> slice:
            """The blocks that intersect [start, end): ``lo < end`` and ``hi > start``."""
            return slice(int(np.searchsorted(hi, start, "right")), int(np.searchsorted(lo, end, "left")))

        ranges = [(span(s, e), n) for s, e, n in k.ram_pfn_ranges()]
        nid_count = np.zeros(nrb.size, dtype=np.int64)  # how many nodes' ranges intersect the block
        nid_top = np.zeros(nrb.size, dtype=np.int64)    # the highest such nid (0 if none)
        for nid in sorted({n for _, n in ranges}):
            mark = np.zeros(nrb.size + 1, dtype=np.int64)
            for sl, n in ranges:
                if n == nid and sl.start < sl.stop:
                    mark[sl.start] += 1
                    mark[sl.stop] -= 1
            hit = np.cumsum(mark[:-1]) > 0
            nid_count += hit
            nid_top[hit] = nid
        single = nid_count == 1
        zones = [z for z in k.zones if z.present_pages]
        zone_count = np.zeros(nrb.size, dtype=np.int64)  # zones of the block's one node it intersects
        zone_idx = np.zeros(nrb.size, dtype=np.int64)
        for i, z in enumerate(zones):
            sl = span(z.start_pfn, z.end_pfn)
            m = single[sl] & (nid_top[sl] == z.nid)
            zone_count[sl] += m
            zone_idx[sl][m] = i
        names = np.array([z.name for z in zones] + [None], dtype=object)
        zone = names[np.where(zone_count == 1, zone_idx, len(zones))].tolist()
        n = nrb.size
        # one record per block: collection paused meanwhile (half a million new objects would trigger
        # full collections of the whole simulated machine's heap, which hold nothing to collect)
        paused = gc.isenabled()
        gc.disable()
        try:
            self.blocks.update(zip(nrb.tolist(), map(
                MemoryBlock, nrb.tolist(), lo.tolist(), repeat(bp, n), nid_top.tolist(), repeat("online", n),
                zone, repeat("online", n), repeat(True, n))))
        finally:
            if paused:
                gc.enable()

    def _boot_blocks_reference(self) -> dict[int, MemoryBlock]:
        """The block-by-block rule of :meth:`_boot_blocks` (tests compare the two)."""
        k = self.k
        st = k.model.sections  # type: ignore[attr-defined]
        out: dict[int, MemoryBlock] = {}
        for b in sorted({int(nr) // self.sections_per_block for nr in st.present_array()}):
            lo, hi = b * self.block_pages, (b + 1) * self.block_pages
            nids = sorted({nid for s, e, nid in k.ram_pfn_ranges() if s < hi and e > lo})
            zones_in = [z for z in k.zones if z.present_pages and z.start_pfn < hi and z.end_pfn > lo]
            zone: str | None = None
            nid = nids[-1] if nids else 0
            if len(nids) == 1:
                zs = [z for z in zones_in if z.nid == nids[0]]
                zone = zs[0].name if len(zs) == 1 else None
            out[b] = MemoryBlock(b, lo, self.block_pages, nid, "online", zone, "online", early=True)
        return out

    def block(self, ref: int | str) -> MemoryBlock:
        """A block by number or ``memoryN`` name (an unknown one is -ENODEV: no such sysfs device)."""
        if isinstance(ref, str):
            text = ref.removeprefix("memory")
            try:
                ref = int(text, 0)
            except ValueError:
                raise InputError(f"{ref!r} is not a memory block (memoryN)") from None
        b = self.blocks.get(ref)
        if b is None:
            raise HotplugError("ENODEV", f"memory{ref}: no such memory block")
        return b

    def valid_zones(self, b: MemoryBlock) -> str:
        """``valid_zones_show``: an online block's zone (``none`` if NULL); an offline block's
        ``zone_for_pfn_range(MMOP_ONLINE)`` then the other zones ``print_allowed_zone`` accepts."""
        if b.state == "online" or not self.rules.get("valid_zones", True):
            return b.zone or "none"
        default = self.zone_for_pfn_range("online", b.nid, b.start_pfn, b.end_pfn)
        out = [default]
        for kind in ("online_kernel", "online_movable"):
            z = self.zone_for_pfn_range(kind, b.nid, b.start_pfn, b.end_pfn)
            if z not in out:
                out.append(z)
        return " ".join(out)

    def zone_for_pfn_range(self, kind: str, nid: int, start_pfn: int, end_pfn: int) -> str:
        """``zone_for_pfn_range`` (mm/memory_hotplug.c @ 6.1, online_policy contig-zones, movable_node off)."""
        from vmemmap.kernel import default_kernel_zone, default_zone_for_pfn

        if kind == "online_kernel":
            return default_kernel_zone(self.k, nid, start_pfn, end_pfn)
        if kind == "online_movable":
            return "Movable"
        return default_zone_for_pfn(self.k, nid, start_pfn, end_pfn)

    def sysfs_lines(self) -> list[str]:
        """``/sys/devices/system/memory`` as the captures' MEMORY_BLOCKS block prints it."""
        out = [f"block_size_bytes {self.block_size:x}", f"auto_online_blocks {self.default_online_type}"]
        vz = self.rules.get("valid_zones", True)
        for b in sorted(self.blocks.values(), key=lambda x: x.nr):
            out.append(f"{b.name} phys_index={b.nr:08x} state={b.state} online={int(b.state == 'online')} "
                       f"removable=1 phys_device=0 " + (f"valid_zones={self.valid_zones(b)} " if vz else "")
                       + f"node=node{b.nid}")
        return out

    def to_json(self) -> list[dict[str, Any]]:
        return [{"name": b.name, "phys_index": b.nr, "start": f"{b.start_pfn << PAGE_SHIFT:#x}",
                 "size": f"{b.nr_pages << PAGE_SHIFT:#x}", "state": b.state, "online": b.state == "online",
                 "valid_zones": self.valid_zones(b), "node": b.nid, "removable": 1, "early": b.early}
                for b in sorted(self.blocks.values(), key=lambda x: x.nr)]

    # ------------------------------------------------------------------ public operations
    def _check_supported(self) -> None:
        """Refuse hot-plug where the era's kernel has none (``HotplugError``, -EINVAL: no memory sysfs, no
        hot-add path) or where we do not model it (``InputError``)."""
        if self.supported:
            return
        how, era, model = self.how, self.k.era.name, self.k.model_name
        if how.startswith("no:"):
            raise HotplugError("EINVAL", f"{era} {model}: no memory hotplug: {how[3:].strip()}")
        if how.startswith("unmodelled:"):
            raise InputError(f"{era} {model}: {how[11:].strip()}")
        if how == "reserve":
            return
        raise InputError(f"memory hotplug needs a SPARSEMEM model, not {era} {model}")

    def _era_rule(self, name: str, what: str) -> None:
        """An operation the era's kernel lacks (``offline``/``remove`` false in the era's [hotplug])."""
        if not self.rules.get(name, True):
            why = {"offline": "remove_memory() returns -EINVAL without CONFIG_MEMORY_HOTREMOVE, which x86_64 "
                              "cannot select in this era",
                   "remove": "x86 has no arch_remove_memory before 3.9: hot-added sections stay"}[name]
            raise HotplugError("EINVAL", f"{self.k.era.name}: {what}: {why}")

    def probe(self, addr: int) -> StepResult:
        """``probe_store`` (drivers/base/memory.c @ 6.1): the address must be aligned to
        ``MIN_MEMORY_BLOCK_SIZE * sections_per_block`` (-EINVAL), then
        ``__add_memory(memory_add_physaddr_to_nid(addr), addr, block size, MHP_NONE)``."""
        self._check_supported()
        if self.how == "reserve":  # no drivers/base/memory.c without MEMORY_HOTPLUG_SPARSE
            return self._fail(HotplugError("ENOENT", "DISCONTIGMEM: no /sys/devices/system/memory/probe "
                                           "(memory sysfs needs MEMORY_HOTPLUG_SPARSE)"))
        if self.rules.get("probe", "block") == "section":
            # memory_probe_store (drivers/base/memory.c @ v2.6.24): no alignment check, one section:
            # add_memory(nid, phys_addr, PAGES_PER_SECTION << PAGE_SHIFT)
            return self.add_memory(self.memory_add_physaddr_to_nid(addr), addr, self.pps << PAGE_SHIFT)
        if addr < 0 or addr % self.block_size:
            return self._fail(HotplugError("EINVAL", f"probe {addr:#x}: not aligned to the memory block size "
                                           f"{self.block_size:#x}"))
        return self.add_memory(self.memory_add_physaddr_to_nid(addr), addr, self.block_size)

    def memory_add_physaddr_to_nid(self, addr: int) -> int:
        """x86 ``memory_add_physaddr_to_nid`` (arch/x86/mm/numa.c @ 6.1): the node of the SRAT range
        (hot-pluggable ranges included) holding ``addr``, else the first node."""
        m = self.k.machine
        for n in m.nodes:
            for s, e in tuple(n.ranges) + tuple(n.hotplug):
                if s <= addr < e:
                    return n.nid if n.nid in self.k.nodes else min(self.k.nodes)
        return min(self.k.nodes)

    def add_memory(self, nid: int, start: int, size: int, online: str | None = None,
                   memmap_on_memory: bool = False) -> StepResult:
        """``add_memory(nid, start, size, mhp_flags)`` (mm/memory_hotplug.c @ 6.1); ``online`` overrides
        ``memhp_default_state`` for the auto-online that follows; ``memmap_on_memory`` is the caller's
        ``MHP_MEMMAP_ON_MEMORY`` flag (the ACPI driver sets it, ``probe`` and virtio-mem pass MHP_NONE).

        With the flag, ``add_memory_resource`` places each block's memmap in the block itself
        (``vmem_altmap``): 6.1 (scope "single-block") refuses with -EINVAL unless
        :meth:`mhp_supports_memmap_on_memory` holds for ``size`` (``mhp_altmap.free = PHYS_PFN(size)``,
        ``create_memory_block_devices(start, size, mhp_altmap.alloc, group)``); 6.12 (scope "per-block")
        uses ``create_altmaps_and_memory_blocks`` when it holds -- per memory block a ``kmemdup``'d altmap
        of ``memory_block_memmap_on_memory_pages()`` pages, ``arch_add_memory`` of that block, its block
        device -- and falls back to the page allocator otherwise."""
        self._check_supported()
        online = self.default_online_type if online is None else online
        if online not in ONLINE_TYPES:
            raise InputError(f"online type {online!r}: one of {', '.join(ONLINE_TYPES)}")
        msgs: list[str] = []
        if self.how == "reserve":
            return self._reserve_add(nid, start, size)
        nv: dict[int, int] = {}  # block -> nr_vmemmap_pages
        try:
            self._add_checks(nid, start, size, msgs)
            if memmap_on_memory and self.mom_scope == "single-block":
                if not self.mhp_supports_memmap_on_memory(size):
                    raise HotplugError("EINVAL", f"add [mem {start:#x}-{start + size - 1:#x}]: MHP_MEMMAP_ON_MEMORY "
                                       f"but mhp_supports_memmap_on_memory() is false")
                am = Altmap(start >> PAGE_SHIFT, (start + size - 1) >> PAGE_SHIFT, size >> PAGE_SHIFT)
                msgs += self._arch_add_memory(nid, start, size, am)
                for b in range(start // self.block_size, (start + size) // self.block_size):
                    nv[b] = am.alloc
                    self.altmaps[b] = am
            elif memmap_on_memory and self.mom_scope == "per-block" and self.mhp_supports_memmap_on_memory():
                msgs += self._create_altmaps_and_memory_blocks(nid, start, size, nv)
            else:
                msgs += self._arch_add_memory(nid, start, size)
        except HotplugError as e:
            return self._fail(e, msgs)
        # create_memory_block_devices (register_new_memory before 2.6.3x): offline, on nid
        for b in range(start // self.block_size, (start + size) // self.block_size):
            self.blocks[b] = MemoryBlock(b, b * self.block_pages, self.block_pages, nid, "offline", None,
                                         nr_vmemmap_pages=nv.get(b, 0))
            if self.rules.get("zone_at") == "add":
                # 2.6.x arch_add_memory: ZONE_NORMAL of the node; __add_zone → grow_zone_span,
                # grow_pgdat_span, memmap_init_zone(MEMMAP_HOTPLUG) → set_page_links (mm/memory_hotplug.c @ v2.6.24)
                self._move_pfn_range_to_zone(self.blocks[b], "Normal")
                self.blocks[b].add_zone = "Normal"
        self.resources.append((start, start + size))
        self.resources.sort()
        spfn, epfn = start >> PAGE_SHIFT, (start + size) >> PAGE_SHIFT
        self.k.added_memory.append((spfn, epfn, nid, online, ""))
        self.messages += msgs
        res = StepResult(True, msgs)
        if online != "offline":
            # walk_memory_blocks(start, size, NULL, online_memory_block): failures are not reported back
            for b in range(start // self.block_size, (start + size) // self.block_size):
                r = self.online(b, online)
                res.messages += r.messages
        return res

    def online(self, ref: int | str, kind: str = "online") -> StepResult:
        """``state_store`` "online"/"online_kernel"/"online_movable" → ``device_online`` →
        ``memory_block_online`` → ``online_pages`` (mm/memory_hotplug.c @ 6.1)."""
        self._check_supported()
        kind = KIND_ALIASES.get(kind, kind)
        if kind not in ONLINE_TYPES[1:]:
            raise InputError(f"online type {kind!r}: one of online, kernel, movable")
        if kind not in self.rules.get("online_types", ONLINE_TYPES[1:]):
            kind = "online"  # store_mem_state before 3.8: strncmp(buf, "online", 6) -- online_movable is online
        try:
            b = self.block(ref)
            if b.state == "online":  # device_online() returns 1 → state_store returns -EINVAL
                raise HotplugError("EINVAL", f"{b.name} is already online")
        except HotplugError as e:
            return self._fail(e)
        k = self.k
        add_zone = self.rules.get("zone_at") == "add"
        zname = (b.add_zone or "Normal") if add_zone else self.zone_for_pfn_range(kind, b.nid, b.start_pfn, b.end_pfn)
        # memmap_on_memory (memory_block_online, drivers/base/memory.c @ 6.1/6.12): the block's first
        # nr_vmemmap_pages hold its memmap: mhp_init_memmap_on_memory moves them to the zone
        # (move_pfn_range_to_zone, MIGRATE_UNMOVABLE, never freed to the buddy), online_pages(start_pfn +
        # nr_vmemmap_pages, nr_pages - nr_vmemmap_pages) onlines the rest, then adjust_present_page_count(
        # +nr_vmemmap_pages): zone span and present pages cover the whole block, the allocator only the rest
        nv = b.nr_vmemmap_pages
        err = self.inject.get("MEM_GOING_ONLINE", 0)
        if err:
            # memory_notify(MEM_GOING_ONLINE) failed: failed_addition → MEM_CANCEL_ONLINE,
            # remove_pfn_range_from_zone (and mhp_deinit_memmap_on_memory); the block stays offline
            name = _errno.errorcode.get(-err, "EIO")
            return self._fail(HotplugError(name, f"{b.name}: MEM_GOING_ONLINE notifier failed (injected)"),
                              [f"online_pages [mem {(b.start_pfn + nv) << PAGE_SHIFT:#010x}-"
                               f"{(b.end_pfn << PAGE_SHIFT) - 1:#010x}] failed"])
        z = self._zone(b.nid, zname) if add_zone else self._move_pfn_range_to_zone(b, zname)
        assert z is not None
        z.present_pages += b.nr_pages
        self._node_present(b.nid, b.nr_pages)
        self._zone_ranges_add(z, b.start_pfn, b.end_pfn)
        self._set_sections_online(b.start_pfn, b.end_pfn, True)
        if zname != "Movable":
            k.memblock.add_free((b.start_pfn + nv) << PAGE_SHIFT, b.end_pfn << PAGE_SHIFT, b.nid)
        b.state, b.zone = "online", zname
        if not add_zone:
            b.online_type = kind
        self._sync_added(b)
        return StepResult(True, [])

    def offline(self, ref: int | str) -> StepResult:
        """``state_store`` "offline" → ``device_offline`` → ``memory_block_offline`` → ``offline_pages``."""
        self._check_supported()
        k = self.k
        try:
            self._era_rule("offline", f"offline {ref}")
            b = self.block(ref)
            if b.state != "online":
                raise HotplugError("EINVAL", f"{b.name} is already offline")
            if b.zone is None:  # memory_block_offline: !mem->zone
                raise HotplugError("EINVAL", f"{b.name} spans several zones (valid_zones none)")
        except HotplugError as e:
            return self._fail(e)
        # memory_block_offline: adjust_present_page_count(-nr_vmemmap_pages), offline_pages(start_pfn +
        # nr_vmemmap_pages, nr_pages - nr_vmemmap_pages) -- the memmap pages are not isolated nor migrated
        # (they hold the block's own struct pages) -- then mhp_deinit_memmap_on_memory:
        # remove_pfn_range_from_zone of the memmap pages.  They stay allocated in the altmap until remove.
        nv = b.nr_vmemmap_pages
        lo, hi = (b.start_pfn + nv) << PAGE_SHIFT, b.end_pfn << PAGE_SHIFT
        fail = f"memory offlining [mem {lo:#010x}-{hi - 1:#010x}] failed due to "
        if b.early:
            ram = sum(max(0, min(e, b.end_pfn) - max(s, b.start_pfn)) for s, e, _ in k.ram_pfn_ranges())
            if ram != b.nr_pages:
                return self._fail(HotplugError("EINVAL", f"{b.name} has memory holes"), [fail + "memory holes"])
        if b.zone != "Movable" and not k.memblock.is_free(lo, hi):
            # start_isolate_page_range → has_unmovable_pages
            return self._fail(HotplugError("EBUSY", f"{b.name} holds unmovable pages (kernel allocations)"),
                              [fail + "failure to isolate range"])
        err = self.inject.get("MEM_GOING_OFFLINE", 0)
        if err:
            name = _errno.errorcode.get(-err, "EIO")
            return self._fail(HotplugError(name, f"{b.name}: MEM_GOING_OFFLINE notifier failed (injected)"),
                              [fail + "notifier failure"])
        if b.zone != "Movable":
            k.memblock.remove_range(lo, hi)
        self._set_sections_online(b.start_pfn, b.end_pfn, False)
        z = self._zone(b.nid, b.zone)
        assert z is not None
        z.present_pages -= b.nr_pages
        self._node_present(b.nid, -b.nr_pages)
        self._zone_ranges_remove(z, b.start_pfn, b.end_pfn)
        self._shrink_zone_span(z, b.start_pfn, b.end_pfn)
        self._update_pgdat_span(b.nid)
        b.state, b.zone = "offline", None
        self._sync_added(b)
        msgs = [f"Offlined Pages {b.nr_pages - nv}"]
        self.messages += msgs
        return StepResult(True, msgs)

    def remove(self, start: int, size: int) -> StepResult:
        """``remove_memory(start, size)`` → ``try_remove_memory`` (mm/memory_hotplug.c @ 6.1)."""
        self._check_supported()
        end = start + size
        try:
            self._era_rule("remove", f"remove [mem {start:#x}-{end - 1:#x}]")
            if size <= 0 or start % self.block_size or size % self.block_size:
                raise HotplugError("EINVAL", f"remove [mem {start:#x}-{end - 1:#x}]: not aligned to the memory "
                                   f"block size {self.block_size:#x}")
            nrs = range(start // self.block_size, end // self.block_size)
            for nr in nrs:
                b = self.blocks.get(nr)
                if b is not None and b.early:
                    raise InputError(f"remove [mem {start:#x}-{end - 1:#x}]: memory{nr} is boot memory; removing "
                                     f"boot memory is not modelled")
                if b is None or not any(s <= b.start_pfn << PAGE_SHIFT < e for s, e in self.resources):
                    raise HotplugError("EINVAL", f"remove [mem {start:#x}-{end - 1:#x}]: memory{nr} was not "
                                       f"hot-added")
            for nr in nrs:
                if self.blocks[nr].state == "online":  # check_memblock_offlined_cb
                    raise HotplugError("EBUSY", f"memory{nr} is online: offline it first")
            if (self.mom_scope == "single-block" and self.memmap_mode != "disable"
                    and any(self.blocks[nr].nr_vmemmap_pages for nr in nrs) and size != self.block_size):
                # try_remove_memory @ 6.1: memory added with MHP_MEMMAP_ON_MEMORY is removed only in the
                # granularity it was added, one memory block
                raise HotplugError("EINVAL", f"Refuse to remove {start:#x} - {end:#x},wrong granularity")
        except HotplugError as e:
            msgs = []
            if e.name == "EBUSY":
                msgs = [f"removing memory fails, because memory [{start:#018x}-{end - 1:#018x}] is onlined"]
            elif e.reason.startswith("Refuse to remove"):
                msgs = [e.reason]
            return self._fail(e, msgs)
        if any(nr in self.altmaps for nr in nrs):
            # 6.12 remove_memory_blocks_and_altmaps (6.1: one block, mhp_altmap.alloc = nr_vmemmap_pages):
            # block by block, remove_memory_block_devices then arch_remove_memory with the block's altmap
            for nr in nrs:
                del self.blocks[nr]
                if nr in self.altmaps:
                    self._remove_block_with_altmap(nr)
                else:
                    self._arch_remove_memory(nr * self.block_size, (nr + 1) * self.block_size)
        else:
            for nr in nrs:  # remove_memory_block_devices
                del self.blocks[nr]
            self._arch_remove_memory(start, end)
        # release_mem_region_adjustable
        out = []
        for s, e in self.resources:
            if e <= start or s >= end:
                out.append((s, e))
                continue
            if s < start:
                out.append((s, start))
            if end < e:
                out.append((end, e))
        self.resources = out
        spfn, epfn = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        kept = []
        for a in self.k.added_memory:
            if a[1] <= spfn or a[0] >= epfn:
                kept.append(a)
                continue
            if a[0] < spfn:
                kept.append((a[0], spfn) + a[2:])
            if epfn < a[1]:
                kept.append((epfn, a[1]) + a[2:])
        self.k.added_memory[:] = kept
        return StepResult(True, [])

    def _reserve_add(self, nid: int, start: int, size: int) -> StepResult:
        """2.6.21 DISCONTIGMEM with ``MEMORY_HOTPLUG_RESERVE``: ``add_memory`` → x86_64 ``arch_add_memory``
        (``init_memory_mapping``, then the reserve ``__add_pages`` of arch/x86_64/mm/init.c @ v2.6.21):
        the node's ``node_mem_map`` was sized at boot over the SRAT hot-add area (srat.c
        ``reserve_hotadd``, :meth:`Discontigmem.init`), so adding memory is ``online_page()`` of every
        ``pfn_valid`` pfn -- ``-EIO`` when none is -- and ``spanned_pages``/``present_pages`` of the node's
        ZONE_NORMAL and of the node grow by the range.  No sections, no memory blocks, no remove."""
        k = self.k
        end = start + size
        where = f"[mem {start:#x}-{end - 1:#x}]"
        if size <= 0 or start % PAGE_SIZE or size % PAGE_SIZE:
            return self._fail(HotplugError("EINVAL", f"add {where}: not page aligned"))
        reserved = [(s, e) for n in k.machine.nodes if n.nid == nid for s, e in n.hotplug]
        if not any(s <= start and end <= e for s, e in reserved):
            return self._fail(HotplugError("EINVAL", f"DISCONTIGMEM add {where}: not inside a hot-add area "
                                           f"reserved at boot on node {nid} (SRAT hot-pluggable range, "
                                           f"MEMORY_HOTPLUG_RESERVE); machine {k.machine.name} has "
                                           f"{'none' if not reserved else reserved}"))
        if any(s < end and start < e for s, e in self.resources):
            return self._fail(HotplugError("EEXIST", f"add {where}: overlaps memory added before"))
        import numpy as np

        spfn, epfn = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        valid = int(k.model.pfn_valid_array(np.arange(spfn, epfn, dtype=np.uint64)).sum())  # type: ignore[attr-defined]
        if not valid:
            return self._fail(HotplugError("EIO", f"add {where}: no pfn is valid (node_mem_map does not cover it)"))
        self._directmap_add(start, end, nid)
        z = self._zone(nid, "Normal")
        if z is None:
            from vmemmap.kernel import Zone

            z = Zone(nid, k.era.zone_names.index("Normal"), "Normal", 0, 0, 0)
            k.zones.append(z)
            k.zones.sort(key=lambda x: (x.nid, x.idx))
        # z->spanned_pages += total (the zone start stays: the kernel only counts), present += mem
        if z.spanned_pages == 0:
            z.start_pfn, z.end_pfn = spfn, epfn
        else:
            z.end_pfn += epfn - spfn
        z.present_pages += valid
        self._node_present(nid, valid)
        from vmemmap.kernel import PGDAT_LAYOUT

        span = k.nodes[nid].pgdat + PGDAT_LAYOUT[k.era.boot_allocator]["node_spanned_pages"]
        k.mem.store(span, k.mem.peek(span, 8) + epfn - spfn)  # node_spanned_pages += total, as the kernel does
        k.memblock.add_free(start, end, nid)  # online_page(): __free_page into the buddy allocator
        self.resources.append((start, end))
        self.resources.sort()
        return StepResult(True, [])

    # ------------------------------------------------------------------ sub-section (ZONE_DEVICE) add / remove
    def _subsection_span(self, op: str, start: int, size: int) -> None:
        """The checks common to :meth:`add_pages` and :meth:`remove_pages`: a 6.x SPARSEMEM_VMEMMAP kernel
        (sub-sections exist: ``SUBSECTION_SHIFT``), and ``check_pfn_span`` (mm/memory_hotplug.c @ 6.1):
        start and size aligned to ``PAGES_PER_SUBSECTION`` with SPARSEMEM_VMEMMAP, else
        ``WARN(1, "Misaligned __%s_pages start: %#lx end: #%lx\\n")`` and -EINVAL."""
        self._check_supported()
        era = self.k.era
        if not (self.vmemmap and era.subsection_shift):
            raise InputError(f"{era.name} {self.k.model_name}: sub-section hotplug (add_pages/remove_pages) needs "
                             f"a SPARSEMEM_VMEMMAP kernel with sub-sections (5.3+, SUBSECTION_SHIFT)")
        if (self.pps * era.struct_page_size) % PMD_SIZE:
            raise InputError("sub-section hotplug with a section memmap that is not a whole number of PMDs "
                             "is not modelled")
        sub = 1 << (era.subsection_shift - PAGE_SHIFT)
        spfn, npages = start >> PAGE_SHIFT, size >> PAGE_SHIFT
        if size <= 0 or start < 0 or start % PAGE_SIZE or size % PAGE_SIZE or spfn % sub or npages % sub:
            msg = f"Misaligned __{op}_pages start: {spfn:#x} end: #{spfn + npages - 1:x}"
            raise HotplugError("EINVAL", msg)

    def _subsection_chunks(self, start: int, size: int) -> list[tuple[int, int, int]]:
        """``[start, start+size)`` as ``__add_pages``/``__remove_pages`` walk it: per section,
        ``(nr, pfn, end_pfn)`` with ``cur_nr_pages = min(end_pfn - pfn, SECTION_ALIGN_UP(pfn + 1) - pfn)``."""
        out = []
        pfn, epfn = start >> PAGE_SHIFT, (start + size) >> PAGE_SHIFT
        while pfn < epfn:
            cur = min(epfn, (pfn // self.pps + 1) * self.pps)
            out.append((pfn // self.pps, pfn, cur))
            pfn = cur
        return out

    def _subsection_bits(self, pfn: int, end_pfn: int) -> int:
        """``subsection_mask_set``: the section's sub-section bits for ``[pfn, end_pfn)``."""
        sub = 1 << (self.k.era.subsection_shift - PAGE_SHIFT)
        nr = pfn // self.pps
        a, b = (pfn - nr * self.pps) // sub, (end_pfn - nr * self.pps - 1) // sub
        return ((1 << (b - a + 1)) - 1) << a

    def _early_section(self, nr: int) -> bool:
        st = self.k.model.sections  # type: ignore[attr-defined]
        if not st.is_present(nr) or "EARLY" not in self.k.era.section_flags:
            return False
        return bool(st.read_word_nocheck(nr) & self.k.era.section_flag("EARLY"))

    def add_pages(self, nid: int, start: int, size: int) -> StepResult:
        """Hot-add device memory ``[start, start+size)`` on ``nid`` at sub-section (2 MiB) granularity: the
        ``arch_add_memory`` step of ``memremap_pages`` → ``pagemap_range`` (mm/memremap.c @ 6.1) for a
        MEMORY_DEVICE_GENERIC / FS_DAX range (the direct map is created, ``init_memory_mapping``).

        Checks, in the kernel's order: ``pagemap_range``: ``mhp_range_allowed`` (-E2BIG), a range touching
        System RAM (``region_intersects`` != REGION_DISJOINT: "attempted on ram region", -ENXIO);
        ``__add_pages`` → ``check_pfn_span`` (sub-section alignment, -EINVAL); per section
        ``sparse_add_section`` → ``section_activate`` → ``fill_subsection_map``: a sub-section already
        active is -EEXIST.  Then ``populate_section_memmap`` → ``vmemmap_populate`` (arch/x86/mm/init_64.c):
        a range smaller than one section's memmap (``end - start < PAGES_PER_SECTION * sizeof(struct
        page)``) is mapped with 4 KiB PTEs (``vmemmap_populate_basepages``), a whole section with a 2 MiB
        PMD.  No memory block, no System RAM resource; ``move_pfn_range_to_zone(ZONE_DEVICE)`` and
        ``memmap_init_zone_device`` are not modelled (no ZONE_DEVICE zone span).

        Deviations (the module's rule: a failing step changes nothing): every section is checked for
        -EEXIST before the first is activated (``__add_pages`` stops at the failing section and
        ``pagemap_range`` leaves the earlier ones in place); a sub-section add into a boot (EARLY) section,
        whose memmap ``section_activate`` reuses, and one whose memmap lies in a 2 MiB vmemmap PMD still
        mapped after a partial remove (the kernel expects adds in the granularity of removes) are refused
        as not modelled."""
        k = self.k
        end = start + size
        where = f"[mem {start:#x}-{end - 1:#x}]"
        try:
            self._subsection_span("add", start, size)
            top = (1 << k.era.max_physmem_bits(k.la57)) - 1
            if end - 1 > top:  # mhp_range_allowed(start, size, need_mapping=true)
                raise HotplugError("E2BIG", f"{where} is beyond MAX_PHYSMEM_BITS")
            dm = next((r for r in k.layout.regions if r.name == "direct-map"), None)
            if dm is not None and end > dm.end + 1 - dm.start:
                raise HotplugError("ERANGE", f"{where} is beyond the end of the direct map")
            ram = [(s << PAGE_SHIFT, e << PAGE_SHIFT) for s, e, _ in k.ram_pfn_ranges()] + self.resources
            if any(s < end and start < e for s, e in ram):
                raise HotplugError("ENXIO", f"memremap_pages attempted on ram region {where}")
            if nid not in k.nodes:
                raise HotplugError("EINVAL", f"node {nid} has no memory (node_online)")
            st = k.model.sections  # type: ignore[attr-defined]
            chunks = self._subsection_chunks(start, size)
            for nr, pfn, epfn in chunks:
                if self._early_section(nr):
                    raise InputError(f"add_pages {where}: section {nr} is a boot (EARLY) section; a sub-section "
                                     f"add into it (memmap reused by section_activate) is not modelled")
                if st.subsection_map(nr) & self._subsection_bits(pfn, epfn):
                    raise HotplugError("EEXIST", f"add_pages {where}: section {nr}: sub-section already active "
                                       f"(fill_subsection_map)")
                sp = k.era.struct_page_size
                if epfn - pfn < self.pps and k.model.leaf_size == PMD_SIZE:  # type: ignore[attr-defined]
                    v0 = k.layout.vmemmap_base + pfn * sp
                    if (v0 // PMD_SIZE) in k.model._mapped:  # type: ignore[attr-defined]
                        raise InputError(f"add_pages {where}: its memmap lies in a 2 MiB vmemmap PMD still mapped "
                                         f"after a partial remove; adding in another granularity than the "
                                         f"remove is not modelled")
            msgs = self._arch_add_memory(nid, start, size)
        except HotplugError as e:
            msgs = [e.reason] if e.reason.startswith(("Misaligned", "memremap_pages")) else []
            return self._fail(e, msgs)
        self.device_ranges.append((start, end, nid))
        self.device_ranges.sort()
        self.messages += msgs
        return StepResult(True, msgs)

    def remove_pages(self, start: int, size: int) -> StepResult:
        """Remove device memory added by :meth:`add_pages` (``memunmap_pages`` → ``pageunmap_range`` →
        x86 ``arch_remove_memory``: ``__remove_pages`` then ``kernel_physical_mapping_remove``).
        ``__remove_pages`` → ``check_pfn_span`` (-EINVAL); per section ``sparse_remove_section`` →
        ``section_deactivate`` (mm/sparse.c @ 6.1): ``clear_subsection_map`` (a sub-section not active:
        ``WARN "section already deactivated"``, -EINVAL); when the map becomes empty HAS_MEM_MAP is
        cleared and the usage map freed; ``depopulate_section_memmap`` → ``vmemmap_free`` →
        ``remove_pagetable`` frees the range's 4 KiB vmemmap pages and emptied page-table pages, a 2 MiB
        PMD when the whole PMD is covered or, partly covered, once ``vmemmap_pmd_is_unused`` finds it all
        ``PAGE_UNUSED`` (0xFD); the section word is zeroed only when its map is empty.

        Deviations: every section is checked before any is deactivated (the kernel WARNs and skips just
        the failing section); ``__remove_pages`` returns nothing, the -EINVAL is ours.  Memory added with
        ``add_memory`` (memory blocks) and boot memory are refused as input errors."""
        k = self.k
        end = start + size
        where = f"[mem {start:#x}-{end - 1:#x}]"
        try:
            self._subsection_span("remove", start, size)
            ram = [(s << PAGE_SHIFT, e << PAGE_SHIFT) for s, e, _ in k.ram_pfn_ranges()] + self.resources
            if any(s < end and start < e for s, e in ram):
                raise InputError(f"remove_pages {where}: overlaps System RAM (memory blocks or boot memory); "
                                 f"use remove for hot-added memory blocks")
            st = k.model.sections  # type: ignore[attr-defined]
            for nr, pfn, epfn in self._subsection_chunks(start, size):
                if self._early_section(nr):
                    raise InputError(f"remove_pages {where}: section {nr} is a boot (EARLY) section: not modelled")
                bits = self._subsection_bits(pfn, epfn)
                if not st.is_present(nr) or (st.subsection_map(nr) & bits) != bits:
                    msg = f"section already deactivated ({pfn:#x} + {epfn - pfn})"
                    raise HotplugError("EINVAL", f"remove_pages {where}: {msg}")
        except HotplugError as e:
            msgs = [e.reason.split(": ", 1)[1]] if "already deactivated" in e.reason else []
            if e.reason.startswith("Misaligned"):
                msgs = [e.reason]
            return self._fail(e, msgs)
        self._arch_remove_memory(start, end)
        self.device_ranges = cut_ranges(self.device_ranges, start, end)
        return StepResult(True, [])

    # ------------------------------------------------------------------ device drivers
    def acpi_memory_device_add(self, name: str, ranges: list[tuple[int, int]], node: int | None = None) -> StepResult:
        """``acpi_memory_device_add`` → ``acpi_memory_enable_device`` (drivers/acpi/acpi_memhotplug.c @ 6.1):
        an ACPI memory device (a QEMU ``pc-dimm``, HID PNP0C80, ``name`` its ACPI device name such as
        ``PNP0C80:00``) with its ``_CRS`` ranges ``(start, size)``.  The node is ``acpi_get_node`` (``_PXM``),
        else ``memory_add_physaddr_to_nid`` of the first range; every range goes through
        ``__add_memory`` (auto-online as ``memhp_default_state`` says); a range that fails with anything but
        -EEXIST is skipped, and when none was enabled the driver prints ``add_memory failed`` and
        ``acpi_memory_device_add`` prints ``acpi_memory_enable_device() error`` (-EINVAL)."""
        self._check_supported()
        ranges = [(s, n) for s, n in ranges if n]
        if not ranges:
            return self._fail(HotplugError("EINVAL", f"acpi {name}: device is empty"),
                              [f"acpi {name}: device is empty"])
        nid = node if node is not None and node >= 0 else self.memory_add_physaddr_to_nid(ranges[0][0])
        res = StepResult(True)
        enabled: list[tuple[int, int]] = []
        mom = False  # mhp_flags, declared once for all ranges
        for start, size in ranges:
            # 6.1: "if (mhp_supports_memmap_on_memory(info->length)) mhp_flags |= MHP_MEMMAP_ON_MEMORY"
            # (the flag then stays set for later ranges); 6.12: MHP_MEMMAP_ON_MEMORY always, and
            # add_memory_resource decides (mhp_supports_memmap_on_memory())
            if self.mom_scope == "per-block" or (self.mom_scope == "single-block"
                                                 and self.mhp_supports_memmap_on_memory(size)):
                mom = True
            r = self.add_memory(nid, start, size, memmap_on_memory=mom)
            res.messages += r.messages
            if r.error is not None and r.error.name != "EEXIST":
                continue
            enabled.append((start, size))  # info->enabled = 1 (acpi_bind_memory_blocks), -EEXIST included
        if not enabled:
            msgs = [f"acpi {name}: add_memory failed", f"acpi {name}: acpi_memory_enable_device() error"]
            self.messages += msgs
            res.messages += msgs
            res.ok, res.error = False, HotplugError("EINVAL", f"acpi {name}: no range of the device could be added")
            return res
        self.acpi_devices[name] = enabled
        return res

    def acpi_memory_device_eject(self, name: str) -> StepResult:
        """ACPI eject of a memory device (``device_del`` of a pc-dimm): ``acpi_scan_hot_remove``
        (drivers/acpi/scan.c @ 6.1) → ``acpi_scan_try_to_offline`` → ``device_offline`` of every memory
        block bound to the device (failure: the blocks offlined so far are onlined again,
        ``acpi_bus_online``, and the eject fails with -EBUSY) → ``acpi_bus_trim`` →
        ``acpi_memory_device_remove`` → ``acpi_memory_remove_memory``: ``__remove_memory`` per enabled range."""
        self._check_supported()
        ranges = self.acpi_devices.get(name)
        res = StepResult(True)
        if ranges is None:  # never bound (refused at add): only the ACPI device goes away
            return res
        done: list[tuple[int, str]] = []
        for start, size in ranges:
            for nr in range(start // self.block_size, (start + size) // self.block_size):
                b = self.blocks.get(nr)
                if b is None or b.state != "online":
                    continue
                kind = b.online_type
                r = self.offline(nr)
                res.messages += r.messages
                if r.error is not None:
                    for onr, okind in done:  # acpi_scan_try_to_offline: undo with acpi_bus_online
                        self.online(onr, okind)
                    res.ok, res.error = False, HotplugError("EBUSY", f"acpi {name}: {r.error.reason}")
                    return res
                done.append((nr, kind))
        for start, size in ranges:
            r = self.remove(start, size)
            res.messages += r.messages
        del self.acpi_devices[name]
        return res

    def virtio_mem_add_device(self, name: str, addr: int, region_size: int, nid: int,
                              device_block_size: int = PMD_SIZE) -> None:
        """``virtio_mem_probe`` (drivers/virtio/virtio_mem.c @ 6.1): the device's region, its node, and
        Sub Block Mode (``virtio_mem_init``: the device block size 2 MiB is below the memory block size,
        so memory is managed per memory block, ``vm->sbm``), nothing plugged yet."""
        self.virtio_mem[name] = {"addr": addr, "size": region_size, "nid": nid,
                                 "bs": device_block_size, "plugged": []}

    def virtio_mem_resize(self, name: str, requested: int) -> StepResult:
        """The device's ``requested_size`` changed (QMP ``qom-set requested-size``): ``virtio_mem_run_wq``.

        Plug (``virtio_mem_sbm_plug_request``): new memory blocks in ascending order from the start of the
        region (``virtio_mem_sbm_prepare_next_mb``), each plugged and added with
        ``add_memory_driver_managed(nid, addr, memory_block_size, "System RAM (virtio_mem)",
        MHP_MERGE_RESOURCE | MHP_NID_IS_MGID)`` (``virtio_mem_sbm_add_mb``), then onlined as
        ``memhp_default_state`` says.  Unplug (``virtio_mem_sbm_unplug_request``): memory blocks from the
        highest id down, offline ones first, then online ones; a fully plugged online block is removed
        whole with ``offline_and_remove_memory`` (``virtio_mem_sbm_offline_and_remove_mb``).  Only whole
        memory blocks are modelled (requests in multiples of the memory block size)."""
        self._check_supported()
        dev = self.virtio_mem[name]
        mb = self.block_size
        res = StepResult(True)
        plugged: list[int] = dev["plugged"]
        res.messages += [f"virtio_mem {name}: plugged size: {len(plugged) * mb:#x}",
                         f"virtio_mem {name}: requested size: {requested:#x}"]
        if requested % mb:
            raise InputError(f"virtio_mem {name}: requested size {requested:#x} is not a multiple of the memory "
                             f"block size {mb:#x}: sub-block plugging is not modelled")
        want = min(requested, dev["size"]) // mb
        first = dev["addr"] // mb
        while len(plugged) < want:
            nr = next(b for b in range(first, first + dev["size"] // mb) if b not in plugged)
            r = self.add_memory(dev["nid"], nr * mb, mb)
            res.messages += r.messages
            if r.error is not None:
                res.ok, res.error = False, r.error
                break
            plugged.append(nr)
        for state in ("offline", "online"):
            for nr in sorted(plugged, reverse=True):
                if len(plugged) <= want:
                    break
                b = self.blocks[nr]
                if (b.state == "online") != (state == "online"):
                    continue
                if b.state == "online":
                    r = self.offline(nr)
                    res.messages += r.messages
                    if r.error is not None:
                        continue  # virtio_mem tries the next block
                r = self.remove(nr * mb, mb)
                res.messages += r.messages
                if r.error is None:
                    plugged.remove(nr)
        return res

    # ------------------------------------------------------------------ add internals
    def _fail(self, e: HotplugError, msgs: list[str] | None = None) -> StepResult:
        msgs = list(msgs or [])
        self.messages += msgs
        return StepResult(False, msgs, e)

    def _add_checks(self, nid: int, start: int, size: int, msgs: list[str]) -> None:
        k = self.k
        end = start + size
        if size <= 0 or start < 0:
            raise HotplugError("EINVAL", f"add [mem {start:#x}+{size:#x}]: empty range")
        # register_memory_resource → mhp_range_allowed(start, size, need_mapping=true): [0, MAX_PHYSMEM_BITS)
        top = (1 << k.era.max_physmem_bits(k.la57)) - 1
        if end - 1 > top:
            msgs.append(f"Hotplug memory [{start:#x}-{end:#x}] exceeds maximum addressable range [0x0-{top:#x}]")
            raise HotplugError("E2BIG", f"[mem {start:#x}-{end - 1:#x}] is beyond MAX_PHYSMEM_BITS")
        dm = next((r for r in k.layout.regions if r.name == "direct-map"), None)
        if dm is not None and end > dm.end + 1 - dm.start:
            raise HotplugError("ERANGE", f"[mem {start:#x}-{end - 1:#x}] is beyond the end of the direct map "
                               f"({dm.end + 1 - dm.start:#x} bytes at page_offset_base)")
        busy = [(s << PAGE_SHIFT, e << PAGE_SHIFT) for s, e, _ in k.ram_pfn_ranges()] + self.resources
        busy += [(s, e) for s, e, _ in self.device_ranges]  # the device's resource (memremap_pages)
        if any(s < end and start < e for s, e in busy):
            msgs.append(f"Unable to reserve System RAM region: {start:016x}->{end:016x}")
            raise HotplugError("EEXIST", f"[mem {start:#x}-{end - 1:#x}] overlaps System RAM")
        # add_memory_resource → check_hotplug_memory_range
        if start % self.block_size or size % self.block_size:
            msgs.append(f"Block size [{self.block_size:#x}] unaligned hotplug range: start {start:#x}, "
                        f"size {size:#x}")
            raise HotplugError("EINVAL", f"[mem {start:#x}-{end - 1:#x}] is not aligned to the memory block "
                               f"size {self.block_size:#x}")
        if nid not in k.nodes:
            if any(n.nid == nid for n in k.machine.nodes):
                raise InputError(f"node {nid} has no memory yet: hot-adding to a new node (hotadd_init_pgdat) "
                                 f"is not modelled")
            raise HotplugError("EINVAL", f"node {nid} was absent from the node_possible_map")

    def alloc(self, size: int, align: int, nid: int, what: str) -> int:
        """The run-time allocator stand-in (module docstring): node ``nid`` first, lowest free fit,
        zones Normal, DMA32, DMA in turn, then the other nodes; ``BootError`` when nothing fits."""
        mb = self.k.memblock
        order = [nid] + sorted(n for n in self.k.nodes if n != nid)
        for n in order:
            for lo, hi in ((SZ_4G, None), (SZ_16M, SZ_4G), (0, SZ_16M)):
                p = mb.alloc_first_fit(size, align, n, lo, hi, what)
                if p is not None:
                    return p
        raise BootError(f"out of memory: cannot allocate {size:#x} bytes for {what} on node {nid}")

    def _free(self, start: int, end: int) -> None:
        self.k.memblock.free(start, end)
        self.k.phys.discard(start, end)

    def _create_altmaps_and_memory_blocks(self, nid: int, start: int, size: int, nv: dict[int, int]) -> list[str]:
        """``create_altmaps_and_memory_blocks`` (mm/memory_hotplug.c @ 6.12): for each memory block an altmap
        ``{base_pfn, end_pfn, free = memory_block_memmap_on_memory_pages()}`` (``kmemdup``, GFP_KERNEL), then
        ``arch_add_memory(nid, block, memblock_size, params)`` -- so each block's memmap lands in its own
        first pages -- and the block device with that altmap.  A failure removes the blocks added so far
        (``remove_memory_blocks_and_altmaps``); the whole add is undone, as for one range."""
        k = self.k
        st = k.model.sections  # type: ignore[attr-defined]
        roots_before = set(st.roots)
        max_pfn_before = k.max_pfn
        msgs: list[str] = []
        done: list[int] = []
        for cur in range(start, start + size, self.block_size):
            b = cur // self.block_size
            try:
                kma = self.alloc(VMEM_ALTMAP_KMALLOC, VMEM_ALTMAP_KMALLOC, nid, "vmem_altmap")
            except BootError as e:
                err = HotplugError("ENOMEM", f"add [mem {cur:#x}-{cur + self.block_size - 1:#x}]: {e}")
            else:
                am = Altmap(cur >> PAGE_SHIFT, (cur + self.block_size - 1) >> PAGE_SHIFT,
                            self.memmap_on_memory_pages(), kmalloc=kma)
                try:
                    msgs += self._arch_add_memory(nid, cur, self.block_size, am)
                except HotplugError as e:
                    self._free(kma, kma + VMEM_ALTMAP_KMALLOC)
                    err = e
                else:
                    self.altmaps[b] = am
                    nv[b] = am.free  # memory_block_online/offline: nr_vmemmap_pages = mem->altmap->free
                    done.append(b)
                    continue
            for d in done:  # remove_memory_blocks_and_altmaps(start, cur_start - start)
                self._remove_block_with_altmap(d)
            for r in set(st.roots) - roots_before:
                va = st.roots.pop(r)
                k.mem.store(st.root_array + 8 * r, 0)
                self._free(va - k.page_offset, va - k.page_offset + st.per_root * st.ms_size)
            if k.max_pfn != max_pfn_before:
                k.max_pfn = max_pfn_before
                for name in ("max_pfn", "max_low_pfn"):
                    if name in k.symbols:
                        k.mem.store(k.symbols[name], max_pfn_before)
            raise err
        return msgs

    def _remove_block_with_altmap(self, nr: int) -> None:
        """One block of ``remove_memory_blocks_and_altmaps`` (6.12): ``arch_remove_memory(cur_start,
        memblock_size, altmap)`` -- its vmemmap PMDs go back to the altmap (``free_hugepage_table`` →
        ``vmem_altmap_free``), not to the page allocator -- then ``WARN(altmap->alloc, "Altmap not fully
        unmapped")`` and ``kfree(altmap)``."""
        am = self.altmaps.pop(nr)
        cur = nr * self.block_size
        self._arch_remove_memory(cur, cur + self.block_size, am)
        assert am.alloc == 0, f"memory{nr}: Altmap not fully unmapped"
        if am.kmalloc:
            self._free(am.kmalloc, am.kmalloc + VMEM_ALTMAP_KMALLOC)

    def _arch_add_memory(self, nid: int, start: int, size: int, altmap: Altmap | None = None) -> list[str]:
        """x86 ``arch_add_memory``: ``init_memory_mapping`` then ``add_pages``; undone entirely on -ENOMEM.
        With ``altmap`` the vmemmap PMDs come from it (memmap_on_memory)."""
        k = self.k
        end = start + size
        spfn, epfn = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        roots_before = set(k.model.sections.roots)  # type: ignore[attr-defined]
        populated: list[tuple[int, int, int]] = []
        pfn = spfn
        hook = lambda: self.alloc(PAGE_SIZE, PAGE_SIZE, nid, "page table")  # noqa: E731
        k.table_hooks.append(hook)
        try:
            self._directmap_add(start, end, nid)
            while pfn < epfn:
                cur = min(epfn, (pfn // self.pps + 1) * self.pps)
                self._sparse_add_section(nid, pfn, cur, populated, altmap)
                pfn = cur
        except BootError as e:
            p = spfn
            while p < pfn:
                cur = min(epfn, (p // self.pps + 1) * self.pps)
                self._section_deactivate(p, cur, altmap)
                p = cur
            self._directmap_remove(start, end)
            st = k.model.sections  # type: ignore[attr-defined]
            for r in set(st.roots) - roots_before:
                va = st.roots.pop(r)
                k.mem.store(st.root_array + 8 * r, 0)
                self._free(va - k.page_offset, va - k.page_offset + st.per_root * st.ms_size)
            raise HotplugError("ENOMEM", f"add [mem {start:#x}-{end - 1:#x}]: {e}") from None
        finally:
            k.table_hooks.remove(hook)
        k.model._pieces.sort(key=lambda p: p.start_pfn)  # type: ignore[attr-defined]
        # update_end_of_memory_vars (add_pages): max_pfn never goes down again (remove keeps it)
        if epfn > k.max_pfn:
            k.max_pfn = epfn
            for name in ("max_pfn", "max_low_pfn"):
                if name in k.symbols:
                    k.mem.store(k.symbols[name], epfn)
        return self._pmd_lines(populated)

    def _directmap_add(self, start: int, end: int, nid: int) -> None:
        """``init_memory_mapping(start, end, PAGE_KERNEL)``: the boot page-size rules on the new range."""
        from vmemmap.kernel import _PAGE_NX, PAGE_KERNEL, PAGE_KERNEL_LARGE, _split_mem_range

        k = self.k
        era, cpu = k.era, k.machine.cpu
        gb = cpu.gbpages and (era.directmap_gbpages if k.options.gbpages is None else k.options.gbpages)
        prot_large = PAGE_KERNEL_LARGE if cpu.nx else PAGE_KERNEL_LARGE & ~_PAGE_NX
        prot_4k = PAGE_KERNEL if cpu.nx else PAGE_KERNEL & ~_PAGE_NX
        for s, e, psize in _split_mem_range(start, end, cpu.pse, gb, lambda a, b: start <= a and b <= end):
            k.tables.map(k.page_offset + s, s, e - s, psize, prot_4k if psize == PAGE_SIZE else prot_large, nid)
            k.directmap.append((s, e, psize))
        k.directmap.sort()

    def _directmap_remove(self, start: int, end: int) -> None:
        """``kernel_physical_mapping_remove`` → ``remove_pagetable(__va(start), __va(end), true)``."""
        k = self.k
        for t in k.tables.unmap(k.page_offset + start, end - start):
            self.k.memblock.free(t, t + PAGE_SIZE)
        k.directmap[:] = [d for d in k.directmap if d[1] <= start or d[0] >= end]

    def _sparse_add_section(self, nid: int, pfn: int, end_pfn: int, populated: list[tuple[int, int, int]],
                            altmap: Altmap | None = None) -> None:
        """``sparse_add_section`` (mm/sparse.c @ 6.1); undoes its own partial work on -ENOMEM.  With an
        ``altmap`` each 2 MiB vmemmap block is ``vmemmap_alloc_block_buf(PMD_SIZE, node, altmap)`` →
        ``altmap_alloc_block_buf``, with no fallback (``vmemmap_populate_hugepages``: -ENOMEM); x86
        ``vmemmap_populate`` without PSE refuses an altmap ("no cpu support for altmap allocations")."""
        k = self.k
        era, m = k.era, k.model
        st = m.sections  # type: ignore[attr-defined]
        nr = pfn // self.pps
        self._sparse_index_init(nr, nid)
        sp = era.struct_page_size
        v0, v1 = k.layout.vmemmap_base + pfn * sp, k.layout.vmemmap_base + end_pfn * sp
        new_usage = 0
        done: list[int] = []
        usize = self._usage_size()
        memmap_va = 0
        try:
            # section_activate: ms->usage = kzalloc(mem_section_usage_size()) when missing (6.x);
            # __kmalloc_section_usemap: kmalloc(usemap_size()) (2.6.24 .. 5.x); none in 2.6.21
            if usize and (not st.is_present(nr) or not st.usage_of(nr)):
                new_usage = self.alloc(usize, usize, nid, "mem_section_usage")
            if not self.vmemmap:
                memmap_va = self._kmalloc_section_memmap()
            else:
                # populate_section_memmap → vmemmap_populate → vmemmap_populate_hugepages (node-local)
                ls = m.leaf_size  # type: ignore[attr-defined]
                if altmap is not None and ls != PMD_SIZE:
                    raise BootError("vmemmap_populate: no cpu support for altmap allocations")
                if era.subsection_shift and ls == PMD_SIZE and v1 - v0 < self.pps * sp:
                    # x86 vmemmap_populate: end - start < PAGES_PER_SECTION * sizeof(struct page) (a
                    # sub-section add) → vmemmap_populate_basepages(start, end, node, NULL): 4 KiB PTEs
                    self._vmemmap_populate_basepages(v0, v1, nid)
                    ls = 0
                for a, b in (m._mapped.missing(v0 // ls, -(-v1 // ls)) if ls else ()):  # type: ignore[attr-defined]
                    for idx in range(a, b):
                        if altmap is not None:
                            q = altmap.alloc_block_buf(ls)
                            if q is None:
                                raise BootError(f"vmemmap block: altmap of pfn {altmap.base_pfn:#x} exhausted")
                            p = q
                        else:
                            p = self.alloc(ls, ls, nid, "vmemmap block")
                        k.tables.map(idx * ls, p, ls, ls, m.prot, nid)  # type: ignore[attr-defined]
                        m._mapped.add(idx, idx + 1)  # type: ignore[attr-defined]
                        done.append(idx)
                        m._record(idx * ls, idx * ls + ls, p, nid)  # type: ignore[attr-defined]
                        populated.append((idx * ls, p, nid))
        except BootError:
            if self.vmemmap:
                for idx in reversed(done):
                    self._vmemmap_free_leaf(idx, altmap)
                    populated.pop()
            if new_usage:
                self._free(new_usage, new_usage + usize)
            raise
        if new_usage:
            st.write_usage(nr, new_usage + k.page_offset)
        if era.subsection_shift:
            from vmemmap.models.sections import USAGE_SUBSECTION_MAP_OFFSET

            usage = st.usage_of(nr)
            sub = 1 << (era.subsection_shift - PAGE_SHIFT)
            a, b = (pfn - nr * self.pps) // sub, (end_pfn - nr * self.pps - 1) // sub
            bits = ((1 << (b - a + 1)) - 1) << a
            old = k.mem.peek(usage + USAGE_SUBSECTION_MAP_OFFSET, 8)
            k.mem.store(usage + USAGE_SUBSECTION_MAP_OFFSET, old | bits)  # fill_subsection_map
        st.set_present(nr, True)  # __section_mark_present
        if self.vmemmap:
            memmap = k.layout.vmemmap_base + nr * self.pps * sp  # aligned to the section start
            v0 = memmap + (pfn - nr * self.pps) * sp
        else:
            memmap, v0 = memmap_va, memmap_va + (pfn - nr * self.pps) * sp
        word = k.mem.peek(st.section_addr_nocheck(nr), 8)
        word = (word & ~era.section_map_mask & 0xFFFF_FFFF_FFFF_FFFF) | st.encode_mem_map(memmap, nr)
        word |= era.section_flag("PRESENT") | era.section_flag("HAS_MEM_MAP")
        st.write_word(nr, word)  # sparse_init_one_section(ms, nr, memmap, usage, 0)
        m._add_piece(pfn, end_pfn, v0, nid)  # type: ignore[attr-defined]

    def _usage_size(self) -> int:
        """Bytes the slab hands out for a hot-added section's usage map: the era's kmalloc size class
        (``usemap_kmalloc``; 0 when ``struct mem_section`` has no second word, 2.6.21)."""
        if self.k.mem_section_size < 16:
            return 0
        return int(self.rules.get("usemap_kmalloc", -(-self.k.era.usage_size // KMALLOC_ALIGN) * KMALLOC_ALIGN))

    def _kmalloc_section_memmap(self) -> int:
        """Classic SPARSEMEM: ``kmalloc_section_memmap`` → ``__kmalloc_section_memmap(nr_pages)``
        (mm/sparse.c @ v2.6.24 .. 4.x): ``alloc_pages(GFP_KERNEL | __GFP_NOWARN, get_order(memmap_size))``
        -- a power-of-two block of the direct map, from the node of the CPU doing the add (``nid`` is not
        passed: we take the first node, CPU 0's) -- else ``vmalloc(memmap_size)``: single pages anywhere,
        mapped by 4 KiB PTEs in the vmalloc area.  Returns the memmap's kernel virtual address; there is
        no vmemmap mapping (the section word's encoded pointer is the only way to it)."""
        k = self.k
        size = self.pps * k.era.struct_page_size
        order_bytes = PAGE_SIZE << max(0, (-(-size // PAGE_SIZE) - 1).bit_length())  # get_order
        try:
            return self.alloc(order_bytes, order_bytes, min(k.nodes), "section memmap") + k.page_offset
        except BootError:
            return self._vmalloc(size)

    def _vmalloc(self, size: int) -> int:
        """``vmalloc(size)`` (mm/vmalloc.c): a free virtual range of the vmalloc area (first fit, one
        guard page after it, ``get_vm_area``), then one page at a time (``__vmalloc_area_node``) mapped
        with PAGE_KERNEL 4 KiB PTEs.  All or nothing: a failing page allocation undoes the others."""
        from vmemmap.kernel import PAGE_KERNEL

        k = self.k
        region = next(r for r in k.layout.regions if r.name.startswith("vmalloc"))
        npages = -(-size // PAGE_SIZE)
        va = region.start
        for s, e in sorted(self.vmalloc_used):
            if va + (npages + 1) * PAGE_SIZE <= s:
                break
            va = max(va, e)
        got: list[int] = []
        try:
            for _ in range(npages):
                got.append(self.alloc(PAGE_SIZE, PAGE_SIZE, min(k.nodes), "vmalloc page"))
        except BootError:
            for p in got:
                self._free(p, p + PAGE_SIZE)
            raise
        for i, p in enumerate(got):
            k.tables.map(va + i * PAGE_SIZE, p, PAGE_SIZE, PAGE_SIZE, PAGE_KERNEL, min(k.nodes))
        self.vmalloc_used.append((va, va + (npages + 1) * PAGE_SIZE))
        return va

    def _free_section_memmap(self, memmap_va: int) -> None:
        """``__kfree_section_memmap``: ``vfree`` for a vmalloc'd memmap, else ``free_pages``."""
        k = self.k
        size = self.pps * k.era.struct_page_size
        for s, e in self.vmalloc_used:
            if s == memmap_va:
                for i in range(-(-size // PAGE_SIZE)):
                    w = k.tables.walk(s + i * PAGE_SIZE)
                    assert w.phys is not None
                    for t in k.tables.unmap(s + i * PAGE_SIZE, PAGE_SIZE):
                        k.memblock.free(t, t + PAGE_SIZE)
                    self._free(w.phys, w.phys + PAGE_SIZE)
                self.vmalloc_used.remove((s, e))
                return
        order_bytes = PAGE_SIZE << max(0, (-(-size // PAGE_SIZE) - 1).bit_length())
        self._free(memmap_va - k.page_offset, memmap_va - k.page_offset + order_bytes)

    def _sparse_index_init(self, nr: int, nid: int) -> None:
        """``sparse_index_init``: a root page from the run-time allocator (kzalloc_node) when missing."""
        k = self.k
        st = k.model.sections  # type: ignore[attr-defined]
        if not st.extreme:
            return
        root = nr // st.per_root
        if root in st.roots:
            return
        pa = self.alloc(st.per_root * st.ms_size, 64, nid, "mem_section root")
        st.roots[root] = pa + k.page_offset
        k.mem.store(st.root_array + 8 * root, pa + k.page_offset)

    def _pmd_lines(self, populated: list[tuple[int, int, int]]) -> list[str]:
        """``vmemmap_populate_print_last`` at the end of ``__add_pages``: this add's PMDs, coalesced."""
        from vmemmap.bootlog import BootFacts, PopulatedPmd, render_vmemmap_lines

        k = self.k
        if not populated or not self.vmemmap or k.model.leaf_size != PMD_SIZE:  # type: ignore[attr-defined]
            return []
        f = BootFacts(era=k.era, e820=(), e820_updates=(), max_pfn=k.max_pfn, max_arch_pfn=k.max_arch_pfn,
                      numa_nodes=(), node_data=(), zones=(), early_node_map=(), node_spans=(), holes=(),
                      vmemmap=tuple(PopulatedPmd(v, v + PMD_SIZE, p, n) for v, p, n in populated),
                      vmemmap_page_size=PMD_SIZE, page_offset=k.page_offset, directmap=(), gbpages=False)
        return render_vmemmap_lines(f)

    # ------------------------------------------------------------------ remove internals
    def _arch_remove_memory(self, start: int, end: int, altmap: Altmap | None = None) -> None:
        """x86 ``arch_remove_memory``: ``__remove_pages`` then ``kernel_physical_mapping_remove``."""
        spfn, epfn = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        p = spfn
        while p < epfn:
            cur = min(epfn, (p // self.pps + 1) * self.pps)
            self._section_deactivate(p, cur, altmap)
            p = cur
        self._directmap_remove(start, end)

    def _section_deactivate(self, pfn: int, end_pfn: int, altmap: Altmap | None = None) -> None:
        """``section_deactivate`` (mm/sparse.c @ 6.1) for a hot-added section."""
        from vmemmap.models.sections import USAGE_SUBSECTION_MAP_OFFSET

        k = self.k
        era, m = k.era, k.model
        st = m.sections  # type: ignore[attr-defined]
        nr = pfn // self.pps
        usage = st.usage_of(nr) if self._usage_size() else 0
        if era.subsection_shift:
            sub = 1 << (era.subsection_shift - PAGE_SHIFT)
            a, b = (pfn - nr * self.pps) // sub, (end_pfn - nr * self.pps - 1) // sub
            bits = ((1 << (b - a + 1)) - 1) << a
            cur = k.mem.peek(usage + USAGE_SUBSECTION_MAP_OFFSET, 8) if usage else 0
            left = cur & ~bits  # clear_subsection_map
        else:
            left = 0  # sparse_remove_one_section (before 5.3): always the whole section
        empty = left == 0
        word = st.read_word_nocheck(nr)
        sp = era.struct_page_size
        if empty:
            word &= ~era.section_flag("HAS_MEM_MAP")
            st.write_word(nr, word)
            # kfree(ms->usage) / free_section_usemap (not PageReserved: allocated at run time)
            if usage:
                self._free(usage - k.page_offset, usage - k.page_offset + self._usage_size())
                st.write_usage(nr, 0)
        else:
            k.mem.store(usage + USAGE_SUBSECTION_MAP_OFFSET, left)
        if not self.vmemmap:
            # __kfree_section_memmap(memmap): the decoded pointer plus the section's first pfn
            memmap = ((word & era.section_map_mask) + nr * self.pps * sp) & 0xFFFF_FFFF_FFFF_FFFF
            self._free_section_memmap(memmap)
            st.write_word(nr, 0)
            st.set_present(nr, False)
            _remove_pieces(m, pfn, end_pfn)
            return
        # depopulate_section_memmap → vmemmap_free(start, end): the leaves that only this range used
        ls = m.leaf_size  # type: ignore[attr-defined]
        v0, v1 = k.layout.vmemmap_base + pfn * sp, k.layout.vmemmap_base + end_pfn * sp
        for idx in range(v0 // ls, -(-v1 // ls)):
            if idx not in m._mapped:  # type: ignore[attr-defined]
                continue
            if idx * ls >= v0 and idx * ls + ls <= v1:
                self._vmemmap_free_leaf(idx, altmap)
            elif era.subsection_shift and ls == PMD_SIZE and self._vmemmap_pmd_is_unused(
                    idx, max(v0, idx * ls), min(v1, idx * ls + ls)):
                self._vmemmap_free_leaf(idx, altmap)
        if self.vmemmap_ptes:
            self._vmemmap_free_basepages(v0, v1)
        if empty:
            st.write_word(nr, 0)
            st.set_present(nr, False)
        _remove_pieces(m, pfn, end_pfn)

    def _vmemmap_free_leaf(self, idx: int, altmap: Altmap | None = None) -> None:
        """``remove_pmd_table(..., direct=false)``: a whole PMD leaf: ``free_hugepage_table`` of its
        backing (with an altmap ``vmem_altmap_free``: back to the altmap, not the page allocator),
        ``pmd_clear``; page-table pages left empty are freed (``free_pte_table`` ...)."""
        k, m = self.k, self.k.model
        ls = m.leaf_size  # type: ignore[attr-defined]
        v = idx * ls
        w = k.tables.walk(v)
        assert w.phys is not None, f"vmemmap leaf {v:#x} not mapped"
        phys = w.phys - (v % (w.page_size or ls))
        for t in k.tables.unmap(v, ls):
            k.memblock.free(t, t + PAGE_SIZE)
        if altmap is not None:
            altmap.free_pages(ls >> PAGE_SHIFT)
            k.phys.discard(phys, phys + ls)
        else:
            self._free(phys, phys + ls)
        m._mapped.remove(idx, idx + 1)  # type: ignore[attr-defined]
        _remove_leaves(k, v, v + ls)

    def _vmemmap_populate_basepages(self, v0: int, v1: int, nid: int) -> None:
        """``vmemmap_populate_basepages(start, end, node, NULL)`` (mm/sparse-vmemmap.c @ 6.1): per 4 KiB
        page ``vmemmap_populate_address`` -- the missing pgd/p4d/pud/pmd-level tables first
        (``vmemmap_alloc_block_zero(PAGE_SIZE, node)``), then the page itself
        (``vmemmap_alloc_block_buf(PAGE_SIZE, node, NULL)``), mapped by a PAGE_KERNEL PTE.  All or nothing:
        a failed allocation undoes the pages and tables of this call."""
        from vmemmap.kernel import _PAGE_NX, PAGE_KERNEL, VmemmapLeaf

        k = self.k
        prot = PAGE_KERNEL if k.machine.cpu.nx else PAGE_KERNEL & ~_PAGE_NX
        done: list[int] = []
        try:
            for v in range(v0, v1, PAGE_SIZE):
                if v in self.vmemmap_ptes:
                    continue
                w = k.tables.walk(v)
                assert w.phys is None, f"vmemmap {v:#x} already mapped"
                tables: list[int] = []
                try:
                    for _ in range(len(k.tables.level_names) - len(w.steps)):
                        tables.append(self.alloc(PAGE_SIZE, PAGE_SIZE, nid, "page table"))
                    p = self.alloc(PAGE_SIZE, PAGE_SIZE, nid, "vmemmap page")
                except BootError:
                    for t in tables:
                        self._free(t, t + PAGE_SIZE)
                    raise
                k.table_queue.extend(tables)
                try:
                    k.tables.map(v, p, PAGE_SIZE, PAGE_SIZE, prot, nid)
                finally:
                    k.table_queue.clear()
                self.vmemmap_ptes[v] = p
                done.append(v)
                leaves = k.vmemmap_leaves
                last = leaves[-1] if leaves else None
                if (last is not None and last.page_size == PAGE_SIZE and last.vend == v and last.node == nid
                        and last.pstart + (v - last.vstart) == p):
                    last.vend = v + PAGE_SIZE
                else:
                    leaves.append(VmemmapLeaf(v, v + PAGE_SIZE, p, PAGE_SIZE, nid))
        except BootError:
            for v in reversed(done):
                self._vmemmap_free_basepages(v, v + PAGE_SIZE)
            raise

    def _vmemmap_free_basepages(self, v0: int, v1: int) -> None:
        """``remove_pagetable(start, end, false, NULL)`` over PTE-mapped vmemmap (arch/x86/mm/init_64.c @
        6.1): ``remove_pte_table`` frees each present page (``free_pagetable``) and clears its PTE, then
        ``free_pte_table`` / ``free_pmd_table`` / ``free_pud_table`` free the tables left empty."""
        k = self.k
        for v in range(v0, v1, PAGE_SIZE):
            p = self.vmemmap_ptes.pop(v, None)
            if p is None:
                continue
            for t in k.tables.unmap(v, PAGE_SIZE):
                k.memblock.free(t, t + PAGE_SIZE)
            self._free(p, p + PAGE_SIZE)
            _remove_leaves(k, v, v + PAGE_SIZE)

    def _vmemmap_pmd_is_unused(self, idx: int, addr: int, end: int) -> bool:
        """``vmemmap_pmd_is_unused(addr, end)`` (arch/x86/mm/init_64.c @ 6.1), for a 2 MiB vmemmap PMD that
        ``remove_pmd_table`` covers only partly: ``memset(addr, PAGE_UNUSED, end - addr)`` on its memmap,
        then true when the whole PMD reads ``PAGE_UNUSED`` (0xFD) -- the PMD may then be freed.  (Nothing
        is pending in ``unused_pmd_start``: with 64-byte struct pages x86 only maps whole sections with
        PMDs, so ``vmemmap_use_new_sub_pmd`` never runs.)"""
        k = self.k
        phys = k.tables.translate(idx * PMD_SIZE)
        k.phys.write(phys + (addr - idx * PMD_SIZE), bytes([PAGE_UNUSED]) * (end - addr))
        return k.phys.read(phys, PMD_SIZE) == bytes([PAGE_UNUSED]) * PMD_SIZE

    # ------------------------------------------------------------------ zones and sections
    def _zone(self, nid: int, name: str) -> Zone | None:
        return next((z for z in self.k.zones if z.nid == nid and z.name == name), None)

    def _move_pfn_range_to_zone(self, b: MemoryBlock, zname: str) -> Zone:
        """``move_pfn_range_to_zone``: ``resize_zone_range``, ``resize_pgdat_range``, then
        ``memmap_init_range`` → ``set_page_links`` for every struct page of the block."""
        from vmemmap.kernel import Zone, _fill_pages

        k = self.k
        idx = k.era.zone_names.index(zname)
        z = self._zone(b.nid, zname)
        if z is None or z.spanned_pages == 0:
            if z is None:
                z = Zone(b.nid, idx, zname, b.start_pfn, b.end_pfn, 0)
                k.zones.append(z)
                k.zones.sort(key=lambda x: (x.nid, x.idx))
            z.start_pfn, z.end_pfn = b.start_pfn, b.end_pfn
        else:
            z.start_pfn, z.end_pfn = min(z.start_pfn, b.start_pfn), max(z.end_pfn, b.end_pfn)
        n = k.nodes[b.nid]
        n.start_pfn, n.end_pfn = min(n.start_pfn, b.start_pfn), max(n.end_pfn, b.end_pfn)
        self._store_node(n)
        pf = k.page_flags
        sp = k.era.struct_page_size
        for piece in k.model.memmap_pieces():  # type: ignore[attr-defined]
            s, e = max(b.start_pfn, piece.start_pfn), min(b.end_pfn, piece.end_pfn)
            if s < e:
                sec = s >> k.era.pfn_section_shift if pf.sections_width else 0
                _fill_pages(k, piece, s, e, pf.links(sec, b.nid, idx), sp)
        return z

    def _zone_ranges(self, z: Zone) -> list[tuple[int, int]]:
        """The pfn ranges of ``z`` whose struct pages are online and linked to it (what
        ``find_smallest_section_pfn`` / ``find_biggest_section_pfn`` test with ``pfn_to_online_page``,
        ``pfn_to_nid`` and ``page_zone``)."""
        key = (z.nid, z.idx)
        rs = self._zranges.get(key)
        if rs is None:
            rs = []
            for s, e, nid in self.k.ram_pfn_ranges():
                a, b = max(s, z.start_pfn), min(e, z.end_pfn)
                if nid == z.nid and a < b:
                    rs.append((a, b))
            self._zranges[key] = rs
        return rs

    @property
    def _zranges(self) -> dict[tuple[int, int], list[tuple[int, int]]]:
        if not hasattr(self, "_zr"):
            self._zr: dict[tuple[int, int], list[tuple[int, int]]] = {}
        return self._zr

    def _zone_ranges_add(self, z: Zone, s: int, e: int) -> None:
        rs = self._zone_ranges(z)
        if (s, e) not in rs and not any(a <= s and e <= b for a, b in rs):
            rs.append((s, e))
            rs.sort()

    def _zone_ranges_remove(self, z: Zone, s: int, e: int) -> None:
        out = []
        for a, b in self._zone_ranges(z):
            if b <= s or a >= e:
                out.append((a, b))
                continue
            if a < s:
                out.append((a, s))
            if e < b:
                out.append((e, b))
        self._zranges[(z.nid, z.idx)] = out

    def _shrink_zone_span(self, z: Zone, start_pfn: int, end_pfn: int) -> None:
        """``shrink_zone_span`` (mm/memory_hotplug.c @ 6.1): only an edge moves, to the nearest
        sub-section (PAGES_PER_SUBSECTION steps) still online in the zone; an emptied zone spans nothing."""
        era = self.k.era
        # PAGES_PER_SUBSECTION steps (5.3+), PAGES_PER_SECTION before
        sub = 1 << (era.subsection_shift - PAGE_SHIFT) if era.subsection_shift else self.pps
        rs = self._zone_ranges(z)
        if z.start_pfn == start_pfn:
            # find_smallest_section_pfn(nid, zone, end_pfn, zone_end_pfn(zone))
            cand = [max(a, end_pfn) for a, b in rs if b > end_pfn and a < z.end_pfn]
            if cand:
                p = end_pfn + (min(cand) - end_pfn) // sub * sub
                z.start_pfn = p
            else:
                z.start_pfn = z.end_pfn = 0
        elif z.end_pfn == end_pfn:
            # find_biggest_section_pfn(nid, zone, zone->zone_start_pfn, start_pfn)
            cand = [min(b, start_pfn) - 1 for a, b in rs if a < start_pfn and b > z.start_pfn]
            if cand:
                p = start_pfn - 1 - (start_pfn - 1 - max(cand)) // sub * sub
                z.end_pfn = p + 1
            else:
                z.start_pfn = z.end_pfn = 0
        if z.spanned_pages == 0 and z.present_pages == 0:
            z.start_pfn = z.end_pfn = 0
            self.k.zones.remove(z)  # an empty zone: facts read spanned 0, present 0 as for a missing one
            self._zranges.pop((z.nid, z.idx), None)

    def _update_pgdat_span(self, nid: int) -> None:
        """``update_pgdat_span``: the node spans its zones' spans."""
        k = self.k
        zs = [z for z in k.zones if z.nid == nid and z.spanned_pages]
        n = k.nodes[nid]
        if zs:
            n.start_pfn, n.end_pfn = min(z.start_pfn for z in zs), max(z.end_pfn for z in zs)
        else:
            n.start_pfn = n.end_pfn = 0
        self._store_node(n)

    def _store_node(self, n) -> None:  # noqa: ANN001
        from vmemmap.kernel import PGDAT_LAYOUT

        lay = PGDAT_LAYOUT[self.k.era.boot_allocator]
        self.k.mem.store(n.pgdat + lay["node_start_pfn"], n.start_pfn)
        self.k.mem.store(n.pgdat + lay["node_spanned_pages"], n.spanned_pages)

    def _node_present(self, nid: int, delta: int) -> None:
        from vmemmap.kernel import PGDAT_LAYOUT

        lay = PGDAT_LAYOUT[self.k.era.boot_allocator]
        addr = self.k.nodes[nid].pgdat + lay["node_present_pages"]
        self.k.mem.store(addr, self.k.mem.peek(addr, 8) + delta)

    def _set_sections_online(self, start_pfn: int, end_pfn: int, online: bool) -> None:
        """``online_mem_sections`` / ``offline_mem_sections``: SECTION_IS_ONLINE of each section."""
        st = self.k.model.sections  # type: ignore[attr-defined]
        if "ONLINE" not in self.k.era.section_flags:
            return  # SECTION_IS_ONLINE arrived in 4.13
        flag = self.k.era.section_flag("ONLINE")
        for nr in range(start_pfn // self.pps, -(-end_pfn // self.pps)):
            if not st.is_present(nr):
                continue
            w = st.read_word_nocheck(nr)
            st.write_word(nr, (w | flag) if online else (w & ~flag))

    def _sync_added(self, b: MemoryBlock) -> None:
        """Keep ``Kernel.added_memory`` (conform's notes) in step with the block's state."""
        out = []
        for a in self.k.added_memory:
            if a[0] <= b.start_pfn < a[1] and a[1] - a[0] == b.nr_pages:
                a = (a[0], a[1], a[2], b.online_type if b.state == "online" else "offline", b.zone or "")
            out.append(a)
        self.k.added_memory[:] = out


# ---------------------------------------------------------------------- bookkeeping helpers


def _remove_leaves(k: Kernel, v0: int, v1: int) -> None:
    """Take ``[v0, v1)`` out of ``Kernel.vmemmap_leaves`` (splitting coalesced runs)."""
    from vmemmap.kernel import VmemmapLeaf

    out = []
    for lf in k.vmemmap_leaves:
        if lf.vend <= v0 or lf.vstart >= v1:
            out.append(lf)
            continue
        if lf.vstart < v0:
            out.append(VmemmapLeaf(lf.vstart, v0, lf.pstart, lf.page_size, lf.node))
        if v1 < lf.vend:
            out.append(VmemmapLeaf(v1, lf.vend, lf.pstart + (v1 - lf.vstart), lf.page_size, lf.node))
    k.vmemmap_leaves[:] = out


def _remove_pieces(m, s: int, e: int) -> None:  # noqa: ANN001
    """Take pfns ``[s, e)`` out of the model's memmap pieces."""
    from vmemmap.models.base import MemmapPiece

    sp = m.sp
    out = []
    for p in m._pieces:
        if p.end_pfn <= s or p.start_pfn >= e:
            out.append(p)
            continue
        if p.start_pfn < s:
            out.append(MemmapPiece(p.start_pfn, s, p.vaddr, p.nid))
        if e < p.end_pfn:
            out.append(MemmapPiece(e, p.end_pfn, p.vaddr + (e - p.start_pfn) * sp, p.nid))
    m._pieces[:] = out


def add_memory(k: Kernel, start: int, size: int, nid: int, online: str = "offline") -> None:
    """Hot-add ``[start, start+size)`` on ``nid`` and online it as ``online`` says (the boot-time path
    of ``vmemmap conform``: a pc-dimm present at boot, virtio-mem's plugged blocks).  Raises the
    :class:`HotplugError` the kernel would return."""
    res = k.hotplug.add_memory(nid, start, size, online)
    if res.error is not None:
        raise res.error


# ---------------------------------------------------------------------- scripts (``vmemmap hotplug``)

_ARITY = {"probe": (1, 1), "add": (3, 3), "online": (1, 2), "offline": (1, 1), "remove": (2, 2),
          "show": (0, 0), "inject": (2, 2), "addpages": (3, 3), "removepages": (2, 2)}


def _number(text: str, what: str) -> int:
    """``memparse``-like: decimal or 0x hex with an optional K/M/G/T suffix."""
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower()
    scale = 1
    if t and t[-1] in mult and not t.startswith("0x") or (t.startswith("0x") and t[-1] in "mgt"):
        scale, t = mult[t[-1]], t[:-1]
    try:
        return int(t, 0) * scale
    except ValueError:
        raise InputError(f"{what}: {text!r} is not a number") from None


@dataclass(frozen=True)
class Step:
    lineno: int
    line: str
    op: str
    args: tuple[Any, ...]


def parse_script(text: str, name: str = "script") -> list[Step]:
    """Parse a hot-plug script (one step per line, ``#`` comments); bad lines are one-line input errors."""
    out: list[Step] = []
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        op, *words = line.split()
        where = f"{name}:{i}"
        if op not in _ARITY:
            raise InputError(f"{where}: unknown step {op!r} (probe, add, online, offline, remove, show, inject, "
                             f"addpages, removepages)")
        lo, hi = _ARITY[op]
        if not lo <= len(words) <= hi:
            raise InputError(f"{where}: {op} takes {lo if lo == hi else f'{lo}-{hi}'} argument(s), not {len(words)}")
        args: tuple[Any, ...]
        if op == "probe":
            args = (_number(words[0], where),)
        elif op in ("add", "addpages"):
            args = (_number(words[0], where), _number(words[1], where), _number(words[2], where))
        elif op in ("remove", "removepages"):
            args = (_number(words[0], where), _number(words[1], where))
        elif op == "online":
            kind = words[1] if len(words) > 1 else "online"
            if kind not in KIND_ALIASES:
                raise InputError(f"{where}: online type {kind!r}: one of movable, kernel, online")
            args = (words[0], KIND_ALIASES[kind])
        elif op == "offline":
            args = (words[0],)
        elif op == "inject":
            if words[0] not in NOTIFIER_EVENTS:
                raise InputError(f"{where}: inject event {words[0]!r}: one of {', '.join(NOTIFIER_EVENTS)}")
            args = (words[0], _number(words[1], where))
        else:
            args = ()
        out.append(Step(i, line, op, args))
    return out


def run_step(k: Kernel, step: Step) -> StepResult:
    """One script step on ``k.hotplug``."""
    hp = k.hotplug
    try:
        if step.op == "probe":
            return hp.probe(*step.args)
        if step.op == "add":
            nid, start, size = step.args
            return hp.add_memory(nid, start, size)
        if step.op == "online":
            return hp.online(*step.args)
        if step.op == "offline":
            return hp.offline(*step.args)
        if step.op == "remove":
            return hp.remove(*step.args)
        if step.op == "addpages":
            nid, start, size = step.args
            return hp.add_pages(nid, start, size)
        if step.op == "removepages":
            return hp.remove_pages(*step.args)
        if step.op == "inject":
            event, err = step.args
            if err:
                hp.inject[event] = -abs(err)
            else:
                hp.inject.pop(event, None)
            return StepResult(True)
    except HotplugError as e:  # block lookups outside the operations
        return StepResult(False, [], e)
    return StepResult(True)


def run_script(k: Kernel, steps: list[Step]) -> dict[str, Any]:
    """Run ``steps``; every step's messages, error and the blocks after it (the ``--json`` states)."""
    out_steps = []
    failed = 0
    for st in steps:
        r = run_step(k, st)
        failed += not r.ok
        d: dict[str, Any] = {"line": st.line, "lineno": st.lineno, "op": st.op, "ok": r.ok,
                             "errno": r.error.errno if r.error else 0,
                             "error": str(r.error) if r.error else None, "messages": r.messages,
                             "blocks": k.hotplug.to_json()}
        if st.op == "show":
            d["show"] = k.hotplug.sysfs_lines()
        out_steps.append(d)
    return {"machine": k.machine.name, "era": k.era.name, "block_size": f"{k.hotplug.block_size:#x}",
            "boot_messages": list(k.hotplug.boot_messages), "steps": out_steps, "failed": failed, "blocks": k.hotplug.to_json()}


def kernel_state(k: Kernel) -> dict[str, Any]:
    """Everything add-then-remove must restore, read from the kernel: page tables (every run over the
    whole address space, the table pages and a digest of their contents), the section table (roots,
    every present section's word, usage pointer and sub-section map), the allocator's free ranges, the
    direct map and vmemmap records, zones, nodes and memory blocks."""
    import numpy as np

    t = k.tables
    runs = [(r.vaddr, r.end, r.level, r.flags, r.phys) for r in t.runs(0, 1 << 64)]
    pages = sorted(t.iter_tables())
    h = hashlib.sha256()
    for _, p in pages:
        h.update(np.asarray(t.mem.table(p >> 12)).tobytes())
    st = k.model.sections  # type: ignore[attr-defined]
    nrs = [int(x) for x in st.present_array()]
    arr = np.asarray(nrs, dtype=np.int64)
    words = st.words_array(arr).tolist() if nrs else []
    usages = np.zeros(len(nrs), dtype=np.uint64)
    subs = np.zeros(len(nrs), dtype=np.uint64)
    if nrs and k.mem_section_size >= 16:  # a second word (usemap / usage) exists
        usages = k.mem.peek_u64_array(st.addrs_array(arr) + np.uint64(8))
        have = usages != 0
        if k.era.subsection_shift and have.any():
            from vmemmap.models.sections import USAGE_SUBSECTION_MAP_OFFSET

            subs[have] = k.mem.peek_u64_array(usages[have] + np.uint64(USAGE_SUBSECTION_MAP_OFFSET))
    secs = list(zip(nrs, words, usages.tolist(), subs.tolist()))
    roots = sorted(st.roots.items())
    root_words = [k.mem.peek(st.root_array + 8 * r, 8) for r, _ in roots]
    return {
        "runs": runs,
        "table_pages": pages,
        "table_digest": h.hexdigest(),
        "sections": secs,
        "roots": roots,
        "root_words": root_words,
        "free": k.memblock.free_ranges(),
        "memory": list(k.memblock.memory),
        "directmap": sorted(k.directmap),
        "vmemmap_leaves": [(v.vstart, v.vend, v.pstart, v.node) for v in k.vmemmap_leaves],
        "zones": sorted((z.nid, z.idx, z.start_pfn, z.end_pfn, z.present_pages) for z in k.zones
                        if z.spanned_pages or z.present_pages),
        "nodes": sorted((n.nid, n.start_pfn, n.end_pfn) for n in k.nodes.values()),
        "blocks": k.hotplug.sysfs_lines() if k.hotplug.supported else [],
    }


__all__ = ["Hotplug", "HotplugError", "MemoryBlock", "StepResult", "Step", "add_memory", "kernel_state",
           "parse_script", "run_script", "run_step",
           "ONLINE_TYPES", "NOTIFIER_EVENTS"]
