"""DISCONTIGMEM on x86-64 (2.6.2x NUMA default; include/asm-x86_64/mmzone.h, arch/x86_64/mm/numa.c).

One ``node_mem_map`` per node; the node of a pfn comes from the ``memnodemap`` hash:
``phys_to_nid(addr)`` = ``memnodemap[addr >> memnode_shift]`` where ``struct memnode`` is one cache
line {int shift; unsigned int mapsize; u8 *map; u8 embedded_map[48]} (kernel-reference §2.3).

``pfn_to_page`` (the out-of-line function of ``CONFIG_OUT_OF_LINE_PFN_TO_PAGE``, memory_model.h):
``nid = arch_pfn_to_nid(pfn); NODE_DATA(nid)->node_mem_map + (pfn - NODE_DATA(nid)->node_start_pfn)``.
``page_to_pfn``: ``pgdat = NODE_DATA(page_to_nid(page)); (page - pgdat->node_mem_map) +
pgdat->node_start_pfn``. ``pfn_valid`` (numa.c): ``pfn < num_physpages``, a mapped node, inside the
node's span.
"""

from __future__ import annotations

import numpy as np

from vmemmap.errors import BootError
from vmemmap.models.base import MemmapPiece, MemoryModel

EMBEDDED_MAP = 48  # sizeof(embedded_map) = 64 - 16
L1_CACHE_BYTES = 64
NO_NODE = 0xFF


def compute_hash_shift(nodes: list[tuple[int, int]]) -> tuple[int, int]:
    """``extract_lsb_from_nodes``: the lowest set bit of the OR of node starts (63 for one node) and
    ``memnodemapsize = (memtop >> shift) + 1``."""
    bitfield = 0
    memtop = 0
    used = 0
    for start, end in nodes:
        if start >= end:
            continue
        bitfield |= start
        used += 1
        memtop = max(memtop, end)
    if used <= 1:
        shift = 63
    else:
        shift = (bitfield & -bitfield).bit_length() - 1 if bitfield else 63
    return shift, (memtop >> shift) + 1


def populate_memnodemap(nodes: list[tuple[int, int, int]], shift: int, size: int) -> bytearray:
    """``populate_memnodemap``: fill each node's hash slots; overlap or overflow is a boot failure."""
    m = bytearray([NO_NODE]) * size
    for nid, start, end in nodes:
        addr = start
        if (end >> shift) >= size and shift != 63:
            raise BootError("memnodemap overflow: node ranges beyond the hash map")
        while addr < end:
            i = addr >> shift
            if m[i] != NO_NODE:
                raise BootError(
                    f"NUMA: memory not aligned for the memnodemap hash (shift {shift}): nodes overlap in slot {i}"
                )
            m[i] = nid
            addr += 1 << shift
    return m


class Discontigmem(MemoryModel):
    name = "discontigmem"
    config = "CONFIG_DISCONTIGMEM"
    supports_hotplug = True
    hotplug_note = "2.6.21 only with MEMORY_HOTPLUG_RESERVE: pre-sized node_mem_map for pre-reserved ranges"

    def init(self) -> None:
        from vmemmap.kernel import MAX_ORDER_NR_PAGES, PGDAT_LAYOUT

        k = self.k
        lay = PGDAT_LAYOUT[k.era.boot_allocator]
        self.lay = lay
        end_pfn = k.max_pfn
        if k.era.hotplug.get("discontigmem") == "reserve":
            # MEMORY_HOTPLUG_RESERVE (arch/x86_64/mm/srat.c @ v2.6.21 reserve_hotadd): a node's SRAT
            # hot-pluggable range joins the node's span, so node_mem_map below is sized over it, and
            # update_end_of_memory() raises end_pfn (num_physpages) to its end; the pages stay absent
            # until hot-add onlines them (vmemmap.hotplug.Hotplug._reserve_add)
            for mn in k.machine.nodes:
                n = k.nodes.get(mn.nid)
                if n is None or not mn.hotplug:
                    continue
                for s, e in mn.hotplug:
                    n.start_pfn, n.end_pfn = min(n.start_pfn, s >> 12), max(n.end_pfn, e >> 12)
                    end_pfn = max(end_pfn, e >> 12)
                k.mem.store(n.pgdat + lay["node_start_pfn"], n.start_pfn)
                k.mem.store(n.pgdat + lay["node_spanned_pages"], n.spanned_pages)
        spans = [(n.nid, n.start_pfn << 12, n.end_pfn << 12) for n in k.nodes.values()]
        shift, size = compute_hash_shift([(s, e) for _, s, e in spans])
        m = populate_memnodemap(spans, shift, size)
        memnode = k.sym("memnode")
        if size <= EMBEDDED_MAP:
            mapp = memnode + 16
        else:
            # allocate_cachealigned_memnodemap(): an e820 area above 0x8000, cache aligned
            pa = k.memblock.alloc(-(-size // L1_CACHE_BYTES) * L1_CACHE_BYTES, L1_CACHE_BYTES, min(k.nodes),
                                  "memnodemap", goal=0x8000)
            mapp = pa + k.page_offset
        k.mem.store(memnode, shift, 4)
        k.mem.store(memnode + 4, size, 4)
        k.mem.store(memnode + 8, mapp, 8)
        for off in range(0, len(m), 8):
            chunk = bytes(m[off : off + 8])
            k.mem.store(mapp + off, int.from_bytes(chunk, "little"), len(chunk))
        self.shift, self.mapsize, self.map_va = shift, size, mapp
        k.mem.store(k.sym("num_physpages"), end_pfn)

        self._pieces: list[MemmapPiece] = []
        self.node_mem_map: dict[int, int] = {}
        for n in k.nodes.values():
            # alloc_node_mem_map(): span rounded to MAX_ORDER_NR_PAGES, allocated on the node
            start = n.start_pfn & ~(MAX_ORDER_NR_PAGES - 1)
            end = -(-n.end_pfn // MAX_ORDER_NR_PAGES) * MAX_ORDER_NR_PAGES
            pa = k.memblock.alloc((end - start) * self.sp, L1_CACHE_BYTES, n.nid, f"node_mem_map({n.nid})",
                                  goal=k.era.max_dma_address, exact_nid=True)
            nmm = pa + k.page_offset + (n.start_pfn - start) * self.sp
            k.mem.store(n.pgdat + lay["node_mem_map"], nmm)
            self.node_mem_map[n.nid] = nmm
            self._pieces.append(MemmapPiece(start, end, pa + k.page_offset, n.nid))

    def memmap_pieces(self) -> list[MemmapPiece]:
        return self._pieces

    # ------------------------------------------------------------------ kernel paths
    def _pfn_to_nid(self, pfn: int) -> int:
        """``phys_to_nid(pfn << PAGE_SHIFT)``."""
        mem, memnode = self.mem, self.k.sym("memnode")
        shift = mem.load(memnode, 4, "memnode_shift")
        mapp = mem.load(memnode + 8, 8, "memnodemap")
        return mem.load(mapp + ((pfn << 12) >> shift), 1, "memnodemap[addr >> shift]")

    def _pgdat(self, nid: int) -> int:
        return self.mem.load(self.k.sym("node_data") + 8 * nid, 8, "node_data[nid]")

    def _pfn_to_page(self, pfn: int) -> int:
        nid = self._pfn_to_nid(pfn)
        pgdat = self._pgdat(nid)
        nmm = self.mem.load(pgdat + self.lay["node_mem_map"], 8, "pgdat->node_mem_map")
        start = self.mem.load(pgdat + self.lay["node_start_pfn"], 8, "pgdat->node_start_pfn")
        return nmm + (pfn - start) * self.sp

    def _page_to_pfn(self, page: int) -> int:
        nid = self._page_to_nid(page)
        pgdat = self._pgdat(nid)
        nmm = self.mem.load(pgdat + self.lay["node_mem_map"], 8, "pgdat->node_mem_map")
        start = self.mem.load(pgdat + self.lay["node_start_pfn"], 8, "pgdat->node_start_pfn")
        return (page - nmm) // self.sp + start

    def _pfn_valid(self, pfn: int) -> bool:
        if pfn >= self.mem.load(self.k.sym("num_physpages"), 8, "num_physpages"):
            return False
        nid = self._pfn_to_nid(pfn)
        if nid == NO_NODE:
            return False
        pgdat = self._pgdat(nid)
        start = self.mem.load(pgdat + self.lay["node_start_pfn"], 8, "pgdat->node_start_pfn")
        spanned = self.mem.load(pgdat + self.lay["node_spanned_pages"], 8, "pgdat->node_spanned_pages")
        return start <= pfn < start + spanned

    # ------------------------------------------------------------------ bulk
    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        mem, k = self.mem, self.k
        m = np.frombuffer(bytes(mem.peek(self.map_va + i, 1) for i in range(self.mapsize)), dtype=np.uint8)
        nids = sorted(k.nodes)
        nmm = np.zeros(max(nids) + 1, dtype=np.uint64)
        start = np.zeros(max(nids) + 1, dtype=np.uint64)
        end = np.zeros(max(nids) + 1, dtype=np.uint64)
        for nid in nids:
            pgdat = mem.peek(k.sym("node_data") + 8 * nid, 8)
            nmm[nid] = mem.peek(pgdat + self.lay["node_mem_map"], 8)
            start[nid] = mem.peek(pgdat + self.lay["node_start_pfn"], 8)
            end[nid] = start[nid] + np.uint64(mem.peek(pgdat + self.lay["node_spanned_pages"], 8))
        return m, nmm, start, end

    def pfn_to_page_array(self, pfns: np.ndarray) -> np.ndarray:
        m, nmm, start, _ = self._tables()
        p = np.asarray(pfns, dtype=np.uint64)
        nid = m[((p << np.uint64(12)) >> np.uint64(self.shift)).astype(np.int64)].astype(np.int64)
        return nmm[nid] + (p - start[nid]) * np.uint64(self.sp)

    def page_to_pfn_array(self, pages: np.ndarray) -> np.ndarray:
        _, nmm, start, end = self._tables()
        pages = np.asarray(pages, dtype=np.uint64)
        pf = self.k.page_flags
        if pf.nodes_width:
            flags = self.mem.peek_u64_array(pages & ~np.uint64(7))
            nid = ((flags >> np.uint64(pf.nodes_pgshift)) & np.uint64((1 << pf.nodes_width) - 1)).astype(np.int64)
        else:
            nid = np.zeros(len(pages), dtype=np.int64)
        return (pages - nmm[nid]) // np.uint64(self.sp) + start[nid]

    def pfn_valid_array(self, pfns: np.ndarray) -> np.ndarray:
        m, _, start, end = self._tables()
        p = np.asarray(pfns, dtype=np.uint64)
        ok = p < np.uint64(self.mem.peek(self.k.sym("num_physpages"), 8))
        idx = np.where(ok, (p << np.uint64(12)) >> np.uint64(self.shift), 0).astype(np.int64)
        idx = np.minimum(idx, len(m) - 1)
        nid = m[idx].astype(np.int64)
        ok &= nid != NO_NODE
        nid = np.where(ok, nid, 0)
        return ok & (p >= start[nid]) & (p < end[nid])
