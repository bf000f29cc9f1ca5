"""``mem_section``: the SPARSEMEM section table, its roots, encoded words and usage maps.

Models include/linux/mmzone.h and mm/sparse.c (kernel-reference.md §2.4, §2.7):

* ``__nr_to_section(nr)`` = ``&mem_section[SECTION_NR_TO_ROOT(nr)][nr & SECTION_ROOT_MASK]``; with
  SPARSEMEM_EXTREME the root is a pointer loaded from the root array (a static array in 2.6.x, the
  boot-allocated ``struct mem_section **mem_section`` since 4.15), and a missing root means NULL.
* ``section_mem_map`` holds ``sparse_encode_mem_map(map, pnum)`` = ``map - section_nr_to_pfn(pnum)``
  (in ``struct page`` units) with the era's flag bits below ``SECTION_MAP_MASK``; before a memmap
  exists it holds ``sparse_encode_early_nid(nid)`` = ``nid << SECTION_NID_SHIFT``.
* 6.x: ``ms->usage`` points at a ``struct mem_section_usage`` whose ``subsection_map`` (third word,
  after a 16-byte rcu_head) has one bit per 2 MiB sub-section.

The table is kernel memory: every read here goes through :class:`~vmemmap.kernel_memory.KernelMemory`.
A Python-side index of present section numbers exists only for iteration and bulk paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vmemmap.kernel import Kernel

MASK64 = (1 << 64) - 1
USAGE_SUBSECTION_MAP_OFFSET = 16  # struct mem_section_usage { struct rcu_head rcu; unsigned long subsection_map[1]; ... }
SMP_CACHE_BYTES = 64
INTERNODE_CACHE_BYTES = 64  # 1 << INTERNODE_CACHE_SHIFT on x86_64 (L1_CACHE_SHIFT 6)


class SectionTable:
    """The kernel's section table for one booted kernel."""

    def __init__(self, k: Kernel, extreme: bool) -> None:
        self.k = k
        self.era = k.era
        self.extreme = extreme
        self.ms_size = k.mem_section_size
        self.per_root = (4096 // self.ms_size) if extreme else 1
        self.nr_sections = self.era.nr_mem_sections(k.la57)
        n = self.nr_sections
        self.nr_roots = (-(-n // self.per_root) if self.era.nr_section_roots_round_up else n // self.per_root)
        self.roots: dict[int, int] = {}  # root index -> virtual address of the root's array
        # index of present section numbers (bookkeeping for iteration and bulk paths, not kernel data)
        self._present = np.zeros(self.nr_sections, dtype=bool)
        self.root_array = 0  # virtual address of the root pointer array (EXTREME) or of mem_section[][]

    # ------------------------------------------------------------------ boot
    def alloc_root_array(self) -> None:
        """4.15+ ``memblocks_present``: ``mem_section = memblock_alloc(NR_SECTION_ROOTS * 8, INTERNODE_CACHE)``."""
        k = self.k
        if self.era.mem_section_is_pointer:
            size = 8 * self.nr_roots
            pa = k.memblock.alloc(size, INTERNODE_CACHE_BYTES, -1, "mem_section roots")  # NUMA_NO_NODE
            self.root_array = pa + k.page_offset
            k.mem.store(k.sym("mem_section"), self.root_array)
        else:
            self.root_array = k.sym("mem_section")

    def sparse_index_init(self, nr: int, nid: int) -> None:
        """``sparse_index_init``: allocate the root page holding section ``nr`` on ``nid`` if missing."""
        if not self.extreme:
            return
        root = nr // self.per_root
        if root in self.roots:
            return
        k = self.k
        size = self.per_root * self.ms_size  # SECTIONS_PER_ROOT * sizeof(struct mem_section) = PAGE_SIZE
        pa = k.memblock.alloc(size, SMP_CACHE_BYTES if k.era.boot_allocator == "memblock" else 4096,
                              nid, "mem_section root")
        va = pa + k.page_offset
        self.roots[root] = va
        k.mem.store(self.root_array + 8 * root, va)

    def section_addr_nocheck(self, nr: int) -> int:
        """Address of ``struct mem_section`` ``nr`` from the Python index (boot / bulk use only)."""
        if not self.extreme:
            return self.root_array + nr * self.ms_size
        return self.roots[nr // self.per_root] + (nr % self.per_root) * self.ms_size

    def write_word(self, nr: int, word: int) -> None:
        self.k.mem.store(self.section_addr_nocheck(nr), word & MASK64)

    def write_usage(self, nr: int, usage_va: int) -> None:
        """``ms->usage`` (6.x) or ``ms->pageblock_flags`` (2.6.24+): the second word."""
        self.k.mem.store(self.section_addr_nocheck(nr) + 8, usage_va)

    def is_present(self, nr: int) -> bool:
        return 0 <= nr < self.nr_sections and bool(self._present[nr])

    def set_present(self, nr: int, value: bool) -> None:
        self._present[nr] = value

    def mark_present(self, nr: int, nid: int) -> None:
        """``memory_present`` / ``memblocks_present``: early nid, PRESENT (and ONLINE in 4.13+)."""
        if self.is_present(nr):
            return
        self.sparse_index_init(nr, nid)
        word = (nid << self.era.section_nid_shift) | self.era.section_flag("PRESENT")
        if "ONLINE" in self.era.section_flags:
            word |= self.era.section_flag("ONLINE")
        self.write_word(nr, word)
        self._present[nr] = True

    def bulk_mark_present(self, nrs: np.ndarray, nids: np.ndarray) -> None:
        """``memblocks_present`` for many sections at once (same result as :meth:`mark_present` each)."""
        flags = self.era.section_flag("PRESENT")
        if "ONLINE" in self.era.section_flags:
            flags |= self.era.section_flag("ONLINE")
        nrs = np.asarray(nrs, dtype=np.int64)
        nids = np.asarray(nids, dtype=np.int64)
        keep = ~self._present[nrs]
        nrs, nids = nrs[keep], nids[keep]
        if len(nrs) == 0:
            return
        if self.extreme:
            # one root allocation per root, in section order, on the node of its first section
            roots = nrs // self.per_root
            first = np.flatnonzero(np.concatenate(([True], roots[1:] != roots[:-1])))
            for i in first:
                self.sparse_index_init(int(nrs[i]), int(nids[i]))
        words = (nids.astype(np.uint64) << np.uint64(self.era.section_nid_shift)) | np.uint64(flags)
        self.bulk_write(nrs, words, None)
        self._present[nrs] = True

    def bulk_write(self, nrs: np.ndarray, words: np.ndarray | None, second: np.ndarray | None) -> None:
        """Store ``section_mem_map`` words (and ``ms->usage`` / ``pageblock_flags``) of many sections.

        Grouped by root: each root's bytes are read, updated with numpy and written back once.
        """
        nrs = np.asarray(nrs, dtype=np.int64)
        per = self.per_root if self.extreme else len(nrs) or 1
        wps = self.ms_size // 8
        if not self.extreme:
            groups = [(0, np.arange(len(nrs)))]
        else:
            roots = nrs // self.per_root
            order = np.argsort(roots, kind="stable")
            uniq, starts = np.unique(roots[order], return_index=True)
            bounds = list(starts) + [len(order)]
            groups = [(int(uniq[i]), order[bounds[i]:bounds[i + 1]]) for i in range(len(uniq))]
        for root, idx in groups:
            if self.extreme:
                base_va = self.roots[root]
                first = root * self.per_root
                span = self.per_root
            else:
                lo, hi = int(nrs[idx].min()), int(nrs[idx].max()) + 1
                base_va = self.root_array + lo * self.ms_size
                first, span = lo, hi - lo
            pa = self.k.tables.translate(base_va)
            nbytes = span * self.ms_size
            buf = np.frombuffer(bytearray(self.k.phys.read(pa, nbytes)), dtype=np.uint64).copy()
            slot = (nrs[idx] - first) * wps
            if words is not None:
                buf[slot] = np.asarray(words, dtype=np.uint64)[idx]
            if second is not None:
                buf[slot + 1] = np.asarray(second, dtype=np.uint64)[idx]
            self.k.phys.write(pa, buf.tobytes())
        del per

    def encode_mem_map(self, memmap_va: int, nr: int) -> int:
        """``sparse_encode_mem_map``: ``map - section_nr_to_pfn(pnum)`` in struct-page units."""
        return (memmap_va - (nr << self.era.pfn_section_shift) * self.era.struct_page_size) & MASK64

    def init_one_section(self, nr: int, memmap_va: int, usage_va: int | None, extra_flags: tuple[str, ...] = ()) -> None:
        """``sparse_init_one_section``: keep the flag bits, store the encoded map, set HAS_MEM_MAP."""
        addr = self.section_addr_nocheck(nr)
        old = self.k.mem.peek(addr, 8)
        word = (old & ~self.era.section_map_mask & MASK64) | self.encode_mem_map(memmap_va, nr)
        word |= self.era.section_flag("HAS_MEM_MAP")
        for f in extra_flags:
            word |= self.era.section_flag(f)
        self.write_word(nr, word)
        if usage_va is not None:
            self.write_usage(nr, usage_va)

    # ------------------------------------------------------------------ kernel reads (recorded)
    def nr_to_section(self, nr: int) -> int | None:
        """``__nr_to_section``: the loads the kernel makes to find a section (None: no root)."""
        mem = self.k.mem
        if nr >= self.nr_sections:
            return None
        if not self.extreme:
            return self.root_array + nr * self.ms_size  # static array: address arithmetic only
        root = nr // self.per_root
        if self.era.mem_section_is_pointer:
            base = mem.load(self.k.sym("mem_section"), 8, "mem_section")
            if base == 0:
                return None
        else:
            base = self.root_array
        rootp = mem.load(base + 8 * root, 8, "mem_section[root]")
        if rootp == 0:
            return None
        return rootp + (nr % self.per_root) * self.ms_size

    def section_mem_map(self, ms: int) -> int:
        return self.k.mem.load(ms, 8, "ms->section_mem_map")

    def decode_mem_map(self, word: int) -> int:
        """``__section_mem_map_addr``: the word with the flag bits masked off."""
        return word & self.era.section_map_mask

    def subsection_valid(self, ms: int, pfn: int) -> bool:
        """``pfn_section_valid``: the pfn's 2 MiB sub-section bit in ``ms->usage->subsection_map``."""
        mem = self.k.mem
        usage = mem.load(ms + 8, 8, "ms->usage")
        bitmap = mem.load(usage + USAGE_SUBSECTION_MAP_OFFSET, 8, "usage->subsection_map")
        idx = (pfn & (self.era.pages_per_section - 1)) >> (self.era.subsection_shift - 12)
        return bool((bitmap >> idx) & 1)

    # ------------------------------------------------------------------ bulk (not recorded)
    def present_array(self) -> np.ndarray:
        return np.flatnonzero(self._present).astype(np.int64)

    def words_array(self, nrs: np.ndarray) -> np.ndarray:
        """``section_mem_map`` words of sections ``nrs`` (0 for missing roots / absent), read from memory."""
        nrs = np.asarray(nrs, dtype=np.int64)
        if len(nrs) > 4 * 4096:
            # many pfns, few sections: read each section's word once (a dense table over the sections
            # spanned when that is small, else the distinct ones) and index it
            lo, hi = int(nrs.min()), int(nrs.max())
            if lo >= 0 and hi - lo < min(len(nrs) // 2, 1 << 22):
                lut = self._words_direct(np.arange(lo, hi + 1, dtype=np.int64))
                return lut[nrs - lo]
            uniq, inv = np.unique(nrs, return_inverse=True)
            if len(uniq) < len(nrs) // 2:
                return self._words_direct(uniq)[inv]
        return self._words_direct(nrs)

    def _words_direct(self, nrs: np.ndarray) -> np.ndarray:
        out = np.zeros(len(nrs), dtype=np.uint64)
        if len(nrs) == 0:
            return out
        have = nrs < self.nr_sections
        if self.extreme:
            lut = self._root_lut()
            roots = np.where(have, nrs // self.per_root, 0)
            base = lut[roots]
            have &= base != 0
            addrs = base + (nrs % self.per_root).astype(np.uint64) * np.uint64(self.ms_size)
        else:
            addrs = np.uint64(self.root_array) + nrs.astype(np.uint64) * np.uint64(self.ms_size)
        have &= nrs < self.nr_sections
        if have.any():
            out[have] = self.k.mem.peek_u64_array(addrs[have])
        return out

    def addrs_array(self, nrs: np.ndarray) -> np.ndarray:
        """Virtual addresses of ``struct mem_section`` for present sections ``nrs`` (bulk)."""
        nrs = np.asarray(nrs, dtype=np.int64)
        if not self.extreme:
            return np.uint64(self.root_array) + nrs.astype(np.uint64) * np.uint64(self.ms_size)
        lut = self._root_lut()
        return lut[nrs // self.per_root] + (nrs % self.per_root).astype(np.uint64) * np.uint64(self.ms_size)

    def _root_lut(self) -> np.ndarray:
        lut = np.zeros(self.nr_roots, dtype=np.uint64)
        for r, va in self.roots.items():
            lut[r] = va
        return lut

    def read_word_nocheck(self, nr: int) -> int:
        if self.extreme and nr // self.per_root not in self.roots:
            return 0
        return self.k.mem.peek(self.section_addr_nocheck(nr), 8)

    def usage_of(self, nr: int) -> int:
        return self.k.mem.peek(self.section_addr_nocheck(nr) + 8, 8)

    def subsection_map(self, nr: int) -> int:
        u = self.usage_of(nr)
        return self.k.mem.peek(u + USAGE_SUBSECTION_MAP_OFFSET, 8) if u else 0

    def flag_names(self, word: int) -> list[str]:
        return [name for i, name in enumerate(self.era.section_flags) if (word >> i) & 1]
