"""The kernel's ``/sys/kernel/debug/page_tables/kernel`` text, reproduced from our page tables.

This is a faithful re-implementation of the 5.8+ / 6.x x86 dumper: arch/x86/mm/dump_pagetables.c
(``note_page()``, ``printk_prot()``, ``effective_prot()``, ``ptdump_walk_pgd_level_core()``) driven
by the generic walker in mm/ptdump.c + mm/pagewalk.c (``walk_page_range_novma()``):

* the walk covers ``{0, PTRS_PER_PGD * PGD_LEVEL_MULT / 2}`` and ``{GUARD_HOLE_END_ADDR, ~0UL}``
  (the hypervisor guard hole, pgd slots 256..271, is never visited);
* an empty entry is reported through ``pte_hole(addr, next, depth)`` at its own level, so a
  non-present pgd/p4d/pud/pmd range costs one call, not 512**k.  ``real_depth()`` folds the p4d
  level on 4-level paging: there an empty top-level entry is reported as ``pgd``; levels are
  0 pgd, 1 p4d, 2 pud, 3 pmd, 4 pte;
* pud/pmd leaves and every pte entry (present or not) go through ``note_page(addr, level, val)``;
* ``note_page`` merges consecutive calls with equal ``val & PTE_FLAGS_MASK``, equal effective
  protection and equal level, and flushes a line on a change or when ``addr`` reaches the next
  marker.  Note that PTE_FLAGS_MASK clears bits 12..51, so ``_PAGE_PAT_LARGE`` (bit 12) never
  shows as ``PAT`` on 2M/1G leaves in 5.8+ kernels -- reproduced as is;
* the last range is flushed by ``note_page(st, 0, -1, 0)``, so the final line ends at
  ``0x0000000000000000`` (the size wraps modulo 2**64 as in C).

Our emulation calls ``note_page`` only where the kernel's call could change the state (a different
protection/level, or an address at/after the next marker); the skipped calls are no-ops in the
kernel, so the text is identical while the cost grows with tables present and lines printed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .entry import (
    _KERNPG_TABLE,
    _PAGE_GLOBAL,
    _PAGE_KNL_ERRATUM_MASK,
    _PAGE_NX,
    _PAGE_PAT,
    _PAGE_PAT_LARGE,
    _PAGE_PCD,
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_PSE,
    _PAGE_PWT,
    _PAGE_RW,
    _PAGE_USER,
    MASK64,
    PTE_FLAGS_MASK,
    PTE_PFN_MASK,
)
from .tables import PageTables

__all__ = ["ptdump", "printk_prot", "x86_64_markers", "kernel_walk_ranges"]

_U64 = np.uint64
_LEVEL_NAME = ("pgd", "p4d", "pud", "pmd", "pte")
_UNITS = "BKMGTPE"
Marker = tuple[int, str] | tuple[int, str, int]


def printk_prot(pr: int, level: int) -> str:
    """printk_prot() of arch/x86/mm/dump_pagetables.c (5.8+): the attribute columns and the level
    name, including the trailing newline."""
    if not pr & _PAGE_PRESENT:
        s = " " * 30
    else:
        s = "USR " if pr & _PAGE_USER else "    "
        s += "RW " if pr & _PAGE_RW else "ro "
        s += "PWT " if pr & _PAGE_PWT else "    "
        s += "PCD " if pr & _PAGE_PCD else "    "
        # Bit 7 has a different meaning on level 3 vs 4
        s += "PSE " if level <= 3 and pr & _PAGE_PSE else "    "
        pat = (level == 4 and pr & _PAGE_PAT) or (level in (3, 2) and pr & _PAGE_PAT_LARGE)
        s += "PAT " if pat else "    "
        s += "GLB " if pr & _PAGE_GLOBAL else "    "
        s += "NX " if pr & _PAGE_NX else "x  "
    return f"{s}{_LEVEL_NAME[level]}\n"


class _PgState:
    """struct pg_state + note_page() (x86, 5.8+)."""

    def __init__(self, markers: Sequence[Marker]) -> None:
        ms: list[tuple[int, str | None, int]] = []
        for m in markers:
            ms.append((m[0] & MASK64, m[1], m[2] if len(m) > 2 else 0))   # type: ignore[misc]
        ms.append((MASK64, None, 0))           # [END_OF_SPACE_NR] = { -1, NULL }
        self.markers = ms
        self.marker = 0
        self.level = -1
        self.current_prot = 0
        self.effective_prot = 0
        self.start_address = 0
        self.lines = 0
        self.out: list[str] = []

    def next_marker_start(self) -> int:
        return self.markers[self.marker + 1][0]

    def note_page(self, addr: int, level: int, val: int, eff: int) -> None:
        new_prot = val & PTE_FLAGS_MASK
        new_eff = 0 if not val else eff
        if self.level == -1:
            # First entry
            self.current_prot = new_prot
            self.effective_prot = new_eff
            self.level = level
            self.marker = 0
            self.lines = 0
            self.out.append(f"---[ {self.markers[0][1]} ]---\n")
        elif (new_prot != self.current_prot or new_eff != self.effective_prot
              or level != self.level or addr >= self.next_marker_start()):
            _, _, max_lines = self.markers[self.marker]
            if not max_lines or self.lines < max_lines:
                delta = (addr - self.start_address) & MASK64
                u = 0
                while not delta & 1023 and u + 1 < len(_UNITS):
                    delta >>= 10
                    u += 1
                self.out.append(f"0x{self.start_address:016x}-0x{addr:016x}   "
                                f"{delta:9d}{_UNITS[u]} "
                                + printk_prot(self.current_prot, self.level))
            self.lines += 1
            if addr >= self.next_marker_start():
                if max_lines and self.lines > max_lines:
                    nskip = self.lines - max_lines
                    self.out.append(f"... {nskip} entr{'y' if nskip == 1 else 'ies'} skipped ... \n")
                self.marker += 1
                self.lines = 0
                self.out.append(f"---[ {self.markers[self.marker][1]} ]---\n")
            self.start_address = addr
            self.current_prot = new_prot
            self.effective_prot = new_eff
            self.level = level

    def note_batch(self, addrs: np.ndarray, level: int, vals: np.ndarray, effs: np.ndarray) -> None:
        """note_page() for each element, skipping calls that cannot change anything: only the
        first call, protection changes, and the first address at/after the next marker matter."""
        n = addrs.size
        if n == 0:
            return
        prots = vals & _U64(PTE_FLAGS_MASK)
        effs = np.where(vals == 0, _U64(0), effs)
        chg = (np.flatnonzero((prots[1:] != prots[:-1]) | (effs[1:] != effs[:-1])) + 1).tolist()
        chg.append(n)
        c = 0
        i = 0
        while True:
            self.note_page(int(addrs[i]), level, int(vals[i]), int(effs[i]))
            while chg[c] <= i:
                c += 1
            nxt = chg[c]
            j = int(np.searchsorted(addrs, _U64(self.next_marker_start()), side="left"))
            if j <= i:
                j = i + 1
            nxt = min(nxt, j)
            if nxt >= n:
                return
            i = nxt


def kernel_walk_ranges(levels: int) -> list[tuple[int, int]]:
    """``ptdump_ranges[]`` of ptdump_walk_pgd_level_core(): the lower half and everything from
    GUARD_HOLE_END_ADDR (pgd slot -256 + 16) to ~0UL."""
    shift = 48 if levels == 5 else 39
    base = (-256 << shift) & MASK64
    return [(0, 1 << (shift + 8)), (base + (16 << shift), MASK64)]


def _combine(higher: np.ndarray | int, prot: np.ndarray) -> np.ndarray:
    """effective_prot() for level > 0."""
    h = _U64(higher) if isinstance(higher, int) else higher
    return (h & prot & _U64(_PAGE_USER | _PAGE_RW)) | ((h | prot) & _U64(_PAGE_NX))


class _Walker:
    def __init__(self, pt: PageTables, st: _PgState) -> None:
        self.pt = pt
        self.st = st
        self.names = pt.level_names
        self.shifts = pt.shifts
        self.half = _U64(1 << (pt.va_bits - 1))
        self.upper = _U64(MASK64 & ~((1 << pt.va_bits) - 1))

    def canon(self, lin: np.ndarray) -> np.ndarray:
        return np.where(lin >= self.half, lin | self.upper, lin)

    def walk(self, table: int, depth: int, tbase: int, lo: int, hi: int, parent_eff: int) -> None:
        pt, st = self.pt, self.st
        name = self.names[depth]
        shift = self.shifts[depth]
        span = 1 << shift
        i0 = max(0, (lo - tbase) >> shift)
        i1 = min(512, (hi - tbase + span - 1) >> shift)
        if i0 >= i1:
            return
        vals = np.array(pt.mem.frame(table >> 12)[i0:i1], dtype=_U64)
        n = vals.size
        lin = _U64(tbase) + np.arange(i0, i1, dtype=_U64) * _U64(span)
        lin[0] = max(int(lin[0]), lo)          # the walk passes the range start as addr
        flags = vals & _U64(PTE_FLAGS_MASK)
        none_mask = (vals & _U64(MASK64 & ~_PAGE_KNL_ERRATUM_MASK)) == 0
        descend = np.zeros(n, dtype=bool)
        note = np.zeros(n, dtype=bool)
        note_eff = np.zeros(n, dtype=_U64)
        child_eff = np.zeros(n, dtype=_U64)
        level = {"pgd": 0, "p4d": 1, "pud": 2, "pmd": 3, "pte": 4}[name]
        if name in ("pgd", "p4d"):
            bad = (flags & _U64(MASK64 & ~(_KERNPG_TABLE | _PAGE_USER | _PAGE_NX))) != 0
            if name == "pgd" and pt.levels == 5:
                none_mask = (vals == 0) | bad                    # pgd_none_or_clear_bad
                child_eff = flags                                # effective_prot(st, 0, val)
            elif name == "pgd":
                # 4-level: pgd_none() is 0; p4d_none_or_clear_bad() on the same value reports the
                # hole at real_depth(1) == 0 ("pgd"); effective_prot() runs for level 0 then 1.
                none_mask = none_mask | bad
                child_eff = _combine(flags, flags)
            else:
                none_mask = none_mask | bad
                child_eff = _combine(parent_eff, flags)
            descend = ~none_mask
            note = none_mask
        elif name == "pte":
            note[:] = True
            note_eff = _combine(parent_eff, flags)
        else:
            eff = _combine(parent_eff, flags)
            if name == "pud":
                leaf = (vals & _U64(_PAGE_PSE | _PAGE_PRESENT)) == _U64(_PAGE_PSE | _PAGE_PRESENT)
                present = (vals & _U64(_PAGE_PRESENT)) != 0
            else:
                leaf = (vals & _U64(_PAGE_PSE)) != 0
                present = (vals & _U64(_PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_PSE)) != 0
            leaf &= ~none_mask
            note = none_mask | leaf
            descend = ~none_mask & ~leaf & present
            note_eff = eff
            child_eff = eff
        note_vals = np.where(none_mask, _U64(0), vals)
        addrs = self.canon(lin)
        # segments: runs of noted entries between descents (skipped entries drop out)
        dpos = np.flatnonzero(descend).tolist()
        prev = 0
        for d in dpos + [n]:
            if d > prev:
                sel = np.flatnonzero(note[prev:d]) + prev
                if sel.size:
                    st.note_batch(addrs[sel], level, note_vals[sel], note_eff[sel])
            if d < n:
                child = int(vals[d]) & PTE_PFN_MASK
                self.walk(child, depth + 1, tbase + (i0 + d) * span, lo, hi, int(child_eff[d]))
            prev = d + 1


def ptdump(tables: PageTables, markers: Sequence[Marker],
           ranges: Sequence[tuple[int, int]] | None = None) -> str:
    """``/sys/kernel/debug/page_tables/kernel`` for ``tables`` (6.x format).

    ``markers`` is the era's ``address_markers[]`` in the kernel's order: ``(start, name)`` or
    ``(start, name, max_lines)`` (ESPfix uses 16); the ``{-1, NULL}`` terminator is added here.
    ``ranges`` defaults to the kernel's walk ranges (:func:`kernel_walk_ranges`); ``end`` may be
    ``~0UL`` (0xffffffffffffffff, inclusive of the last page) as in the kernel.
    """
    st = _PgState(markers)
    w = _Walker(tables, st)
    for start, end in (ranges if ranges is not None else kernel_walk_ranges(tables.levels)):
        if start >= end:
            continue
        lo, hi = tables.linear_range(start, end)
        w.walk(tables.pgd_phys, 0, 0, lo, hi, 0)
    # Flush out the last page
    st.note_page(0, -1, 0, 0)
    return "".join(st.out)


def x86_64_markers(*, levels: int, page_offset: int, vmalloc_start: int, vmemmap_start: int,
                   fixaddr_start: int, kasan: tuple[int, int] | None = None, ldt: bool = True,
                   espfix: bool = True, efi: bool = True,
                   modules_vaddr: int = 0xFFFFFFFFC0000000) -> list[Marker]:
    """``address_markers[]`` of arch/x86/mm/dump_pagetables.c (5.x/6.x order) filled in as
    pt_dump_init() does.  LDT_BASE_ADDR = -240 << PGDIR_SHIFT, CPU_ENTRY_AREA_BASE = -4 << P4D_SHIFT,
    ESPFIX_BASE_ADDR = -2 << P4D_SHIFT, EFI_VA_END = -68 GiB, __START_KERNEL_map, MODULES_VADDR
    (= __START_KERNEL_map + KERNEL_IMAGE_SIZE, 1 GiB with KASLR), MODULES_END = 0xffffffffff000000."""
    shift = 48 if levels == 5 else 39
    m: list[Marker] = [(0, "User Space"), (1 << 63, "Kernel Space")]
    if ldt:
        m.append(((-240 << shift) & MASK64, "LDT remap"))
    m += [(page_offset, "Low Kernel Mapping"), (vmalloc_start, "vmalloc() Area"),
          (vmemmap_start, "Vmemmap")]
    if kasan is not None:
        m += [(kasan[0], "KASAN shadow"), (kasan[1], "KASAN shadow end")]
    m.append(((-4 << 39) & MASK64, "CPU entry Area"))
    if espfix:
        m.append(((-2 << 39) & MASK64, "ESPfix Area", 16))
    if efi:
        m.append(((-68 << 30) & MASK64, "EFI Runtime Services"))
    m += [(0xFFFFFFFF80000000, "High Kernel Mapping"), (modules_vaddr, "Modules"),
          (0xFFFFFFFFFF000000, "End Modules"), (fixaddr_start, "Fixmap Area")]
    return m
