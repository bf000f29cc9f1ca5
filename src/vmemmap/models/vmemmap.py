"""SPARSEMEM_VMEMMAP: one virtually contiguous memmap at ``vmemmap`` (the seed's SPARSE_VIRTUAL).

``__pfn_to_page(pfn)`` = ``vmemmap + pfn`` and ``__page_to_pfn(page)`` = ``page - vmemmap``
(memory_model.h @ v2.6.24, 8f6aac419bd5; kernel-reference §2.5). ``vmemmap`` is the constant
``(struct page *)0xffffe20000000000`` in the seed and 2.6.24–2.6.30, ``VMEMMAP_START`` 0xffffea0000000000
from 2.6.31, and the variable ``vmemmap_base`` with the dynamic memory layout (4.x+ distro kernels):
then every conversion loads it.

The memmap is mapped by ``vmemmap_populate()`` (arch/x86/mm/init_64.c; kernel-reference §4.1):
2 MiB PMD leaves backed by node-local memory when the CPU has PSE, base pages otherwise (2.6.27+) or
on request (``vmemmap-4k``). Backing comes from bootmem one block at a time (2.6.x) or from the node's
``sparse_buffer`` (4.x+). The section table is still kept: its encoded memmap decodes to exactly
``vmemmap``, which drgn relies on.
"""

from __future__ import annotations

import bisect

import numpy as np

from vmemmap.models.sections import USAGE_SUBSECTION_MAP_OFFSET
from vmemmap.models.sparsemem import SparseBase

PAGE_SIZE = 4096
PMD_SIZE = 1 << 21
MASK64 = (1 << 64) - 1


class IntervalSet:
    """Sorted disjoint integer intervals ``[lo, hi)``: which vmemmap leaves are populated."""

    def __init__(self) -> None:
        self.lo: list[int] = []
        self.hi: list[int] = []

    def missing(self, lo: int, hi: int) -> list[tuple[int, int]]:
        out = []
        i = bisect.bisect_right(self.hi, lo)
        cur = lo
        while i < len(self.lo) and self.lo[i] < hi:
            if self.lo[i] > cur:
                out.append((cur, self.lo[i]))
            cur = max(cur, self.hi[i])
            i += 1
        if cur < hi:
            out.append((cur, hi))
        return out

    def add(self, lo: int, hi: int) -> None:
        i = bisect.bisect_left(self.hi, lo)
        j = i
        while j < len(self.lo) and self.lo[j] <= hi:
            lo, hi = min(lo, self.lo[j]), max(hi, self.hi[j])
            j += 1
        self.lo[i:j] = [lo]
        self.hi[i:j] = [hi]

    def remove(self, lo: int, hi: int) -> None:
        keep_lo, keep_hi = [], []
        for a, b in zip(self.lo, self.hi):
            if b <= lo or a >= hi:
                keep_lo.append(a)
                keep_hi.append(b)
                continue
            if a < lo:
                keep_lo.append(a)
                keep_hi.append(lo)
            if hi < b:
                keep_lo.append(hi)
                keep_hi.append(b)
        self.lo, self.hi = keep_lo, keep_hi

    def __contains__(self, x: int) -> bool:
        i = bisect.bisect_right(self.lo, x) - 1
        return i >= 0 and x < self.hi[i]


class SparseBuffer:
    """The node-wide ``sparse_buffer`` (mm/sparse.c: ``sparse_buffer_init/alloc/fini``)."""

    def __init__(self, k, nid: int, start: int, end: int) -> None:  # noqa: ANN001
        self.k, self.nid, self.cur, self.end = k, nid, start, end

    def alloc(self, size: int) -> int | None:
        """``sparse_buffer_alloc``: PTR_ALIGN the cursor to ``size``, give skipped space back."""
        p = -(-self.cur // size) * size
        if p + size > self.end:
            return None
        if p != self.cur:
            self.k.memblock.free(self.cur, p)
        self.cur = p + size
        return p

    def alloc_blocks(self, size: int, count: int) -> list[tuple[int, int]]:
        """``count`` successive ``vmemmap_alloc_block_buf(size)`` calls, as (start, n) chunks of
        consecutive blocks; past the buffer's end each block comes from memblock."""
        out: list[tuple[int, int]] = []
        first = self.alloc(size)
        if first is not None:
            n = min(count, 1 + (self.end - (first + size)) // size)
            self.cur = first + n * size
            out.append((first, n))
            count -= n
        for _ in range(count):
            p = self.k.memblock.alloc(size, size, self.nid, "vmemmap block", goal=self.k.era.max_dma_address)
            if out and out[-1][0] + out[-1][1] * size == p:
                out[-1] = (out[-1][0], out[-1][1] + 1)
            else:
                out.append((p, 1))
        return out

    def fini(self) -> None:
        """``sparse_buffer_fini``: the unused rest goes back to memblock."""
        if self.cur < self.end:
            self.k.memblock.free(self.cur, self.end)
        self.cur = self.end


class Vmemmap(SparseBase):
    name = "vmemmap"
    config = "CONFIG_SPARSEMEM_VMEMMAP"
    supports_hotplug = True
    hotplug_note = "yes: a hot-added section's memmap is populated into the vmemmap window (98f3cfc1dc7a)"
    #: tests only: populate 2.6.x memmaps with the literal per-section, per-leaf loop
    #: (:meth:`_populate_per_leaf`) instead of the batched :meth:`_populate_sequential`
    reference_loop = False

    def __init__(self, kernel, basepages: bool = False) -> None:  # noqa: ANN001
        from vmemmap.kernel import _PAGE_NX, PAGE_KERNEL

        super().__init__(kernel, extreme=True)
        cpu = kernel.machine.cpu
        self.basepages = basepages or (not cpu.pse and kernel.era.vmemmap_4k_without_pse)
        if basepages:
            self.name = "vmemmap-4k"
        self.base = kernel.layout.vmemmap_base
        self.constant = kernel.layout.vmemmap_is_constant
        self.leaf_size = PAGE_SIZE if self.basepages else PMD_SIZE
        self.prot = kernel.era.vmemmap_leaf_prot if not self.basepages else PAGE_KERNEL
        if not cpu.nx:
            self.prot &= ~_PAGE_NX
        self._mapped = IntervalSet()  # leaf indices populated (mirror of pmd_none()/pte_none())

    def init(self) -> None:
        self.memory_present()
        self.sparse_init()

    # ------------------------------------------------------------------ populate
    def populate_group(self, nid: int, nrs: list[int]) -> list[int]:
        """``sparse_init_nid`` (node buffer) or the 2.6.x per-section loop, then ``vmemmap_populate``."""
        k = self.k
        pps = self.era.pages_per_section
        sec_bytes = pps * self.sp
        vstarts = [self.base + nr * sec_bytes for nr in nrs]
        if self.era.memmap_buffer == "node":
            # sparse_buffer_init(map_count * section_map_size()): ALIGN(sizeof(struct page) * PAGES_PER_SECTION, PMD_SIZE)
            msize = -(-sec_bytes // PMD_SIZE) * PMD_SIZE
            buf = k.memblock.alloc(msize * len(nrs), msize, nid, "sparse_buffer", goal=k.era.max_dma_address,
                                   exact_nid=True)
            buffer = SparseBuffer(k, nid, buf, buf + msize * len(nrs))
            self._populate_runs(nrs, sec_bytes, nid, buffer)
            buffer.fini()
        elif self.reference_loop:
            for v in vstarts:
                self._populate_per_leaf(v, v + sec_bytes, nid)
        else:
            # sparse_init() calls vmemmap_populate() section by section with nothing in between, and a
            # leaf already populated is skipped (pmd_none() false): a run of consecutive sections is one
            # call over the run's whole memmap
            arr = np.asarray(nrs, dtype=np.int64)
            brk = np.flatnonzero(np.diff(arr) != 1) + 1
            for a, b in zip(np.concatenate(([0], brk)), np.concatenate((brk, [len(arr)]))):
                self._populate_sequential(vstarts[a], vstarts[b - 1] + sec_bytes, nid)
        return vstarts

    def _missing_leaves(self, vstart: int, vend: int) -> list[tuple[int, int]]:
        """The leaf-index ranges of ``[vstart, vend)`` not yet populated (``pmd_none()`` /
        ``pte_none()``), marked populated from now on."""
        ls = self.leaf_size
        lo, hi = vstart // ls, -(-vend // ls)
        out = self._mapped.missing(lo, hi)
        self._mapped.add(lo, hi)
        return out

    def _missing_tables(self, vaddr: int) -> int:
        """How many page-table pages the walk to the leaf entry of ``vaddr`` lacks: those
        ``vmemmap_pgd_populate()`` / ``vmemmap_pud_populate()`` (and, for base pages,
        ``vmemmap_pmd_populate()``) allocate before the leaf's block."""
        k = self.k
        leaf_depth = k.tables.level_names.index("pte" if self.leaf_size == PAGE_SIZE else "pmd")
        return leaf_depth + 1 - len(k.tables.walk(vaddr).steps)

    def _alloc_tables(self, n: int, nid: int) -> None:
        """``n`` page-table pages, taken now and handed to the next ``tables.map`` in order.

        ``vmemmap_alloc_block(PAGE_SIZE, node)`` → ``__earlyonly_bootmem_alloc(node, PAGE_SIZE, PAGE_SIZE,
        __pa(MAX_DMA_ADDRESS))`` (mm/sparse-vmemmap.c @ v2.6.26)."""
        k = self.k
        for _ in range(n):
            k.table_queue.append(k.memblock.alloc(PAGE_SIZE, PAGE_SIZE, nid, "page table",
                                                  goal=k.era.max_dma_address))

    def _populate_sequential(self, vstart: int, vend: int, nid: int) -> None:
        """The 2.6.x ``vmemmap_populate(start_page, size, node)`` (arch/x86/mm/init_64.c @ v2.6.26) over
        ``[vstart, vend)``, one page-table page at a time.

        The kernel walks the range a leaf at a time: ``vmemmap_pgd_populate`` and
        ``vmemmap_pud_populate`` (base pages: also ``vmemmap_pmd_populate``) allocate the missing tables,
        then, if the leaf entry is none, ``vmemmap_alloc_block(leaf, node)`` takes its block from bootmem
        (first fit at or above ``__pa(MAX_DMA_ADDRESS)``). Only the first leaf under a table page can
        find tables missing, so per table page the order is: its missing tables, then its new leaves'
        blocks as consecutive first fits (``memblock.alloc_seq``), installed by one ``tables.map`` per
        physically contiguous run. :meth:`_populate_per_leaf` is the literal loop; tests prove both
        build the same tables, reservations, leaf runs and boot log. The cost follows table pages and
        free ranges, not leaves.
        """
        k = self.k
        ls = self.leaf_size
        per_table = PMD_SIZE // PAGE_SIZE  # 512 entries in the table holding the leaves
        for a, b in self._missing_leaves(vstart, vend):
            while a < b:
                c = min(b, (a // per_table + 1) * per_table)  # up to the end of this leaf table
                self._alloc_tables(self._missing_tables(a * ls), nid)
                idx = a
                for p, n in k.memblock.alloc_seq(c - a, ls, nid, "vmemmap block", goal=k.era.max_dma_address):
                    k.tables.map(idx * ls, p, n * ls, ls, self.prot, nid)
                    self._record(idx * ls, (idx + n) * ls, p, nid)
                    idx += n
                k.table_queue.clear()
                a = c

    def _populate_per_leaf(self, vstart: int, vend: int, nid: int) -> None:
        """Reference for :meth:`_populate_sequential` (tests only): the 2.6.x loop literally, one leaf
        at a time -- missing tables, then ``vmemmap_alloc_block(leaf)``, then ``set_pmd``/``set_pte``."""
        k = self.k
        ls = self.leaf_size
        for a, b in self._missing_leaves(vstart, vend):
            for idx in range(a, b):
                self._alloc_tables(self._missing_tables(idx * ls), nid)
                p = k.memblock.alloc(ls, ls, nid, "vmemmap block", goal=k.era.max_dma_address)
                k.tables.map(idx * ls, p, ls, ls, self.prot, nid)
                k.table_queue.clear()
                self._record(idx * ls, idx * ls + ls, p, nid)

    def _populate_runs(self, nrs: list[int], sec_bytes: int, nid: int, buffer: SparseBuffer) -> None:
        """Populate runs of consecutive sections at once.

        The same result as the kernel's section-by-section ``vmemmap_populate`` with a node
        ``sparse_buffer``: the buffer hands out equal, aligned blocks in order, so a run of new leaves
        gets consecutive backing, installed by one ``map`` call per contiguous chunk.
        """
        ls = self.leaf_size
        arr = np.asarray(nrs, dtype=np.int64)
        brk = np.flatnonzero(np.diff(arr) != 1) + 1
        for a, b in zip(np.concatenate(([0], brk)), np.concatenate((brk, [len(arr)]))):
            v0 = self.base + int(arr[a]) * sec_bytes
            v1 = self.base + (int(arr[b - 1]) + 1) * sec_bytes
            lo, hi = v0 // ls, -(-v1 // ls)
            for ma, mb in self._mapped.missing(lo, hi):
                idx = ma
                for p, n in buffer.alloc_blocks(ls, mb - ma):
                    self._flush([idx * ls, p, n], nid)
                    idx += n
            self._mapped.add(lo, hi)

    def _flush(self, run: list[int], nid: int) -> None:
        if not run:
            return
        v, p, n = run
        ls = self.leaf_size
        self.k.tables.map(v, p, n * ls, ls, self.prot, nid)
        self._record(v, v + n * ls, p, nid)

    def _record(self, v: int, vend: int, p: int, nid: int) -> None:
        from vmemmap.kernel import VmemmapLeaf

        leaves = self.k.vmemmap_leaves
        if leaves and leaves[-1].vend == v and leaves[-1].pstart + (v - leaves[-1].vstart) == p \
                and leaves[-1].node == nid:
            leaves[-1].vend = vend
        else:
            leaves.append(VmemmapLeaf(v, vend, p, self.leaf_size, nid))

    def subsection_map_init(self, nrs: list[int], usage0: int, stride: int) -> None:
        """``subsection_map_init(pfn, nr_pages)`` over every memory range (mm/sparse.c @ 6.12)."""
        k = self.k
        era = self.era
        pps = era.pages_per_section
        sub = 1 << (era.subsection_shift - 12)
        index = {nr: i for i, nr in enumerate(nrs)}
        lo_nr, hi_nr = nrs[0], nrs[-1]
        maps: dict[int, int] = {}
        for s, e, _ in k.ram_pfn_ranges():
            first_nr, last_nr = s // pps, (e - 1) // pps
            if last_nr < lo_nr or first_nr > hi_nr:
                continue
            # only a range's first and last section can be partly covered; the rest are whole
            for nr in {first_nr, last_nr}:
                if nr not in index:
                    continue
                a = max(s, nr * pps) - nr * pps
                b = min(e, (nr + 1) * pps) - nr * pps
                first, last = a // sub, (b - 1) // sub
                maps[nr] = maps.get(nr, 0) | (((1 << (last - first + 1)) - 1) << first)
        full = (1 << (pps // sub)) - 1
        # whole-section maps as one fill over the usage array, partial ones stored one by one
        k.mem.fill(usage0, usage0 + stride * len(nrs), usage0, stride, {USAGE_SUBSECTION_MAP_OFFSET: full})
        for nr, m in maps.items():
            if m != full:
                k.mem.store(usage0 + index[nr] * stride + USAGE_SUBSECTION_MAP_OFFSET, m)

    # ------------------------------------------------------------------ kernel paths
    def _vmemmap(self) -> int:
        if self.constant:
            return self.base  # a compile-time constant: no memory reference (the seed's claim)
        return self.mem.load(self.k.sym("vmemmap_base"), 8, "vmemmap_base")

    def _pfn_to_page(self, pfn: int) -> int:
        return (self._vmemmap() + pfn * self.sp) & MASK64

    def _page_to_pfn(self, page: int) -> int:
        return ((page - self._vmemmap()) & MASK64) // self.sp

    def _pfn_section_valid(self, ms: int, pfn: int) -> bool:
        return self.sections.subsection_valid(ms, pfn)

    def _subsection_array(self, nrs: np.ndarray, pfns: np.ndarray) -> np.ndarray:
        out = np.zeros(len(nrs), dtype=bool)
        sub_shift = self.era.subsection_shift - 12
        pps = self.era.pages_per_section
        for nr in np.unique(nrs):
            sel = nrs == nr
            bm = self.sections.subsection_map(int(nr))
            idx = (pfns[sel] & np.uint64(pps - 1)) >> np.uint64(sub_shift)
            out[sel] = ((np.uint64(bm) >> idx) & np.uint64(1)) != 0
        return out

    def _base_value(self) -> np.uint64:
        return np.uint64(self.base if self.constant else self.mem.peek(self.k.sym("vmemmap_base"), 8))

    def pfn_to_page_array(self, pfns: np.ndarray) -> np.ndarray:
        return self._base_value() + np.asarray(pfns, dtype=np.uint64) * np.uint64(self.sp)

    def page_to_pfn_array(self, pages: np.ndarray) -> np.ndarray:
        return (np.asarray(pages, dtype=np.uint64) - self._base_value()) // np.uint64(self.sp)
