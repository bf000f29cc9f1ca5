"""The boot allocator: memblock (top-down) or bootmem (bottom-up from a goal).

Models ``mm/memblock.c`` (``memblock_add_node``, ``memblock_reserve``, ``memblock_alloc_try_nid_raw``:
top-down, node-local, aligned, falling back to any node) and the 2.6.2x ``mm/bootmem.c``
(``__alloc_bootmem_node(pgdat, size, align, goal)``: the lowest free fit at or above ``goal`` inside
the node, then below the goal). The era picks which one (``era.boot_allocator``).

Memory is described by ranges, never pages: each node keeps a sorted list of free ``[start, end)``
ranges (found by bisection), so the cost of an allocation grows with the number of free ranges.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from vmemmap.errors import BootError

PAGE_SIZE = 4096
NUMA_NO_NODE = -1


@dataclass
class Allocation:
    """One allocation, as ``memblock=debug`` would print it (coalesced when adjacent and alike)."""

    start: int
    end: int
    nid: int
    what: str


@dataclass
class _NodeFree:
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)


def cut_ranges(ranges: list[tuple[int, int, int]], start: int, end: int) -> list[tuple[int, int, int]]:
    """``(start, end, tag)`` ranges with ``[start, end)`` cut out (pieces keep their tag)."""
    out: list[tuple[int, int, int]] = []
    for s, e, n in ranges:
        if e <= start or s >= end:
            out.append((s, e, n))
            continue
        if s < start:
            out.append((s, start, n))
        if end < e:
            out.append((end, e, n))
    return out


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


def _align_down(x: int, a: int) -> int:
    return x & ~(a - 1)


class Memblock:
    """Per-node free lists with top-down or bottom-up allocation.

    ``top_down=True`` is memblock's default on x86 since 3.x (``memblock_set_bottom_up(false)``);
    ``False`` is bootmem's first-fit from ``goal`` (2.6.2x).
    """

    def __init__(self, top_down: bool) -> None:
        self.top_down = top_down
        self.memory: list[tuple[int, int, int]] = []  # (start, end, nid)
        self._free: dict[int, _NodeFree] = {}
        self.allocations: list[Allocation] = []
        self.reserved_bytes = 0

    # ------------------------------------------------------------------ setup
    def add(self, start: int, end: int, nid: int) -> None:
        """``memblock_add_node``: RAM ``[start, end)`` belongs to ``nid``."""
        start, end = _align_up(start, PAGE_SIZE), _align_down(end, PAGE_SIZE)
        if end <= start:
            return
        self.memory.append((start, end, nid))
        self.memory.sort()
        nf = self._free.setdefault(nid, _NodeFree())
        i = bisect.bisect_left(nf.starts, start)
        nf.starts.insert(i, start)
        nf.ends.insert(i, end)

    def reserve(self, start: int, end: int, what: str = "reserved") -> None:
        """``memblock_reserve``: take ``[start, end)`` out of every node's free list."""
        start, end = _align_down(start, PAGE_SIZE), _align_up(end, PAGE_SIZE)
        for nid, nf in self._free.items():
            self._take(nf, start, end)
        self.reserved_bytes += end - start
        self._record(start, end, -1, what)

    # ------------------------------------------------------------------ allocate
    def alloc(
        self,
        size: int,
        align: int,
        nid: int,
        what: str,
        goal: int = 0,
        limit: int | None = None,
        exact_nid: bool = False,
    ) -> int:
        """Allocate ``size`` bytes aligned to ``align`` on ``nid``.

        memblock (top-down): the highest fit below ``limit`` and at or above ``goal``
        (``memblock_alloc_try_nid_raw``; retried without the goal, then on any node unless
        ``exact_nid``). bootmem: the lowest fit at or above ``goal`` in the node, then from the
        node start (``___alloc_bootmem_node``).
        """
        align = max(align, 8)
        if nid == NUMA_NO_NODE:
            # memblock_alloc(): any node, the highest fit in the whole of memory (top-down)
            nodes = sorted(self._free, key=lambda n: max(self._free[n].ends, default=0), reverse=self.top_down)
        else:
            nodes = [nid] + ([] if exact_nid else [n for n in sorted(self._free) if n != nid])
        for n in nodes:
            if n not in self._free:
                continue
            for g in (goal, 0) if goal else (0,):
                addr = self._find(self._free[n], size, align, g, limit)
                if addr is not None:
                    self._take(self._free[n], addr, addr + size)
                    self._record(addr, addr + size, n, what)
                    return addr
        raise BootError(
            f"out of boot memory: cannot allocate {size:#x} bytes aligned {align:#x} on node {nid} for {what}"
        )

    def alloc_seq(self, count: int, size: int, nid: int, what: str, goal: int = 0) -> list[tuple[int, int]]:
        """``count`` successive ``alloc(size, size, nid, goal)`` calls, as ``(start, n)`` runs.

        For bootmem (bottom-up first fit) the blocks are taken in address order from the free ranges
        at or above the goal, which is exactly what the calls one by one return; top-down memblock
        falls back to single calls.
        """
        out: list[tuple[int, int]] = []
        if not self.top_down and nid in self._free:
            nf = self._free[nid]
            j = bisect.bisect_right(nf.ends, goal)
            while count and j < len(nf.starts):
                s, e = nf.starts[j], nf.ends[j]
                cand = _align_up(max(s, goal), size)
                n = min(count, max(0, (e - cand) // size))
                if n:
                    self._take(nf, cand, cand + n * size)
                    self._record(cand, cand + n * size, nid, what)
                    out.append((cand, n))
                    count -= n
                    j = bisect.bisect_right(nf.ends, goal)
                else:
                    j += 1
        for _ in range(count):
            p = self.alloc(size, size, nid, what, goal=goal)
            if out and out[-1][0] + out[-1][1] * size == p:
                out[-1] = (out[-1][0], out[-1][1] + 1)
            else:
                out.append((p, 1))
        return out

    def free(self, start: int, end: int) -> None:
        """``memblock_free``: give ``[start, end)`` back to the node that owns it."""
        for ms, me, nid in self.memory:
            s, e = max(start, ms), min(end, me)
            if s < e:
                self._give(self._free[nid], s, e)
        self._unrecord(start, end)

    def alloc_first_fit(self, size: int, align: int, nid: int, lo: int, hi: int | None, what: str) -> int | None:
        """The lowest ``align``-aligned free ``[p, p+size)`` of node ``nid`` inside ``[lo, hi)``, taken;
        None when there is none.  The run-time page allocator stand-in of :mod:`vmemmap.hotplug`."""
        nf = self._free.get(nid)
        if nf is None:
            return None
        addr = self._find(nf, size, max(align, 8), lo, hi, top_down=False)
        if addr is None:
            return None
        self._take(nf, addr, addr + size)
        self._record(addr, addr + size, nid, what)
        return addr

    def add_free(self, start: int, end: int, nid: int) -> None:
        """``memblock_add_node`` of memory that is free at once (memory onlined after boot): joins the
        memory list and the node's free list, merged with adjacent ranges of the same node."""
        self.memory.append((start, end, nid))
        self.memory.sort()
        merged: list[tuple[int, int, int]] = []
        for s, e, n in self.memory:
            if merged and merged[-1][2] == n and merged[-1][1] == s:
                merged[-1] = (merged[-1][0], e, n)
            else:
                merged.append((s, e, n))
        self.memory = merged
        self._give(self._free.setdefault(nid, _NodeFree()), start, end)

    def remove_range(self, start: int, end: int) -> None:
        """``memblock_remove``: ``[start, end)`` is no longer memory (taken from the memory list and from
        every free list)."""
        self.memory = cut_ranges(self.memory, start, end)
        for nf in self._free.values():
            self._take(nf, start, end)

    def is_free(self, start: int, end: int) -> bool:
        """Whether all of ``[start, end)`` is in one free range of some node."""
        for nf in self._free.values():
            i = bisect.bisect_right(nf.starts, start) - 1
            if i >= 0 and nf.ends[i] >= end:
                return True
        return False

    def free_ranges(self) -> dict[int, list[tuple[int, int]]]:
        """Every node's free ranges, merged (for comparing allocator states)."""
        out: dict[int, list[tuple[int, int]]] = {}
        for nid, nf in sorted(self._free.items()):
            rs: list[tuple[int, int]] = []
            for s, e in zip(nf.starts, nf.ends):
                if rs and rs[-1][1] >= s:
                    rs[-1] = (rs[-1][0], max(rs[-1][1], e))
                else:
                    rs.append((s, e))
            out[nid] = rs
        return out

    def free_bytes(self, nid: int | None = None) -> int:
        nids = [nid] if nid is not None else list(self._free)
        return sum(
            sum(e - s for s, e in zip(self._free[n].starts, self._free[n].ends)) for n in nids if n in self._free
        )

    def node_of(self, phys: int) -> int:
        for s, e, nid in self.memory:
            if s <= phys < e:
                return nid
        return -1

    # ------------------------------------------------------------------ internals
    def _find(self, nf: _NodeFree, size: int, align: int, goal: int, limit: int | None,
              top_down: bool | None = None) -> int | None:
        if self.top_down if top_down is None else top_down:
            for i in range(len(nf.starts) - 1, -1, -1):
                s, e = nf.starts[i], nf.ends[i]
                if limit is not None:
                    e = min(e, limit)
                if e <= goal:
                    break
                cand = _align_down(e - size, align)
                if cand >= max(s, goal):
                    return cand
            return None
        # first fit at or above the goal: skip (by bisection) free ranges that end below it
        for j in range(bisect.bisect_right(nf.ends, goal), len(nf.starts)):
            s, e = nf.starts[j], nf.ends[j]
            if limit is not None:
                e = min(e, limit)
            cand = _align_up(max(s, goal), align)
            if cand + size <= e:
                return cand
        return None

    @staticmethod
    def _take(nf: _NodeFree, start: int, end: int) -> None:
        i = bisect.bisect_right(nf.starts, start) - 1
        i = max(i, 0)
        while i < len(nf.starts) and nf.starts[i] < end:
            s, e = nf.starts[i], nf.ends[i]
            if e <= start:
                i += 1
                continue
            pieces = []
            if s < start:
                pieces.append((s, start))
            if end < e:
                pieces.append((end, e))
            del nf.starts[i]
            del nf.ends[i]
            for k, (ps, pe) in enumerate(pieces):
                nf.starts.insert(i + k, ps)
                nf.ends.insert(i + k, pe)
            i += len(pieces)

    @staticmethod
    def _give(nf: _NodeFree, start: int, end: int) -> None:
        i = bisect.bisect_left(nf.starts, start)
        nf.starts.insert(i, start)
        nf.ends.insert(i, end)
        # merge with neighbours
        if i + 1 < len(nf.starts) and nf.ends[i] >= nf.starts[i + 1]:
            nf.ends[i] = max(nf.ends[i], nf.ends[i + 1])
            del nf.starts[i + 1]
            del nf.ends[i + 1]
        if i > 0 and nf.ends[i - 1] >= nf.starts[i]:
            nf.ends[i - 1] = max(nf.ends[i - 1], nf.ends[i])
            del nf.starts[i]
            del nf.ends[i]

    def _record(self, start: int, end: int, nid: int, what: str) -> None:
        if self.allocations:
            last = self.allocations[-1]
            if last.what == what and last.nid == nid and (last.end == start or end == last.start):
                last.start, last.end = min(last.start, start), max(last.end, end)
                return
        self.allocations.append(Allocation(start, end, nid, what))

    def _unrecord(self, start: int, end: int) -> None:
        out: list[Allocation] = []
        for a in self.allocations:
            if a.end <= start or a.start >= end:
                out.append(a)
                continue
            if a.start < start:
                out.append(Allocation(a.start, start, a.nid, a.what))
            if end < a.end:
                out.append(Allocation(end, a.end, a.nid, a.what))
        self.allocations = out
