"""Write ELF64 x86-64 core files, the shape QEMU ``dump-guest-memory`` and kdump produce.

Layout (the same order QEMU's dump/dump.c writes): ELF header, program headers (one ``PT_NOTE``
first, then ``PT_LOAD`` per physical range, ``p_paddr`` = physical address), the notes, then the
segment data at 4 KiB-aligned file offsets.  Notes use the 4-byte padding of the ELF spec
(``Elf64_Nhdr`` + name + desc, each padded to 4), as ``append_elf_note()`` (kernel/vmcore_info.c)
and QEMU's ``cpu_write_qemu_note()`` do.

:func:`export_kernel` writes a booted *simulated* kernel (:func:`vmemmap.kernel.boot`) as a core:
every materialised frame and every fill region (the memmap, usage maps) of its
:class:`~vmemmap.physmem.PhysMem`, a ``VMCOREINFO`` note with the keys a 6.x x86-64 kernel exports
(kernel/vmcore_info.c ``crash_save_vmcoreinfo_init()``, arch/x86/kernel/crash_core_64.c) plus
``SYMBOL(vmemmap_base)`` / ``SYMBOL(page_offset_base)`` (a vmemmap extension: real kernels do not
export them; use ``--kallsyms`` there), and optionally a QEMU CPU note whose CR3 is the pgd.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .elfcore import QEMU_CPUSTATE_SIZE, Note, QemuCpuState

if TYPE_CHECKING:
    from vmemmap.kernel import Kernel

__all__ = ["write_core", "export_kernel", "vmcoreinfo_text", "qemu_cpu_note", "kernel_dump_ranges",
           "START_KERNEL_MAP"]

ET_CORE = 4
EM_X86_64 = 62
PT_LOAD = 1
PT_NOTE = 4
PF_R, PF_W, PF_X = 4, 2, 1
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_NHDR = struct.Struct("<III")
PAGE = 4096
#: __START_KERNEL_map (arch/x86/include/asm/page_64_types.h): the kernel image mapping
START_KERNEL_MAP = 0xFFFFFFFF80000000
_CHUNK = 64 << 20


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def encode_note(note: Note) -> bytes:
    """``Elf64_Nhdr`` {namesz (with the NUL), descsz, type}, name and desc each padded to 4 bytes."""
    name = note.name.encode() + b"\0"
    return (_NHDR.pack(len(name), len(note.desc), note.type) + name.ljust(_pad4(len(name)), b"\0")
            + note.desc.ljust(_pad4(len(note.desc)), b"\0"))


def _merge(ranges: Iterable[tuple[int, int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for s, e in sorted(ranges):
        if e <= s:
            continue
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged


def write_core(path: str | Path, ranges: Iterable[tuple[int, int]], read: Callable[[int, int], bytes],
               notes: Sequence[Note] = (), vaddr_of: Callable[[int], int] | None = None,
               data: Iterable[tuple[int, int]] | None = None) -> int:
    """Write an ELF64 core: one ``PT_LOAD`` per physical ``[start, end)`` range (sorted, merged when
    adjacent) whose bytes come from ``read(phys, size)``; ``vaddr_of(paddr)`` gives ``p_vaddr``
    (0 without it, like QEMU without paging).  With ``data``, only those physical ranges are read:
    the rest of each segment is left as a hole of the (sparse) file and reads as zeros.
    Returns the file size."""
    merged = _merge(ranges)
    datar = _merge(data) if data is not None else None
    note_blob = b"".join(encode_note(n) for n in notes)
    phnum = 1 + len(merged)
    hdr_end = _EHDR.size + phnum * _PHDR.size
    note_off = hdr_end
    data_off = (note_off + len(note_blob) + PAGE - 1) & ~(PAGE - 1)
    phdrs = [_PHDR.pack(PT_NOTE, 0, note_off, 0, 0, len(note_blob), len(note_blob), 0)]
    off = data_off
    for s, e in merged:
        va = vaddr_of(s) if vaddr_of else 0
        phdrs.append(_PHDR.pack(PT_LOAD, PF_R | PF_W | PF_X, off, va, s, e - s, e - s, 0))
        off += (e - s + PAGE - 1) & ~(PAGE - 1)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)   # ELFCLASS64, ELFDATA2LSB, EV_CURRENT, SYSV
    ehdr = _EHDR.pack(ident, ET_CORE, EM_X86_64, 1, 0, _EHDR.size, 0, 0, _EHDR.size, _PHDR.size, phnum,
                      0, 0, 0)
    with open(path, "wb") as f:
        f.write(ehdr)
        f.write(b"".join(phdrs))
        f.write(note_blob)
        f.seek(data_off)
        seg_off = data_off
        for s, e in merged:
            pieces = [(s, e)] if datar is None else [(max(s, a), min(e, b)) for a, b in datar
                                                     if a < e and b > s]
            for ps, pe in pieces:
                f.seek(seg_off + (ps - s))
                a = ps
                while a < pe:
                    n = min(_CHUNK, pe - a)
                    f.write(read(a, n))
                    a += n
            seg_off += (e - s + PAGE - 1) & ~(PAGE - 1)
        f.truncate(off)
        return off


# ---------------------------------------------------------------------- simulated kernels


def kernel_dump_ranges(k: Kernel, include_fills: bool = True) -> list[tuple[int, int]]:
    """Physical ranges holding the simulated kernel's memory: materialised frames (page tables,
    mem_section roots, NODE_DATA, image variables...) and, with ``include_fills``, the fill regions
    (the memmap's ``page->flags``, ``mem_section_usage`` maps), page-rounded.

    Uses ``PhysMem._rows`` (the materialised pfns): PhysMem has no public listing of them yet."""
    pfns = sorted(getattr(k.phys, "_rows", {}).keys())
    out: list[tuple[int, int]] = []
    for p in pfns:
        if out and out[-1][1] == p * PAGE:
            out[-1] = (out[-1][0], (p + 1) * PAGE)
        else:
            out.append((p * PAGE, (p + 1) * PAGE))
    if include_fills:
        for r in k.phys.fill_regions():
            out.append((r.start & ~(PAGE - 1), (r.end + PAGE - 1) & ~(PAGE - 1)))
    return out


def vmcoreinfo_text(k: Kernel, symbols: bool = True, release: str | None = None) -> str:
    """The VMCOREINFO a 6.x x86-64 kernel would export for ``k`` (keys of kernel/vmcore_info.c and
    arch/x86/kernel/crash_core_64.c, same printf formats).  ``init_top_pgt`` is given as the image
    address whose ``__pa`` (``- __START_KERNEL_map + phys_base``, phys_base 0 here) is the simulated
    pgd.  ``symbols``: add ``SYMBOL(vmemmap_base)``/``SYMBOL(page_offset_base)`` (vmemmap extension)."""
    era = k.era
    lines = [f"OSRELEASE={release or era.version + '.0-vmemmap-sim'}", f"PAGESIZE={PAGE}"]
    pgd_sym = START_KERNEL_MAP + k.tables.pgd_phys
    lines.append(f"SYMBOL(swapper_pg_dir)={pgd_sym:x}")
    st = getattr(k.model, "sections", None)
    if st is not None:
        lines += [
            f"SYMBOL(mem_section)={st.root_array:x}",          # VMCOREINFO_SYMBOL_ARRAY: the pointer's value
            f"LENGTH(mem_section)={st.nr_roots}",
            f"SIZE(mem_section)={k.mem_section_size}",
            "OFFSET(mem_section.section_mem_map)=0",
            f"NUMBER(SECTION_SIZE_BITS)={era.section_size_bits}",
            f"NUMBER(MAX_PHYSMEM_BITS)={era.max_physmem_bits(k.la57)}",
        ]
    lines += [f"SIZE(page)={era.struct_page_size}", "OFFSET(page.flags)=0"]
    lines += [
        "NUMBER(phys_base)=0",
        f"SYMBOL(init_top_pgt)={pgd_sym:x}",
        f"NUMBER(pgtable_l5_enabled)={1 if k.la57 else 0}",
    ]
    if "node_data" in k.symbols:
        lines.append(f"SYMBOL(node_data)={k.symbols['node_data']:x}")
    lines.append("KERNELOFFSET=0")
    if symbols:
        for name in ("vmemmap_base", "page_offset_base", "mem_map"):
            if name in k.symbols:
                lines.append(f"SYMBOL({name})={k.symbols[name]:x}")
    return "\n".join(lines) + "\n"


def qemu_cpu_note(cr3: int, la57: bool) -> Note:
    """A ``QEMU`` note (type 0) as QEMU writes per CPU, with CR0 = PG|WP|NE|ET|MP|PE, CR3 and CR4
    (PAE|PGE|OSFXSR, plus LA57 bit 12 with 5-level paging)."""
    cr4 = 0x6A0 | (1 << 12 if la57 else 0)
    st = QemuCpuState(1, QEMU_CPUSTATE_SIZE, {}, {}, (0x80050033, 0, 0, cr3, cr4), 0)
    return Note("QEMU", 0, st.pack())


def export_kernel(k: Kernel, path: str | Path, *, vmcoreinfo: bool = True, qemu_note: bool = False,
                  symbols: bool = True, style: str = "qemu", include_fills: bool = True,
                  full_ram: bool = True) -> int:
    """Write the simulated kernel ``k``'s physical memory as an ELF core.  ``full_ram``: one
    ``PT_LOAD`` per usable RAM range of the machine, as QEMU dumps every RAM block (never-written
    memory becomes file holes: the file is sparse); else only the ranges with content.
    ``style='kdump'`` sets ``p_vaddr`` to the direct-map address (``__va``), ``'qemu'`` to 0.
    Returns the file size."""
    notes: list[Note] = []
    if qemu_note:
        notes.append(qemu_cpu_note(k.tables.pgd_phys, k.la57))
    if vmcoreinfo:
        notes.append(Note("VMCOREINFO", 0, vmcoreinfo_text(k, symbols).encode()))
    po = k.layout.page_offset
    vaddr_of = (lambda p: (p + po) & ((1 << 64) - 1)) if style == "kdump" else None
    data = kernel_dump_ranges(k, include_fills)
    ram = [(s, e) for s, e in k.machine.usable()] if full_ram else []
    return write_core(path, ram + data, k.phys.read, notes, vaddr_of, data)
