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
(``Trace.dep``); the operation's cycles are the latest finish. All numbers come from the CPU preset
(``cost/cpus/*.toml``); nothing here is a cost constant.

Two implementations agree exactly (tests/test_cost.py):

* :class:`ScalarSim` — plain Python objects, walks with ``PageTables.walk``; can narrate each step
  (``explain``) for one operation;
* :func:`simulate` — the same algorithm over numpy arrays in one numba-compiled loop, with the page
  tables snapshotted into an array (``snapshot_tables``). Without numba the same loop runs
  interpreted (correct, slow), and :data:`COMPILED` is False.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vmemmap.cost.cpu import PSC_LEVELS, SIZE_NAMES, SIZE_SHIFT, Cpu
from vmemmap.cost.trace import KIND_NAMES, Trace
from vmemmap.paging.entry import _PAGE_PRESENT, _PAGE_PSE, PMD_PAGE_MASK, PTE_PFN_MASK, PUD_PAGE_MASK
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
MAX_POS = 32


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
        finish = [0] * MAX_POS
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
                        dep = int(trace.dep[i])
                        finish[p] = max((finish[q] for q in range(p) if dep >> q & 1), default=0)
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
            dep = int(trace.dep[i])
            f = max((finish[q] for q in range(p) if dep >> q & 1), default=0)
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


def _njit_inline(fn):  # noqa: ANN001, ANN202
    """Helpers are inlined into the loop (no per-call array reference counting)."""
    return numba.njit(cache=True, nogil=True, error_model="numpy", inline="always", _nrt=False)(fn) if COMPILED else fn


# An LRU set is ``ways`` consecutive slots (tags) on a doubly linked recency list (``lnk``: next,
# prev per slot; ``sst``: head = most recent, tail = least recent, ways filled per set): a hit moves
# the slot to the front, an insert takes the lowest empty way or the tail -- the same choice as
# ScalarSim's lowest empty way / minimum stamp, in O(1). Each set also counts its tags' 6-bit hashes:
# a lookup whose counter is zero is a miss without scanning the ways (same result, faster).
# ``now`` is ScalarSim's clock, kept in step but unused by the list.

@_njit_inline
def _h(key):  # noqa: ANN001, ANN202
    return np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(58))


@_njit_inline
def _set(x, sets):  # noqa: ANN001, ANN202
    """``x % sets`` without a division when ``sets`` is a power of two (x >= 0)."""
    if sets & (sets - 1) == 0:
        return x & (sets - 1)
    return x % sets


@_njit_inline
def _front(lnk, sst, sidx, j):  # noqa: ANN001, ANN202
    """Make slot ``j`` (already linked in set ``sidx``) the most recently used."""
    h = sst[3 * sidx]
    if h == j:
        return
    p = lnk[2 * j + 1]
    n = lnk[2 * j]
    lnk[2 * p] = n
    if n >= 0:
        lnk[2 * n + 1] = p
    else:
        sst[3 * sidx + 1] = p
    lnk[2 * j + 1] = -1
    lnk[2 * j] = h
    lnk[2 * h + 1] = j
    sst[3 * sidx] = j


@_njit_inline
def _lookup(tag, lnk, cnt, sst, base, sidx, ways, key, now):  # noqa: ANN001, ANN202
    j = sst[3 * sidx]
    if tag[j] == key:
        return j
    if cnt[sidx * 64 + _h(key)] == 0:
        return -1
    for w in range(sst[3 * sidx + 2]):
        if tag[base + w] == key:
            _front(lnk, sst, sidx, base + w)
            return base + w
    return -1


@_njit_inline
def _insert(tag, lnk, cnt, sst, base, sidx, ways, key, now):  # noqa: ANN001, ANN202
    fill = sst[3 * sidx + 2]
    if fill < ways:
        # the lowest empty way, as ScalarSim picks it; linked in at the front
        j = base + fill
        sst[3 * sidx + 2] = fill + 1
        if fill == 0:
            lnk[2 * j] = -1
            lnk[2 * j + 1] = -1
            sst[3 * sidx] = j
            sst[3 * sidx + 1] = j
        else:
            h = sst[3 * sidx]
            lnk[2 * j] = h
            lnk[2 * j + 1] = -1
            lnk[2 * h + 1] = j
            sst[3 * sidx] = j
    else:
        # the least recently used way (the list's tail): ScalarSim's minimum stamp
        j = sst[3 * sidx + 1]
        cnt[sidx * 64 + _h(tag[j])] -= 1
        _front(lnk, sst, sidx, j)
    cnt[sidx * 64 + _h(key)] += 1
    tag[j] = key
    return j


@_njit_inline
def _cache_access(phys, c_sets, c_ways, c_lshift, c_off, c_soff, c_tag, c_lnk, c_cnt, c_sst, now):  # noqa: ANN001, ANN202
    nc = c_sets.shape[0]
    hit = nc
    for c in range(nc):
        line = phys >> c_lshift[c]
        st = _set(line, c_sets[c])
        now += 1
        if _lookup(c_tag, c_lnk, c_cnt, c_sst, c_off[c] + st * c_ways[c], c_soff[c] + st, c_ways[c], line,
                   now) >= 0:
            hit = c
            break
    for c in range(hit):
        line = phys >> c_lshift[c]
        st = _set(line, c_sets[c])
        now += 1
        _insert(c_tag, c_lnk, c_cnt, c_sst, c_off[c] + st * c_ways[c], c_soff[c] + st, c_ways[c], line, now)
    return hit, now


@_njit
def _kernel(vaddr, pos, dep, per_op, out, lin_mask, levels, shifts, tphys, tables, child,
            t_level, t_mask, t_smash, t_sets, t_ways, t_off, t_soff, t_tag, t_lnk, t_cnt, t_sst, t_frame, t_real,
            pr_start, pr_n, pr_s, pr_sc, pr_last,
            p_mask, p_sets, p_ways, p_off, p_soff, p_tag, p_lnk, p_cnt, p_sst,
            c_sets, c_ways, c_lshift, c_lat, c_off, c_soff, c_tag, c_lnk, c_cnt, c_sst,
            dram, l2lat, state, scratch):  # noqa: ANN001, ANN202
    finish = scratch[0]
    ephys = scratch[1]
    nc = c_sets.shape[0]
    nt = t_level.shape[0]
    npsc = p_mask.shape[0]
    n = vaddr.shape[0]
    now = state[0]
    op = -1
    op_max = 0
    row = 0
    for i in range(n):
        p = pos[i]
        if p == 0:
            if op >= 0:
                out[row, 14] += op_max
            op += 1
            op_max = 0
            row = op if per_op else 0
        lin = np.int64(vaddr[i] & lin_mask)
        lat = 0
        phys = -1
        real = 0
        found = False
        level = 1
        for level in range(1, 3):
            if level == 2:
                lat += l2lat
            np_ = pr_n[level]
            first = pr_last[level]
            for k in range(np_):
                kk = first + k
                if kk >= np_:
                    kk -= np_
                j = pr_start[level] + kk      # the probe that hit last is tried first
                s = pr_s[j]
                sc = pr_sc[j]
                sh = 12 + 9 * sc
                vpn = lin >> sh
                st = _set(vpn, t_sets[s])
                now += 1
                idx = _lookup(t_tag, t_lnk, t_cnt, t_sst, t_off[s] + st * t_ways[s], t_soff[s] + st,
                              t_ways[s], vpn * 4 + sc, now)
                if idx >= 0:
                    phys = t_frame[idx] + (lin & ((1 << sh) - 1))
                    real = t_real[idx]
                    found = True
                    pr_last[level] = kk
                    break
            if found:
                break
        hit_level = level if found else 3
        if hit_level == 3:
            # the MMU's walk of the snapshotted tables
            ti = 0                      # the pgd is table 0 of the snapshot
            leaf = -1
            for d in range(levels):
                idx = (lin >> shifts[d]) & 511
                e = tables[ti, idx]
                ephys[d] = tphys[ti] + idx * 8
                if not (e & np.uint64(1)):
                    break
                if d == levels - 1:
                    phys = np.int64(e & np.uint64(0x000FFFFFFFFFF000)) + (lin & 4095)
                    real = 0
                    leaf = d
                    break
                if shifts[d] <= 30 and (e & np.uint64(0x80)):
                    if shifts[d] == 30:
                        phys = np.int64(e & np.uint64(0x000FFFFFC0000000)) + (lin & ((1 << 30) - 1))
                        real = 2
                    else:
                        phys = np.int64(e & np.uint64(0x000FFFFFFFE00000)) + (lin & ((1 << 21) - 1))
                        real = 1
                    leaf = d
                    break
                ti = child[ti, idx]
                if ti < 0:
                    break
            if leaf < 0:
                out[row, 15] += 1
                f = 0
                for q in range(p):
                    if (dep[i] >> q) & 1 and finish[q] > f:
                        f = finish[q]
                finish[p] = f
                continue
            start = 0
            for d in range(leaf - 1, -1, -1):
                hw = levels - 2 - d
                pk = lin >> shifts[d]
                hitp = False
                for s in range(npsc):
                    if (p_mask[s] >> hw) & 1:
                        st = _set(pk, p_sets[s])
                        now += 1
                        if _lookup(p_tag, p_lnk, p_cnt, p_sst, p_off[s] + st * p_ways[s], p_soff[s] + st,
                                   p_ways[s], pk * 4 + hw, now) >= 0:
                            hitp = True
                            break
                if hitp:
                    start = d + 1
                    out[row, 7] += 1
                    break
            for d in range(start, leaf + 1):
                h, now = _cache_access(ephys[d], c_sets, c_ways, c_lshift, c_off, c_soff, c_tag, c_lnk, c_cnt, c_sst, now)
                for c in range(h):
                    out[row, 11 + c] += 1
                out[row, 6] += 1
                lat += c_lat[h] if h < nc else dram
            for d in range(start, leaf):
                hw = levels - 2 - d
                pk = lin >> shifts[d]
                for s in range(npsc):
                    if (p_mask[s] >> hw) & 1:
                        st = _set(pk, p_sets[s])
                        now += 1
                        _insert(p_tag, p_lnk, p_cnt, p_sst, p_off[s] + st * p_ways[s], p_soff[s] + st,
                                p_ways[s], pk * 4 + hw, now)
            out[row, 3 + real] += 1
        if hit_level >= 2:
            out[row, 0 + real] += 1
            # fill the L2 TLB (after a walk), then the L1 DTLB, with the entry size each array holds
            for level in range(2 if hit_level == 3 else 1, 0, -1):
                for s in range(nt):
                    if t_level[s] != level:
                        continue
                    sc = real
                    if sc == 2 and t_smash[s] and (t_mask[s] >> 1) & 1:
                        sc = 1
                    if not (t_mask[s] >> sc) & 1:
                        continue
                    sh = 12 + 9 * sc
                    vpn = lin >> sh
                    st = _set(vpn, t_sets[s])
                    now += 1
                    idx = _insert(t_tag, t_lnk, t_cnt, t_sst, t_off[s] + st * t_ways[s], t_soff[s] + st,
                                  t_ways[s], vpn * 4 + sc, now)
                    t_frame[idx] = phys - (lin & ((1 << sh) - 1))
                    t_real[idx] = real
        h, now = _cache_access(phys, c_sets, c_ways, c_lshift, c_off, c_soff, c_tag, c_lnk, c_cnt, c_sst, now)
        for c in range(h):
            out[row, 8 + c] += 1
        lat += c_lat[h] if h < nc else dram
        f = 0
        dm = dep[i]
        for q in range(p):
            if (dm >> q) & 1 and finish[q] > f:
                f = finish[q]
        finish[p] = f + lat
        if finish[p] > op_max:
            op_max = finish[p]
    if op >= 0:
        out[row, 14] += op_max
    state[0] = now


def _offsets(sets: np.ndarray, ways: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    sizes = sets * ways
    off = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    soff = np.concatenate(([0], np.cumsum(sets)[:-1])).astype(np.int64)
    return off, soff, int(sizes.sum()), int(sets.sum())


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
    state: np.ndarray     # [LRU clock, pgd phys]

    @classmethod
    def new(cls, cpu: Cpu, tables: PageTables) -> BulkState:
        tphys, tarr = snapshot_tables(tables)
        a: dict[str, np.ndarray] = {}

        def storage(prefix: str, sets: list[int], ways: list[int]) -> None:
            a[prefix + "sets"] = np.array(sets, dtype=np.int64)
            a[prefix + "ways"] = np.array(ways, dtype=np.int64)
            off, soff, n, ns = _offsets(a[prefix + "sets"], a[prefix + "ways"])
            a[prefix + "off"], a[prefix + "soff"] = off, soff
            a[prefix + "tag"] = np.full(max(n, 1), -1, dtype=np.int64)
            a[prefix + "lnk"] = np.full(2 * max(n, 1), -1, dtype=np.int64)     # next, prev slot per way
            a[prefix + "cnt"] = np.zeros(max(ns, 1) * 64, dtype=np.uint8 if max(ways, default=1) < 256 else np.int32)
            # per set: most recently used slot (list head), least recently used (tail), ways filled
            sst = np.zeros((max(ns, 1), 3), dtype=np.int64)
            if sets:
                first = np.repeat(off, a[prefix + "sets"]) + \
                    np.concatenate([np.arange(k) * w for k, w in zip(sets, ways)]).astype(np.int64)
                sst[:ns, 0] = first
                sst[:ns, 1] = first
            a[prefix + "sst"] = sst.ravel()

        ts = cpu.tlbs
        a["t_level"] = np.array([t.level for t in ts], dtype=np.int64)
        a["t_mask"] = np.array([sum(1 << SIZE_NAMES.index(s) for s in t.page_sizes) for t in ts], dtype=np.int64)
        a["t_smash"] = np.array([int(t.smash_1g) for t in ts], dtype=np.int64)
        storage("t_", [t.sets for t in ts], [t.ways for t in ts])
        # lookup probes per TLB level: (array, entry size class) pairs
        probes = {lv: [(i, sc) for i, t in enumerate(ts) if t.level == lv for sc in range(3)
                       if SIZE_NAMES[sc] in t.page_sizes] for lv in (1, 2)}
        a["pr_start"] = np.array([0, 0, len(probes[1])], dtype=np.int64)
        a["pr_n"] = np.array([0, len(probes[1]), len(probes[2])], dtype=np.int64)
        a["pr_s"] = np.array([i for lv in (1, 2) for i, _ in probes[lv]] or [0], dtype=np.int64)
        a["pr_sc"] = np.array([sc for lv in (1, 2) for _, sc in probes[lv]] or [0], dtype=np.int64)
        a["pr_last"] = np.zeros(3, dtype=np.int64)
        a["t_frame"] = np.zeros(len(a["t_tag"]), dtype=np.int64)
        a["t_real"] = np.zeros(len(a["t_tag"]), dtype=np.int64)
        ps = cpu.pscs
        a["p_mask"] = np.array([sum(1 << PSC_LEVELS[lv] for lv in p.levels) for p in ps], dtype=np.int64)
        storage("p_", [p.sets for p in ps], [p.ways for p in ps])
        cs = cpu.caches
        storage("c_", [c.sets for c in cs], [c.ways for c in cs])
        a["c_lshift"] = np.array([c.line.bit_length() - 1 for c in cs], dtype=np.int64)
        a["c_lat"] = np.array([c.latency for c in cs], dtype=np.int64)
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
                   tphys.astype(np.int64), tarr, child, a, np.array([0, tables.pgd_phys], dtype=np.int64))


def simulate(state: BulkState, trace: Trace, per_op: bool = False) -> np.ndarray:
    """Run ``trace`` (whole operations) through the bulk simulator; per-op rows or one total row."""
    a = state.arrays
    out = np.zeros((trace.n_ops if per_op else 1, NF), dtype=np.int64)
    if trace.n == 0:
        return out
    _kernel(trace.vaddr, trace.pos.astype(np.int64), trace.dep.astype(np.int64), per_op, out,
            np.uint64(state.lin_mask), state.levels, state.shifts, state.tphys, state.tables, state.child,
            a["t_level"], a["t_mask"], a["t_smash"], a["t_sets"], a["t_ways"], a["t_off"], a["t_soff"],
            a["t_tag"], a["t_lnk"], a["t_cnt"], a["t_sst"], a["t_frame"], a["t_real"],
            a["pr_start"], a["pr_n"], a["pr_s"], a["pr_sc"], a["pr_last"],
            a["p_mask"], a["p_sets"], a["p_ways"], a["p_off"], a["p_soff"], a["p_tag"], a["p_lnk"], a["p_cnt"],
            a["p_sst"], a["c_sets"], a["c_ways"], a["c_lshift"], a["c_lat"], a["c_off"], a["c_soff"], a["c_tag"],
            a["c_lnk"], a["c_cnt"], a["c_sst"], state.cpu.dram_cycles, state.cpu.l2_tlb_latency, state.state,
            np.zeros((2, MAX_POS), dtype=np.int64))
    return out


def simulate_scalar(cpu: Cpu, tables: PageTables, trace: Trace,
                    explain: Callable[[str], None] | None = None) -> np.ndarray:
    """Per-op counters from the pure-Python simulator (fresh structures)."""
    return ScalarSim(cpu, tables, explain).run(trace)
