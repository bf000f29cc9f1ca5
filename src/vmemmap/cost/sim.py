"""Trace-driven TLB / page-walk / cache simulator.

Every access of a :class:`~vmemmap.cost.trace.Trace` (a virtual address) is translated through the
CPU's TLB hierarchy — set-associative true-LRU arrays per page size, the L1 DTLB then the L2 TLB —
and an L2 TLB miss walks the booted kernel's real page tables. The walk's memory references are the
entries the MMU reads (``WalkStep.entry_phys``), minus those a paging-structure cache hit skips
(the deepest non-leaf level found in a PSC restarts the walk below it). Every walk reference and
every data access goes through set-associative LRU caches on physical addresses (L1D, L2, LLC,
filled on the way back from the level that hit; an LLC miss reads DRAM).

Cycles: an access costs the L2 TLB lookup if the L1 DTLB misses, plus each walk reference's load
latency if the L2 TLB misses, plus its own load latency (the latency of the cache level that hit, or
DRAM). Within an operation an access starts when the accesses its address depends on have finished
(``Trace.dep_ptr``/``dep_pos``); the operation's cycles are the latest finish. All numbers come from the CPU preset
(``cost/cpus/*.toml``); nothing here is a cost constant.

Two implementations agree exactly (tests/test_cost.py):

* :class:`ScalarSim` — plain Python objects, walks with ``PageTables.walk``; can narrate each step
  (``explain``) for one operation;
* :func:`simulate` — the same algorithm over numpy arrays in two compiled passes (see "Two passes"
  below): the TLB / walk / PSC pass and the cache pass, written out for each CPU model by
  :mod:`vmemmap.cost.simgen` (the model's geometry as literals) and compiled by numba once per
  machine (cached on disk). The page tables are snapshotted into an array (``snapshot_tables``)
  and every set is stored as one compact block (see "Set layout" below). Without numba the same
  passes run interpreted (correct, slow), and :data:`COMPILED` is False. The passes are compiled
  without numba's negative-index wraparound (:func:`_compiled`; no index in them is negative),
  which was a constant cost on every array access.

Operations may have any length: an access waits for the positions ``Trace.dep_pos[dep_ptr[i]:
dep_ptr[i+1]]`` of its operation, and the finish-time scratch is sized by the trace's largest position.
"""

from __future__ import annotations

from collections.abc import Callable
import mmap
import os
import queue
import threading
from dataclasses import dataclass, field

import numpy as np

from vmemmap.cost.cpu import PSC_LEVELS, SIZE_NAMES, SIZE_SHIFT, Cpu
from vmemmap.cost.trace import KIND_NAMES, Trace
from vmemmap.paging.entry import _PAGE_PRESENT, PTE_PFN_MASK
from vmemmap.paging.tables import PageTables

try:
    import numba

    COMPILED = True
except ImportError:  # pragma: no cover - numba is a dependency; keep working without it
    numba = None
    COMPILED = False

# per-op counter columns
F_L1 = 0          # L1 DTLB misses, + size class (4k, 2m, 1g)
F_L2 = 3          # L2 TLB misses (= page walks), + size class
F_WALK = 6        # walk memory references
F_PSC = 7         # paging-structure cache hits
F_DMISS = 8       # data-access misses per cache level (L1D, L2, LLC)
F_WMISS = 11      # walk-reference misses per cache level
F_CYC = 14        # cycles (critical path of the op)
F_FAULT = 15      # accesses to unmapped addresses (skipped; should stay 0)
NF = 16
FIELD_NAMES = ("l1tlb_miss_4k", "l1tlb_miss_2m", "l1tlb_miss_1g", "l2tlb_miss_4k", "l2tlb_miss_2m",
               "l2tlb_miss_1g", "walk_refs", "psc_hits", "data_miss_c0", "data_miss_c1", "data_miss_c2",
               "walk_miss_c0", "walk_miss_c1", "walk_miss_c2", "cycles", "faults")


def _level_of_step(levels: int, d: int) -> int:
    """Hardware level (PSC_LEVELS: 0 pd, 1 pdpt, 2 pml4, 3 pml5) of walk step ``d`` (0 = top)."""
    return levels - 2 - d


# ====================================================================== scalar (pure Python)

class _Lru:
    """One set-associative true-LRU array of keys (and a payload per entry)."""

    def __init__(self, sets: int, ways: int) -> None:
        self.sets, self.ways = sets, ways
        self.tag = [[-1] * ways for _ in range(sets)]
        self.stamp = [[0] * ways for _ in range(sets)]
        self.data: list[list[tuple[int, int]]] = [[(0, 0)] * ways for _ in range(sets)]

    def lookup(self, key: int, s: int, now: int) -> tuple[int, int] | None:
        row = self.tag[s]
        for w in range(self.ways):
            if row[w] == key:
                self.stamp[s][w] = now
                return self.data[s][w]
        return None

    def insert(self, key: int, s: int, now: int, data: tuple[int, int] = (0, 0)) -> None:
        row = self.tag[s]
        victim = -1
        for w in range(self.ways):
            if row[w] == -1:
                victim = w
                break
        if victim < 0:
            st = self.stamp[s]
            victim = min(range(self.ways), key=st.__getitem__)
        row[victim] = key
        self.stamp[s][victim] = now
        self.data[s][victim] = data


class ScalarSim:
    """The simulator in plain Python, one access at a time; ``explain`` receives a line per step."""

    def __init__(self, cpu: Cpu, tables: PageTables, explain: Callable[[str], None] | None = None) -> None:
        self.cpu, self.tables, self.explain = cpu, tables, explain
        self.levels = tables.levels
        self.lin_mask = (1 << tables.va_bits) - 1
        self.tlbs = [(t, _Lru(t.sets, t.ways)) for t in cpu.tlbs]
        self.pscs = [(p, {PSC_LEVELS[lv] for lv in p.levels}, _Lru(p.sets, p.ways)) for p in cpu.pscs]
        self.caches = [(c, _Lru(c.sets, c.ways), c.line.bit_length() - 1) for c in cpu.caches]
        self.now = 0

    def _say(self, msg: str) -> None:
        if self.explain:
            self.explain(msg)

    def _tick(self) -> int:
        self.now += 1
        return self.now

    def _tlb_lookup(self, level: int, lin: int) -> tuple[int, int] | None:
        for t, lru in self.tlbs:
            if t.level != level:
                continue
            for sc in range(3):
                if SIZE_NAMES[sc] not in t.page_sizes:
                    continue
                vpn = lin >> SIZE_SHIFT[sc]
                hit = lru.lookup(vpn * 4 + sc, vpn % lru.sets, self._tick())
                if hit is not None:
                    frame, real = hit
                    return frame + (lin & ((1 << SIZE_SHIFT[sc]) - 1)), real
        return None

    def _tlb_fill(self, level: int, lin: int, phys: int, real: int) -> None:
        for t, lru in self.tlbs:
            if t.level != level:
                continue
            sc = t.holds(real)
            if sc is None:
                continue
            vpn = lin >> SIZE_SHIFT[sc]
            frame = phys - (lin & ((1 << SIZE_SHIFT[sc]) - 1))
            lru.insert(vpn * 4 + sc, vpn % lru.sets, self._tick(), (frame, real))

    def _cache(self, phys: int) -> int:
        """Index of the cache level that hit (len(caches) = DRAM); fills the levels that missed."""
        nc = len(self.caches)
        hit = nc
        for c, (_, lru, ls) in enumerate(self.caches):
            line = phys >> ls
            if lru.lookup(line, line % lru.sets, self._tick()) is not None:
                hit = c
                break
        for c in range(hit):
            _, lru, ls = self.caches[c]
            line = phys >> ls
            lru.insert(line, line % lru.sets, self._tick())
        return hit

    def _lat(self, hit: int) -> int:
        return self.cpu.caches[hit].latency if hit < len(self.cpu.caches) else self.cpu.dram_cycles

    def _hit_name(self, hit: int) -> str:
        return self.cpu.caches[hit].name if hit < len(self.cpu.caches) else "DRAM"

    def run(self, trace: Trace) -> np.ndarray:
        """Per-op counters (rows = ops, columns = FIELD_NAMES)."""
        out = np.zeros((trace.n_ops, NF), dtype=np.int64)
        op = -1
        finish = [0] * (int(trace.pos.max()) + 1 if trace.n else 1)
        dep_ptr = trace.dep_ptr.tolist()
        dep_pos = trace.dep_pos.tolist()
        op_max = 0
        for i in range(trace.n):
            p = int(trace.pos[i])
            if p == 0:
                if op >= 0:
                    out[op, F_CYC] += op_max
                op += 1
                op_max = 0
                self._say(f"-- op {op}")
            row = out[op]
            va = int(trace.vaddr[i])
            lin = va & self.lin_mask
            self._say(f"[{p}] {KIND_NAMES[int(trace.kind[i])]} {va:#x} (depth {int(trace.depth[i])})")
            lat = 0
            got = self._tlb_lookup(1, lin)
            if got is not None:
                phys, real = got
                self._say(f"    L1 DTLB hit ({SIZE_NAMES[real]}) -> phys {phys:#x}")
            else:
                lat += self.cpu.l2_tlb_latency
                got = self._tlb_lookup(2, lin)
                if got is not None:
                    phys, real = got
                    self._say(f"    L1 DTLB miss, L2 TLB hit ({SIZE_NAMES[real]}, +{self.cpu.l2_tlb_latency} cycles)")
                else:
                    w = self.tables.walk(va)
                    if w.phys is None:
                        # a fault is counted and the access skipped; it finishes when its inputs do
                        row[F_FAULT] += 1
                        finish[p] = max((finish[q] for q in dep_pos[dep_ptr[i]:dep_ptr[i + 1]]), default=0)
                        self._say("    page fault: not mapped (access skipped)")
                        continue
                    phys = w.phys
                    real = SIZE_SHIFT.index(w.page_size.bit_length() - 1)
                    leaf = len(w.steps) - 1
                    start = 0
                    for d in range(leaf - 1, -1, -1):
                        hw = _level_of_step(self.levels, d)
                        key = (lin >> self.tables.shifts[d]) * 4 + hw
                        hit_psc = None
                        for pc, held, lru in self.pscs:
                            if hw in held and lru.lookup(key, (lin >> self.tables.shifts[d]) % lru.sets,
                                                         self._tick()) is not None:
                                hit_psc = pc
                                break
                        if hit_psc is not None:
                            start = d + 1
                            row[F_PSC] += 1
                            self._say(f"    {hit_psc.name} hit for the {w.steps[d].level} entry: walk starts "
                                      f"at {w.steps[start].level}")
                            break
                    self._say(f"    L1 DTLB miss, L2 TLB miss (+{self.cpu.l2_tlb_latency}): page walk")
                    for d in range(start, leaf + 1):
                        st = w.steps[d]
                        h = self._cache(st.entry_phys)
                        for c in range(h):
                            row[F_WMISS + c] += 1
                        row[F_WALK] += 1
                        lat += self._lat(h)
                        self._say(f"      read {st.level}[{st.index}] at phys {st.entry_phys:#x}: "
                                  f"{self._hit_name(h)} (+{self._lat(h)})")
                    for d in range(start, leaf):
                        hw = _level_of_step(self.levels, d)
                        for pc, held, lru in self.pscs:
                            if hw in held:
                                lru.insert((lin >> self.tables.shifts[d]) * 4 + hw,
                                           (lin >> self.tables.shifts[d]) % lru.sets, self._tick())
                    row[F_L2 + real] += 1
                    self._tlb_fill(2, lin, phys, real)
                    self._say(f"    -> {SIZE_NAMES[real]} page, phys {phys:#x}")
                row[F_L1 + real] += 1
                self._tlb_fill(1, lin, phys, real)
            h = self._cache(phys)
            for c in range(h):
                row[F_DMISS + c] += 1
            lat += self._lat(h)
            f = max((finish[q] for q in dep_pos[dep_ptr[i]:dep_ptr[i + 1]]), default=0)
            finish[p] = f + lat
            op_max = max(op_max, finish[p])
            self._say(f"    data: {self._hit_name(h)} (+{self._lat(h)}); access costs {lat}, done at cycle {finish[p]}")
        if op >= 0:
            out[op, F_CYC] += op_max
        return out


# ====================================================================== bulk (numba)

def snapshot_tables(tables: PageTables) -> tuple[np.ndarray, np.ndarray]:
    """Every table page reachable from the pgd: sorted physical addresses and their 512 entries."""
    phys = sorted({p for _, p in tables.iter_tables()})
    arr = np.empty((len(phys), 512), dtype=np.uint64)
    for i, p in enumerate(phys):
        arr[i] = tables.mem.frame(p >> 12)
    return np.array(phys, dtype=np.uint64), arr


def _njit(fn):  # noqa: ANN001, ANN202
    return numba.njit(cache=True, nogil=True, error_model="numpy", _nrt=False)(fn) if COMPILED else fn


_COMPILE_LOCK = threading.Lock()


def _fix_index_no_wrap(context, builder, idxty, idx, size):  # noqa: ANN001, ANN202
    """numba's ``fix_integer_index`` without negative-index wraparound (the kernel's indices are >= 0)."""
    return context.cast(builder, idx, idxty, numba.types.intp if idxty.signed else numba.types.uintp)


def _compiled(disp, args: tuple):  # noqa: ANN001, ANN202
    """``disp`` compiled (or loaded from numba's cache) for ``args``' types, without numba's
    negative-index wraparound: every array index in the kernel is >= 0, and a signed index otherwise
    costs a compare and an add (and a live array length) on each of the loop's hundred-odd array
    accesses. Lowering consults ``numba.np.arrayobj.fix_integer_index``; it is swapped only while
    this one function compiles, under a lock, and restored."""
    if not COMPILED or not hasattr(disp, "overloads"):
        return disp     # numba absent, or NUMBA_DISABLE_JIT=1: the plain Python function
    sig = tuple(numba.typeof(a) for a in args)
    if sig in disp.overloads:
        return disp
    from numba.np import arrayobj

    if not callable(getattr(arrayobj, "fix_integer_index", None)):
        return disp     # a numba without this hook: compile as usual (same results, a little slower)
    with _COMPILE_LOCK:
        if sig not in disp.overloads:
            orig = arrayobj.fix_integer_index
            arrayobj.fix_integer_index = _fix_index_no_wrap
            try:
                disp.compile(sig)
            finally:
                arrayobj.fix_integer_index = orig
    return disp


def _prefetch_py(blk, i):
    """Without numba: nothing (a prefetch changes no result)."""


if COMPILED and not numba.config.DISABLE_JIT:
    from llvmlite import ir as _ir
    from numba.core import cgutils as _cgutils
    from numba.extending import intrinsic as _intrinsic

    @_intrinsic
    def _prefetch(typingctx, arr, idx):
        """A host prefetch (``llvm.prefetch``, read, keep in all levels) of ``arr[idx]``: no result."""
        sig = numba.types.void(arr, idx)

        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = _cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
            i8p = _ir.IntType(8).as_pointer()
            i32 = _ir.IntType(32)
            fn = _cgutils.get_or_insert_function(builder.module, _ir.FunctionType(_ir.VoidType(), [i8p, i32, i32, i32]),
                                                 "llvm.prefetch.p0")
            builder.call(fn, [builder.bitcast(ptr, i8p), _ir.Constant(i32, 0), _ir.Constant(i32, 3),
                              _ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen
    def _match_intrinsic(n: int):  # noqa: ANN202
        """An intrinsic ``(blk, i, t) -> mask``: bit w set where ``blk[i + w] == t``, w < ``n``, as one
        vector load and compare (``t`` in the block's dtype)."""

        @_intrinsic
        def _match(typingctx, arr, idx, t):
            sig = numba.types.int64(arr, idx, t)

            def codegen(context, builder, signature, args):
                aryty = signature.args[0]
                ary = context.make_array(aryty)(context, builder, args[0])
                ptr = _cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
                vty = _ir.VectorType(context.get_data_type(aryty.dtype), n)
                v = builder.load(builder.bitcast(ptr, vty.as_pointer()), align=aryty.dtype.bitwidth // 8)
                tv = context.cast(builder, args[2], signature.args[2], aryty.dtype)
                one = builder.insert_element(_ir.Constant(vty, _ir.Undefined), tv, _ir.Constant(_ir.IntType(32), 0))
                splat = builder.shuffle_vector(one, _ir.Constant(vty, _ir.Undefined),
                                               _ir.Constant(_ir.VectorType(_ir.IntType(32), n), [0] * n))
                bits = builder.bitcast(builder.icmp_unsigned("==", v, splat), _ir.IntType(n))
                return builder.zext(bits, _ir.IntType(64))

            return sig, codegen

        return _match

    from numba.cpython.unsafe.numbers import trailing_zeros as _tz
else:  # pragma: no cover - without numba, or with NUMBA_DISABLE_JIT
    _prefetch = _prefetch_py

    def _match_intrinsic(n: int):  # noqa: ANN202
        def _match(blk, i, t):  # noqa: ANN001, ANN202
            t = blk.dtype.type(t)
            return sum(1 << w for w in range(n) if blk[int(i) + w] == t)
        return _match

    def _tz(m):  # noqa: ANN001, ANN202
        return (int(m) & -int(m)).bit_length() - 1


def _njit_inline(fn):  # noqa: ANN001, ANN202
    """Helpers are inlined into the loop (no per-call array reference counting)."""
    return numba.njit(cache=True, nogil=True, error_model="numpy", inline="always", _nrt=False)(fn) if COMPILED else fn


# Set layout. Every set of every array is one block of consecutive words: a 64-bit recency word
# (two words of 32 bits), the tags, for arrays of more than 16 ways ``3 * ways`` link words
# (``prev``, ``next``, ``hnext``), and for TLBs ``ways`` payloads (page frame | size class). Tags
# never move. A cache set of at most 16 ways keeps its tags in ``cls`` slots, ``ways`` rounded up to
# a power of two (the spare slots stay 0 = empty, never a key), so a lookup compares a fixed number
# of slots -- 2, 4, 8 or 16 -- in one vector compare (``_MATCH``).
#
# * Up to 16 ways (caches, most TLBs and PSCs): the recency word lists the way numbers as 4-bit
#   nibbles, most recently used first. A hit moves its nibble to the front (a few bit operations, no
#   search); a miss takes the way in the last nibble and puts it in front. Initially the nibbles read
#   ``ways-1 .. 1, 0``, so the empty ways are taken lowest first -- ScalarSim's lowest empty way --
#   and once the set is full the last nibble is its least recently used way (ScalarSim's minimum
#   stamp). A lookup compares all of the block's tags in one branch-free (vectorisable) pass; a miss
#   is one compare pass and O(1) bookkeeping.
# * More than 16 ways (fully associative L1 DTLBs and PSCs, wide L2 TLBs; caches of the tests): the
#   two recency words are the most and least recent way, and ``prev``/``next`` make a doubly linked
#   recency list. A hit unlinks its way and puts it in front; a miss takes the list's tail (the least
#   recently used way, ScalarSim's minimum stamp) and puts it in front: O(1), no stamp scan. The list
#   starts ``ways-1, ..., 1, 0`` (tail 0): empty ways hold no key, are never hit, and so leave the
#   tail lowest first, as ScalarSim's lowest empty way. TLB and PSC sets of this kind also keep a
#   hash table from tag to way: HASH_BUCKETS chain heads per set (``t_cnt``/``p_cnt``, way + 1, 0 =
#   end) chained through ``hnext``; a lookup walks one short chain instead of scanning the tags
#   (:func:`_hlook`), and a fill moves the replaced way between chains (:func:`_rehash`). Wide caches
#   (none in the presets) look up by the compare pass.
#
# Either way every set holds, after every step, the same keys as ScalarSim's -- same hits, misses
# and evictions (slot numbers may differ; only outcomes count). Shortcuts that do not change
# outcomes: a cache or set-associative TLB lookup first compares the set's most recent way (nibble 0;
# a hit there changes nothing); a fully associative TLB array first compares the two ways that hit
# last. A stored tag is ``x // sets + 1`` for set ``x % sets``
# (x = line, page number or table index; TLB and PSC tags also carry the size class / level in 2 low
# bits; 0 = empty), so cache blocks are uint32 whenever the machine's physical addresses allow
# (BulkState.new decides); TLB and PSC blocks are int64.
#
# Two passes. The TLBs and paging-structure caches never look at the data caches, so an access's
# translation does not depend on any cache's state: the translation pass (simgen's ``translate``)
# runs the TLB lookups, walks, PSC lookups and fills for a stretch of accesses and writes each
# access's physical address, an ``info`` word (below) and its walk references, in order; the cache
# pass (simgen's ``caches``, or ``caches_tot`` when only totals are wanted) then sends the walk
# references and data addresses through the caches in the order the one-loop algorithm would, and
# adds up counters, latencies and each operation's critical path. The caches' state sees the same
# addresses in the same order, so the results are those of running both in one loop (as ScalarSim
# does). With two host CPUs the passes overlap: :func:`simulate` translates up to two stretches
# ahead while a worker thread runs them through the caches in order (compiled code releases the
# GIL). The cache pass knows its future addresses, and starts loading the host lines of the sets
# the next accesses will use in the larger cache models.
#
# Shortcuts that change no outcome: an access to the previous access's 4 KiB page is an L1 DTLB hit
# on an entry that access left most recent (nothing moves); a cache access to the previous cache
# access's line is an L1D hit on its most recent way; every TLB array counts its entries of each
# page size and does not look for a size it holds none of (an array never filled is not probed at
# all: k8's 4 KiB arrays in a trace of 2 MiB-mapped accesses); a walk through a 2 MiB region
# mapped by a 2 MiB or 1 GiB entry is memoised (``wmemo``: the tables never change while a trace
# runs, and the walk's references still go through the PSCs and caches).

NIBBLE_WAYS = 16                       # arrays of up to this many ways keep a nibble recency word
_U = np.uint64
# which of a set's n slots (n <= NIBBLE_WAYS) hold a tag, as a bit mask: _MATCH[n](blk, i, t), one
# vector compare (see _match_intrinsic); the generated passes bind the widths they use
_MATCH = {n: _match_intrinsic(n) for n in range(1, NIBBLE_WAYS + 1)}


@_njit_inline
def _way(m):  # noqa: ANN001, ANN202
    """The slot of the lowest bit of mask ``m`` (a tag is in at most one slot), or -1 for none."""
    return np.int64(_tz(m)) if m != 0 else np.int64(-1)

# ``info`` word of an access, written by the translation pass: bits 0-1 the TLB level that translated it
# (1 = L1 DTLB, 2 = L2 TLB, 3 = page walk; 0 = a fault: not mapped, access skipped), bits 2-3 the
# page size class (0 4k, 1 2m, 2 1g), bit 4 a paging-structure cache hit, bits 5-7 walk references.
I_FAULT, I_L1, I_L2, I_WALK = 0, 1, 2, 3
STRETCH = 1 << 16                      # accesses per pass (whole operations); buffers stay in the host L3


def _cls(ways: int) -> int:
    """Tag slots of a cache set: ``ways`` rounded up to a power of two up to 16; wider sets: ``ways``."""
    return ways if ways > NIBBLE_WAYS else 1 << (ways - 1).bit_length()


def _words(ways: int, payload: bool, slots: int | None = None) -> int:
    """Words per set: recency word (2), tag slots (``slots``, default ``ways``), for more than
    NIBBLE_WAYS ways the recency list's ``prev``/``next`` links and the hash chains' ``hnext``
    links, payloads (TLBs)."""
    return 2 + (slots or ways) + ways * (3 * (ways > NIBBLE_WAYS) + payload)


def _initial_order(ways: int) -> int:
    """The recency word of an empty set: nibbles ``ways-1, ..., 1, 0`` (way 0 is taken first)."""
    return sum((ways - 1 - p) << (4 * p) for p in range(min(ways, NIBBLE_WAYS)))


@_njit_inline
def _any(blk, one, tb, ways, t):  # noqa: ANN001, ANN202
    """Whether tag ``t`` is among the ``ways`` tags at ``tb``: an OR of compares, no early exit,
    unsigned indices and ``t`` in the block's own dtype (via ``one``), so LLVM emits SIMD compares."""
    one[0] = t
    tt = one[0]
    ub = _U(tb)
    m = False
    for w in range(ways):
        m |= blk[ub + _U(w)] == tt
    return m


@_njit_inline
def _find(blk, one, tb, ways, t):  # noqa: ANN001, ANN202
    """The way holding tag ``t`` (known present; else -1)."""
    one[0] = t
    tt = one[0]
    ub = _U(tb)
    hw = -1
    for w in range(ways):
        if blk[ub + _U(w)] == tt:
            hw = w
    return hw


@_njit_inline
def _find4(blk, tb, ways, t0, t1, t2, t3):  # noqa: ANN001, ANN202
    """The ways holding each of four tags (-1 where absent), in one pass."""
    ub = _U(tb)
    h0 = h1 = h2 = h3 = -1
    for w in range(ways):
        x = blk[ub + _U(w)]
        h0 = w if x == t0 else h0
        h1 = w if x == t1 else h1
        h2 = w if x == t2 else h2
        h3 = w if x == t3 else h3
    return h0, h1, h2, h3


HASH_BUCKETS = 128                     # hash-chain heads per set of an array of more than NIBBLE_WAYS ways


@_njit_inline
def _h7(t):
    """A 7-bit hash of a tag (XOR fold: no wrapping arithmetic); HASH_BUCKETS = 128."""
    return np.int64((t ^ (t >> 7) ^ (t >> 14) ^ (t >> 21) ^ (t >> 28) ^ (t >> 35)) & 127)


@_njit_inline
def _hlook(heads, co, blk, b, ways, t):
    """The way holding tag ``t`` (> 0) in the wide set at ``b`` whose hash-chain heads start at
    ``co`` (a head or link is way + 1; 0 ends the chain), or -1."""
    j = np.int64(heads[co + _h7(t)])
    hn = b + 2 + 3 * ways
    while j != 0:
        w = j - 1
        if blk[b + 2 + w] == t:
            return w
        j = np.int64(blk[hn + w])
    return np.int64(-1)


@_njit_inline
def _rehash(heads, co, blk, b, ways, v, old, t):
    """Way ``v`` of the wide set at ``b`` changes tag ``old`` (0: empty) to ``t``: move it between chains."""
    hn = b + 2 + 3 * ways
    if old != 0:
        hb = co + _h7(old)
        j = np.int64(heads[hb])
        if j == v + 1:
            heads[hb] = blk[hn + v]
        else:
            w = j - 1
            nj = np.int64(blk[hn + w])
            while nj != v + 1:
                w = nj - 1
                nj = np.int64(blk[hn + w])
            blk[hn + w] = blk[hn + v]
    hb = co + _h7(t)
    blk[hn + v] = heads[hb]
    heads[hb] = v + 1


@_njit_inline
def _used(blk, b, ways, w):  # noqa: ANN001, ANN202
    """Way ``w`` of the set at ``b`` was just used: make it the most recent."""
    if ways <= 16:
        _used_n(blk, b, w)
    else:
        _used_l(blk, b, ways, w)


@_njit_inline
def _front(o, w):  # noqa: ANN001, ANN202
    """Nibble recency word ``o`` with way ``w``'s nibble moved to the front (most recent). The nibble
    equal to w: the zero nibbles of o ^ w...w flagged in their top bit (exactly, and without
    wrapping arithmetic); u = 1 << 4p for the lowest, position p. Way w's nibble is the lowest equal
    to w: nibbles above the set's ways are 0, and way 0's nibble is among the set's."""
    x = o ^ (_U(w) * _U(0x1111111111111111))
    z = ~(((x & _U(0x7777777777777777)) + _U(0x7777777777777777)) | x) & _U(0x8888888888888888)
    u = (z & (~z + _U(1))) >> _U(3)
    below = u - _U(1)
    return (o & ~(below | (u * _U(15)))) | ((o & below) << _U(4)) | _U(w)


@_njit_inline
def _used_n(blk, b, w):  # noqa: ANN001, ANN202
    """:func:`_used` for a set of at most 16 ways (nibble recency word)."""
    if np.int64(blk[b] & 15) != w:      # else already the most recent
        o = _front(_U(blk[b]) | (_U(blk[b + 1]) << _U(32)), w)
        blk[b] = o & _U(0xFFFFFFFF)
        blk[b + 1] = o >> _U(32)


@_njit_inline
def _victim_n(blk, b, ways):  # noqa: ANN001, ANN202
    """The way a miss in a set of at most 16 ways (nibble recency word) replaces: its least recent,
    made the most recent."""
    o = _U(blk[b]) | (_U(blk[b + 1]) << _U(32))
    sh = _U(4 * (ways - 1))
    v = (o >> sh) & _U(15)
    o = ((o & ~(_U(15) << sh)) << _U(4)) | v
    blk[b] = o & _U(0xFFFFFFFF)
    blk[b + 1] = o >> _U(32)
    return np.int64(v)


@_njit_inline
def _used_l(blk, b, ways, w):  # noqa: ANN001, ANN202
    """:func:`_used` for a set of more than 16 ways: a doubly linked recency list (blk[b] = most
    recent way, blk[b + 1] = least recent; prev links toward the most recent, next links toward the
    least recent)."""
    hd = np.int64(blk[b])
    if hd != w:
        pv = b + 2 + ways
        nx = b + 2 + 2 * ways
        p = np.int64(blk[pv + w])
        q = np.int64(blk[nx + w])
        blk[nx + p] = q
        if np.int64(blk[b + 1]) == w:
            blk[b + 1] = p
        else:
            blk[pv + q] = p
        blk[nx + w] = hd
        blk[pv + hd] = w
        blk[b] = w


@_njit_inline
def _victim_l(blk, b, ways):  # noqa: ANN001, ANN202
    """The way a miss in a set of more than 16 ways (recency list) replaces: its tail, made the most recent."""
    v = np.int64(blk[b + 1])
    _used_l(blk, b, ways, v)
    return v


@_njit_inline
def _psc_fa(p_blk, p_cnt, p_recent, lin, leaf, levels, shifts, k4, mask, ways, filt):  # noqa: ANN001, ANN202
    """One fully associative paging-structure cache holding every level: the walk step after the
    deepest cached entry for ``lin`` (0 when none hits), one pass over its tags for all levels."""
    for d in range(4):
        hw_ = levels - 2 - d
        k4[d] = (lin >> shifts[d]) * 4 + hw_ + 1 if d < leaf and (mask >> hw_) & 1 else -1
    f0 = f1 = f2 = f3 = -1
    dmax = 3
    while dmax >= 0 and k4[dmax] < 0:
        dmax -= 1
    fd = -1
    fw = -1
    if dmax >= 0:
        # the deepest candidate in one of the two ways that hit last: no deeper key can hit (none is
        # a candidate), so this is the walk's PSC hit without a search
        if p_blk[2 + p_recent[0]] == k4[dmax]:
            fw = p_recent[0]
        elif p_blk[2 + p_recent[1]] == k4[dmax]:
            fw = p_recent[1]
        elif filt == 2:
            # the deepest candidate that hits, by hash lookups from the deepest up
            for d in range(dmax, -1, -1):
                if k4[d] > 0:
                    f0 = _hlook(p_cnt, 0, p_blk, 0, ways, k4[d])
                    if f0 >= 0:
                        fd, fw = d, f0
                        break
            f0 = -1
        else:
            f0, f1, f2, f3 = _find4(p_blk, 2, ways, k4[0], k4[1], k4[2], k4[3])
    if fd >= 0:
        pass
    elif fw >= 0:
        fd = dmax
    elif f3 >= 0:
        fd, fw = 3, f3
    elif f2 >= 0:
        fd, fw = 2, f2
    elif f1 >= 0:
        fd, fw = 1, f1
    elif f0 >= 0:
        fd, fw = 0, f0
    if fd < 0:
        return 0
    if fw != p_recent[0]:
        p_recent[1] = p_recent[0]
        p_recent[0] = fw
    _used(p_blk, 0, ways, fw)
    return fd + 1


HUGE_BYTES = 1 << 18                   # state arrays this large ask the host kernel for 2 MiB pages


def _aligned_zeros(n: int, dtype: type) -> np.ndarray:
    """``n`` zeros starting on a 64-byte boundary (a host cache line). An array of HUGE_BYTES or more
    is an anonymous mapping advised MADV_HUGEPAGE where the host has it: a model's sets are read at
    random, and on 4 KiB host pages nearly every one of those reads would also miss the host's TLB."""
    item = np.dtype(dtype).itemsize
    if n * item >= HUGE_BYTES and hasattr(mmap, "MADV_HUGEPAGE"):
        two = 1 << 21
        size = -(-(n * item) // two) * two
        mm = mmap.mmap(-1, size + two, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        raw = np.frombuffer(mm, dtype=np.uint8)
        skip = -raw.ctypes.data % two
        try:
            mm.madvise(mmap.MADV_HUGEPAGE, skip, size)
        except OSError:  # pragma: no cover - a kernel without THP
            pass
        return raw[skip:skip + n * item].view(dtype)
    raw = np.zeros(n + 64 // item, dtype=dtype)
    skip = (-raw.ctypes.data % 64) // item
    return raw[skip:skip + n]


PF_BYTES = 1 << 15                     # cache models larger than a host L1D (32 KiB) get host prefetches


@dataclass
class BulkState:
    """The simulator's structures as arrays; persists across :func:`simulate` calls (chunks)."""

    cpu: Cpu
    lin_mask: int
    levels: int
    shifts: np.ndarray
    tphys: np.ndarray
    tables: np.ndarray
    child: np.ndarray     # snapshot index of the table each entry points to (-1: leaf or not present)
    arrays: dict[str, np.ndarray]
    passes: tuple | None = field(default=None, repr=False, compare=False)   # (translate, caches, caches_tot), made once

    @classmethod
    def new(cls, cpu: Cpu, tables: PageTables) -> BulkState:
        tphys, tarr = snapshot_tables(tables)
        a: dict[str, np.ndarray] = {}
        # the highest physical address a walk can produce: a table page, or a leaf frame + 1 GiB
        present = (tarr & np.uint64(_PAGE_PRESENT)) != 0
        top = max(int(tphys.max()) + 4096 if len(tphys) else 0,
                  int((tarr[present] & np.uint64(PTE_PFN_MASK)).max()) + (1 << 30) if present.any() else 0)

        def storage(prefix: str, sets: list[int], ways: list[int], payload: bool, dtype: type,
                    slots: list[int] | None = None) -> None:
            """One block of :func:`_words` words per set; each array starts on a host cache line."""
            s = np.array(sets, dtype=np.int64)
            a[prefix + "sets"] = s
            a[prefix + "ways"] = np.array(ways, dtype=np.int64)
            a[prefix + "sshift"] = np.array([x.bit_length() - 1 if x & (x - 1) == 0 else -1 for x in sets],
                                            dtype=np.int64)
            slots = slots or list(ways)
            a[prefix + "cls"] = np.array(slots, dtype=np.int64)
            words = np.array([_words(w, payload, sl) for w, sl in zip(ways, slots)], dtype=np.int64)
            a[prefix + "words"] = words
            per_line = 64 // np.dtype(dtype).itemsize
            sizes = -(-(s * words) // per_line) * per_line
            off = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
            a[prefix + "off"] = off
            blk = _aligned_zeros(max(int(sizes.sum()), 1), dtype)
            for i, (ns, w) in enumerate(zip(sets, ways)):
                v = blk[off[i]:off[i] + ns * words[i]].reshape(ns, words[i])
                o = _initial_order(w)
                v[:, 0], v[:, 1] = o & 0xFFFFFFFF, o >> 32
                if w > NIBBLE_WAYS:
                    # recency list: most recent ways-1, ..., least recent 0 (empty ways taken lowest first)
                    v[:, 0], v[:, 1] = w - 1, 0
                    v[:, 2 + w:2 + 2 * w - 1] = np.arange(1, w)          # prev: toward the most recent
                    v[:, 2 + 2 * w + 1:2 + 3 * w] = np.arange(w - 1)     # next: toward the least recent
            a[prefix + "blk"] = blk
            a[prefix + "bytes"] = sizes * np.dtype(dtype).itemsize
            # HASH_BUCKETS hash-chain heads per set for arrays of more than NIBBLE_WAYS ways (filt 2;
            # used for TLBs and PSCs only: wide caches look up by the compare pass)
            wide = np.array(ways, dtype=np.int64) > NIBBLE_WAYS
            filt = np.where(wide, 2, 0)
            a[prefix + "filt"] = filt.astype(np.int64)
            nc = np.where(filt == 2, s * HASH_BUCKETS, 0)
            a[prefix + "coff"] = np.concatenate(([0], np.cumsum(nc)[:-1])).astype(np.int64)
            a[prefix + "cnt"] = np.zeros(max(int(nc.sum()), 1), dtype=np.int32)

        ts = cpu.tlbs
        a["t_level"] = np.array([t.level for t in ts], dtype=np.int64)
        a["t_mask"] = np.array([sum(1 << SIZE_NAMES.index(s) for s in t.page_sizes) for t in ts], dtype=np.int64)
        a["t_smash"] = np.array([int(t.smash_1g) for t in ts], dtype=np.int64)
        storage("t_", [t.sets for t in ts], [t.ways for t in ts], True, np.int64)
        a["t_recent"] = np.zeros(2 * max(len(ts), 1), dtype=np.int64)   # per array: the two ways that hit last
        a["t_szn"] = np.zeros(3 * max(len(ts), 1), dtype=np.int64)      # per array: entries of each page size
        ps = cpu.pscs
        a["p_mask"] = np.array([sum(1 << PSC_LEVELS[lv] for lv in p.levels) for p in ps], dtype=np.int64)
        storage("p_", [p.sets for p in ps], [p.ways for p in ps], False, np.int64)
        a["p_recent"] = np.zeros(2, dtype=np.int64)     # a fully associative PSC: the two ways that hit last
        cs = cpu.caches
        lshift = [c.line.bit_length() - 1 for c in cs]
        narrow = all((top >> ls) // c.sets + 1 < (1 << 32) for c, ls in zip(cs, lshift))
        storage("c_", [c.sets for c in cs], [c.ways for c in cs], False, np.uint32 if narrow else np.int64,
                [_cls(c.ways) for c in cs])
        a["c_lshift"] = np.array(lshift, dtype=np.int64)
        a["c_lat"] = np.array([c.latency for c in cs], dtype=np.int64)
        a["c_pf"] = (a["c_bytes"] >= PF_BYTES).astype(np.int64)
        from vmemmap.cost.simgen import WMEMO

        a["wmemo"] = np.zeros(WMEMO * 8, dtype=np.int64)     # memoised big-page walks (simgen's translate)
        # pgd first, then the rest in address order; child[t, i] = index of the table entry i points to
        order = np.concatenate(([int(np.searchsorted(tphys, tables.pgd_phys))],
                                [i for i in range(len(tphys)) if tphys[i] != tables.pgd_phys])).astype(np.int64)
        tphys, tarr = tphys[order], tarr[order]
        srt = np.argsort(tphys)
        nxt = tarr & np.uint64(PTE_PFN_MASK)
        pos = np.searchsorted(tphys[srt], nxt).clip(0, len(tphys) - 1)
        cand = srt[pos]
        is_table = ((tarr & np.uint64(_PAGE_PRESENT)) != 0) & (tphys[cand] == nxt)
        child = np.where(is_table, cand, -1).astype(np.int64)
        return cls(cpu, (1 << tables.va_bits) - 1, tables.levels, np.array(tables.shifts, dtype=np.int64),
                   tphys.astype(np.int64), tarr, child, a)


_POOL: list = []                       # the cache pass's worker thread (created on first use)


def sim_threads() -> int:
    """Host threads :func:`simulate` uses: 2 (the translation and cache passes overlap) when the
    process may run on two or more CPUs and the passes are compiled, else 1. ``VMEMMAP_SIM_THREADS``
    = 1 or 2 overrides. Results never depend on it."""
    env = os.environ.get("VMEMMAP_SIM_THREADS", "").strip()
    if env in ("1", "2"):
        return int(env)
    if not COMPILED or numba.config.DISABLE_JIT:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return 2 if cpus >= 2 else 1


def _stretches(trace: Trace, size: int) -> list[tuple[int, int]]:
    """``[a, b)`` access ranges cut at operation starts: a short first and last one (``size`` / 16:
    the two passes overlap on every stretch but those -- the first is only translated, the last
    only cached, while the other thread waits), and about ``size`` accesses between. Each cut is the
    first operation start at or after its target, found in a short window of ``pos`` (no pass over
    the whole trace)."""
    n = trace.n
    if n <= size:
        return [(0, n)]
    pos = trace.pos
    small = max(1, size >> 4)
    targets = [small, *range(small + size, n - small, size), n - small]
    cuts = [0]
    for c in targets:
        if c <= cuts[-1]:
            continue
        w = 64
        while True:
            hit = np.flatnonzero(pos[c:c + w] == 0)
            if len(hit) or c + w >= n:
                break
            w *= 8
        if not len(hit):
            break
        cuts.append(c + int(hit[0]))
    cuts.append(n)
    return list(zip(cuts[:-1], cuts[1:]))


def simulate(state: BulkState, trace: Trace, per_op: bool = False, threads: int | None = None,
             stretch: int = STRETCH) -> np.ndarray:
    """Run ``trace`` (whole operations) through the bulk simulator; per-op rows or one total row.

    The trace is cut into stretches of about ``stretch`` accesses at operation starts; each stretch
    is translated (the TLB pass) and then sent through the caches (the cache pass), both written
    out for the state's CPU model by :mod:`vmemmap.cost.simgen`. With ``threads`` = 2 (default
    :func:`sim_threads`) the translation runs up to two stretches ahead of a worker thread that
    runs them through the caches, in order."""
    from vmemmap.cost.simgen import kernels

    a = state.arrays
    out = np.zeros((trace.n_ops if per_op else 1, NF), dtype=np.int64)
    if trace.n == 0:
        return out
    threads = sim_threads() if threads is None else threads
    if state.passes is None:
        state.passes = kernels(state)
    gen_translate, gen_caches = state.passes[0], state.passes[1 if per_op else 2]
    # the cache pass's one-word scratch (wide caches' compares), on its own host cache line: the
    # passes run on two CPUs, and a shared line would move between them on every lookup
    c_one = _aligned_zeros(64 // a["c_blk"].itemsize, a["c_blk"].dtype)[:1]
    finish = np.zeros(int(trace.pos.max()) + 1, dtype=np.int64)
    t_args = (np.uint64(state.lin_mask), state.levels, state.shifts, state.tphys, state.tables, state.child,
              a["t_blk"], a["t_recent"], a["t_cnt"], a["p_blk"], a["p_cnt"], a["p_recent"])
    parts = _stretches(trace, max(1, stretch))
    size = max(y - x for x, y in parts)
    two = threads > 1 and len(parts) > 1
    # with two threads, three buffers: the translation pass may run up to two stretches ahead, so
    # the cache pass (the slower one) finds its next stretch ready and never waits for a wake-up
    bufs = [(np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size * state.levels, np.int64))
            for _ in range(3 if two else 1)]
    ephys = _aligned_zeros(16, np.int64)
    translate = caches = None
    op_at = [-1]          # the operation before the next stretch the cache pass runs (it returns its last)

    def cargs(k: int, buf: tuple, nw: int) -> tuple:
        x, y = parts[k]
        ph, inf, _wr = buf
        return (trace.pos[x:y], trace.dep_ptr[x:y + 1], trace.dep_pos, per_op, op_at[0], out,
                ph[:y - x], inf[:y - x], _wr[:nw], a["c_blk"], finish, c_one)

    def run_caches(k: int, buf: tuple, nw: int) -> None:
        op_at[0] = caches(*cargs(k, buf, nw))

    def run_translate(k: int, buf: tuple) -> int:
        nonlocal translate, caches
        x, y = parts[k]
        ph, inf, wr = buf
        targs = (trace.vaddr[x:y], *t_args, ph[:y - x], inf[:y - x], wr, ephys, a["wmemo"], a["t_szn"])
        translate = translate or _compiled(gen_translate, targs)
        nw = translate(*targs)
        caches = caches or _compiled(gen_caches, cargs(k, buf, nw))
        return nw

    if not two:
        for k in range(len(parts)):
            run_caches(k, bufs[0], run_translate(k, bufs[0]))
        return out
    # two threads: this one translates into free buffers and hands them on in order; the pool's
    # worker runs them through the caches and gives the buffers back
    free: queue.SimpleQueue = queue.SimpleQueue()
    ready: queue.SimpleQueue = queue.SimpleQueue()
    for b in bufs:
        free.put(b)
    err: list[BaseException] = []

    def worker() -> None:
        while (item := ready.get()) is not None:
            try:
                if not err:
                    run_caches(*item)
            except BaseException as e:  # noqa: BLE001 - handed to the caller below
                err.append(e)
            free.put(item[1])

    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor
        _POOL.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="vmemmap-sim"))
    done = _POOL[0].submit(worker)
    try:
        for k in range(len(parts)):
            buf = free.get()
            if err:
                break
            ready.put((k, buf, run_translate(k, buf)))
    finally:
        ready.put(None)
        done.result()
    if err:
        raise err[0]
    return out


def simulate_scalar(cpu: Cpu, tables: PageTables, trace: Trace,
                    explain: Callable[[str], None] | None = None) -> np.ndarray:
    """Per-op counters from the pure-Python simulator (fresh structures)."""
    return ScalarSim(cpu, tables, explain).run(trace)
