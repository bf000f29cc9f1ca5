"""Workloads: streams of memory-model operations on a booted kernel, as access traces.

* ``pfn_to_page-random``: uniformly random RAM pfns; ``pfn_to_page(pfn)`` then ``page->flags``.
* ``for_each_page``: consecutive RAM pfns (holes skipped) from a seed-chosen start, wrapping;
  ``pfn_to_page`` + ``page->flags`` each.
* ``virt_to_page-slab``: the slab free path's lookup: random 8-byte-aligned direct-map addresses of
  RAM, ``virt_to_page(addr)`` then ``page->flags`` (``PageSlab``/``compound_head``).

Deterministic for a seed (numpy ``default_rng``). The buddy allocator workloads (``buddy-order-K``)
are not built yet.

How a trace is built (:func:`build_trace`): the *scalar* operation (the model's Python code,
recording its loads) is run once per distinct *pattern key* — the pfn's section, or its
``memnodemap`` slot for DISCONTIGMEM: within one key an operation loads the same kernel addresses —
and its dependencies are found by perturbation (``trace.op_accesses``). The full trace then takes the
load addresses from those patterns and the struct page addresses from the model's bulk path
(``pfn_to_page_array``). :func:`scalar_trace` runs the scalar operation for every op;
``tests/test_cost.py`` checks both give the same trace exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vmemmap.cost.trace import KIND_LOAD, KIND_STRUCT_PAGE, Trace, from_accesses, op_accesses
from vmemmap.errors import InputError
from vmemmap.kernel import Kernel

PAGE_SHIFT = 12
WORKLOADS = {
    "pfn_to_page-random": "random RAM pfns: pfn_to_page + page->flags",
    "for_each_page": "sequential RAM pfns: pfn_to_page + page->flags",
    "virt_to_page-slab": "random direct-map addresses: virt_to_page + page->flags (slab free path)",
}
PLANNED = "buddy-order-K (K = 0..10: the era's buddy allocator, one allocation and one free of order K)"


@dataclass(frozen=True)
class Ops:
    """A workload's operation and its arguments (pfns or direct-map virtual addresses)."""

    workload: str
    op: str                # 'pfn_to_page' | 'virt_to_page'
    args: np.ndarray       # uint64
    pfns: np.ndarray       # uint64: the pfn each op converts


def _ram_pfns(k: Kernel) -> tuple[np.ndarray, np.ndarray, int]:
    rs = sorted((s, e) for s, e, _ in k.ram_pfn_ranges())
    starts = np.array([s for s, _ in rs], dtype=np.int64)
    lens = np.array([e - s for s, e in rs], dtype=np.int64)
    return starts, np.cumsum(lens), int(lens.sum())


def _nth_ram_pfn(k: Kernel, idx: np.ndarray) -> np.ndarray:
    starts, cum, _ = _ram_pfns(k)
    r = np.searchsorted(cum, idx, side="right")
    before = np.concatenate(([0], cum[:-1]))
    return (starts[r] + (idx - before[r])).astype(np.uint64)


def make_ops(k: Kernel, workload: str, n: int, seed: int) -> Ops:
    """The workload's ``n`` operations on ``k`` for ``seed``."""
    if n < 1:
        raise InputError("--ops must be at least 1")
    rng = np.random.default_rng(seed)
    _, _, total = _ram_pfns(k)
    if workload == "pfn_to_page-random":
        pfns = _nth_ram_pfn(k, rng.integers(0, total, n, dtype=np.int64))
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
    if workload.startswith("buddy-order-"):
        raise InputError(f"{workload}: the buddy allocator workloads are not built yet ({PLANNED})")
    raise InputError(f"unknown workload {workload!r}; choose one of {', '.join(WORKLOADS)}")


def _runner(k: Kernel, op: str, arg: int) -> Callable[[], int]:
    m = k.model
    if op == "pfn_to_page":
        return lambda: m._pfn_to_page(arg)
    if op == "virt_to_page":
        return lambda: m._pfn_to_page(k.pa(arg) >> PAGE_SHIFT)
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


def scalar_trace(k: Kernel, ops: Ops, count: int | None = None) -> Trace:
    """Run the scalar operation for each of the first ``count`` ops (all by default)."""
    args = ops.args[: count if count is not None else len(ops.args)]
    return from_accesses([op_accesses(k, _runner(k, ops.op, int(a))) for a in args])


def build_trace(k: Kernel, ops: Ops, progress: Callable[[int], None] | None = None) -> Trace:
    """The full trace: load patterns from the scalar op per key, struct pages from the bulk path."""
    keys = ops.pfns >> np.uint64(pattern_shift(k))
    uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    pats = []
    for i in first:
        pats.append(op_accesses(k, _runner(k, ops.op, int(ops.args[i]))))
        if progress:
            progress(1)
    nl = np.array([len(p) - 1 for p in pats], dtype=np.int64)
    lmax = int(nl.max()) if len(nl) else 0
    pv = np.zeros((len(pats), max(lmax, 1)), dtype=np.uint64)
    pd = np.zeros((len(pats), lmax + 1), dtype=np.uint32)
    ph = np.zeros((len(pats), lmax + 1), dtype=np.uint8)
    for r, p in enumerate(pats):
        for j, a in enumerate(p[:-1]):
            pv[r, j] = a.vaddr
            pd[r, j] = a.dep
            ph[r, j] = a.depth
        pd[r, lmax] = p[-1].dep       # the struct page access, kept in the last column
        ph[r, lmax] = p[-1].depth
    pages = k.model.pfn_to_page_array(ops.pfns)
    n_acc = nl[inv] + 1
    total = int(n_acc.sum())
    starts = np.concatenate(([0], np.cumsum(n_acc)[:-1]))
    op_of = np.repeat(np.arange(len(inv)), n_acc)
    pos = np.arange(total, dtype=np.int64) - starts[op_of]
    pat = inv[op_of]
    is_page = pos == nl[pat]
    col = np.where(is_page, lmax, pos)
    vaddr = np.where(is_page, pages[op_of], pv[pat, np.minimum(pos, pv.shape[1] - 1)])
    kind = np.where(is_page, KIND_STRUCT_PAGE, KIND_LOAD).astype(np.uint8)
    return Trace(vaddr.astype(np.uint64), kind, pos.astype(np.uint8), pd[pat, col], ph[pat, col])


def verify_trace(k: Kernel, ops: Ops, trace: Trace, sample: int) -> None:
    """Raise if the bulk trace differs from the scalar operations on the first ``sample`` ops."""
    s = min(sample, len(ops.args))
    if not scalar_trace(k, ops, s).equals(trace.head(s)):
        raise AssertionError(f"bulk trace differs from the scalar operations on the first {s} ops "
                             f"({k.model_name}, {ops.workload})")
