"""ELF core files of a whole machine: QEMU ``dump-guest-memory`` and kdump ``/proc/vmcore``.

Both are ``ET_CORE`` ELF64 files for ``EM_X86_64`` (read with pyelftools):

* **PT_LOAD** segments carry physical memory: ``p_paddr`` is the guest physical address, ``p_offset``
  where the bytes are in the file; ``p_filesz`` < ``p_memsz`` means the tail reads as zeros.  kdump
  sets ``p_vaddr`` to the direct-map address (``crash_prepare_elf64_headers()`` in
  kernel/crash_core.c: ``phdr->p_vaddr = (unsigned long) __va(mstart)``) plus one segment for the
  kernel text (``p_vaddr`` = ``__START_KERNEL_map`` + offset); QEMU without ``paging`` writes
  ``p_vaddr`` = 0 (dump/dump.c ``write_elf_phdr()`` with the simple guest memory mapping).
* **PT_NOTE** holds notes: ``CORE``/``NT_PRSTATUS`` per CPU, ``VMCOREINFO`` (type 0) with the text the
  kernel built in ``crash_save_vmcoreinfo_init()`` (kernel/vmcore_info.c, formats in
  include/linux/vmcore_info.h), and, from QEMU, one ``QEMU`` note (type 0) per CPU holding a
  ``QEMUCPUState`` (target/i386/arch_dump.c ``qemu_get_cpustate()``/``cpu_write_qemu_note()``).

VMCOREINFO line formats (include/linux/vmcore_info.h): ``OSRELEASE=%s``, ``PAGESIZE=%ld``,
``SYMBOL(%s)=%lx`` (hex, no ``0x``), ``SIZE(%s)=%lu``, ``OFFSET(%s.%s)=%lu``, ``LENGTH(%s)=%lu``,
``NUMBER(%s)=%ld`` (signed decimal; some arches append ``0x%lx`` values, accepted too),
``KERNELOFFSET=%lx`` (hex, arch/x86/kernel/crash_core_64.c), ``CONFIG_%s=y``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from vmemmap.errors import InputError

__all__ = [
    "LoadSegment", "Note", "QemuCpuState", "VmcoreInfo", "ElfCore", "parse_vmcoreinfo",
    "QEMU_CPUSTATE_FORMAT", "QEMU_CPUSTATE_SIZE",
]

MASK64 = (1 << 64) - 1

#: ``QEMUCPUState`` (target/i386/arch_dump.c; contrib/elf2dmp/qemu_elf.h): u32 version, u32 size,
#: 18 u64 (rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags), 10 segments (cs ds es fs gs ss ldt tr
#: gdt idt) of {u32 selector, limit, flags, pad; u64 base}, u64 cr[5], u64 kernel_gs_base.
QEMU_REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12",
             "r13", "r14", "r15", "rip", "rflags")
QEMU_SEGS = ("cs", "ds", "es", "fs", "gs", "ss", "ldt", "tr", "gdt", "idt")
QEMU_CPUSTATE_FORMAT = "<II" + "Q" * 18 + "IIIIQ" * 10 + "Q" * 5 + "Q"
QEMU_CPUSTATE_SIZE = struct.calcsize(QEMU_CPUSTATE_FORMAT)       # 440
_QEMU_CR_OFFSET = 8 + 18 * 8 + 10 * 24                            # 392: cr[0]


@dataclass(frozen=True)
class LoadSegment:
    """One ``PT_LOAD``: physical ``[paddr, paddr + memsz)``, the first ``filesz`` bytes at ``offset``."""

    paddr: int
    vaddr: int
    offset: int
    filesz: int
    memsz: int

    @property
    def end(self) -> int:
        return self.paddr + self.memsz


@dataclass(frozen=True)
class Note:
    """An ELF note: owner name, type number, descriptor bytes."""

    name: str
    type: int
    desc: bytes


@dataclass(frozen=True)
class QemuCpuState:
    """The registers QEMU saved for one CPU (``QEMUCPUState``)."""

    version: int
    size: int
    regs: dict[str, int]
    segments: dict[str, tuple[int, int, int, int]]   # selector, limit, flags, base
    cr: tuple[int, int, int, int, int]
    kernel_gs_base: int | None

    @property
    def cr3(self) -> int:
        return self.cr[3]

    @property
    def la57(self) -> bool:
        """CR4.LA57 (bit 12): the guest ran with 5-level paging."""
        return bool(self.cr[4] >> 12 & 1)

    @classmethod
    def parse(cls, desc: bytes) -> QemuCpuState:
        if len(desc) < _QEMU_CR_OFFSET + 40:
            raise InputError(f"QEMU CPU note of {len(desc)} bytes is too short for QEMUCPUState")
        padded = desc[:QEMU_CPUSTATE_SIZE].ljust(QEMU_CPUSTATE_SIZE, b"\0")
        v = struct.unpack(QEMU_CPUSTATE_FORMAT, padded)
        regs = dict(zip(QEMU_REGS, v[2:20]))
        segs = {}
        for i, name in enumerate(QEMU_SEGS):
            sel, lim, fl, _pad, base = v[20 + 5 * i: 25 + 5 * i]
            segs[name] = (sel, lim, fl, base)
        cr = tuple(v[70:75])
        kgs = v[75] if len(desc) >= QEMU_CPUSTATE_SIZE else None
        return cls(v[0], v[1], regs, segs, cr, kgs)  # type: ignore[arg-type]

    def pack(self) -> bytes:
        """The note descriptor QEMU writes (used by :mod:`vmemmap.inspect.elfwrite`)."""
        vals: list[int] = [self.version, self.size]
        vals += [self.regs.get(r, 0) for r in QEMU_REGS]
        for s in QEMU_SEGS:
            sel, lim, fl, base = self.segments.get(s, (0, 0, 0, 0))
            vals += [sel, lim, fl, 0, base]
        vals += list(self.cr)
        vals.append(self.kernel_gs_base or 0)
        return struct.pack(QEMU_CPUSTATE_FORMAT, *vals)


@dataclass
class VmcoreInfo:
    """Parsed VMCOREINFO text (``key=value`` lines).  Accessors return None when a key is absent."""

    text: str
    entries: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    @property
    def osrelease(self) -> str | None:
        return self.entries.get("OSRELEASE")

    @property
    def pagesize(self) -> int | None:
        v = self.entries.get("PAGESIZE")
        return int(v, 0) if v is not None else None

    def symbol(self, name: str) -> int | None:
        """``SYMBOL(name)=%lx``: an address (or, for VMCOREINFO_SYMBOL_ARRAY, a pointer's value)."""
        v = self.entries.get(f"SYMBOL({name})")
        return int(v, 16) & MASK64 if v is not None else None

    def number(self, name: str) -> int | None:
        """``NUMBER(name)=%ld`` (signed decimal, returned as an unsigned 64-bit value when negative)."""
        v = self.entries.get(f"NUMBER({name})")
        if v is None:
            return None
        return (int(v, 16) if v.lower().startswith("0x") else int(v, 10)) & MASK64

    def size(self, name: str) -> int | None:
        v = self.entries.get(f"SIZE({name})")
        return int(v, 10) if v is not None else None

    def offset(self, struct_name: str, member: str) -> int | None:
        v = self.entries.get(f"OFFSET({struct_name}.{member})")
        return int(v, 10) if v is not None else None

    def length(self, name: str) -> int | None:
        v = self.entries.get(f"LENGTH({name})")
        return int(v, 10) if v is not None else None

    @property
    def kerneloffset(self) -> int | None:
        """``KERNELOFFSET=%lx``: the KASLR offset of the kernel image (x86_64)."""
        v = self.entries.get("KERNELOFFSET")
        return int(v, 16) if v is not None else None


def parse_vmcoreinfo(text: str | bytes) -> VmcoreInfo:
    """Parse VMCOREINFO text; NUL padding and blank lines are ignored, later keys win."""
    if isinstance(text, bytes):
        text = text.split(b"\0", 1)[0].decode("ascii", "replace")
    info = VmcoreInfo(text)
    for line in text.splitlines():
        line = line.strip()
        if not line or "=" not in line:
            continue
        k, _, v = line.partition("=")
        info.entries[k.strip()] = v.strip()
    return info


def _ntype(n: Any) -> int:
    """pyelftools maps known note types to names; we want the number."""
    if isinstance(n, int):
        return n
    from elftools.elf.enums import ENUM_CORE_NOTE_N_TYPE, ENUM_NOTE_N_TYPE

    for table in (ENUM_CORE_NOTE_N_TYPE, ENUM_NOTE_N_TYPE):
        if n in table:
            return int(table[n])
    raise InputError(f"unknown ELF note type {n!r}")


class ElfCore:
    """An x86-64 ELF core file: its ``PT_LOAD`` segments (by physical address) and notes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._f: BinaryIO = open(self.path, "rb")
        except OSError as e:
            raise InputError(f"cannot open dump {path}: {e.strerror}") from None
        try:
            elf = ELFFile(self._f)
            if elf.header["e_type"] != "ET_CORE":
                raise InputError(f"{path} is an ELF file but not a core dump (e_type {elf.header['e_type']})")
            if elf.elfclass != 64 or elf.header["e_machine"] != "EM_X86_64" or not elf.little_endian:
                raise InputError(f"{path}: not an x86-64 little-endian ELF64 core "
                                 f"({elf.header['e_machine']}, ELFCLASS{elf.elfclass})")
            segs: list[LoadSegment] = []
            notes: list[Note] = []
            for seg in elf.iter_segments():
                t = seg.header["p_type"]
                if t == "PT_LOAD":
                    h = seg.header
                    if h["p_memsz"]:
                        segs.append(LoadSegment(h["p_paddr"], h["p_vaddr"], h["p_offset"], h["p_filesz"],
                                                h["p_memsz"]))
                elif t == "PT_NOTE":
                    for n in seg.iter_notes():
                        notes.append(Note(n["n_name"], _ntype(n["n_type"]), bytes(n["n_descdata"])))
        except ELFError as e:
            self._f.close()
            raise InputError(f"{path} is not a readable ELF file: {e}") from None
        except InputError:
            self._f.close()
            raise
        segs.sort(key=lambda s: s.paddr)
        for a, b in zip(segs, segs[1:]):
            if b.paddr < a.end:
                self._f.close()
                raise InputError(f"{path}: PT_LOAD segments overlap at physical {b.paddr:#x}")
        self.segments: list[LoadSegment] = segs
        self.notes: list[Note] = notes
        vi = [n for n in notes if n.name == "VMCOREINFO"]
        self.vmcoreinfo: VmcoreInfo | None = parse_vmcoreinfo(vi[0].desc) if vi else None
        self.qemu_cpus: list[QemuCpuState] = [QemuCpuState.parse(n.desc) for n in notes if n.name == "QEMU"]

    @property
    def kind(self) -> str:
        """``'qemu'`` (QEMU CPU notes present), ``'kdump'`` (direct-map ``p_vaddr``s) or ``'elf'``."""
        if self.qemu_cpus:
            return "qemu"
        if any(s.vaddr and s.vaddr != s.paddr for s in self.segments):
            return "kdump"
        return "elf"

    def fileno(self) -> int:
        return self._f.fileno()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> ElfCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
