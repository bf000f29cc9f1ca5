"""Simulated physical memory: 4 KiB frames materialised on first write, plus fill regions.

Storage (docs/architecture.md, ``vmemmap.physmem``):

* **Frames.** A frame that has been written is a row of one growing 2-D numpy array
  ``(capacity, 512) uint64`` (the *pool*; capacity doubles when full).  ``pfn -> row`` lives in a
  dict; rows of discarded frames go to a free list and are reused.  A materialised frame holds the
  *complete* content of its 4 KiB: fill-region values are copied into it when it materialises.
* **Fill regions.** ``fill(start, end, origin, stride, words)`` records that ``[start, end)`` reads
  as a repetition of a ``stride``-byte record starting at ``origin`` (the kernel's memmap after
  ``memmap_init``: every ``struct page`` carries the same ``flags`` word over a range).  Regions are
  kept non-overlapping in a list sorted by start (bisect), never per page, so a 64 TiB machine's
  memmap costs ~1000 regions.
* **Never written** memory reads as zero (the kernel's zeroed memblock/page allocations).

Reads look at a frame's row if it is materialised, else at the fill region covering the address,
else return zero.  ``read_u64_array`` is vectorised: frames are located with ``np.searchsorted``
over a sorted index of materialised pfns, fill regions are evaluated per region with numpy.

Views returned by :meth:`PhysMem.table` alias the pool: they stay valid only until the next frame
materialises (the pool may be reallocated) or the frame is discarded.  Take a fresh view each time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

__all__ = ["PhysMem", "FillRegion"]

_FRAME_SHIFT = 12
_FRAME_SIZE = 1 << _FRAME_SHIFT
_WORDS = _FRAME_SIZE // 8
_U64 = np.uint64
#: records up to this many words are evaluated through a dense lookup table
_DENSE_MAX_WORDS = 1 << 16


@dataclass(frozen=True)
class FillRegion:
    """``[start, end)`` reads as the record ``words`` (byte offset -> u64) repeated every ``stride``
    bytes from ``origin``.  ``table`` is the dense record (``stride // 8`` words) when the record is
    small, else ``keys``/``vals`` hold its non-zero words sorted by word index."""

    start: int
    end: int
    origin: int
    stride: int
    words: tuple[tuple[int, int], ...]
    table: np.ndarray | None
    keys: np.ndarray
    vals: np.ndarray
    #: stepped records: every ``period`` bytes from ``origin`` each word grows by ``incs[word]``
    #: (struct pages whose ``page->flags`` carry the section number: it steps every section)
    period: int = 0
    incs: np.ndarray | None = None

    def clipped(self, start: int, end: int) -> FillRegion:
        return FillRegion(start, end, self.origin, self.stride, self.words, self.table, self.keys,
                          self.vals, self.period, self.incs)

    def value_at(self, addr: int) -> int:
        off = (addr - self.origin) % self.stride
        for o, v in self.words:
            if o == off:
                if self.period and self.incs is not None:
                    v = (v + ((addr - self.origin) // self.period) * int(self.incs[o // 8])) & ((1 << 64) - 1)
                return v
        return 0

    def values(self, addrs: np.ndarray) -> np.ndarray:
        """Vectorised: the u64 at each (8-byte aligned) address in ``addrs`` (all inside the region)."""
        widx = (addrs.astype(np.int64) - np.int64(self.origin)) % np.int64(self.stride) // 8
        if self.table is not None:
            if self.period and self.incs is not None:
                steps = ((addrs.astype(np.int64) - np.int64(self.origin)) // np.int64(self.period)).astype(_U64)
                return self.table[widx] + steps * self.incs[widx]
            return self.table[widx]
        out = np.zeros(addrs.shape, dtype=_U64)
        if self.keys.size:
            pos = np.searchsorted(self.keys, widx)
            pos = np.minimum(pos, self.keys.size - 1)
            hit = self.keys[pos] == widx
            out[hit] = self.vals[pos[hit]]
        return out


class PhysMem:
    """Physical memory of the simulated machine (byte addressed, little endian like x86)."""

    def __init__(self, initial_frames: int = 64) -> None:
        self._pool = np.zeros((max(1, initial_frames), _WORDS), dtype=_U64)
        self._used = 0                      # high-water mark of rows handed out
        self._rows: dict[int, int] = {}      # pfn -> row
        self._free: list[int] = []           # recycled rows
        self._index: tuple[np.ndarray, np.ndarray] | None = None   # sorted pfns, their rows
        self._fstarts: list[int] = []        # fill regions, sorted by start, non-overlapping
        self._fregions: list[FillRegion] = []
        self._fnp: tuple[np.ndarray, np.ndarray] | None = None     # numpy starts/ends cache

    # ---------------------------------------------------------------- frames
    def _alloc_row(self) -> int:
        if self._free:
            return self._free.pop()
        if self._used == self._pool.shape[0]:
            grown = np.zeros((self._pool.shape[0] * 2, _WORDS), dtype=_U64)
            grown[: self._used] = self._pool[: self._used]
            self._pool = grown
        row = self._used
        self._used += 1
        return row

    def _materialise(self, pfn: int) -> int:
        """Row of frame ``pfn``, creating it (from the fill pattern, or zeros) if needed."""
        row = self._rows.get(pfn)
        if row is not None:
            return row
        row = self._alloc_row()
        base = pfn << _FRAME_SHIFT
        if self._fregions and self._fill_overlaps(base, base + _FRAME_SIZE):
            addrs = np.arange(base, base + _FRAME_SIZE, 8, dtype=_U64)
            self._pool[row] = self._fill_values(addrs)
        else:
            self._pool[row] = 0
        self._rows[pfn] = row
        self._index = None
        return row

    def _drop(self, pfn: int) -> None:
        row = self._rows.pop(pfn, None)
        if row is not None:
            self._free.append(row)
            self._index = None

    def _sorted_index(self) -> tuple[np.ndarray, np.ndarray]:
        if self._index is None:
            pfns = np.fromiter(self._rows.keys(), dtype=_U64, count=len(self._rows))
            rows = np.fromiter(self._rows.values(), dtype=np.int64, count=len(self._rows))
            order = np.argsort(pfns, kind="stable")
            self._index = (pfns[order], rows[order])
        return self._index

    def _frames_in(self, start_pfn: int, end_pfn: int) -> list[int]:
        """Materialised pfns in ``[start_pfn, end_pfn)``; cost O(min(range, frames))."""
        if end_pfn - start_pfn <= len(self._rows):
            return [p for p in range(start_pfn, end_pfn) if p in self._rows]
        return [p for p in self._rows if start_pfn <= p < end_pfn]

    # ---------------------------------------------------------------- fill regions
    def _fill_np(self) -> tuple[np.ndarray, np.ndarray]:
        if self._fnp is None:
            self._fnp = (np.array(self._fstarts, dtype=_U64),
                         np.array([r.end for r in self._fregions], dtype=_U64))
        return self._fnp

    def _fill_overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self._fstarts, end) - 1
        return i >= 0 and self._fregions[i].end > start

    def _fill_value(self, addr: int) -> int:
        i = bisect.bisect_right(self._fstarts, addr) - 1
        if i >= 0:
            r = self._fregions[i]
            if addr < r.end:
                return r.value_at(addr)
        return 0

    def _fill_values(self, addrs: np.ndarray) -> np.ndarray:
        """Vectorised fill-region lookup for 8-byte aligned ``addrs`` (zeros outside regions)."""
        out = np.zeros(addrs.shape, dtype=_U64)
        if not self._fregions or addrs.size == 0:
            return out
        starts, ends = self._fill_np()
        idx = np.searchsorted(starts, addrs, side="right").astype(np.int64) - 1
        ok = idx >= 0
        ok[ok] = addrs[ok] < ends[idx[ok]]
        if not ok.any():
            return out
        sel = np.flatnonzero(ok)
        ridx = idx[sel]
        for r in np.unique(ridx):
            m = sel[ridx == r]
            out[m] = self._fregions[int(r)].values(addrs[m])
        return out

    def _clip_fills(self, start: int, end: int) -> None:
        """Remove ``[start, end)`` from the fill regions (splitting a region that straddles it)."""
        i = bisect.bisect_right(self._fstarts, start) - 1
        if i < 0 or self._fregions[i].end <= start:
            i += 1
        j = i
        pieces: list[FillRegion] = []
        while j < len(self._fregions) and self._fregions[j].start < end:
            r = self._fregions[j]
            if r.start < start:
                pieces.append(r.clipped(r.start, start))
            if r.end > end:
                pieces.append(r.clipped(end, r.end))
            j += 1
        if j == i:
            return
        self._fregions[i:j] = pieces
        self._fstarts[i:j] = [p.start for p in pieces]
        self._fnp = None

    @staticmethod
    def _check_range(start: int, end: int, what: str) -> None:
        if start < 0 or end < start:
            raise ValueError(f"{what}: bad range [{start:#x}, {end:#x})")
        if start & 7 or end & 7:
            raise ValueError(f"{what}: range [{start:#x}, {end:#x}) must be 8-byte aligned")

    def _edge_frames(self, start: int, end: int) -> tuple[list[int], list[int]]:
        """Materialised frames fully inside ``[start, end)`` and those only partly inside."""
        first, last = start >> _FRAME_SHIFT, (end - 1) >> _FRAME_SHIFT
        full, part = [], []
        for pfn in self._frames_in(first, last + 1):
            base = pfn << _FRAME_SHIFT
            (full if start <= base and base + _FRAME_SIZE <= end else part).append(pfn)
        return full, part

    def fill(self, start: int, end: int, origin: int, stride: int, words: dict[int, int],
             step: tuple[int, dict[int, int]] | None = None) -> None:
        """Make ``[start, end)`` read as a repetition of a ``stride``-byte record starting at
        ``origin`` whose u64 at byte offset ``o`` is ``words[o]`` (other bytes zero).  Replaces
        whatever was there.  Models memmap_init()/__init_single_page() writing the same
        ``page->flags`` into every struct page of a zone range, without materialising the memmap.

        ``step=(period, incs)``: every ``period`` bytes from ``origin`` (a multiple of ``stride``)
        the word at offset ``o`` grows by ``incs[o]`` — section numbers in ``page->flags``."""
        self._check_range(start, end, "fill")
        if stride <= 0 or stride & 7:
            raise ValueError(f"fill: stride {stride} must be a positive multiple of 8")
        if origin & 7:
            raise ValueError(f"fill: origin {origin:#x} must be 8-byte aligned")
        for o, v in words.items():
            if o < 0 or o >= stride or o & 7:
                raise ValueError(f"fill: word offset {o} must be a multiple of 8 below {stride}")
            if v < 0 or v >> 64:
                raise ValueError(f"fill: value {v:#x} does not fit 64 bits")
        if start == end:
            return
        items = tuple(sorted((o, v & ((1 << 64) - 1)) for o, v in words.items() if v))
        nwords = stride // 8
        keys = np.array([o // 8 for o, _ in items], dtype=np.int64)
        vals = np.array([v for _, v in items], dtype=_U64)
        table = None
        if nwords <= _DENSE_MAX_WORDS:
            table = np.zeros(nwords, dtype=_U64)
            table[keys] = vals
        period, incs = 0, None
        if step is not None:
            period = step[0]
            if table is None or period <= 0 or period % stride:
                raise ValueError("fill: a step needs a small record and a period that is a multiple of the stride")
            incs = np.zeros(nwords, dtype=_U64)
            for o, v in step[1].items():
                incs[o // 8] = v & ((1 << 64) - 1)
        region = FillRegion(start, end, origin, stride, items, table, keys, vals, period, incs)
        full, part = self._edge_frames(start, end)
        for pfn in full:
            self._drop(pfn)
        self._clip_fills(start, end)
        i = bisect.bisect_left(self._fstarts, start)
        self._fstarts.insert(i, start)
        self._fregions.insert(i, region)
        self._fnp = None
        for pfn in part:      # frames that stay materialised get the pattern in the covered part
            base = pfn << _FRAME_SHIFT
            lo, hi = max(start, base), min(end, base + _FRAME_SIZE)
            addrs = np.arange(lo, hi, 8, dtype=_U64)
            row = self._rows[pfn]
            self._pool[row, (lo - base) >> 3:(hi - base) >> 3] = region.values(addrs)

    def discard(self, start: int, end: int) -> None:
        """Forget the contents of ``[start, end)`` (memory freed): it reads zero again.  Frames
        wholly inside are released (their pool rows recycled); fill regions are clipped."""
        self._check_range(start, end, "discard")
        if start == end:
            return
        full, part = self._edge_frames(start, end)
        for pfn in full:
            self._drop(pfn)
        for pfn in part:
            base = pfn << _FRAME_SHIFT
            lo, hi = max(start, base), min(end, base + _FRAME_SIZE)
            self._pool[self._rows[pfn], (lo - base) >> 3:(hi - base) >> 3] = 0
        self._clip_fills(start, end)

    def fill_regions(self) -> list[FillRegion]:
        """The fill regions, sorted by start (for inspection and tests)."""
        return list(self._fregions)

    # ---------------------------------------------------------------- scalar access
    def read_u64(self, phys: int) -> int:
        """The little-endian u64 at 8-byte aligned ``phys``."""
        if phys & 7 or phys < 0:
            raise ValueError(f"read_u64: {phys:#x} is not 8-byte aligned")
        row = self._rows.get(phys >> _FRAME_SHIFT)
        if row is not None:
            return int(self._pool[row, (phys & (_FRAME_SIZE - 1)) >> 3])
        return self._fill_value(phys) if self._fregions else 0

    def write_u64(self, phys: int, value: int) -> None:
        """Store ``value`` (0 <= value < 2**64) at 8-byte aligned ``phys``."""
        if phys & 7 or phys < 0:
            raise ValueError(f"write_u64: {phys:#x} is not 8-byte aligned")
        if value < 0 or value >> 64:
            raise ValueError(f"write_u64: value {value:#x} does not fit 64 bits")
        row = self._materialise(phys >> _FRAME_SHIFT)
        self._pool[row, (phys & (_FRAME_SIZE - 1)) >> 3] = value

    def read(self, phys: int, size: int) -> bytes:
        """``size`` bytes from ``phys`` (any alignment)."""
        if size < 0 or phys < 0:
            raise ValueError("read: negative address or size")
        if size == 0:
            return b""
        lo = phys & ~7
        hi = (phys + size + 7) & ~7
        out = bytearray()
        a = lo
        while a < hi:
            pfn = a >> _FRAME_SHIFT
            seg_end = min(hi, (pfn + 1) << _FRAME_SHIFT)
            w0, w1 = (a & (_FRAME_SIZE - 1)) >> 3, ((seg_end - 1) & (_FRAME_SIZE - 1)) // 8 + 1
            row = self._rows.get(pfn)
            if row is not None:
                out += self._pool[row, w0:w1].tobytes()
            else:
                out += self._fill_values(np.arange(a, seg_end, 8, dtype=_U64)).astype("<u8").tobytes()
            a = seg_end
        return bytes(out[phys - lo: phys - lo + size])

    def write(self, phys: int, data: bytes) -> None:
        """Store ``data`` at ``phys`` (any alignment), materialising the frames it touches."""
        if phys < 0:
            raise ValueError("write: negative address")
        mv = memoryview(bytes(data))
        a, end = phys, phys + len(mv)
        while a < end:
            pfn = a >> _FRAME_SHIFT
            seg_end = min(end, (pfn + 1) << _FRAME_SHIFT)
            row = self._materialise(pfn)
            off = a & (_FRAME_SIZE - 1)
            self._pool[row].view(np.uint8)[off: off + (seg_end - a)] = np.frombuffer(
                mv[a - phys: seg_end - phys], dtype=np.uint8)
            a = seg_end

    # ---------------------------------------------------------------- bulk access
    def read_u64_array(self, phys: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`read_u64`: uint64 addresses in (any shape), uint64 values out."""
        arr = np.asarray(phys, dtype=_U64)
        flat = arr.ravel()
        if flat.size and np.any(flat & _U64(7)):
            bad = int(flat[np.flatnonzero(flat & _U64(7))[0]])
            raise ValueError(f"read_u64_array: {bad:#x} is not 8-byte aligned")
        out = np.zeros(flat.shape, dtype=_U64)
        if flat.size == 0:
            return out.reshape(arr.shape)
        pfns = flat >> _U64(_FRAME_SHIFT)
        miss: np.ndarray | None = None
        if self._rows:
            spfn, srow = self._sorted_index()
            pos = np.searchsorted(spfn, pfns)
            np.minimum(pos, spfn.size - 1, out=pos)
            hit = spfn[pos] == pfns
            flat_idx = srow[pos] * _WORDS + ((flat & _U64(_FRAME_SIZE - 1)) >> _U64(3)).astype(
                np.int64)
            out = self._pool.reshape(-1)[flat_idx]
            if not hit.all():
                miss = ~hit
                out[miss] = 0
        else:
            miss = np.ones(flat.shape, dtype=bool)
        if self._fregions and miss is not None and miss.any():
            out[miss] = self._fill_values(flat[miss])
        return out.reshape(arr.shape)

    def write_u64_array(self, phys: np.ndarray, values: np.ndarray) -> None:
        """Vectorised :meth:`write_u64` (later duplicates win, like sequential stores)."""
        a = np.asarray(phys, dtype=_U64).ravel()
        v = np.broadcast_to(np.asarray(values, dtype=_U64), np.asarray(phys).shape).ravel()
        if a.size and np.any(a & _U64(7)):
            raise ValueError("write_u64_array: addresses must be 8-byte aligned")
        if a.size == 0:
            return
        pfns = a >> _U64(_FRAME_SHIFT)
        upfn, inv = np.unique(pfns, return_inverse=True)
        rows_u = np.array([self._materialise(int(p)) for p in upfn], dtype=np.int64)
        self._pool[rows_u[inv], ((a & _U64(_FRAME_SIZE - 1)) >> _U64(3)).astype(np.int64)] = v

    def table(self, pfn: int) -> np.ndarray:
        """(512,) uint64 view of frame ``pfn``, materialised (page tables are edited through it).
        The view is valid until the next frame materialises or this frame is discarded."""
        row = self._materialise(pfn)       # may reallocate the pool: index it afterwards
        return self._pool[row]

    def frame(self, pfn: int) -> np.ndarray:
        """Read-only (512,) uint64 contents of frame ``pfn`` without materialising it."""
        row = self._rows.get(pfn)
        if row is not None:
            v = self._pool[row]
            v = v.view()
            v.flags.writeable = False
            return v
        base = pfn << _FRAME_SHIFT
        if self._fregions and self._fill_overlaps(base, base + _FRAME_SIZE):
            return self._fill_values(np.arange(base, base + _FRAME_SIZE, 8, dtype=_U64))
        return np.zeros(_WORDS, dtype=_U64)

    def is_materialised(self, pfn: int) -> bool:
        return pfn in self._rows

    # ---------------------------------------------------------------- accounting
    def frames_materialised(self) -> int:
        """Number of 4 KiB frames currently held in the pool."""
        return len(self._rows)

    def bytes_held(self) -> int:
        """Bytes of simulated content held: 4 KiB per materialised frame plus the fill regions'
        record tables (shared between pieces of a split region) and a small per-region cost."""
        seen: set[int] = set()
        rec = 0
        for r in self._fregions:
            t = r.table if r.table is not None else r.keys
            if id(t) not in seen:
                seen.add(id(t))
                rec += t.nbytes + r.vals.nbytes
        return len(self._rows) * _FRAME_SIZE + rec + 64 * len(self._fregions)
