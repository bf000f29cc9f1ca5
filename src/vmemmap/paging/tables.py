"""x86-64 4- and 5-level page tables built in simulated physical memory.

Every table is a 4 KiB page of :class:`~vmemmap.physmem.PhysMem` holding 512 real x86-64 entries
(entry.py); walks read those entries the way the MMU does.  Index shifts (kernel-reference.md §6.2,
arch/x86/include/asm/pgtable_64_types.h):

* 4-level: pgd bits 39..47, pud 30..38, pmd 21..29, pte 12..20 (the p4d level is folded: a
  :class:`Walk` has steps pgd, pud, pmd, pte); canonical addresses sign-extend bit 47.
* 5-level (CR4.LA57): pgd bits 48..56, p4d 39..47, then as above; sign extension of bit 56.

Building mirrors arch/x86/mm/init_64.c (phys_p4d_init/phys_pud_init/phys_pmd_init/phys_pte_init
and vmemmap_populate_hugepages): missing intermediate tables are allocated through the caller's
``alloc_table(nid)`` (memblock / page allocator, node local) and linked with ``table_prot``
(default ``_KERNPG_TABLE``); leaves are written a whole run of a table at a time with numpy.

Policies (documented choices):

* ``map`` over an existing *larger leaf* splits it like the kernel (phys_pmd_init/phys_pud_init and
  split_large_page() in arch/x86/mm/pat/set_memory.c): a new lower table is filled with 512 entries
  of identical attributes (``protval_large_2_4k`` when the new level is pte) and the parent entry
  points to it; then the new leaves are written into it.
* ``map`` of a *larger leaf* over an existing lower table keeps the table (as phys_pmd_init() does
  for a present, non-large pmd) and maps the range with leaves of the lower level and the same
  attributes -- the mapping's translation is what was asked, only with smaller pages.
* ``map`` over an existing leaf of the same size overwrites it (identical entries: a no-op).
* ``unmap`` clears leaves, splitting a larger leaf that is only partly covered, and frees every
  table below the pgd that becomes empty (remove_pagetable()/free_pte_table()/free_pmd_table()/
  free_pud_table(); we also free emptied p4d tables, which the kernel keeps).  Freed tables are
  discarded from physical memory and their addresses returned for the caller's allocator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, PageFault
from ..physmem import PhysMem
from .entry import (
    _KERNPG_TABLE,
    _PAGE_GLOBAL,
    _PAGE_NX,
    _PAGE_PCD,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_PWT,
    _PAGE_RW,
    LEVEL_PAGE_SIZE,
    MASK64,
    PAGE_SIZE,
    PAGE_SIZE_LEVEL,
    PMD_PAGE_MASK,
    PTE_PFN_MASK,
    PUD_PAGE_MASK,
    entry_flags,
    protval_large_2_4k,
)

__all__ = ["WalkStep", "Walk", "Leaf", "Run", "PageTables", "format_prot_short"]

_U64 = np.uint64
_FRAME_MASK = {"pte": PTE_PFN_MASK, "pmd": PMD_PAGE_MASK, "pud": PUD_PAGE_MASK}


@dataclass(frozen=True)
class WalkStep:
    """One entry read by the MMU: ``entry`` at index ``index`` of the table at ``table_phys``."""

    level: str
    index: int
    entry: int
    table_phys: int
    entry_phys: int

    def to_dict(self) -> dict[str, object]:
        """``{level, index, entry}`` as in the ``translate --json`` contract (entry as hex)."""
        return {"level": self.level, "index": self.index, "entry": f"{self.entry:#018x}"}


@dataclass(frozen=True)
class Walk:
    """A page-table walk.  ``phys``/``page_size``/``leaf_level`` are None when it faulted; the
    faulting level is then the last step's."""

    vaddr: int
    steps: tuple[WalkStep, ...]
    phys: int | None
    page_size: int | None
    leaf_level: str | None

    @property
    def fault_level(self) -> str | None:
        return None if self.phys is not None else self.steps[-1].level

    @property
    def loads(self) -> int:
        """Memory references of the walk (one per level read)."""
        return len(self.steps)

    def to_list(self) -> list[dict[str, object]]:
        return [s.to_dict() for s in self.steps]


@dataclass(frozen=True)
class Leaf:
    """One leaf entry: maps ``[vaddr, vaddr + size)`` to ``phys``."""

    vaddr: int
    size: int
    level: str
    entry: int
    phys: int


def format_prot_short(flags: int, level: str) -> str:
    """The FLAGS column of the oracle's PTWALK ``MAP`` lines: ``RW``/``ro``, a PCD/PWT slot,
    ``PSE`` (pud/pmd leaves), ``GLB``, ``NX``/``x `` (e.g. ``'RW     PSE GLB NX'``)."""
    s = "RW " if flags & _PAGE_RW else "ro "
    s += "PCD " if flags & _PAGE_PCD else ("PWT " if flags & _PAGE_PWT else "    ")
    s += "PSE " if level != "pte" and flags & _PAGE_PSE else "    "
    s += "GLB " if flags & _PAGE_GLOBAL else "    "
    s += "NX" if flags & _PAGE_NX else "x "
    return s


@dataclass(frozen=True)
class Run:
    """Consecutive leaves of one level with the same flags and contiguous physical frames
    (the oracle's ``MAP va_start-va_end SIZE LEVEL -> pa start-end FLAGS``); end exclusive."""

    vaddr: int
    end: int
    level: str
    flags: int
    phys: int
    phys_end: int
    count: int

    @property
    def size(self) -> int:
        return self.end - self.vaddr

    @property
    def page_size(self) -> int:
        return LEVEL_PAGE_SIZE[self.level]

    @property
    def flag_names(self) -> list[str]:
        return entry_flags(self.flags, self.level)

    def map_line(self) -> str:
        """The capture's PTWALK line, e.g. ``MAP 0xffffea0000000000-0xffffea0002000000    32768K
        PMD -> pa 0x00007ba00000-0x00007da00000 RW     PSE GLB NX``."""
        return (f"MAP {self.vaddr:#018x}-{self.end & MASK64:#018x} {self.size >> 10:8d}K "
                f"{self.level.upper()} -> pa {self.phys:#014x}-{self.phys_end:#014x} "
                f"{format_prot_short(self.flags, self.level)}")


class PageTables:
    """A kernel page-table tree (``init_top_pgt``) in :class:`PhysMem`.

    ``alloc_table(nid)`` returns the physical address of a fresh 4 KiB page for a table; the pgd
    is allocated at construction with nid 0.  Tables are zeroed when linked.
    """

    def __init__(self, mem: PhysMem, levels: int, alloc_table: Callable[[int], int],
                 table_prot: int = _KERNPG_TABLE) -> None:
        if levels not in (4, 5):
            raise ValueError(f"levels must be 4 or 5, not {levels}")
        self.mem = mem
        self.levels = levels
        self.table_prot = table_prot
        self._alloc = alloc_table
        self.level_names: tuple[str, ...] = (
            ("pgd", "p4d", "pud", "pmd", "pte") if levels == 5 else ("pgd", "pud", "pmd", "pte"))
        self.shifts: tuple[int, ...] = (48, 39, 30, 21, 12) if levels == 5 else (39, 30, 21, 12)
        #: __VIRTUAL_MASK_SHIFT + 1: 48 or 57 significant virtual-address bits
        self.va_bits = 57 if levels == 5 else 48
        self._lin_mask = (1 << self.va_bits) - 1
        self._upper = MASK64 & ~self._lin_mask
        self.pgd_phys = self._new_table(0)

    # ---------------------------------------------------------------- addresses
    def is_canonical(self, vaddr: int) -> bool:
        """Bits 63..47 (or 63..56 with LA57) all equal (sign extension)."""
        if vaddr < 0 or vaddr > MASK64:
            return False
        top = vaddr >> (self.va_bits - 1)
        return top == 0 or top == (1 << (65 - self.va_bits)) - 1

    def check_canonical(self, vaddr: int) -> None:
        if not self.is_canonical(vaddr):
            raise InputError(f"{vaddr:#x} is not a canonical {self.va_bits}-bit virtual address")

    def canonical(self, lin: int) -> int:
        """Sign-extend a linear (``va_bits``-wide) address."""
        lin &= self._lin_mask
        return lin | self._upper if lin >> (self.va_bits - 1) else lin

    def _canon_np(self, lin: np.ndarray) -> np.ndarray:
        half = _U64(1 << (self.va_bits - 1))
        return np.where(lin >= half, lin | _U64(self._upper), lin)

    def linear_range(self, start: int, end: int) -> tuple[int, int]:
        """Canonical ``[start, end)`` (end may be 2**64) to a linear range; the non-canonical hole
        is skipped over (it holds no translations)."""
        half = 1 << (self.va_bits - 1)

        def lin(a: int, is_end: bool) -> int:
            if a <= half:
                return a
            if a >= self._upper:
                return a - self._upper
            return half      # inside the hole
        if start < 0 or end > 1 << 64 or start > end:
            raise InputError(f"bad range [{start:#x}, {end:#x})")
        return lin(start, False), lin(end, True)

    def index(self, vaddr: int, level: str) -> int:
        """Table index of ``vaddr`` at ``level`` (pgd_index(), pud_index(), ...)."""
        return (vaddr >> self.shifts[self.level_names.index(level)]) & 511

    # ---------------------------------------------------------------- tables
    def _new_table(self, nid: int) -> int:
        phys = self._alloc(nid)
        if phys & (PAGE_SIZE - 1) or phys < 0 or phys & ~PTE_PFN_MASK:
            raise ValueError(f"alloc_table returned {phys:#x}, not a page address below 2**52")
        self.mem.table(phys >> 12)[:] = 0
        return phys

    def _leaf_capable(self, depth: int) -> bool:
        return self.level_names[depth] in ("pud", "pmd")

    def _set(self, table_phys: int, i: int, value: int) -> None:
        self.mem.table(table_phys >> 12)[i] = value

    def _split(self, table_phys: int, depth: int, i: int, entry: int, nid: int) -> int:
        """Split the large leaf ``entry`` at ``table[i]`` into a table of the next level with
        identical attributes (split_large_page(); phys_pmd_init()'s "split the large page mapping
        but use the same existing protection bits", Intel TLB application note 317080)."""
        level = self.level_names[depth]
        child_level = self.level_names[depth + 1]
        base = entry & _FRAME_MASK[level]
        flags = entry & MASK64 & ~_FRAME_MASK[level]
        prot = protval_large_2_4k(flags) if child_level == "pte" else flags
        span = 1 << self.shifts[depth + 1]
        child = self._new_table(nid)
        self.mem.table(child >> 12)[:] = (
            _U64(base) + np.arange(512, dtype=_U64) * _U64(span)) | _U64(prot)
        self._set(table_phys, i, child | self.table_prot)
        return child

    # ---------------------------------------------------------------- map
    def map(self, vaddr: int, phys: int, size: int, page_size: int, prot: int, nid: int = 0) -> None:
        """Map ``[vaddr, vaddr+size)`` to ``[phys, phys+size)`` with ``page_size`` leaves
        (4 KiB ptes, 2 MiB pmds or 1 GiB puds) carrying ``prot``.  For 2 MiB / 1 GiB leaves
        ``_PAGE_PSE`` is added (prot_sethuge()).  Intermediate tables get ``table_prot``.
        Vectorised: each table's run of leaves is one numpy assignment."""
        if page_size not in PAGE_SIZE_LEVEL:
            raise ValueError(f"page size {page_size:#x} is not 4K, 2M or 1G")
        if size < 0 or vaddr % page_size or phys % page_size or size % page_size:
            raise ValueError(f"map({vaddr:#x}, {phys:#x}, {size:#x}): not {page_size:#x} aligned")
        if size == 0:
            return
        self.check_canonical(vaddr)
        self.check_canonical(vaddr + size - 1)
        if (vaddr >> 63) != ((vaddr + size - 1) >> 63):
            raise InputError(f"range at {vaddr:#x} of {size:#x} bytes crosses the canonical hole")
        if phys + size > 1 << 52 or phys < 0:
            raise ValueError(f"physical range {phys:#x}+{size:#x} is beyond 2**52")
        level = PAGE_SIZE_LEVEL[page_size]
        if level != "pte":
            prot |= _PAGE_PSE
        if prot < 0 or prot > MASK64 or prot & _FRAME_MASK[level]:
            raise ValueError(f"protection {prot:#x} overlaps the {level} frame field")
        leaf_depth = self.level_names.index(level)
        lin = vaddr & self._lin_mask
        self._map(self.pgd_phys, 0, lin, lin + size, phys, leaf_depth, prot, nid)

    def _map(self, table: int, depth: int, va: int, end: int, pa: int, leaf_depth: int,
             prot: int, nid: int) -> None:
        shift = self.shifts[depth]
        span = 1 << shift
        if depth == leaf_depth:
            i0 = (va >> shift) & 511
            n = (end - va) >> shift
            new = (_U64(pa) + np.arange(n, dtype=_U64) * _U64(span)) | _U64(prot)
            tbl = self.mem.table(table >> 12)
            old = tbl[i0:i0 + n]
            if not old.any():
                old[:] = new
                return
            if self.level_names[depth] == "pte":
                conflict = np.zeros(n, dtype=bool)
            else:   # present, non-leaf entries: keep the lower table (phys_pmd_init)
                conflict = ((old & _U64(_PAGE_PRESENT)) != 0) & ((old & _U64(_PAGE_PSE)) == 0)
            keep = ~conflict
            old[keep] = new[keep]
            if conflict.any():
                olds = old[conflict].copy()
                child_level = self.level_names[depth + 1]
                sub = protval_large_2_4k(prot) if child_level == "pte" else prot
                for k, e in zip(np.flatnonzero(conflict).tolist(), olds.tolist()):
                    a = va + k * span
                    self._map(int(e) & PTE_PFN_MASK, depth + 1, a, a + span, pa + k * span,
                              depth + 1, sub, nid)
            return
        a = va
        while a < end:
            i = (a >> shift) & 511
            nxt = min(((a >> shift) + 1) << shift, end)
            e = int(self.mem.table(table >> 12)[i])
            if not e & _PAGE_PRESENT:
                child = self._new_table(nid)
                self._set(table, i, child | self.table_prot)
            elif self._leaf_capable(depth) and e & _PAGE_PSE:
                child = self._split(table, depth, i, e, nid)
            else:
                child = e & PTE_PFN_MASK
            self._map(child, depth + 1, a, nxt, pa + (a - va), leaf_depth, prot, nid)
            a = nxt

    # ---------------------------------------------------------------- unmap
    def unmap(self, vaddr: int, size: int, nid: int = 0) -> list[int]:
        """Clear the translations of ``[vaddr, vaddr+size)`` (4 KiB granular); a partly covered
        large leaf is split first.  Tables below the pgd that become empty are freed
        (free_pte_table()/free_pmd_table()/free_pud_table() in arch/x86/mm/init_64.c), discarded
        from physical memory, and their addresses returned (bottom-up) for the caller's allocator."""
        if size < 0 or vaddr % PAGE_SIZE or size % PAGE_SIZE:
            raise ValueError(f"unmap({vaddr:#x}, {size:#x}): not 4 KiB aligned")
        if size == 0:
            return []
        self.check_canonical(vaddr)
        self.check_canonical(vaddr + size - 1)
        if (vaddr >> 63) != ((vaddr + size - 1) >> 63):
            raise InputError(f"range at {vaddr:#x} of {size:#x} bytes crosses the canonical hole")
        freed: list[int] = []
        lin = vaddr & self._lin_mask
        self._unmap(self.pgd_phys, 0, lin, lin + size, nid, freed)
        for t in freed:
            self.mem.discard(t, t + PAGE_SIZE)
        return freed

    def _free_subtree(self, table: int, depth: int, freed: list[int]) -> None:
        if depth + 1 < len(self.level_names):
            ents = self.mem.frame(table >> 12)
            pres = (ents & _U64(_PAGE_PRESENT)) != 0
            if self._leaf_capable(depth):
                pres &= (ents & _U64(_PAGE_PSE)) == 0
            for e in ents[pres].tolist():
                self._free_subtree(int(e) & PTE_PFN_MASK, depth + 1, freed)
        freed.append(table)

    def _unmap(self, table: int, depth: int, va: int, end: int, nid: int,
               freed: list[int]) -> bool:
        """Returns True if ``table`` is empty afterwards."""
        shift = self.shifts[depth]
        span = 1 << shift
        last = depth == len(self.level_names) - 1
        i0 = (va >> shift) & 511
        i1 = ((end - 1) >> shift & 511) + 1
        base = (va >> shift) << shift            # address of entry i0
        full_lo = i0 if va == base else i0 + 1
        full_hi = i1 if (end & (span - 1)) == 0 else i1 - 1
        if full_hi > full_lo:
            ents = self.mem.frame(table >> 12)[full_lo:full_hi]
            if not last:
                sub = (ents & _U64(_PAGE_PRESENT)) != 0
                if self._leaf_capable(depth):
                    sub &= (ents & _U64(_PAGE_PSE)) == 0
                for e in ents[sub].tolist():
                    self._free_subtree(int(e) & PTE_PFN_MASK, depth + 1, freed)
            self.mem.table(table >> 12)[full_lo:full_hi] = 0
        for i in sorted({i0, i1 - 1}):
            if full_lo <= i < full_hi:
                continue
            e = int(self.mem.frame(table >> 12)[i])
            if not e & _PAGE_PRESENT:
                continue
            a = base + (i - i0) * span
            lo, hi = max(va, a), min(end, a + span)
            if last:     # cannot be partial at pte level (4 KiB granular)
                self._set(table, i, 0)
                continue
            if self._leaf_capable(depth) and e & _PAGE_PSE:
                child = self._split(table, depth, i, e, nid)
            else:
                child = e & PTE_PFN_MASK
            if self._unmap(child, depth + 1, lo, hi, nid, freed):
                freed.append(child)
                self._set(table, i, 0)
        return not self.mem.frame(table >> 12).any()

    # ---------------------------------------------------------------- walk / translate
    def walk(self, vaddr: int) -> Walk:
        """The MMU's walk of ``vaddr``: every entry it reads, top level first (4-level: pgd, pud,
        pmd, pte; 5-level adds p4d).  Stops at a leaf or at a non-present entry."""
        self.check_canonical(vaddr)
        steps: list[WalkStep] = []
        table = self.pgd_phys
        for name, shift in zip(self.level_names, self.shifts):
            idx = (vaddr >> shift) & 511
            ea = table + idx * 8
            e = self.mem.read_u64(ea)
            steps.append(WalkStep(name, idx, e, table, ea))
            if not e & _PAGE_PRESENT:
                return Walk(vaddr, tuple(steps), None, None, None)
            if name == "pte" or (name in ("pud", "pmd") and e & _PAGE_PSE):
                size = 1 << shift
                phys = (e & _FRAME_MASK[name]) | (vaddr & (size - 1))
                return Walk(vaddr, tuple(steps), phys, size, name)
            table = e & PTE_PFN_MASK
        raise AssertionError("unreachable")

    def translate(self, vaddr: int) -> int:
        """Physical address of ``vaddr``; raises :class:`PageFault` if not mapped."""
        w = self.walk(vaddr)
        if w.phys is None:
            raise PageFault(vaddr, w.steps[-1].level)
        return w.phys

    def translate_array(self, vaddrs: np.ndarray, fault: int | None = None) -> np.ndarray:
        """Vectorised :meth:`translate` (uint64 in, uint64 out, same shape).  A non-present
        translation raises :class:`PageFault` for the first such address, or yields ``fault``
        when given.  Non-canonical addresses raise :class:`InputError`."""
        arr = np.asarray(vaddrs, dtype=_U64)
        va = arr.ravel()
        n = va.size
        out = np.zeros(n, dtype=_U64)
        if n == 0:
            return out.reshape(arr.shape)
        top = va >> _U64(self.va_bits - 1)
        ok = (top == 0) | (top == _U64((1 << (65 - self.va_bits)) - 1))
        if not ok.all():
            self.check_canonical(int(va[np.flatnonzero(~ok)[0]]))
        pending = np.arange(n)
        tables = np.full(n, self.pgd_phys, dtype=_U64)
        fault_idx: list[tuple[int, str]] = []
        for name, shift in zip(self.level_names, self.shifts):
            v = va[pending]
            e = self.mem.read_u64_array(tables + ((v >> _U64(shift)) & _U64(511)) * _U64(8))
            present = (e & _U64(_PAGE_PRESENT)) != 0
            if not present.all():
                bad = pending[~present]
                fault_idx.append((int(bad[0]), name))
                if fault is not None:
                    out[bad] = _U64(fault)
            if name == "pte":
                leaf = present
            elif name in ("pud", "pmd"):
                leaf = present & ((e & _U64(_PAGE_PSE)) != 0)
            else:
                leaf = np.zeros_like(present)
            if leaf.any():
                m = _U64(_FRAME_MASK.get(name, PTE_PFN_MASK))
                out[pending[leaf]] = (e[leaf] & m) | (v[leaf] & _U64((1 << shift) - 1))
            nxt = present & ~leaf
            pending = pending[nxt]
            tables = e[nxt] & _U64(PTE_PFN_MASK)
            if pending.size == 0:
                break
        if fault_idx and fault is None:
            i, level = min(fault_idx)
            raise PageFault(int(va[i]), level)
        return out.reshape(arr.shape)

    # ---------------------------------------------------------------- scanning
    def _scan(self, lo: int, hi: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Leaf batches in address order over the linear range ``[lo, hi)``: (depth, linear
        vaddrs, entries).  Iterates over present tables, never over virtual pages."""
        if lo < hi:
            yield from self._scan_table(self.pgd_phys, 0, 0, lo, hi)

    def _scan_table(self, table: int, depth: int, tbase: int, lo: int,
                    hi: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        shift = self.shifts[depth]
        span = 1 << shift
        i0 = max(0, (lo - tbase) >> shift)
        i1 = min(512, (hi - tbase + span - 1) >> shift)
        if i0 >= i1:
            return
        ents = self.mem.frame(table >> 12)[i0:i1]
        nz = np.flatnonzero(ents & _U64(_PAGE_PRESENT))
        if nz.size == 0:
            return
        name = self.level_names[depth]
        if name == "pte":
            kinds = np.ones(nz.size, dtype=bool)
        elif name in ("pud", "pmd"):
            kinds = (ents[nz] & _U64(_PAGE_PSE)) != 0
        else:
            kinds = np.zeros(nz.size, dtype=bool)
        cuts = np.flatnonzero(kinds[1:] != kinds[:-1]) + 1
        for seg in np.split(np.arange(nz.size), cuts):
            idx = nz[seg]
            if kinds[seg[0]]:
                vas = _U64(tbase) + (idx + i0).astype(_U64) * _U64(span)
                yield depth, vas, ents[idx].copy()
            else:
                for k, e in zip(idx.tolist(), ents[idx].tolist()):
                    cb = tbase + (k + i0) * span
                    yield from self._scan_table(int(e) & PTE_PFN_MASK, depth + 1, cb, lo, hi)

    def leaves(self, start: int, end: int) -> Iterator[Leaf]:
        """Every leaf overlapping canonical ``[start, end)`` (end may be 2**64), in address order,
        unclipped.  Generated from numpy scans of the present tables."""
        lo, hi = self.linear_range(start, end)
        for depth, vas, ents in self._scan(lo, hi):
            name = self.level_names[depth]
            size = 1 << self.shifts[depth]
            m = _FRAME_MASK[name]
            for v, e in zip(vas.tolist(), ents.tolist()):
                yield Leaf(self.canonical(v), size, name, e, e & m)

    def leaf_counts(self, start: int, end: int) -> dict[str, int]:
        """Number of leaves per level ('pud', 'pmd', 'pte') overlapping ``[start, end)``."""
        lo, hi = self.linear_range(start, end)
        counts = {"pud": 0, "pmd": 0, "pte": 0}
        for depth, vas, _ in self._scan(lo, hi):
            counts[self.level_names[depth]] += int(vas.size)
        return counts

    def runs(self, start: int, end: int) -> list[Run]:
        """Leaves over canonical ``[start, end)`` merged into runs of the same level and flags with
        contiguous virtual and physical addresses; the first and last run are clipped to the range.
        Cost grows with tables present and runs, not with the size of the range."""
        lo, hi = self.linear_range(start, end)
        out: list[list[int]] = []         # [lin_va, lin_end, depth, flags, pa, pa_end, count]
        for depth, vas, ents in self._scan(lo, hi):
            name = self.level_names[depth]
            size = _U64(1 << self.shifts[depth])
            m = _U64(_FRAME_MASK[name])
            pa = ents & m
            fl = ents & ~m
            brk = np.flatnonzero((vas[1:] != vas[:-1] + size) | (pa[1:] != pa[:-1] + size)
                                 | (fl[1:] != fl[:-1])) + 1
            starts = np.concatenate(([0], brk))
            ends = np.concatenate((brk, [vas.size]))
            for s, e in zip(starts.tolist(), ends.tolist()):
                v0, p0, f0 = int(vas[s]), int(pa[s]), int(fl[s])
                cnt = e - s
                ln = cnt * int(size)
                if out and out[-1][2] == depth and out[-1][1] == v0 and out[-1][5] == p0 \
                        and out[-1][3] == f0:
                    out[-1][1] += ln
                    out[-1][5] += ln
                    out[-1][6] += cnt
                else:
                    out.append([v0, v0 + ln, depth, f0, p0, p0 + ln, cnt])
        runs: list[Run] = []
        for v0, v1, depth, f0, p0, p1, cnt in out:
            if v0 < lo:
                p0 += lo - v0
                v0 = lo
            if v1 > hi:
                p1 -= v1 - hi
                v1 = hi
            cv0 = self.canonical(v0)
            runs.append(Run(cv0, cv0 + (v1 - v0), self.level_names[depth], f0, p0, p1, cnt))
        return runs

    def iter_tables(self) -> Iterator[tuple[str, int]]:
        """Every table page reachable from the pgd: (level, phys), depth first."""
        def rec(table: int, depth: int) -> Iterator[tuple[str, int]]:
            yield self.level_names[depth], table
            if depth + 1 >= len(self.level_names):
                return
            ents = self.mem.frame(table >> 12)
            sub = (ents & _U64(_PAGE_PRESENT)) != 0
            if self._leaf_capable(depth):
                sub &= (ents & _U64(_PAGE_PSE)) == 0
            children = (ents[sub] & _U64(PTE_PFN_MASK)).tolist()
            if depth + 2 == len(self.level_names):      # children are pte tables: don't read them
                for c in children:
                    yield self.level_names[depth + 1], int(c)
            else:
                for c in children:
                    yield from rec(int(c), depth + 1)
        yield from rec(self.pgd_phys, 0)

    def table_pages(self) -> dict[str, int]:
        """Number of table pages per level (pgd included), counted from memory."""
        counts = {name: 0 for name in self.level_names}
        for name, _ in self.iter_tables():
            counts[name] += 1
        return counts

    def table_bytes(self) -> int:
        """Bytes of page-table pages (4 KiB each)."""
        return sum(self.table_pages().values()) * PAGE_SIZE
