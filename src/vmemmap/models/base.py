"""The one interface all memory models share (include/asm-generic/memory_model.h).

A memory model never computes a cost: every operation reads kernel data (``mem_map``,
``mem_section``, ``vmemmap_base``, ``page->flags``...) through :class:`vmemmap.kernel.KernelMemory`,
which records each load. An operation returns a :class:`Result`: its value and the loads it made.

Operations shared by all models are written once here in terms of the model's primitives, as in the
kernel: ``virt_to_page(k) = pfn_to_page(__pa(k) >> PAGE_SHIFT)`` and ``page_address(p) =
__va(page_to_pfn(p) << PAGE_SHIFT)`` (include/linux/mm.h, arch/x86/include/asm/page.h;
kernel-reference.md §2.6).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vmemmap.kernel_memory import Load

if TYPE_CHECKING:
    from vmemmap.kernel import Kernel

PAGE_SHIFT = 12


@dataclass(frozen=True)
class Result:
    """The value an operation returns and the kernel loads it executed, in program order."""

    value: int
    loads: tuple[Load, ...]


@dataclass(frozen=True)
class MemmapPiece:
    """A run of ``struct page`` array: pfns ``[start_pfn, end_pfn)`` at kernel virtual ``vaddr``."""

    start_pfn: int
    end_pfn: int
    vaddr: int
    nid: int


class MemoryModel(ABC):
    """FLATMEM, DISCONTIGMEM, SPARSEMEM (static/EXTREME) or SPARSEMEM_VMEMMAP."""

    #: DESIGN.md contract 6 name
    name: str = ""
    #: the kernel's CONFIG_ symbol(s)
    config: str = ""
    #: whether memory hotplug can work with this model in its era
    supports_hotplug: bool = False
    hotplug_note: str = ""

    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.era = kernel.era
        self.mem = kernel.mem
        self.sp = kernel.era.struct_page_size

    # ------------------------------------------------------------------ boot
    @abstractmethod
    def init(self) -> None:
        """Build the model's data at boot (``sparse_init``, ``alloc_node_mem_map`` ...)."""

    @abstractmethod
    def memmap_pieces(self) -> list[MemmapPiece]:
        """Where the struct pages live: virtually contiguous runs, in pfn order."""

    # ------------------------------------------------------------------ primitives
    @abstractmethod
    def _pfn_to_page(self, pfn: int) -> int:
        """``__pfn_to_page``: loads go to the active recorder."""

    @abstractmethod
    def _page_to_pfn(self, page: int) -> int:
        """``__page_to_pfn``."""

    @abstractmethod
    def _pfn_valid(self, pfn: int) -> bool:
        """``pfn_valid``."""

    @abstractmethod
    def pfn_to_page_array(self, pfns: np.ndarray) -> np.ndarray:
        """Bulk ``pfn_to_page`` over valid pfns (reads the same kernel data, vectorised)."""

    @abstractmethod
    def page_to_pfn_array(self, pages: np.ndarray) -> np.ndarray:
        """Bulk ``page_to_pfn``."""

    @abstractmethod
    def pfn_valid_array(self, pfns: np.ndarray) -> np.ndarray:
        """Bulk ``pfn_valid`` (bool array)."""

    # ------------------------------------------------------------------ operations (Result)
    def pfn_to_page(self, pfn: int) -> Result:
        with self.mem.record() as rec:
            v = self._pfn_to_page(pfn)
        return Result(v, tuple(rec))

    def page_to_pfn(self, page: int) -> Result:
        with self.mem.record() as rec:
            v = self._page_to_pfn(page)
        return Result(v, tuple(rec))

    def pfn_valid(self, pfn: int) -> Result:
        with self.mem.record() as rec:
            v = self._pfn_valid(pfn)
        return Result(int(v), tuple(rec))

    def virt_to_page(self, vaddr: int) -> Result:
        """``virt_to_page(k)``: ``pfn_to_page(__pa(k) >> PAGE_SHIFT)``."""
        with self.mem.record() as rec:
            v = self._pfn_to_page(self.k.pa(vaddr) >> PAGE_SHIFT)
        return Result(v, tuple(rec))

    def phys_to_page(self, phys: int) -> Result:
        """``phys_to_page(p)`` = ``pfn_to_page(p >> PAGE_SHIFT)``."""
        with self.mem.record() as rec:
            v = self._pfn_to_page(phys >> PAGE_SHIFT)
        return Result(v, tuple(rec))

    def page_address(self, page: int) -> Result:
        """``lowmem_page_address``: ``__va(page_to_pfn(page) << PAGE_SHIFT)``."""
        with self.mem.record() as rec:
            v = self.k.va(self._page_to_pfn(page) << PAGE_SHIFT)
        return Result(v, tuple(rec))

    def page_to_nid(self, page: int) -> Result:
        """``page_to_nid``: the node field of ``page->flags`` (include/linux/mm.h)."""
        with self.mem.record() as rec:
            v = self._page_to_nid(page)
        return Result(v, tuple(rec))

    def _page_to_nid(self, page: int) -> int:
        pf = self.k.page_flags
        if pf.nodes_width == 0:
            return 0  # NODES_SHIFT 0 (!NUMA): NODES_MASK is 0 and the compiler drops the load
        flags = self.mem.load(page, 8, "page->flags")
        return (flags >> pf.nodes_pgshift) & ((1 << pf.nodes_width) - 1)

    def page_zonenum(self, page: int) -> int:
        """``page_zonenum`` (no load recorded: used for reporting)."""
        pf = self.k.page_flags
        flags = self.mem.peek(page, 8)
        return (flags >> pf.zones_pgshift) & ((1 << pf.zones_width) - 1)

    # ------------------------------------------------------------------ reporting
    def memmap_bytes(self) -> int:
        return sum((p.end_pfn - p.start_pfn) * self.sp for p in self.memmap_pieces())

    def section_of(self, pfn: int) -> int | None:
        """The SPARSEMEM section number, or None for models without sections."""
        return None
