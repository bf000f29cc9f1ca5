"""A kernel read from a dump: symbols, the page-table root, the bases, mem_section, pfn <-> page.

:class:`DumpKernel` puts the project's own machinery over a real kernel's memory:
:class:`~vmemmap.inspect.dumpmem.DumpMem` (physical memory) → :class:`DumpPageTables` (the
:class:`~vmemmap.paging.tables.PageTables` walker, unchanged, rooted at the dump's pgd) →
:class:`~vmemmap.kernel_memory.KernelMemory` (kernel virtual reads, recorded loads) →
:class:`~vmemmap.models.sections.SectionTable` (``__nr_to_section``, ``__section_mem_map_addr``,
``pfn_section_valid``: the model's own decoding, fed the dump's roots).

Where each value comes from (first that works; the source is reported):

* **symbols** -- ``--kallsyms`` (``/proc/kallsyms`` or ``System.map`` lines, or an oracle capture's
  ``KALLSYMS`` block), then VMCOREINFO ``SYMBOL(...)``.
* **page-table root** -- ``init_top_pgt`` (VMCOREINFO ``SYMBOL(init_top_pgt)``, else
  ``SYMBOL(swapper_pg_dir)``, else kallsyms) at ``sym - __START_KERNEL_map + phys_base`` (what drgn
  does in libdrgn/arch_x86_64.c ``linux_kernel_pgtable_iterator_next_x86_64``; ``phys_base`` from
  VMCOREINFO ``NUMBER(phys_base)``, exported since 401721ecd1dc, v4.10); else CR3 of the first CPU
  from QEMU's note (PCID bits dropped; with PTI the kernel pgd is the even page of the 8 KiB pair --
  the one of the two with more kernel-half entries is taken).
* **paging levels** -- VMCOREINFO ``NUMBER(pgtable_l5_enabled)``, else CR4.LA57 from the QEMU note,
  else 4.
* **page_offset_base** -- the variable read through the walker (needs its address: kallsyms or
  ``SYMBOL(page_offset_base)``); else kdump's ``p_vaddr - p_paddr`` of a direct-map ``PT_LOAD``;
  else the first leaf of the kernel half of the page tables (the direct map is the lowest mapped
  kernel region; its first leaf maps the lowest RAM): ``vaddr - phys``.
* **vmemmap_base** -- the variable read through the walker; else VMCOREINFO ``SYMBOL(vmemmap)``
  (``VMCOREINFO_SYMBOL_ARRAY(vmemmap)`` in newer kernels: the value); else drgn's rule
  (libdrgn/linux_kernel.c ``linux_kernel_get_vmemmap_address``): the coded ``section_mem_map`` of the
  first section with HAS_MEM_MAP -- under SPARSEMEM_VMEMMAP ``sparse_encode_mem_map()`` of
  ``vmemmap + pfn`` is ``vmemmap`` itself.
* **mem_section** -- VMCOREINFO ``SYMBOL(mem_section)`` (``VMCOREINFO_SYMBOL_ARRAY``: the root
  array's address), else kallsyms ``mem_section`` (the pointer variable, read through the walker).
  Sizes from VMCOREINFO ``SIZE(mem_section)``, ``NUMBER(SECTION_SIZE_BITS)``,
  ``NUMBER(MAX_PHYSMEM_BITS)``, ``SIZE(page)`` override the era's; flag bits, ``SECTION_MAP_MASK``
  and the sub-section rule are the era's (``--era``, default 6.1).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vmemmap.eras import Era, load_era
from vmemmap.errors import InputError, PageFault, VmemmapError
from vmemmap.kernel_memory import KernelMemory
from vmemmap.kmem import STATE_LETTERS
from vmemmap.models.sections import SectionTable
from vmemmap.paging.entry import _PAGE_PRESENT, PTE_PFN_MASK
from vmemmap.paging.tables import PageTables, Walk

from .dumpmem import DumpMem, DumpReadError
from .elfcore import ElfCore
from .elfwrite import START_KERNEL_MAP

__all__ = ["DumpKernel", "DumpPageTables", "SectionRow", "parse_kallsyms", "load_kallsyms"]

MASK64 = (1 << 64) - 1
PAGE_SHIFT = 12
PUD_SIZE = 1 << 30


class DumpPageTables(PageTables):
    """:class:`PageTables` over an existing tree in a dump: the root is given, nothing is allocated,
    and every edit fails (the dump's frames are read-only views)."""

    def __init__(self, mem: DumpMem, levels: int, pgd_phys: int) -> None:
        self._root = pgd_phys

        def no_alloc(nid: int) -> int:
            raise DumpReadError("a dump's page tables cannot grow")

        super().__init__(mem, levels, no_alloc)  # type: ignore[arg-type]

    def _new_table(self, nid: int) -> int:
        if not hasattr(self, "pgd_phys"):       # construction: the root already exists in the dump
            return self._root
        raise DumpReadError("a dump's page tables cannot grow")


# ---------------------------------------------------------------------- kallsyms

_KSYM = re.compile(r"^\s*([0-9a-fA-F]{8,16})\s+([A-Za-z?])\s+(\S+)")


def parse_kallsyms(text: str) -> dict[str, int]:
    """``/proc/kallsyms`` / ``System.map`` lines (``ADDR TYPE NAME [module]``) to ``{name: addr}``.
    An oracle capture is accepted too: only its first ``@@BEGIN KALLSYMS@@`` block is read.  The first
    definition of a name wins (``/proc/kallsyms`` lists the kernel before modules)."""
    if "@@BEGIN KALLSYMS@@" in text:
        text = text.split("@@BEGIN KALLSYMS@@", 1)[1].split("@@END KALLSYMS@@", 1)[0]
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = _KSYM.match(line)
        if m:
            out.setdefault(m.group(3), int(m.group(1), 16))
    if out and not any(out.values()):
        raise InputError("kallsyms addresses are all zero (read /proc/kallsyms as root, kptr_restrict)")
    return out


def load_kallsyms(path: str | Path) -> dict[str, int]:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        raise InputError(f"cannot read kallsyms file {path}: {e.strerror}") from None
    syms = parse_kallsyms(text)
    if not syms:
        raise InputError(f"{path}: no kallsyms lines (ADDR TYPE NAME) found")
    return syms


# ---------------------------------------------------------------------- the section table view


@dataclass
class _SectionKernel:
    """The part of :class:`vmemmap.kernel.Kernel` that :class:`SectionTable` reads."""

    era: Era
    mem_section_size: int
    la57: bool
    mem: KernelMemory
    tables: PageTables
    phys: DumpMem
    symbols: dict[str, int] = field(default_factory=dict)

    def sym(self, name: str) -> int:
        try:
            return self.symbols[name]
        except KeyError:
            raise InputError(f"kernel symbol {name} is not known for this dump") from None


@dataclass(frozen=True)
class SectionRow:
    """One present section as crash's ``kmem -n`` lists it, plus the raw word and usage."""

    nr: int
    addr: int          # struct mem_section address
    raw: int           # section_mem_map
    coded: int         # raw & SECTION_MAP_MASK
    mem_map: int       # the decoded memmap of the section
    state: str         # crash's P/M/O/E/D letters
    flags: tuple[str, ...]
    pfn: int
    usage: int
    subsection_map: int | None

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "nr": self.nr, "section": f"{self.addr:#x}", "raw": f"{self.raw:#x}",
            "coded_mem_map": f"{self.coded:#x}", "mem_map": f"{self.mem_map:#x}", "state": self.state,
            "flags": list(self.flags), "pfn": self.pfn, "usage": f"{self.usage:#x}",
        }
        if self.subsection_map is not None:
            d["subsection_map"] = f"{self.subsection_map:#x}"
        return d


# ---------------------------------------------------------------------- the kernel


class DumpKernel:
    """The kernel in an ELF core, read with the project's own walker and section code."""

    def __init__(self, core: ElfCore, kallsyms: dict[str, int] | None = None, era: str | Era = "6.1",
                 cr3: int | None = None) -> None:
        self.core = core
        self.phys = DumpMem(core)
        self.vmcoreinfo = core.vmcoreinfo
        vi = self.vmcoreinfo
        self.kallsyms: dict[str, int] = dict(kallsyms or {})
        self.sources: dict[str, str] = {}
        self.notes: list[str] = []
        self.release: str | None = vi.osrelease if vi else None
        base_era = load_era(era) if isinstance(era, str) else era

        # --- paging levels
        l5 = vi.number("pgtable_l5_enabled") if vi else None
        if l5 is not None:
            self.levels = 5 if l5 else 4
            self.sources["levels"] = "VMCOREINFO NUMBER(pgtable_l5_enabled)"
        elif core.qemu_cpus:
            self.levels = 5 if core.qemu_cpus[0].la57 else 4
            self.sources["levels"] = "QEMU CPU note CR4.LA57"
        else:
            self.levels = 4
            self.sources["levels"] = "default (no VMCOREINFO, no CPU note)"
        self.la57 = self.levels == 5

        # --- era, with the dump's own sizes
        self.era = self._dump_era(base_era)

        # --- phys_base and the page-table root
        self.phys_base: int | None = vi.number("phys_base") if vi else None
        self.pgd_phys, self.pgd_vaddr = self._find_root(cr3)
        self.tables = DumpPageTables(self.phys, self.levels, self.pgd_phys)
        self.mem = KernelMemory(self.phys, self.tables)  # type: ignore[arg-type]
        if self.phys_base is None:
            addr = self.symbol("phys_base")
            if addr is not None:
                self.phys_base = self.mem.peek(addr, 8)
                self.sources["phys_base"] = "phys_base read through the page tables"

        # --- bases and sections
        self.page_offset_base = self._find_page_offset()
        if self.pgd_vaddr is None:
            self.pgd_vaddr = (self.pgd_phys + self.page_offset_base) & MASK64
        self.sections = self._section_table()
        self.vmemmap_base = self._find_vmemmap()

    # ------------------------------------------------------------------ symbols
    def symbol(self, name: str) -> int | None:
        """Address of kernel symbol ``name``: kallsyms first, then VMCOREINFO ``SYMBOL(name)``."""
        if name in self.kallsyms:
            return self.kallsyms[name]
        if self.vmcoreinfo is not None:
            return self.vmcoreinfo.symbol(name)
        return None

    def _symbol_source(self, name: str) -> str:
        return "kallsyms" if name in self.kallsyms else f"VMCOREINFO SYMBOL({name})"

    def _dump_era(self, era: Era) -> Era:
        vi = self.vmcoreinfo
        if vi is None:
            return era
        changes: dict[str, object] = {}
        ssb = vi.number("SECTION_SIZE_BITS")
        if ssb is not None:
            changes["section_size_bits"] = ssb
        mpb = vi.number("MAX_PHYSMEM_BITS")
        if mpb is not None:
            changes["max_physmem_bits_l5" if self.la57 else "max_physmem_bits_l4"] = mpb
        sp = vi.size("page")
        if sp is not None:
            changes["struct_page_size"] = sp
        ms = vi.size("mem_section")
        if ms is not None:
            changes["mem_section_size"] = ms
        return dataclasses.replace(era, **changes) if changes else era  # type: ignore[arg-type]

    # ------------------------------------------------------------------ root
    def _kernel_half_entries(self, pgd: int) -> int:
        if not self.phys.contains(pgd, 4096):
            return -1
        t = self.phys.frame(pgd >> PAGE_SHIFT)
        return int(np.count_nonzero(t[256:] & np.uint64(_PAGE_PRESENT)))

    def _find_root(self, cr3: int | None) -> tuple[int, int | None]:
        if cr3 is None:
            for name in ("init_top_pgt", "swapper_pg_dir"):
                sym = self.symbol(name)
                if sym is None:
                    continue
                if sym < START_KERNEL_MAP:
                    raise InputError(f"{name} = {sym:#x} is not a kernel-image address")
                pb = self.phys_base if self.phys_base is not None else 0
                if self.phys_base is None:
                    self.notes.append("phys_base unknown (no NUMBER(phys_base)): assumed 0")
                phys = sym - START_KERNEL_MAP + pb
                if self.phys.contains(phys, 4096):
                    self.sources["pgd"] = (f"{self._symbol_source(name)} - __START_KERNEL_map + phys_base")
                    return phys, sym
                self.notes.append(f"{name} at physical {phys:#x} is not in the dump")
            if self.core.qemu_cpus:
                cr3 = self.core.qemu_cpus[0].cr3
                self.sources["pgd"] = "CR3 of CPU 0 (QEMU note)"
        else:
            self.sources["pgd"] = "given CR3"
        if cr3 is None:
            raise InputError("cannot find the kernel page tables: the dump has no VMCOREINFO "
                             "init_top_pgt and no QEMU CPU note (give --kallsyms with init_top_pgt)")
        pgd = cr3 & PTE_PFN_MASK
        alt = pgd & ~0x1000       # PTI: the kernel pgd is the even page of the pair
        if alt != pgd and self._kernel_half_entries(alt) > self._kernel_half_entries(pgd):
            self.notes.append(f"CR3 {cr3:#x} is PTI's user pgd: using the kernel pgd {alt:#x}")
            pgd = alt
        if not self.phys.contains(pgd, 4096):
            raise InputError(f"page-table root {pgd:#x} is not in the dump")
        return pgd, None

    # ------------------------------------------------------------------ bases
    def _read_var(self, name: str) -> int | None:
        addr = self.symbol(name)
        if addr is None:
            return None
        try:
            v = self.mem.peek(addr, 8)
        except (PageFault, DumpReadError) as e:
            self.notes.append(f"cannot read {name} at {addr:#x}: {e}")
            return None
        self.sources[name] = f"{name} at {addr:#x} ({self._symbol_source(name)}) read through the page tables"
        return v

    def _find_page_offset(self) -> int:
        v = self._read_var("page_offset_base")
        if v is not None:
            return v
        diffs = {(s.vaddr - s.paddr) & MASK64 for s in self.core.segments
                 if s.vaddr and s.vaddr < START_KERNEL_MAP and s.vaddr != s.paddr}
        if len(diffs) == 1:
            self.sources["page_offset_base"] = "kdump PT_LOAD p_vaddr - p_paddr"
            return diffs.pop()
        kstart = MASK64 + 1 - (1 << (self.tables.va_bits - 1))
        try:
            leaf = next(self.tables.leaves(kstart, 1 << 64))
        except StopIteration:
            raise VmemmapError("no kernel mappings found: is the page-table root right?") from None
        base = (leaf.vaddr - leaf.phys) & MASK64
        if base % PUD_SIZE:
            self.notes.append(f"page_offset_base {base:#x} from the first kernel leaf is not 1 GiB aligned")
        self.sources["page_offset_base"] = "first kernel-half leaf of the page tables (vaddr - phys)"
        return base

    def _find_vmemmap(self) -> int:
        v = self._read_var("vmemmap_base")
        first = self._first_coded_mem_map()
        if v is None and self.vmcoreinfo is not None and self.vmcoreinfo.symbol("vmemmap") is not None:
            v = self.vmcoreinfo.symbol("vmemmap")
            self.sources["vmemmap_base"] = "VMCOREINFO SYMBOL(vmemmap)"
        if v is None:
            if first is None:
                raise VmemmapError("cannot find vmemmap_base: no symbol and no section with a mem_map")
            self.sources["vmemmap_base"] = "coded mem_map of the first HAS_MEM_MAP section (drgn's rule)"
            return first
        if first is not None and first != v:
            self.notes.append(f"vmemmap_base {v:#x} differs from the first section's coded mem_map "
                              f"{first:#x} (not SPARSEMEM_VMEMMAP?)")
        return v

    # ------------------------------------------------------------------ mem_section
    def _section_table(self) -> SectionTable | None:
        vi = self.vmcoreinfo
        era = self.era
        syms: dict[str, int] = {}
        array: int | None = None
        if vi is not None and vi.symbol("mem_section") is not None:
            array = vi.symbol("mem_section")
            self.sources["mem_section"] = "VMCOREINFO SYMBOL(mem_section) (the root array)"
            # the pointer variable's address is not in VMCOREINFO: walk the roots from the array
            if "mem_section" in self.kallsyms and era.mem_section_is_pointer:
                syms["mem_section"] = self.kallsyms["mem_section"]
            else:
                era = dataclasses.replace(era, mem_section_is_pointer=False)
        elif "mem_section" in self.kallsyms:
            syms["mem_section"] = self.kallsyms["mem_section"]
            array = (self.mem.peek(syms["mem_section"], 8) if era.mem_section_is_pointer
                     else syms["mem_section"])
            self.sources["mem_section"] = "kallsyms mem_section" + (
                " (pointer read through the page tables)" if era.mem_section_is_pointer else "")
        if array is None:
            self.notes.append("no mem_section symbol: sections not decoded")
            return None
        view = _SectionKernel(era, era.mem_section_size, self.la57, self.mem, self.tables, self.phys, syms)
        st = SectionTable(view, extreme=True)  # type: ignore[arg-type]
        st.root_array = array
        if vi is not None and vi.length("mem_section") not in (None, st.nr_roots):
            self.notes.append(f"LENGTH(mem_section)={vi.length('mem_section')} but the era gives "
                              f"{st.nr_roots} roots")
        roots = np.frombuffer(self.read_virt(array, 8 * st.nr_roots), dtype="<u8")
        present_flag = era.section_flag("PRESENT")
        wps = st.ms_size // 8
        for r in np.flatnonzero(roots).tolist():
            rva = int(roots[r])
            st.roots[r] = rva
            words = np.frombuffer(self.read_virt(rva, st.per_root * st.ms_size), dtype="<u8")[::wps]
            for i in np.flatnonzero(words & np.uint64(present_flag)).tolist():
                nr = r * st.per_root + i
                if nr < st.nr_sections:
                    st.set_present(nr, True)
        self.section_era = era
        return st

    def read_virt(self, vaddr: int, size: int) -> bytes:
        """``size`` bytes of kernel virtual memory (translated page by page, not recorded)."""
        out = bytearray()
        a, end = vaddr, vaddr + size
        while a < end:
            n = min(end - a, 4096 - (a & 0xFFF))
            out += self.phys.read(self.tables.translate(a), n)
            a += n
        return bytes(out)

    def section_rows(self) -> list[SectionRow]:
        """Every section whose word has PRESENT (crash ``dump_mem_sections``' ``valid_section_nr``)."""
        st = self.sections
        if st is None:
            return []
        era = st.era
        letters = dict(STATE_LETTERS)
        rows: list[SectionRow] = []
        for nr in st.present_array().tolist():
            word = int(st.read_word_nocheck(nr))
            coded = st.decode_mem_map(word)
            mem_map = (coded + (nr << era.pfn_section_shift) * era.struct_page_size) & MASK64
            names = tuple(st.flag_names(word))
            state = "".join(letters[n] for n, _ in STATE_LETTERS if n in names and n in letters)
            usage = int(st.usage_of(nr)) if era.subsection_shift else 0
            sub = None
            if era.subsection_shift and usage:
                try:
                    sub = int(st.subsection_map(nr))
                except (PageFault, DumpReadError):
                    sub = None
            rows.append(SectionRow(nr, int(st.section_addr_nocheck(nr)), word, coded, mem_map, state, names,
                                   nr << era.pfn_section_shift, usage, sub))
        return rows

    def _first_coded_mem_map(self) -> int | None:
        st = self.sections
        if st is None:
            return None
        has = st.era.section_flag("HAS_MEM_MAP") if "HAS_MEM_MAP" in st.era.section_flags else 0
        for nr in st.present_array().tolist():
            w = int(st.read_word_nocheck(nr))
            if w & has:
                return st.decode_mem_map(w)
        return None

    # ------------------------------------------------------------------ operations
    @property
    def struct_page_size(self) -> int:
        return self.era.struct_page_size

    def pfn_to_page(self, pfn: int) -> int:
        """``__pfn_to_page`` under SPARSEMEM_VMEMMAP: ``vmemmap + pfn`` (include/asm-generic/
        memory_model.h), ``vmemmap`` = ``(struct page *)VMEMMAP_START`` = ``vmemmap_base``."""
        return (self.vmemmap_base + pfn * self.struct_page_size) & MASK64

    def page_to_pfn(self, page: int) -> int:
        """``__page_to_pfn``: ``page - vmemmap``; ``page`` must be a ``struct page`` boundary."""
        off = (page - self.vmemmap_base) & MASK64
        if off % self.struct_page_size:
            raise InputError(f"{page:#x} is not a struct page address (vmemmap_base {self.vmemmap_base:#x}, "
                             f"sizeof(struct page) {self.struct_page_size})")
        return off // self.struct_page_size

    def pfn_valid(self, pfn: int) -> bool | None:
        """``pfn_valid`` (include/linux/mmzone.h @ 6.1: section present with a memmap, and EARLY or its
        sub-section bit set) with the model's SectionTable; None without mem_section."""
        st = self.sections
        if st is None:
            return None
        era = st.era
        nr = pfn >> era.pfn_section_shift
        ms = st.nr_to_section(nr)
        if ms is None:
            return False
        word = st.section_mem_map(ms)
        if not word & era.section_flag(era.valid_section_flag):
            return False
        if era.pfn_valid_rule != "subsection":
            return True
        if word & era.section_flag("EARLY"):
            return True
        return st.subsection_valid(ms, pfn)

    def vtop(self, vaddr: int) -> Walk:
        """The MMU's walk of ``vaddr`` through the dump's page tables."""
        return self.tables.walk(vaddr & MASK64)

    def close(self) -> None:
        self.phys.close()


def open_dump(path: str | Path, kallsyms: str | Path | None = None, era: str = "6.1") -> DumpKernel:
    """Open ``path`` (an ELF core) as a :class:`DumpKernel`."""
    core = ElfCore(path)
    syms = load_kallsyms(kallsyms) if kallsyms is not None else None
    return DumpKernel(core, syms, era)

