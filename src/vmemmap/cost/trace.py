"""Access traces: what one operation touches, in program order, and what each access waits for.

An operation's accesses are the kernel loads its model code executed (``Result.loads``, read
through the simulated page tables) followed by the access to the ``struct page`` it returns
(``page->flags``, offset 0) and, for ``page_address``-style ops, to the page itself.

**Dependencies** are found by running the operation's own code, not from a table: for each load
``i`` the operation is run again with the value load ``i`` returns perturbed (``+4096``, ``^1``,
``^0x100``); every later load whose address changes (or faults) and a result that changes depend on
load ``i``. A load with no dependency has depth 1 (its address is a constant or comes from the
operation's argument); otherwise depth = 1 + the deepest load it waits for. So FLATMEM
``mem_map`` → struct page is depth 2, the seed's constant ``vmemmap`` depth 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vmemmap.kernel import Kernel

KIND_LOAD = 0
KIND_STRUCT_PAGE = 1
KIND_PAGE = 2
KIND_NAMES = ("kernel load", "struct page", "page")
MAX_OP_ACCESSES = 32      # dependency masks are uint32 bit sets of positions within one op
PERTURBATIONS: tuple[Callable[[int], int], ...] = (
    lambda v: v + 4096, lambda v: v ^ 1, lambda v: v ^ 0x100)


@dataclass(frozen=True)
class Access:
    vaddr: int
    kind: int
    dep: int        # bit set of earlier positions in the same op this access's address depends on
    depth: int
    what: str


@dataclass
class Trace:
    """A flat trace: one row per access; ``pos == 0`` starts an operation."""

    vaddr: np.ndarray   # uint64
    kind: np.ndarray    # uint8
    pos: np.ndarray     # uint8
    dep: np.ndarray     # uint32
    depth: np.ndarray   # uint8

    @property
    def n(self) -> int:
        return int(len(self.vaddr))

    @property
    def op_starts(self) -> np.ndarray:
        return np.flatnonzero(self.pos == 0)

    @property
    def n_ops(self) -> int:
        return int(np.count_nonzero(self.pos == 0))

    def head(self, ops: int) -> Trace:
        st = self.op_starts
        end = int(st[ops]) if ops < len(st) else self.n
        return Trace(self.vaddr[:end], self.kind[:end], self.pos[:end], self.dep[:end], self.depth[:end])

    def equals(self, other: Trace) -> bool:
        return all(np.array_equal(getattr(self, f), getattr(other, f)) for f in ("vaddr", "kind", "pos", "dep", "depth"))


def from_accesses(ops: list[list[Access]]) -> Trace:
    rows = [(a.vaddr, a.kind, p, a.dep, a.depth) for op in ops for p, a in enumerate(op)]
    if not rows:
        z = np.zeros(0, dtype=np.uint64)
        return Trace(z, z.astype(np.uint8), z.astype(np.uint8), z.astype(np.uint32), z.astype(np.uint8))
    v, k, p, d, h = zip(*rows)
    return Trace(np.array(v, dtype=np.uint64), np.array(k, dtype=np.uint8), np.array(p, dtype=np.uint8),
                 np.array(d, dtype=np.uint32), np.array(h, dtype=np.uint8))


def _run_perturbed(k: Kernel, run: Callable[[], int], target: int,
                   pert: Callable[[int], int]) -> tuple[list[tuple[str, int]], int | None]:
    """Run the op with the ``target``-th load's value perturbed; (loads seen, result or None)."""
    seen: list[tuple[str, int]] = []
    orig = k.mem.load

    def load(vaddr: int, size: int, what: str) -> int:
        seen.append((what, vaddr))
        v = orig(vaddr, size, what)
        return pert(v) if len(seen) - 1 == target else v

    k.mem.load = load  # type: ignore[method-assign]  # instance attribute shadows the method
    try:
        with k.mem.record():
            value = run()
    except Exception:  # noqa: BLE001 - a perturbed address may fault or be nonsense: that is a dependency
        value = None
    finally:
        del k.mem.load
    return seen, value


def op_accesses(k: Kernel, run: Callable[[], int]) -> list[Access]:
    """The accesses of one operation: its recorded loads, then the struct page access.

    ``run`` executes the operation's primitive (loads go to the active recorder) and returns the
    struct page address (``page->flags`` is touched at offset 0).
    """
    with k.mem.record() as rec:
        value = run()
    loads = list(rec)
    n = len(loads)
    if n + 1 > MAX_OP_ACCESSES:
        raise ValueError(f"an operation with {n} loads is longer than {MAX_OP_ACCESSES} accesses")
    base = [(ld.what, ld.vaddr) for ld in loads]
    dep = [0] * (n + 1)
    for i in range(n):
        for pert in PERTURBATIONS:
            seen, v = _run_perturbed(k, run, i, pert)
            for j in range(i + 1, n):
                if j < len(seen):
                    if seen[j] != base[j]:
                        dep[j] |= 1 << i
                elif v is None and j == len(seen):
                    dep[j] |= 1 << i     # the run stopped before reaching load j
            if v is not None and v != value or v is None and len(seen) >= n:
                dep[n] |= 1 << i
    depth = [0] * (n + 1)
    for j in range(n + 1):
        depth[j] = 1 + max((depth[i] for i in range(j) if dep[j] >> i & 1), default=0)
    out = [Access(ld.vaddr, KIND_LOAD, dep[j], depth[j], ld.what) for j, ld in enumerate(loads)]
    out.append(Access(value, KIND_STRUCT_PAGE, dep[n], depth[n], "page->flags"))
    return out
