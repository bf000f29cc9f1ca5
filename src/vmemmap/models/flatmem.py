"""FLATMEM: one ``mem_map`` array for all of memory (include/asm-generic/memory_model.h).

``__pfn_to_page(pfn)`` = ``mem_map + (pfn - ARCH_PFN_OFFSET)`` and ``__page_to_pfn(page)`` =
``(page - mem_map) + ARCH_PFN_OFFSET``: one load of the ``mem_map`` variable each (the seed's point:
"FLATMEM still references memory since the mem_map pointer itself a variable"). x86-64 has
``ARCH_PFN_OFFSET`` 0 and ``pfn_valid(pfn)`` = ``pfn < end_pfn`` (include/asm-x86_64/page.h @ v2.6.21;
kernel-reference §2.2). The array comes from ``alloc_node_mem_map()`` (mm/page_alloc.c @ v2.6.21):
the node span rounded out to ``MAX_ORDER_NR_PAGES``, one bootmem allocation, holes included.
"""

from __future__ import annotations

import numpy as np

from vmemmap.models.base import MemmapPiece, MemoryModel

ARCH_PFN_OFFSET = 0
SMP_CACHE_BYTES = 64


class Flatmem(MemoryModel):
    name = "flatmem"
    config = "CONFIG_FLATMEM"
    supports_hotplug = False
    hotplug_note = "no: MEMORY_HOTPLUG depends on SPARSEMEM; mem_map is one fixed array"

    def init(self) -> None:
        from vmemmap.kernel import MAX_ORDER_NR_PAGES, PGDAT_LAYOUT

        k = self.k
        node = k.nodes[min(k.nodes)]
        start = node.start_pfn & ~(MAX_ORDER_NR_PAGES - 1)
        end = -(-node.end_pfn // MAX_ORDER_NR_PAGES) * MAX_ORDER_NR_PAGES
        size = (end - start) * self.sp
        pa = k.memblock.alloc(size, SMP_CACHE_BYTES, node.nid, "mem_map", goal=k.era.max_dma_address)
        node_mem_map = pa + k.page_offset + (node.start_pfn - start) * self.sp
        k.mem.store(node.pgdat + PGDAT_LAYOUT[k.era.boot_allocator]["node_mem_map"], node_mem_map)
        self.mem_map = node_mem_map - (node.start_pfn - ARCH_PFN_OFFSET) * self.sp  # mem_map == node_mem_map for node 0 at pfn 0
        k.mem.store(k.sym("mem_map"), self.mem_map)
        k.mem.store(k.sym("end_pfn"), k.max_pfn)
        self._pieces = [MemmapPiece(start, end, pa + k.page_offset, node.nid)]
        self.alloc = (pa, pa + size)

    def memmap_pieces(self) -> list[MemmapPiece]:
        return self._pieces

    def _pfn_to_page(self, pfn: int) -> int:
        mem_map = self.mem.load(self.k.sym("mem_map"), 8, "mem_map")
        return mem_map + (pfn - ARCH_PFN_OFFSET) * self.sp

    def _page_to_pfn(self, page: int) -> int:
        mem_map = self.mem.load(self.k.sym("mem_map"), 8, "mem_map")
        return (page - mem_map) // self.sp + ARCH_PFN_OFFSET

    def _pfn_valid(self, pfn: int) -> bool:
        return pfn < self.mem.load(self.k.sym("end_pfn"), 8, "end_pfn")

    def pfn_to_page_array(self, pfns: np.ndarray) -> np.ndarray:
        mem_map = np.uint64(self.mem.peek(self.k.sym("mem_map"), 8))
        return mem_map + (np.asarray(pfns, dtype=np.uint64) - np.uint64(ARCH_PFN_OFFSET)) * np.uint64(self.sp)

    def page_to_pfn_array(self, pages: np.ndarray) -> np.ndarray:
        mem_map = np.uint64(self.mem.peek(self.k.sym("mem_map"), 8))
        return (np.asarray(pages, dtype=np.uint64) - mem_map) // np.uint64(self.sp) + np.uint64(ARCH_PFN_OFFSET)

    def pfn_valid_array(self, pfns: np.ndarray) -> np.ndarray:
        return np.asarray(pfns, dtype=np.uint64) < np.uint64(self.mem.peek(self.k.sym("end_pfn"), 8))
