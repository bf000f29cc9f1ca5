"""Physical memory backed by an ELF core: the read side of :class:`vmemmap.physmem.PhysMem`.

:class:`DumpMem` maps the dump file (``mmap``, read only) and serves ``read``, ``read_u64``,
``read_u64_array``, ``table`` and ``frame`` from the ``PT_LOAD`` segments, so that
:class:`vmemmap.paging.tables.PageTables` (walks read ``mem.read_u64`` / ``read_u64_array`` /
``frame``) and :class:`vmemmap.kernel_memory.KernelMemory` run unchanged over a real kernel's memory
(DESIGN.md: "The same model code must be able to run over a real kernel's memory later").

Semantics differ from the simulation in one documented way: a physical address that no ``PT_LOAD``
covers is *not* silently zero (a simulated machine's unwritten RAM is; a dump's missing range is
memory we do not have) -- reads raise :class:`DumpReadError`.  Bytes between ``p_filesz`` and
``p_memsz`` read as zero (ELF).  Every write raises: a dump is evidence, not a scratch pad.
"""

from __future__ import annotations

import bisect
import mmap

import numpy as np

from vmemmap.errors import VmemmapError

from .elfcore import ElfCore, LoadSegment

__all__ = ["DumpMem", "DumpReadError"]

_FRAME = 4096
_U64 = np.uint64


class DumpReadError(VmemmapError):
    """A physical address the dump does not contain, or an attempt to write to the dump."""


class DumpMem:
    """Read-only physical memory of an :class:`~vmemmap.inspect.elfcore.ElfCore`."""

    def __init__(self, core: ElfCore) -> None:
        self.core = core
        self.segments: list[LoadSegment] = list(core.segments)
        self._starts = [s.paddr for s in self.segments]
        self._np_starts = np.array(self._starts, dtype=_U64)
        self._np_ends = np.array([s.end for s in self.segments], dtype=_U64)
        self._np_fend = np.array([s.paddr + s.filesz for s in self.segments], dtype=_U64)
        self._np_off = np.array([s.offset for s in self.segments], dtype=np.int64)
        import os

        size = os.fstat(core.fileno()).st_size
        for s in self.segments:
            if s.offset + s.filesz > size:
                raise DumpReadError(f"{core.path}: PT_LOAD at {s.paddr:#x} extends beyond the end of the "
                                    f"file (truncated dump?)")
        self._mm = mmap.mmap(core.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        self._bytes = (np.frombuffer(self._mm, dtype=np.uint8) if self._mm is not None
                       else np.zeros(0, dtype=np.uint8))

    # ---------------------------------------------------------------- lookup
    def _segment(self, phys: int) -> LoadSegment | None:
        i = bisect.bisect_right(self._starts, phys) - 1
        if i >= 0 and phys < self.segments[i].end:
            return self.segments[i]
        return None

    def contains(self, phys: int, size: int = 1) -> bool:
        """Whether ``[phys, phys+size)`` lies in the dump."""
        a = phys
        end = phys + size
        while a < end:
            s = self._segment(a)
            if s is None:
                return False
            a = s.end
        return True

    def ranges(self) -> list[tuple[int, int]]:
        """Physical ``[start, end)`` ranges the dump holds, adjacent segments merged."""
        out: list[tuple[int, int]] = []
        for s in self.segments:
            if out and out[-1][1] == s.paddr:
                out[-1] = (out[-1][0], s.end)
            else:
                out.append((s.paddr, s.end))
        return out

    # ---------------------------------------------------------------- PhysMem read API
    def read(self, phys: int, size: int) -> bytes:
        """``size`` bytes at physical ``phys`` (may span segments)."""
        if size < 0 or phys < 0:
            raise ValueError("read: negative address or size")
        out = bytearray()
        a, end = phys, phys + size
        while a < end:
            s = self._segment(a)
            if s is None:
                raise DumpReadError(f"physical address {a:#x} is not in the dump")
            n = min(end, s.end) - a
            rel = a - s.paddr
            have = max(0, min(n, s.filesz - rel))
            if have and self._mm is not None:
                out += self._mm[s.offset + rel: s.offset + rel + have]
            out += bytes(n - have)
            a += n
        return bytes(out)

    def read_u64(self, phys: int) -> int:
        """The little-endian u64 at 8-byte aligned ``phys``."""
        if phys & 7 or phys < 0:
            raise ValueError(f"read_u64: {phys:#x} is not 8-byte aligned")
        return int.from_bytes(self.read(phys, 8), "little")

    def read_u64_array(self, phys: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`read_u64` (uint64 addresses in, any shape; uint64 values out)."""
        arr = np.asarray(phys, dtype=_U64)
        flat = arr.ravel()
        if flat.size and np.any(flat & _U64(7)):
            bad = int(flat[np.flatnonzero(flat & _U64(7))[0]])
            raise ValueError(f"read_u64_array: {bad:#x} is not 8-byte aligned")
        out = np.zeros(flat.shape, dtype=_U64)
        if flat.size == 0:
            return out.reshape(arr.shape)
        idx = np.searchsorted(self._np_starts, flat, side="right").astype(np.int64) - 1
        ok = idx >= 0
        ok[ok] = flat[ok] < self._np_ends[idx[ok]]
        if not ok.all():
            bad = int(flat[np.flatnonzero(~ok)[0]])
            raise DumpReadError(f"physical address {bad:#x} is not in the dump")
        infile = flat + _U64(8) <= self._np_fend[idx]
        if infile.any():
            sel = np.flatnonzero(infile)
            off = self._np_off[idx[sel]] + (flat[sel] - self._np_starts[idx[sel]]).astype(np.int64)
            gather = self._bytes[off[:, None] + np.arange(8, dtype=np.int64)]
            out[sel] = np.ascontiguousarray(gather).view("<u8").ravel()
        rest = np.flatnonzero(~infile)
        for i in rest.tolist():          # words at/after p_filesz (rare): the slow path
            out[i] = self.read_u64(int(flat[i]))
        return out.reshape(arr.shape)

    def frame(self, pfn: int) -> np.ndarray:
        """Read-only (512,) uint64 contents of frame ``pfn``."""
        base = pfn * _FRAME
        s = self._segment(base)
        if s is not None and base + _FRAME <= s.paddr + s.filesz and self._mm is not None:
            off = s.offset + (base - s.paddr)
            if off % 8 == 0:
                v = np.frombuffer(self._mm, dtype="<u8", count=512, offset=off)
                return v.astype(_U64, copy=False)
        v = np.frombuffer(self.read(base, _FRAME), dtype="<u8").astype(_U64)
        v.flags.writeable = False
        return v

    def table(self, pfn: int) -> np.ndarray:
        """Same as :meth:`frame`: a dump's page tables are read, never edited (the view is read-only,
        so the page-table code's writes raise)."""
        return self.frame(pfn)

    # ---------------------------------------------------------------- writes: refused
    def _readonly(self, *a: object, **k: object) -> None:
        raise DumpReadError("a dump is read-only")

    write = write_u64 = write_u64_array = fill = discard = _readonly

    def is_materialised(self, pfn: int) -> bool:
        return self.contains(pfn * _FRAME, _FRAME)

    def frames_materialised(self) -> int:
        return sum((e - s) // _FRAME for s, e in self.ranges())

    def bytes_held(self) -> int:
        return sum(s.filesz for s in self.segments)

    def close(self) -> None:
        self._bytes = np.zeros(0, dtype=np.uint8)
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:      # numpy views still alive: the GC closes it later
                pass
            self._mm = None
