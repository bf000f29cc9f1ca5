"""Workloads: streams of memory-model operations on a booted kernel, as access traces.

* ``pfn_to_page-random``: uniformly random RAM pfns; ``pfn_to_page(pfn)`` then ``page->flags``.
* ``pfn_to_page-numa-local``: random RAM pfns of one node (the node of a seed-chosen CPU: the seed
  picks the node, every op stays on it); on a machine with one node it is exactly
  ``pfn_to_page-random`` for the same seed.
* ``for_each_page``: consecutive RAM pfns (holes skipped) from a seed-chosen start, wrapping;
  ``pfn_to_page`` + ``page->flags`` each.
* ``virt_to_page-slab``: the slab free path's lookup: random 8-byte-aligned direct-map addresses of
  RAM, ``virt_to_page(addr)`` then ``page->flags`` (``PageSlab``/``compound_head``).
* ``page_address-random``: ``page_address`` of random RAM struct pages (``page_to_pfn`` + ``__va``),
  then the access to the page itself (``KIND_PAGE``).
* ``buddy-order-K`` (K = 0 .. MAX_ORDER-1): one allocation and one free of order K by the era's buddy
  allocator on a seed-random MAX_ORDER block made the head of its zone's free list
  (:mod:`vmemmap.cost.buddy` says exactly what runs and what state it starts from).

Deterministic for a seed (numpy ``default_rng``).

How a trace is built (:func:`build_trace`): the *scalar* operation (the model's Python code, recording
its loads) is run once per distinct *pattern key* -- the pfn's section (or ``memnodemap`` slot for
DISCONTIGMEM) and zone: within one key an operation touches the same kernel data, a MAX_ORDER block
never crosses a section -- and each access is classified as *fixed* (the same address for every op of
the key), *struct-page-relative* (an offset from the op's first struct page, from the model's bulk
``pfn_to_page_array``), *direct-map-relative* (an offset from the op's ``__va``) or a *pageblock bitmap
word* (recomputed from the op's pfn). The full trace relocates the pattern to every op of the key.
:func:`scalar_trace` runs the scalar operation for every op; the tests check both give the same trace
exactly. Traces are built for a range of ops at a time (``start``/``stop``), so long traces stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vmemmap.cost.buddy import CLS_BITMAP, CLS_FIXED, CLS_PAGE, Acc, block_pfns, buddy_rules, scalar_op
from vmemmap.cost.trace import (KIND_LOAD, KIND_PAGE, KIND_STRUCT_PAGE, MAX_DEPTH, Trace, _positions,
                                from_dep_sets, op_accesses)
from vmemmap.errors import InputError
from vmemmap.kernel import Kernel

PAGE_SHIFT = 12
CLS_DIRECT = 3   # an offset from the op's __va(pfn << PAGE_SHIFT)
BUDDY_PREFIX = "buddy-order-"
WORKLOADS = {
    "pfn_to_page-random": "random RAM pfns: pfn_to_page + page->flags",
    "pfn_to_page-numa-local": "random RAM pfns of one seed-chosen node: pfn_to_page + page->flags",
    "for_each_page": "sequential RAM pfns: pfn_to_page + page->flags",
    "virt_to_page-slab": "random direct-map addresses: virt_to_page + page->flags (slab free path)",
    "page_address-random": "random struct pages: page_address (page_to_pfn + __va) + the page itself",
}
#: the buddy allocator family (eras with a [buddy] table), named buddy-order-0 .. buddy-order-10
BUDDY_WORKLOADS = "buddy-order-K (K = 0..MAX_ORDER-1: the era's buddy allocator, one allocation and one free of order K)"


@dataclass(frozen=True)
class Ops:
    """A workload's operations and their arguments (pfns, direct-map addresses or struct pages)."""

    workload: str
    op: str                # 'pfn_to_page' | 'virt_to_page' | 'page_address' | 'buddy'
    args: np.ndarray       # uint64
    pfns: np.ndarray       # uint64: the pfn each op converts (buddy: the block's first pfn)
    order: int = 0         # buddy: K


def _ram_pfns(k: Kernel, nid: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    rs = sorted((s, e) for s, e, n in k.ram_pfn_ranges() if nid is None or n == nid)
    starts = np.array([s for s, _ in rs], dtype=np.int64)
    lens = np.array([e - s for s, e in rs], dtype=np.int64)
    return starts, np.cumsum(lens), int(lens.sum())


def _nth_ram_pfn(k: Kernel, idx: np.ndarray, nid: int | None = None) -> np.ndarray:
    starts, cum, _ = _ram_pfns(k, nid)
    r = np.searchsorted(cum, idx, side="right")
    before = np.concatenate(([0], cum[:-1]))
    return (starts[r] + (idx - before[r])).astype(np.uint64)


def buddy_order(k: Kernel, workload: str) -> int:
    """K of ``buddy-order-K``, checked against the era's MAX_ORDER."""
    b = buddy_rules(k)
    text = workload[len(BUDDY_PREFIX):]
    if not text.isdigit() or not 0 <= int(text) < int(b["max_order"]):
        raise InputError(f"{workload}: K must be 0 .. {int(b['max_order']) - 1} (MAX_ORDER {b['max_order']})")
    return int(text)


def make_ops(k: Kernel, workload: str, n: int, seed: int) -> Ops:
    """The workload's ``n`` operations on ``k`` for ``seed``."""
    if n < 1:
        raise InputError("--ops must be at least 1")
    rng = np.random.default_rng(seed)
    _, _, total = _ram_pfns(k)
    if workload == "pfn_to_page-random":
        pfns = _nth_ram_pfn(k, rng.integers(0, total, n, dtype=np.int64))
        return Ops(workload, "pfn_to_page", pfns, pfns)
    if workload == "pfn_to_page-numa-local":
        nids = sorted({nid for _, _, nid in k.ram_pfn_ranges()})
        nid = nids[int(rng.integers(0, len(nids)))] if len(nids) > 1 else nids[0]
        _, _, ntotal = _ram_pfns(k, nid)
        pfns = _nth_ram_pfn(k, rng.integers(0, ntotal, n, dtype=np.int64), nid)
        return Ops(workload, "pfn_to_page", pfns, pfns)
    if workload == "for_each_page":
        start = int(rng.integers(0, total))
        pfns = _nth_ram_pfn(k, (start + np.arange(n, dtype=np.int64)) % total)
        return Ops(workload, "pfn_to_page", pfns, pfns)
    if workload == "virt_to_page-slab":
        pfns = _nth_ram_pfn(k, rng.integers(0, total, n, dtype=np.int64))
        off = rng.integers(0, 512, n, dtype=np.int64).astype(np.uint64) * np.uint64(8)
        # the direct map's base as the booted kernel has it (page_offset_base when it is a variable)
        vaddrs = np.uint64(k.layout.page_offset) + (pfns << np.uint64(PAGE_SHIFT)) + off
        return Ops(workload, "virt_to_page", vaddrs, pfns)
    if workload == "page_address-random":
        pfns = _nth_ram_pfn(k, rng.integers(0, total, n, dtype=np.int64))
        return Ops(workload, "page_address", k.model.pfn_to_page_array(pfns), pfns)
    if workload.startswith(BUDDY_PREFIX):
        order = buddy_order(k, workload)
        blocks = block_pfns(k)
        if len(blocks) == 0:
            raise InputError(f"{k.machine.name} has no MAX_ORDER block wholly in RAM")
        pfns = blocks[rng.integers(0, len(blocks), n, dtype=np.int64)]
        return Ops(workload, "buddy", pfns, pfns, order)
    raise InputError(f"unknown workload {workload!r}; choose one of {', '.join(WORKLOADS)}, {BUDDY_WORKLOADS}")


def _runner(k: Kernel, op: str, arg: int) -> Callable[[], int]:
    m = k.model
    if op == "pfn_to_page":
        return lambda: m._pfn_to_page(arg)
    if op == "virt_to_page":
        return lambda: m._pfn_to_page(k.pa(arg) >> PAGE_SHIFT)
    if op == "page_address":
        return lambda: k.va(m._page_to_pfn(arg) << PAGE_SHIFT)   # lowmem_page_address
    raise ValueError(op)


def pattern_shift(k: Kernel) -> int:
    """log2 of the pfn granule inside which an operation's kernel loads are the same.

    SPARSEMEM: the section (``PFN_SECTION_SHIFT``); DISCONTIGMEM: also the ``memnodemap`` slot
    (``memnode_shift``); FLATMEM and VMEMMAP load the same addresses for every pfn.
    """
    shift = k.era.pfn_section_shift
    memnode_shift = getattr(k.model, "shift", None)
    if isinstance(memnode_shift, int) and memnode_shift < 63:
        shift = min(shift, memnode_shift - PAGE_SHIFT)
    return shift


def pattern_keys(k: Kernel, pfns: np.ndarray) -> np.ndarray:
    """One key per op: (pfn >> pattern_shift, zone) -- ops of a key touch the same kernel data."""
    zs = sorted(k.zones, key=lambda z: z.start_pfn)
    starts = np.array([z.start_pfn for z in zs] or [0], dtype=np.uint64)
    zone = np.searchsorted(starts, pfns, side="right").astype(np.uint64)
    return (pfns >> np.uint64(pattern_shift(k))) * np.uint64(1024) + zone


def _page0(k: Kernel, pfn: int) -> int:
    return int(k.model.pfn_to_page_array(np.array([pfn], dtype=np.uint64))[0])


def op_accs(k: Kernel, ops: Ops, i: int) -> list[Acc]:
    """The scalar operation ``i``: its accesses with their relocation classes."""
    pfn = int(ops.pfns[i])
    if ops.op == "buddy":
        return scalar_op(k, ops.order, pfn)
    page0 = _page0(k, pfn)
    sp = k.era.struct_page_size
    accs = op_accesses(k, _runner(k, ops.op, int(ops.args[i])))
    out = []
    for a in accs[:-1]:
        rel = a.vaddr - page0
        cls = CLS_PAGE if 0 <= rel < sp else CLS_FIXED
        out.append(Acc(a.vaddr, KIND_LOAD, a.dep, a.what, cls, rel if cls == CLS_PAGE else 0))
    last = accs[-1]
    if ops.op == "page_address":
        out.append(Acc(last.vaddr, KIND_PAGE, last.dep, "the page", CLS_DIRECT, 0))
    else:
        out.append(Acc(last.vaddr, KIND_STRUCT_PAGE, last.dep, "page->flags", CLS_PAGE, last.vaddr - page0))
    return out


def _depths(accs: list[Acc]) -> list[int]:
    d: list[int] = []
    seen: dict[int, int] = {}      # accesses with the same dependency set have the same depth
    for a in accs:
        h = seen.get(a.deps)
        if h is None:
            h = seen[a.deps] = 1 + max((d[q] for q in _positions(a.deps)), default=0)
        d.append(h)
    return d


def _acc_trace(ops_accs: list[list[Acc]]) -> Trace:
    acc = [a for op in ops_accs for a in op]
    if not acc:
        return Trace.empty()
    depth = [h for op in ops_accs for h in _depths(op)]
    if max(depth) > MAX_DEPTH:
        raise ValueError("dependency chain too deep for Trace.depth")
    pos = [p for op in ops_accs for p in range(len(op))]
    return from_dep_sets([a.vaddr for a in acc], [a.kind for a in acc], pos, [a.deps for a in acc], depth)


def scalar_trace(k: Kernel, ops: Ops, count: int | None = None, start: int = 0) -> Trace:
    """Run the scalar operation for ops ``start .. start+count-1`` (all by default)."""
    stop = len(ops.args) if count is None else min(len(ops.args), start + count)
    return _acc_trace([op_accs(k, ops, i) for i in range(start, stop)])


@dataclass
class Pattern:
    """One scalar operation's accesses as arrays, ready to relocate to the ops of its key."""

    pfn: int
    vaddr: np.ndarray     # uint64 (CLS_FIXED address, else the scalar op's own)
    cls: np.ndarray       # uint8
    off: np.ndarray       # int64: CLS_PAGE / CLS_DIRECT offset
    bm: np.ndarray        # uint64 (n, 4): CLS_BITMAP base, origin pfn, pfn offset, bit
    trace: Trace          # the scalar op (kind, pos, depth, deps)

    @classmethod
    def of(cls, pfn: int, accs: list[Acc]) -> Pattern:
        return cls(pfn, np.array([a.vaddr for a in accs], dtype=np.uint64),
                   np.array([a.cls for a in accs], dtype=np.uint8),
                   np.array([a.off for a in accs], dtype=np.int64),
                   np.array([a.bitmap for a in accs], dtype=np.uint64).reshape(len(accs), 4),
                   _acc_trace([accs]))


@dataclass
class TraceBuilder:
    """Builds the trace of any range of ops, running the scalar op once per pattern key."""

    k: Kernel
    ops: Ops
    progress: Callable[[int], None] | None = None
    patterns: dict[int, Pattern] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keys = pattern_keys(self.k, self.ops.pfns)
        if self.ops.op == "buddy":
            b = self.k.era.buddy
            self.pbo, self.nbits = int(b.get("pageblock_order", 0)), int(b.get("pageblock_bits", 0))
        else:
            self.pbo = self.nbits = 0

    def pattern(self, i: int) -> Pattern:
        key = int(self.keys[i])
        p = self.patterns.get(key)
        if p is None:
            p = Pattern.of(int(self.ops.pfns[i]), op_accs(self.k, self.ops, i))
            self.patterns[key] = p
            if self.progress:
                self.progress(1)
        return p

    def build(self, start: int = 0, stop: int | None = None) -> Trace:
        """The trace of ops ``start .. stop-1``: each op's pattern relocated to its pfn."""
        k, ops = self.k, self.ops
        stop = len(ops.args) if stop is None else min(stop, len(ops.args))
        if start >= stop:
            return Trace.empty()
        keys = self.keys[start:stop]
        uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
        pats = [self.pattern(start + int(f)) for f in first]
        plen = np.array([p.trace.n for p in pats], dtype=np.int64)
        pstart = np.concatenate(([0], np.cumsum(plen)[:-1]))
        cat = Trace.concat([p.trace for p in pats])
        pv = np.concatenate([p.vaddr for p in pats])
        pc = np.concatenate([p.cls for p in pats])
        po = np.concatenate([p.off for p in pats])
        pb = np.concatenate([p.bm for p in pats])
        n_acc = plen[inv]
        total = int(n_acc.sum())
        ostart = np.concatenate(([0], np.cumsum(n_acc)[:-1]))
        op_of = np.repeat(np.arange(len(inv)), n_acc)
        pos = np.arange(total, dtype=np.int64) - ostart[op_of]
        row = pstart[inv][op_of] + pos          # the pattern row each access copies
        pfns = ops.pfns[start:stop]
        cls = pc[row]
        vaddr = pv[row].copy()
        sel = cls == CLS_PAGE
        if sel.any():
            pages = k.model.pfn_to_page_array(pfns).astype(np.uint64)
            vaddr[sel] = pages[op_of[sel]] + po[row[sel]].astype(np.uint64)
        sel = cls == CLS_DIRECT
        if sel.any():
            va = np.uint64(k.layout.page_offset) + (pfns.astype(np.uint64) << np.uint64(PAGE_SHIFT))
            vaddr[sel] = va[op_of[sel]] + po[row[sel]].astype(np.uint64)
        sel = cls == CLS_BITMAP
        if sel.any():
            b = pb[row[sel]]
            pfn = pfns[op_of[sel]].astype(np.uint64) + b[:, 2]
            bit = ((pfn - b[:, 1]) >> np.uint64(self.pbo)) * np.uint64(self.nbits) + b[:, 3]
            vaddr[sel] = b[:, 0] + (bit >> np.uint64(6)) * np.uint64(8)
        # dependencies: the pattern rows' CSR slices, gathered
        cnt = np.diff(cat.dep_ptr)[row]
        ptr = np.zeros(total + 1, dtype=np.int64)
        ptr[1:] = np.cumsum(cnt)
        src = np.repeat(cat.dep_ptr[:-1][row], cnt) + (np.arange(int(ptr[-1]), dtype=np.int64) - np.repeat(ptr[:-1], cnt))
        return Trace(vaddr.astype(np.uint64), cat.kind[row], pos.astype(np.uint32), cat.depth[row], ptr,
                     cat.dep_pos[src].astype(np.uint32))


def build_trace(k: Kernel, ops: Ops, progress: Callable[[int], None] | None = None) -> Trace:
    """The full trace of every op (:class:`TraceBuilder` in one piece)."""
    return TraceBuilder(k, ops, progress).build()


def verify_trace(k: Kernel, ops: Ops, trace: Trace, sample: int, start: int = 0) -> None:
    """Raise if the bulk trace (of ops ``start ..``) differs from the scalar ops on ``sample`` of them."""
    s = min(sample, len(ops.args) - start)
    if not scalar_trace(k, ops, s, start).equals(trace.ops_slice(0, s)):
        raise AssertionError(f"bulk trace differs from the scalar operations on ops {start}..{start + s - 1} "
                             f"({k.model_name}, {ops.workload})")
