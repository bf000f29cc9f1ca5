"""crash-utility's ``kmem -n`` for a booted simulated kernel, byte for byte.

``kmem -n`` is ``dump_memory_nodes(MEMORY_NODES_DUMP)`` in crash's ``memory.c``; with SPARSEMEM it goes
on to ``dump_mem_sections(0)`` and ``dump_memory_blocks(0)``. The printf formats below were copied
from crash-utility/crash ``memory.c`` @ 489093c2183f (the ``dump_mem_sections(int)`` /
``print_memory_block()`` era, with the E and D state letters), and the column padding from
``mkstring()`` in crash's ``tools.c`` (:func:`mkstring` below is a transcription). Constants of an
x86_64 crash session: ``VADDR_PRLEN`` = 16, the default ``output_radix`` = 10 (so the section PFN
column is decimal), ``PADDR_PRLEN`` = number of hex digits of the memory size (``vm_init()``).

The three blocks:

1. **Nodes** (``dump_memory_nodes``): per online node, ``NODE / SIZE / PGLIST_DATA / BOOTMEM_DATA /
   NODE_ZONES`` (one ``struct zone`` address per ``MAX_NR_ZONES`` zone, ``pgdat->node_zones[]`` at
   offset 0 of ``pglist_data``), ``MEM_MAP / START_PADDR / START_MAPNR``, then the zone table
   ``ZONE NAME SIZE MEM_MAP START_PADDR START_MAPNR``; nodes are separated by a dashed line.
2. **Sections** (``dump_mem_sections``): every section whose word has ``SECTION_MARKED_PRESENT``:
   ``NR SECTION CODED_MEM_MAP MEM_MAP STATE PFN`` with the state letters of ``fill_mem_section_state``
   (P/M/O/E/D). Only the flags the era's kernel has are decoded (``k.era.section_flags``).
3. **Memory blocks** (``dump_memory_blocks`` / ``print_memory_block``): only when the kernel has
   ``struct memory_block`` and the ``memory_subsys`` bus (3.12+ with MEMORY_HOTPLUG); the blocks are
   derived as ``memory_dev_init()`` creates them at boot (see :func:`boot_memory_blocks`).

Without SPARSEMEM (FLATMEM, DISCONTIGMEM) crash prints only the node block (``if (IS_SPARSEMEM())``
guards the other two), and so do we.

Values crash reads from kernel memory that this simulator does not model are given deterministic,
documented synthetic values (never a different layout): ``sizeof(struct zone)`` per era
(:data:`ZONE_STRUCT_SIZE`, UNVERIFIED estimates), the ``bootmem_data_t`` pointer of 2.6.x kernels and
the kmalloc'd ``struct memory_block`` addresses (see :func:`_bootmem_data_addr`,
:func:`_memory_block_addr`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmemmap.eras import Era
    from vmemmap.kernel import Kernel

PAGE_SHIFT = 12
PAGESIZE = 1 << PAGE_SHIFT
MASK64 = (1 << 64) - 1
BADADDR = MASK64  # crash defs.h: #define BADADDR ((ulong)(-1))

# ---------------------------------------------------------------------- crash constants (x86_64)
VADDR_PRLEN = 16  # defs.h: sizeof(char *) == 8 ? 16 : 8
OUTPUT_RADIX = 10  # main.c: pc->output_radix defaults to 10 (``set radix 16`` would switch)

# mkstring() flags (defs.h); only their meaning matters here
LJUST = 0x1
RJUST = 0x2
CENTER = 0x4
LONG_DEC = 0x8
LONG_HEX = 0x10
INT_DEC = 0x20
LONGLONG_HEX = 0x40

#: crash's fill_mem_section_state(): letter per kernel flag name, in crash's print order
STATE_LETTERS: tuple[tuple[str, str], ...] = (
    ("PRESENT", "P"),  # SECTION_MARKED_PRESENT
    ("HAS_MEM_MAP", "M"),  # SECTION_HAS_MEM_MAP
    ("ONLINE", "O"),  # SECTION_IS_ONLINE
    ("EARLY", "E"),  # SECTION_IS_EARLY
    ("TAINT_ZONE_DEVICE", "D"),  # SECTION_TAINT_ZONE_DEVICE
)

#: sizeof(struct zone) on x86_64, by era: the stride crash adds between ``node_zones[i]`` addresses
#: (``SIZE_OPTION(zone_struct, zone)``). UNVERIFIED estimates, not read from a build's debuginfo: the
#: struct is ZONE_PADDING/cache-line aligned and its size depends on NR_CPUS, MAX_ORDER, NUMA and
#: debug options. 6.x ≈ 0x680 (1664, Debian-like NUMA config); 4.20 ≈ 0x700; 2.6.2x ≈ 0x700 with a
#: NUMA per-cpu pageset pointer array.
ZONE_STRUCT_SIZE: dict[str, int] = {
    "2.6.21-seed": 0x700,
    "2.6.24": 0x700,
    "2.6.26": 0x700,
    "2.6.31": 0x700,
    "4.20": 0x700,
    "6.1": 0x680,
    "6.12": 0x680,
}
ZONE_STRUCT_SIZE_DEFAULT = 0x680

SZ_128M = 128 << 20
SZ_2G = 2 << 30
SZ_64G = 64 << 30
MIN_MEMORY_BLOCK_SIZE = SZ_128M  # include/linux/memory.h: 1UL << SECTION_SIZE_BITS
MAX_BLOCK_SIZE = SZ_2G  # arch/x86/mm/init_64.c (4.20+)
MEM_SIZE_FOR_LARGE_BLOCK = SZ_64G  # arch/x86/mm/init_64.c (4.12+)

#: SYNTHETIC placement of the kmalloc'd ``struct memory_block`` objects (not modelled): the 6.1 struct
#: (~0x3c0 bytes, a ``struct device`` inside) comes from kmalloc-1k, so consecutive objects of one
#: slab are 1 KiB apart. We put node N's blocks in one run starting 4 MiB below NODE_DATA(N).
MEMORY_BLOCK_STRIDE = 1024
MEMORY_BLOCK_BELOW_PGDAT = 4 << 20


# ====================================================================== crash tools.c


def mkstring(value: str | int, size: int, flags: int) -> str:
    """crash ``tools.c`` ``mkstring(s, size, flags, opt)``.

    ``LONG_DEC`` → ``%lu``, ``LONG_HEX``/``LONGLONG_HEX`` → ``%lx``/``%llx``, ``INT_DEC`` → ``%u``;
    then, if shorter than ``size``: ``CENTER`` splits the padding (an odd extra space goes to the right
    unless ``RJUST``), ``LJUST`` pads right, ``RJUST`` pads left. Longer strings are returned as is.
    """
    if flags & (LONG_HEX | LONGLONG_HEX):
        s = f"{int(value) & MASK64:x}"
    elif flags & LONG_DEC:
        s = f"{int(value) & MASK64:d}"
    elif flags & INT_DEC:
        s = f"{int(value) & 0xFFFF_FFFF:d}"
    else:
        s = str(value)
    extra = size - len(s)
    if extra <= 0:
        return s
    if flags & CENTER:
        if extra % 2:
            if flags & RJUST and not flags & LJUST:
                left, right = extra // 2 + 1, extra // 2
            else:  # "default: case LJUST:"
                left, right = extra // 2, extra // 2 + 1
        else:
            left = right = extra // 2
        return " " * left + s + " " * right
    if flags & LJUST:
        return s + " " * extra
    if flags & RJUST:
        return " " * extra + s
    return s


def _count_leading_spaces(s: str) -> int:
    return len(s) - len(s.lstrip(" "))


# ====================================================================== memory block size


def _version(era: Era) -> tuple[int, ...]:
    return tuple(int(x) for x in era.version.split("-")[0].split("."))


def probe_memory_block_size(version: tuple[int, ...], boot_mem_end: int, hypervisor: bool) -> int:
    """``memory_block_size_bytes()`` on x86_64 for a kernel ``version`` (kernel-reference §5.2).

    * before 4.12: the weak default ``MIN_MEMORY_BLOCK_SIZE`` = 128 MiB (drivers/base/memory.c; the
      3.13 SGI UV 2 GiB case is not modelled: no UV machines);
    * 4.12 (``probe_memory_block_size()``, arch/x86/mm/init_64.c): 2 GiB if ``max_pfn << PAGE_SHIFT``
      ≥ 64 GiB, else 128 MiB;
    * 4.20 / 5.x: < 64 GiB → 128 MiB; else the largest power of two from ``MAX_BLOCK_SIZE`` (2 GiB)
      down to 128 MiB that ``boot_mem_end`` is aligned to (``set_memory_block_size_order()`` not
      modelled: no such caller on x86 bare metal);
    * 6.x: as 4.20, plus after the 64 GiB test: ``if (!boot_cpu_has(X86_FEATURE_HYPERVISOR))`` → 2 GiB
      (fe124c95df9e "x86/mm: use max memory block size on bare metal", D. Jordan; ≈5.9, release
      UNVERIFIED — applied here from 5.9).
    """
    if version < (4, 12):
        return MIN_MEMORY_BLOCK_SIZE
    if boot_mem_end < MEM_SIZE_FOR_LARGE_BLOCK:
        return MIN_MEMORY_BLOCK_SIZE
    if version < (4, 20):
        return MAX_BLOCK_SIZE
    if version >= (5, 9) and not hypervisor:
        return MAX_BLOCK_SIZE
    bz = MAX_BLOCK_SIZE
    while bz > MIN_MEMORY_BLOCK_SIZE:
        if boot_mem_end % bz == 0:
            break
        bz >>= 1
    return bz


def memory_block_size(k: Kernel) -> int:
    """``memory_block_size_bytes()`` of the booted kernel: :func:`probe_memory_block_size` with
    ``boot_mem_end = max_pfn << PAGE_SHIFT`` and the CPU's X86_FEATURE_HYPERVISOR."""
    return probe_memory_block_size(_version(k.era), k.max_pfn << PAGE_SHIFT, k.machine.cpu.hypervisor)


def has_memory_blocks(k: Kernel) -> bool:
    """Whether crash's ``dump_memory_blocks()`` prints anything: it needs ``struct memory_block`` and
    the ``memory_subsys`` symbol. ``memory_subsys`` (a ``struct bus_type``) replaced the sysdev class
    ``memory_sysdev_class`` in 3.3 (drivers/base/memory.c); we assume MEMORY_HOTPLUG=y from then on, as
    distribution configs have it, and a SPARSEMEM model (hotplug depends on it)."""
    return _version(k.era) >= (3, 3) and hasattr(k.model, "sections")


@dataclass(frozen=True)
class MemoryBlock:
    """A ``struct memory_block`` as ``memory_dev_init()`` creates it at boot."""

    addr: int  # SYNTHETIC kernel address of the struct (see MEMORY_BLOCK_STRIDE)
    block_id: int  # memory_block_id(start_section_nr): the N of ``memoryN``
    start_section_nr: int
    nid: int
    state: str  # 'ONLINE' ... (crash's fill_memory_block_state words)

    @property
    def name(self) -> str:
        return f"memory{self.block_id}"


def boot_memory_blocks(k: Kernel) -> list[MemoryBlock]:
    """The memory blocks sysfs has after boot (drivers/base/memory.c ``memory_dev_init()`` @ 6.1:
    ``for (nr = 0; nr <= __highest_present_section_nr; nr += sections_per_block) add_memory_block(nr)``;
    ``add_memory_block()`` skips a block without present sections). Boot memory is online
    (``MEM_ONLINE``); the block's nid is that of its first present section. Registration order is the
    ``memory_subsys`` klist order crash walks (ascending)."""
    st = k.model.sections  # type: ignore[attr-defined]
    per_block = memory_block_size(k) // MIN_MEMORY_BLOCK_SIZE  # sections_per_block
    present = [int(x) for x in st.present_array()]
    blocks: dict[int, int] = {}  # block id -> first present section
    for nr in present:
        blocks.setdefault(nr // per_block, nr)
    out: list[MemoryBlock] = []
    per_node: dict[int, int] = {}
    for bid, first in sorted(blocks.items()):
        nid = k.nid_of_pfn(first << k.era.pfn_section_shift)
        if nid is None:
            nid = min(k.nodes)
        idx = per_node.get(nid, 0)
        per_node[nid] = idx + 1
        out.append(MemoryBlock(_memory_block_addr(k, nid, idx), bid, bid * per_block, nid, "ONLINE"))
    return out


def _memory_block_addr(k: Kernel, nid: int, idx: int) -> int:
    """SYNTHETIC ``struct memory_block *`` (kzalloc in ``add_memory_block``): the simulator has no slab
    allocator, so the ``idx``-th block of node ``nid`` is placed at ``__va(NODE_DATA(nid) phys) − 4 MiB
    + idx × 1 KiB`` (kmalloc-1k objects). Deterministic; not a real kernel address."""
    base = k.nodes[nid].pgdat_phys[0] - MEMORY_BLOCK_BELOW_PGDAT
    return (k.page_offset + base + idx * MEMORY_BLOCK_STRIDE) & MASK64


def _bootmem_data_addr(k: Kernel, nid: int) -> int | None:
    """``pgdat->bdata`` or None when ``pglist_data`` has no ``bdata`` member (memblock kernels: crash
    prints ``----``). In 2.6.x it points at ``plat_node_bdata[nid]`` (NUMA, arch/x86_64/mm/numa.c),
    ``contig_bootmem_data`` (!NUMA) or, from 2.6.27, ``bootmem_node_data[nid]`` — static kernel data
    the simulator does not place. SYNTHETIC: an array at the last page of the kernel image
    (``_end - PAGE_SIZE``), ``sizeof(bootmem_data_t)`` apart (64 bytes through 2.6.26, 56 after)."""
    if k.era.boot_allocator != "bootmem":
        return None
    for sym in ("bootmem_node_data", "plat_node_bdata", "contig_bootmem_data"):
        if sym in k.symbols:
            base = k.symbols[sym]
            break
    else:
        base = k.image_end - PAGESIZE
    stride = 64 if _version(k.era) < (2, 6, 27) else 56
    return base + stride * nid


# ====================================================================== reading the kernel's data


def _zone_struct_size(era: Era) -> int:
    return ZONE_STRUCT_SIZE.get(era.name, ZONE_STRUCT_SIZE_DEFAULT)


def _section_word(k: Kernel, nr: int) -> int | None:
    """crash ``nr_to_section()`` + ``read_mem_section()``: the section word, None without a root."""
    st = k.model.sections  # type: ignore[attr-defined]
    if not 0 <= nr < st.nr_sections:
        return None
    if st.extreme and nr // st.per_root not in st.roots:
        return None
    return int(st.read_word_nocheck(nr))


def _crash_pfn_to_map(k: Kernel, pfn: int) -> int | None:
    """crash ``pfn_to_map()`` (what ``phys_to_page()`` uses under SPARSEMEM): valid_section_nr
    (MARKED_PRESENT), section_has_mem_map (HAS_MEM_MAP from 2.6.24, MARKED_PRESENT before), then
    ``sparse_decode_mem_map(coded, nr) + (pfn - section_nr_to_pfn(nr)) * SIZE(page)``."""
    era = k.era
    nr = pfn >> era.pfn_section_shift
    word = _section_word(k, nr)
    if word is None or not word & era.section_flag("PRESENT"):
        return None
    has_map = era.section_flag("HAS_MEM_MAP") if _version(era) >= (2, 6, 24) else era.section_flag("PRESENT")
    if not word & has_map:
        return None
    coded = word & era.section_map_mask
    return (coded + pfn * era.struct_page_size) & MASK64


def _node_mem_map(k: Kernel, nid: int) -> int:
    """The node's MEM_MAP: ``pgdat->node_mem_map`` when the member exists (FLATMEM, DISCONTIGMEM:
    CONFIG_FLAT_NODE_MEM_MAP); under SPARSEMEM crash falls back to ``phys_to_page(PTOB(node_start_pfn))``
    and keeps BADADDR if that fails."""
    node = k.nodes[nid]
    if hasattr(k.model, "sections"):
        m = _crash_pfn_to_map(k, node.start_pfn)
        return BADADDR if m is None else m
    from vmemmap.kernel import PGDAT_LAYOUT

    return int(k.mem.peek(node.pgdat + PGDAT_LAYOUT[k.era.boot_allocator]["node_mem_map"], 8))


def state_letters(k: Kernel, word: int) -> str:
    """crash ``fill_mem_section_state()``, limited to the flags the era's kernel defines."""
    names = set(k.model.sections.flag_names(word))  # type: ignore[attr-defined]
    return "".join(letter for name, letter in STATE_LETTERS if name in names and name in k.era.section_flags)


def paddr_prlen(k: Kernel) -> int:
    """crash ``vm_init()``: ``strlen(sprintf("%llx", MAX(max_mapnr * PAGESIZE(), memory_size())))``.

    ``max_mapnr`` is read only when the kernel has ``mem_map`` (FLATMEM); ``machdep->memory_size()``
    is taken as the nodes' present pages × PAGESIZE (crash ``generic_memory_size()`` /
    ``total_node_memory()``; whether crash sums present or spanned pages is UNVERIFIED — the two give
    the same digit count unless a node straddles a power of 16)."""
    size = sum(n.present_pages for n in k.nodes.values()) * PAGESIZE
    if not hasattr(k.model, "sections") and k.model_name == "flatmem":
        size = max(size, k.max_pfn * PAGESIZE)
    return len(f"{size:x}")


# ====================================================================== the three blocks


NODE_ZONE_HDR = "ZONE  NAME         SIZE"  # memory.c: static char *node_zone_hdr


def _dump_memory_nodes(k: Kernel) -> tuple[list[str], bool]:
    """crash ``dump_memory_nodes(MEMORY_NODES_DUMP)`` (memory.c, the ``if (!initialize)`` blocks)."""
    out: list[str] = []
    era = k.era
    sparse = hasattr(k.model, "sections")
    nr_zones = len(era.zone_names)  # ARRAY_LENGTH(pglist_data.node_zones) = MAX_NR_ZONES
    zsize = _zone_struct_size(era)
    flen = max(VADDR_PRLEN, len("BOOTMEM_DATA"))
    slen = 0
    for n, nid in enumerate(sorted(k.nodes)):
        node = k.nodes[nid]
        pgdat = node.pgdat
        node_mem_map = _node_mem_map(k, nid)
        node_start_pfn = node.start_pfn
        node_start_paddr = node_start_pfn << PAGE_SHIFT  # PTOB(node_start_pfn)
        node_start_mapnr = node_start_pfn
        node_size = node.spanned_pages  # pglist node_spanned_pages
        bdata = _bootmem_data_addr(k, nid)
        if n:
            out.append("\n" + "-" * slen)  # fprintf("\n"); pad_line(fp, slen, '-')
        out.append("%sNODE  %s  %s  %s  %s\n" % (
            "\n\n" if n else "",
            mkstring("SIZE", 8, CENTER),
            mkstring("PGLIST_DATA", flen, CENTER | LJUST),
            mkstring("BOOTMEM_DATA", flen, CENTER | LJUST),
            mkstring("NODE_ZONES", flen, CENTER | LJUST)))
        node_zones = pgdat  # pgdat + OFFSET(pglist_data_node_zones), offset 0
        buf1 = mkstring(node_size, 8, CENTER | LJUST | LONG_DEC)
        buf2 = mkstring(pgdat, flen, CENTER | LJUST | LONG_HEX)
        buf3 = mkstring("----", flen, CENTER) if bdata is None else mkstring(bdata, flen, CENTER | LONG_HEX)
        buf4 = mkstring(node_zones, flen, CENTER | LJUST | LONG_HEX)
        out.append(" %2d   %s  %s  %s  %s\n" % (nid, buf1, buf2, buf3, buf4))
        j = 12 + len(buf1) + len(buf2) + len(buf3) + _count_leading_spaces(buf4)
        for i in range(1, nr_zones):
            out.append(" " * j + "%x\n" % ((node_zones + i * zsize) & MASK64))  # INDENT(j); "%lx\n"
        out.append("%s     START_PADDR    START_MAPNR\n" % mkstring("MEM_MAP", VADDR_PRLEN, CENTER | LJUST))
        out.append("%s  %s  %s\n" % (
            mkstring(node_mem_map, VADDR_PRLEN, CENTER | LONG_HEX),
            mkstring(node_start_paddr, len("   START_PADDR  "), CENTER | LONGLONG_HEX | RJUST),
            mkstring(node_start_mapnr, len("START_MAPNR"), CENTER | LONG_DEC | RJUST)))
        hdr = "%s  %s  START_PADDR  START_MAPNR" % (NODE_ZONE_HDR, mkstring("MEM_MAP", VADDR_PRLEN, CENTER | RJUST))
        slen = len(hdr)
        out.append("\n%s\n" % hdr)

        zones = {z.idx: z for z in k.zones if z.nid == nid}
        cum_zone_size = 0
        for i, name in enumerate(era.zone_names):
            z = zones.get(i)
            zone_size = z.spanned_pages if z else 0  # zone->spanned_pages
            zone_start_pfn = z.start_pfn if z else 0  # 0 for an empty zone
            zone_start_paddr = zone_start_pfn << PAGE_SHIFT
            if sparse:
                zone_start_mapnr = zone_start_pfn if zone_size else 0
                zone_mem_map = 0
                if zone_size:
                    m = _crash_pfn_to_map(k, zone_start_pfn)
                    zone_mem_map = 0 if m is None else m
            else:
                # !NODES, no zone->zone_mem_map: contig_page_data/pgdat mem_map + cum_zone_size pages
                zone_mem_map = node_mem_map + (cum_zone_size * era.struct_page_size if zone_size else 0)
                zone_start_mapnr = (zone_mem_map - node_mem_map) // era.struct_page_size if zone_mem_map else 0
                if not zone_size:
                    zone_mem_map = 0
            out.append(" %2d   %-9s %7d  " % (i, name, zone_size))
            cum_zone_size += zone_size
            out.append("%s  %s  %s\n" % (
                mkstring(zone_mem_map, VADDR_PRLEN, RJUST | LONG_HEX),
                mkstring(zone_start_paddr, len("START_PADDR"), LONG_HEX | RJUST),
                mkstring(zone_start_mapnr, len("START_MAPNR"), LONG_DEC | RJUST)))
    return out, sparse


def section_lines(k: Kernel) -> list[tuple[int, int, int, int, str, int]]:
    """(nr, section address, coded mem_map, mem_map, state letters, pfn) of every section crash's
    ``dump_mem_sections()`` lists: ``valid_section_nr(nr)``, i.e. the word has MARKED_PRESENT.
    CODED_MEM_MAP is ``section_mem_map_addr(addr, 0)``: the word masked with the era's
    ``SECTION_MAP_MASK`` (crash masks with its own ``~(SECTION_MAP_LAST_BIT-1)`` = ~0x1f; the two agree
    on every word whose memmap is installed — the encoded pointer is aligned far beyond bit 5)."""
    st = k.model.sections  # type: ignore[attr-defined]
    era = k.era
    rows = []
    for nr in (int(x) for x in st.present_array()):
        word = _section_word(k, nr)
        if word is None or not word & era.section_flag("PRESENT"):
            continue
        coded = word & era.section_map_mask
        mem_map = (coded + (nr << era.pfn_section_shift) * era.struct_page_size) & MASK64
        rows.append((nr, int(st.section_addr_nocheck(nr)), coded, mem_map, state_letters(k, word),
                     nr << era.pfn_section_shift))
    return rows


def _dump_mem_sections(k: Kernel) -> list[str]:
    """crash ``dump_mem_sections(0)``."""
    out = ["\n", "-" * 67]  # fprintf("\n"); pad_line(fp, BITS32() ? 59 : 67, '-')
    out.append("\n\nNR  %s  %s  %s  %s PFN\n" % (
        mkstring("SECTION", VADDR_PRLEN, CENTER | LJUST),
        mkstring("CODED_MEM_MAP", max(VADDR_PRLEN, len("CODED_MEM_MAP")), CENTER | LJUST),
        mkstring("MEM_MAP", VADDR_PRLEN, CENTER | LJUST),
        mkstring("STATE", len("STATE"), CENTER)))
    for nr, addr, coded, mem_map, state, pfn in section_lines(k):
        out.append("%2d  %s  %s  %s  %s %s\n" % (
            nr,
            mkstring(addr, VADDR_PRLEN, CENTER | LONG_HEX),
            mkstring(coded, max(VADDR_PRLEN, len("CODED_MEM_MAP")), CENTER | LONG_HEX | RJUST),
            mkstring(mem_map, VADDR_PRLEN, CENTER | LONG_HEX | RJUST),
            mkstring(state, len("STATE"), CENTER),
            mkstring(pfn, VADDR_PRLEN, (LONG_DEC if OUTPUT_RADIX == 10 else LONG_HEX) | LJUST)))
    return out


def _dump_memory_blocks(k: Kernel) -> list[str]:
    """crash ``dump_memory_blocks(0)`` + ``print_memory_block()``, the ``memory_block.nid`` variant
    (``nid`` is a member since 4.x; both 4.20 and 6.x have it). ``memory_block_size_probed`` exists on
    x86_64 4.12+ (arch/x86/mm/init_64.c), so the header says PHYSICAL RANGE and the end address is
    ``start + memory_block_size_probed - 1``."""
    if not has_memory_blocks(k):
        return []
    plen = paddr_prlen(k)
    mbs = memory_block_size(k)
    out = ["\n%s %s   %s   %s  %s %s\n" % (
        mkstring("MEM_BLOCK", VADDR_PRLEN, CENTER | LJUST),
        mkstring("NAME", 10, CENTER),
        mkstring("PHYSICAL RANGE", plen * 2 + 2, CENTER),
        mkstring("NODE", len("NODE"), CENTER),
        mkstring("STATE", len("OFFLINE"), LJUST),
        mkstring("START_SECTION_NO", 12, LJUST))]
    for b in boot_memory_blocks(k):
        start_addr = (b.start_section_nr << k.era.pfn_section_shift) << PAGE_SHIFT
        end_addr = start_addr + mbs - 1
        parange = "%s - %s" % (mkstring(start_addr, plen, RJUST | LONG_HEX),
                               mkstring(end_addr, plen, RJUST | LONG_HEX))
        out.append(" %s %s %s %s  %s %s\n" % (
            mkstring(b.addr, VADDR_PRLEN, LJUST | LONG_HEX),
            mkstring(b.name, 12, CENTER),
            parange,
            mkstring(b.nid, len("NODE"), CENTER | INT_DEC),
            mkstring(b.state, len("OFFLINE"), LJUST),
            mkstring(str(b.start_section_nr), 12, LJUST)))
    return out


def kmem_n(k: Kernel) -> str:
    """What crash's ``kmem -n`` prints for the booted kernel ``k`` (memory.c ``dump_memory_nodes()``,
    then under SPARSEMEM ``dump_mem_sections()`` and ``dump_memory_blocks()``)."""
    out, sparse = _dump_memory_nodes(k)
    if sparse:
        out += _dump_mem_sections(k)
        out += _dump_memory_blocks(k)
    return "".join(out)
