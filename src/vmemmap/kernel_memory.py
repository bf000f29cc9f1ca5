"""Kernel virtual memory: reads and writes through the simulated page tables, with every load recorded.

This is the only way a memory model reaches kernel data (DESIGN.md "Rules that keep it honest"). A
read of kernel virtual address ``v`` walks the page tables in :class:`~vmemmap.physmem.PhysMem`
exactly as the MMU would (the walk is the hardware's and is not a kernel load), then reads the bytes
from physical memory; :meth:`KernelMemory.load` also appends ``Load(what, vaddr, size)`` to the active
recorder. The same model code can therefore run over a real kernel's memory (a dump) once a
``PhysMem`` is backed by it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from vmemmap.paging.tables import PageTables
from vmemmap.physmem import PhysMem


@dataclass(frozen=True)
class Load:
    """One kernel load: what the C code reads (``mem_map``, ``ms->section_mem_map``...), where, how wide."""

    what: str
    vaddr: int
    size: int

    def to_json(self) -> dict[str, object]:
        return {"what": self.what, "vaddr": f"{self.vaddr:#x}", "size": self.size}


class KernelMemory:
    """Kernel virtual address space over physical memory and page tables."""

    def __init__(self, phys: PhysMem, tables: PageTables) -> None:
        self.phys = phys
        self.tables = tables
        self._recorders: list[list[Load]] = []
        self._journals: list[tuple[list[tuple[int, bytes]], set[int]]] = []

    # ------------------------------------------------------------------ recording
    @contextmanager
    def record(self) -> Iterator[list[Load]]:
        """Collect the loads made inside the ``with`` block (nested recorders all see them)."""
        rec: list[Load] = []
        self._recorders.append(rec)
        try:
            yield rec
        finally:
            self._recorders.pop()

    @contextmanager
    def journal(self) -> Iterator[None]:
        """Undo every store made inside the ``with`` block when it ends.

        Each store first saves the bytes it overwrites; frames a store materialised are dropped again
        (they read from their fill pattern as before), so memory never grows across journaled work.
        Used by the cost workloads that run kernel code with side effects (the buddy allocator) on
        the same booted state op after op.
        """
        entry: tuple[list[tuple[int, bytes]], set[int]] = ([], set())
        self._journals.append(entry)
        try:
            yield
        finally:
            self._journals.pop()
            saved, fresh = entry
            for pa, old in reversed(saved):
                if (pa >> 12) not in fresh:
                    self.phys.write(pa, old)
            for pfn in fresh:
                self.phys._drop(pfn)  # a frame this journal materialised: back to its fill pattern

    # ------------------------------------------------------------------ access
    def _read(self, vaddr: int, size: int) -> int:
        out = 0
        done = 0
        while done < size:
            pa = self.tables.translate(vaddr + done)
            chunk = min(size - done, 4096 - ((vaddr + done) & 0xFFF))
            out |= int.from_bytes(self.phys.read(pa, chunk), "little") << (8 * done)
            done += chunk
        return out

    def load(self, vaddr: int, size: int, what: str) -> int:
        """A kernel load of ``size`` bytes (little endian), recorded."""
        v = self._read(vaddr, size)
        ld = Load(what, vaddr, size)
        for r in self._recorders:
            r.append(ld)
        return v

    def peek(self, vaddr: int, size: int) -> int:
        """Read without recording (tools, reports, tests)."""
        return self._read(vaddr, size)

    def store(self, vaddr: int, value: int, size: int = 8) -> None:
        """A kernel store (boot-time initialisation): not recorded."""
        data = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        done = 0
        while done < size:
            pa = self.tables.translate(vaddr + done)
            chunk = min(size - done, 4096 - ((vaddr + done) & 0xFFF))
            if self._journals:
                saved, fresh = self._journals[-1]
                if not self.phys.is_materialised(pa >> 12):
                    fresh.add(pa >> 12)
                elif (pa >> 12) not in fresh:
                    saved.append((pa, self.phys.read(pa, chunk)))
            self.phys.write(pa, data[done : done + chunk])
            done += chunk

    def peek_u64_array(self, vaddrs: np.ndarray) -> np.ndarray:
        """Bulk 8-byte reads (aligned) through the page tables, not recorded (bulk paths)."""
        pas = self.tables.translate_array(np.asarray(vaddrs, dtype=np.uint64))
        return self.phys.read_u64_array(pas)

    def fill(self, vstart: int, vend: int, origin: int, stride: int, words: dict[int, int],
             step: tuple[int, dict[int, int]] | None = None) -> None:
        """Initialise ``[vstart, vend)`` with a repeating ``stride``-byte record starting at ``origin``.

        Models the kernel's loops that initialise every ``struct page`` (``memmap_init_zone`` /
        ``__init_single_page`` → ``set_page_links``) without one Python step per page: the virtual
        range is split at the physical runs of the page tables and each run becomes a fill region.
        """
        for run in self.tables.runs(vstart, vend):
            s = max(run.vaddr, vstart)
            e = min(run.end, vend)
            if s >= e:
                continue
            pa = run.phys + (s - run.vaddr)
            self.phys.fill(pa, pa + (e - s), pa - (s - origin), stride, words, step)
