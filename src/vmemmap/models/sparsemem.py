"""Classic SPARSEMEM (static or EXTREME) and what it shares with SPARSEMEM_VMEMMAP.

``__pfn_to_page(pfn)`` = ``__section_mem_map_addr(__pfn_to_section(pfn)) + pfn`` and
``__page_to_pfn(page)`` = ``page - __section_mem_map_addr(__nr_to_section(page_to_section(page)))``
(include/asm-generic/memory_model.h @ v2.6.21 .. 6.12; kernel-reference §2.1, §2.4). Each section's
memmap is allocated separately: ``alloc_bootmem_node`` per section in 2.6.x, carved from a node-wide
``sparse_buffer`` since ≈2.6.35 (``sparse_init_nid``, mm/sparse.c @ 6.12).
"""

from __future__ import annotations

import numpy as np

from vmemmap.models.base import MemmapPiece, MemoryModel
from vmemmap.models.sections import SMP_CACHE_BYTES, SectionTable

PAGE_SIZE = 4096
PMD_SIZE = 1 << 21


class SparseBase(MemoryModel):
    """Section bookkeeping shared by classic SPARSEMEM and SPARSEMEM_VMEMMAP."""

    extreme: bool = True

    def __init__(self, kernel, extreme: bool = True) -> None:  # noqa: ANN001
        super().__init__(kernel)
        self.extreme = extreme
        self.sections = SectionTable(kernel, extreme)
        self._pieces: list[MemmapPiece] = []

    # ------------------------------------------------------------------ boot
    def memory_present(self) -> None:
        """``memory_present`` (2.6.x) / ``memblocks_present`` (4.15+): mark sections of every RAM range."""
        k, st = self.k, self.sections
        st.alloc_root_array()
        shift = self.era.pfn_section_shift
        parts_n, parts_d = [], []
        for s, e, nid in k.ram_pfn_ranges():
            r = np.arange(s >> shift, ((e - 1) >> shift) + 1, dtype=np.int64)
            parts_n.append(r)
            parts_d.append(np.full(len(r), nid, dtype=np.int64))
        st.bulk_mark_present(np.concatenate(parts_n), np.concatenate(parts_d))

    def section_groups(self) -> list[tuple[int, list[int]]]:
        """Present sections grouped by node in section order, as ``sparse_init()`` walks them."""
        st = self.sections
        nrs = st.present_array()
        if len(nrs) == 0:
            return []
        nids = ((st.words_array(nrs) & np.uint64(st.era.section_map_mask)) >> np.uint64(st.era.section_nid_shift)).astype(np.int64)
        cut = np.flatnonzero(np.diff(nids)) + 1
        groups: list[tuple[int, list[int]]] = []
        for a, b in zip(np.concatenate(([0], cut)), np.concatenate((cut, [len(nrs)]))):
            groups.append((int(nids[a]), [int(x) for x in nrs[a:b]]))
        return groups

    def alloc_usemaps(self, nid: int, count: int) -> tuple[int, int]:
        """Per-section usage/pageblock maps for ``count`` sections: (first virtual address, stride).

        6.x ``sparse_early_usemaps_alloc_pgdat_section``: ``mem_section_usage_size() * count`` bytes,
        preferably inside the section holding NODE_DATA; 2.6.24+: ``usemap_size()`` per section.
        """
        k = self.k
        if k.era.usage_size:
            stride = k.era.usage_size
        elif k.mem_section_size >= 16:
            stride = 32 if k.era.boot_allocator == "memblock" else 24  # pageblock bits per section
        else:
            return 0, 0
        node = k.nodes.get(nid) or next(iter(k.nodes.values()))
        pg = node.pgdat_phys[0]
        goal = pg & ~((1 << k.era.section_size_bits) - 1)
        size = stride * count
        try:
            pa = k.memblock.alloc(size, SMP_CACHE_BYTES, nid, "usemap", goal=goal,
                                  limit=goal + (1 << k.era.section_size_bits))
        except Exception:  # noqa: BLE001 - the kernel retries without the limit
            pa = k.memblock.alloc(size, SMP_CACHE_BYTES, nid, "usemap")
        return pa + k.page_offset, stride

    def sparse_init(self) -> None:
        """``sparse_init``: memmap per present section, then the encoded words."""
        st = self.sections
        early = ("EARLY",) if "EARLY" in self.era.section_flags else ()
        for nid, nrs in self.section_groups():
            usage0, stride = self.alloc_usemaps(nid, len(nrs))
            maps = self.populate_group(nid, nrs)
            usages = (np.uint64(usage0) + np.arange(len(nrs), dtype=np.uint64) * np.uint64(stride)) if stride else None
            arr = np.array(nrs, dtype=np.int64)
            old = st.words_array(arr)
            enc = (np.array(maps, dtype=np.uint64) - (arr.astype(np.uint64) << np.uint64(self.era.pfn_section_shift))
                   * np.uint64(self.sp))
            flags = np.uint64(self.era.section_flag("HAS_MEM_MAP"))
            for f in early:
                flags |= np.uint64(self.era.section_flag(f))
            words = (old & ~np.uint64(self.era.section_map_mask)) | enc | flags
            st.bulk_write(arr, words, usages)
            if usages is not None and self.era.subsection_shift:
                self.subsection_map_init(nrs, usage0, stride)
            self._add_pieces(arr, np.asarray(maps, dtype=np.uint64), nid)
        self._pieces.sort(key=lambda p: p.start_pfn)

    def _add_pieces(self, nrs: np.ndarray, maps: np.ndarray, nid: int) -> None:
        """Record the memmap of sections ``nrs`` (at ``maps``) as runs: consecutive sections whose
        memmaps are virtually contiguous become one piece."""
        pps = self.era.pages_per_section
        sec_bytes = np.uint64(pps * self.sp)
        brk = np.flatnonzero((np.diff(nrs) != 1) | (np.diff(maps) != sec_bytes)) + 1
        for a, b in zip(np.concatenate(([0], brk)), np.concatenate((brk, [len(nrs)]))):
            self._add_piece(int(nrs[a]) * pps, (int(nrs[b - 1]) + 1) * pps, int(maps[a]), nid)

    def _add_piece(self, start: int, end: int, vaddr: int, nid: int) -> None:
        """Record where a section's struct pages are, merging virtually contiguous neighbours."""
        pcs = self._pieces
        if pcs:
            last = pcs[-1]
            if last.end_pfn == start and last.nid == nid and last.vaddr + (last.end_pfn - last.start_pfn) * self.sp == vaddr:
                pcs[-1] = MemmapPiece(last.start_pfn, end, last.vaddr, nid)
                return
        pcs.append(MemmapPiece(start, end, vaddr, nid))

    def subsection_map_init(self, nrs: list[int], usage0: int, stride: int) -> None:
        """``subsection_map_init``: a bit per 2 MiB sub-section that holds memory (only with VMEMMAP)."""

    def populate_group(self, nid: int, nrs: list[int]) -> list[int]:
        """Allocate (and for VMEMMAP map) the memmap of each section; return each section's memmap VA."""
        raise NotImplementedError

    def memmap_pieces(self) -> list[MemmapPiece]:
        return self._pieces

    def section_of(self, pfn: int) -> int | None:
        return pfn >> self.era.pfn_section_shift

    # ------------------------------------------------------------------ kernel paths
    def _valid(self, pfn: int) -> bool:
        """``pfn_valid`` for SPARSEMEM, by the era's rule (kernel-reference §2.7)."""
        era = self.era
        if era.pfn_valid_rule == "subsection" and ((pfn << 12) >> 12) != pfn:
            return False
        nr = pfn >> era.pfn_section_shift
        if nr >= self.sections.nr_sections:
            return False
        ms = self.sections.nr_to_section(nr)
        if ms is None:
            return False
        word = self.sections.section_mem_map(ms)
        if not word & era.section_flag(era.valid_section_flag):
            return False
        if era.pfn_valid_rule != "subsection":
            return True
        if word & era.section_flag("EARLY"):
            return True
        return self._pfn_section_valid(ms, pfn)

    def _pfn_section_valid(self, ms: int, pfn: int) -> bool:
        return True  # without SPARSEMEM_VMEMMAP pfn_section_valid() is always 1

    def _pfn_valid(self, pfn: int) -> bool:
        return self._valid(pfn)

    def pfn_valid_array(self, pfns: np.ndarray) -> np.ndarray:
        era = self.era
        p = np.asarray(pfns, dtype=np.uint64)
        nrs = (p >> np.uint64(era.pfn_section_shift)).astype(np.int64)
        words = self.sections.words_array(nrs)
        ok = (words & np.uint64(era.section_flag(era.valid_section_flag))) != 0
        if era.pfn_valid_rule == "subsection":
            early = (words & np.uint64(era.section_flag("EARLY"))) != 0
            need = ok & ~early
            if need.any():
                ok[need] = self._subsection_array(nrs[need], p[need])
        return ok

    def _subsection_array(self, nrs: np.ndarray, pfns: np.ndarray) -> np.ndarray:
        return np.ones(len(nrs), dtype=bool)


class Sparsemem(SparseBase):
    """Classic SPARSEMEM: each section's memmap is a separate array in the direct map."""

    name = "sparsemem-extreme"
    config = "CONFIG_SPARSEMEM + CONFIG_SPARSEMEM_EXTREME"
    supports_hotplug = True
    hotplug_note = "yes: each hot-added section gets its own memmap allocation (kmalloc/vmalloc)"

    def __init__(self, kernel, extreme: bool = True) -> None:  # noqa: ANN001
        super().__init__(kernel, extreme)
        if not extreme:
            self.name = "sparsemem"
            self.config = "CONFIG_SPARSEMEM + CONFIG_SPARSEMEM_STATIC"

    def init(self) -> None:
        self.memory_present()
        self.sparse_init()

    def populate_group(self, nid: int, nrs: list[int]) -> list[int]:
        k = self.k
        size = self.sp * self.era.pages_per_section
        out: list[int] = []
        if self.era.memmap_buffer == "node":
            # sparse_buffer_init(map_count * section_map_size()); section_map_size = PAGE_ALIGN(size)
            msize = -(-size // PAGE_SIZE) * PAGE_SIZE
            buf = k.memblock.alloc(msize * len(nrs), msize, nid, "sparse_buffer", goal=k.era.max_dma_address,
                                   exact_nid=True)
            for i in range(len(nrs)):
                out.append(buf + i * msize + k.page_offset)
        else:
            for _ in nrs:
                pa = k.memblock.alloc(size, SMP_CACHE_BYTES, nid, "section mem_map", goal=k.era.max_dma_address)
                out.append(pa + k.page_offset)
        return out

    def _pfn_to_page(self, pfn: int) -> int:
        st = self.sections
        ms = st.nr_to_section(pfn >> self.era.pfn_section_shift)
        if ms is None:
            return 0  # the kernel would dereference NULL: pfn_to_page of an invalid pfn
        return (st.decode_mem_map(st.section_mem_map(ms)) + pfn * self.sp) & ((1 << 64) - 1)

    def _page_to_pfn(self, page: int) -> int:
        st = self.sections
        pf = self.k.page_flags
        flags = self.mem.load(page, 8, "page->flags")
        nr = (flags >> pf.sections_pgshift) & ((1 << pf.sections_width) - 1)
        ms = st.nr_to_section(nr)
        base = st.decode_mem_map(st.section_mem_map(ms)) if ms is not None else 0
        return ((page - base) & ((1 << 64) - 1)) // self.sp

    def pfn_to_page_array(self, pfns: np.ndarray) -> np.ndarray:
        p = np.asarray(pfns, dtype=np.uint64)
        words = self.sections.words_array((p >> np.uint64(self.era.pfn_section_shift)).astype(np.int64))
        return (words & np.uint64(self.era.section_map_mask)) + p * np.uint64(self.sp)

    def page_to_pfn_array(self, pages: np.ndarray) -> np.ndarray:
        pages = np.asarray(pages, dtype=np.uint64)
        pf = self.k.page_flags
        flags = self.mem.peek_u64_array(pages)
        nrs = ((flags >> np.uint64(pf.sections_pgshift)) & np.uint64((1 << pf.sections_width) - 1)).astype(np.int64)
        words = self.sections.words_array(nrs)
        return (pages - (words & np.uint64(self.era.section_map_mask))) // np.uint64(self.sp)
