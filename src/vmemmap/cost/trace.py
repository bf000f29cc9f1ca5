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

An operation may have any number of accesses: :class:`Trace` keeps each access's dependencies as a
CSR list of positions (``dep_ptr``/``dep_pos``), :class:`Access` as a Python int bit set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from vmemmap.kernel import Kernel

KIND_LOAD = 0
KIND_STRUCT_PAGE = 1
KIND_PAGE = 2
KIND_NAMES = ("kernel load", "struct page", "page")
MAX_DEPTH = 0xFFFF        # Trace.depth is uint16
PERTURBATIONS: tuple[Callable[[int], int], ...] = (
    lambda v: v + 4096, lambda v: v ^ 1, lambda v: v ^ 0x100)


@dataclass(frozen=True)
class Access:
    vaddr: int
    kind: int
    dep: int        # bit set (any size) of earlier positions in the same op this access's address depends on
    depth: int
    what: str


def _positions(bits: int) -> list[int]:
    """The set bits of ``bits``, ascending."""
    out = []
    while bits:
        low = bits & -bits
        out.append(low.bit_length() - 1)
        bits ^= low
    return out


@dataclass
class Trace:
    """A flat trace: one row per access; ``pos == 0`` starts an operation.

    The dependencies of access ``i`` are the positions ``dep_pos[dep_ptr[i]:dep_ptr[i + 1]]``
    (ascending, each ``< pos[i]``, positions within the same operation) -- a CSR list, so an
    operation may have any number of accesses and depend on any earlier one.
    """

    vaddr: np.ndarray   # uint64[n]
    kind: np.ndarray    # uint8[n]
    pos: np.ndarray     # uint32[n]: position within the operation
    depth: np.ndarray   # uint16[n]
    dep_ptr: np.ndarray  # int64[n + 1]
    dep_pos: np.ndarray  # uint32[m]

    @property
    def n(self) -> int:
        return int(len(self.vaddr))

    @property
    def op_starts(self) -> np.ndarray:
        return np.flatnonzero(self.pos == 0)

    @property
    def n_ops(self) -> int:
        return int(np.count_nonzero(self.pos == 0))

    def deps(self, i: int) -> np.ndarray:
        """The positions access ``i`` waits for."""
        return self.dep_pos[self.dep_ptr[i]:self.dep_ptr[i + 1]]

    def rows(self, a: int, b: int) -> Trace:
        """Accesses ``a .. b-1`` (whole operations expected) as a trace; ``dep_ptr`` rebased."""
        p0, p1 = int(self.dep_ptr[a]), int(self.dep_ptr[b])
        return Trace(self.vaddr[a:b], self.kind[a:b], self.pos[a:b], self.depth[a:b],
                     self.dep_ptr[a:b + 1] - p0, self.dep_pos[p0:p1])

    def ops_slice(self, a: int, b: int) -> Trace:
        """Operations ``a .. b-1`` as a trace."""
        st = self.op_starts
        no = len(st)
        a, b = max(0, min(a, no)), max(0, min(b, no))
        b = max(a, b)
        lo = int(st[a]) if a < no else self.n
        hi = int(st[b]) if b < no else self.n
        return self.rows(lo, hi)

    def head(self, ops: int) -> Trace:
        return self.ops_slice(0, ops)

    def equals(self, other: Trace) -> bool:
        return all(np.array_equal(getattr(self, f), getattr(other, f)) for f in FIELDS)

    def validate(self) -> None:
        """Raise ValueError unless the arrays have the documented dtypes, lengths and dependency rules."""
        n = self.n
        for f, dt in zip(FIELDS, DTYPES):
            a = getattr(self, f)
            if a.dtype != dt or a.ndim != 1:
                raise ValueError(f"Trace.{f} must be a 1-D {np.dtype(dt).name} array, not {a.dtype}{a.shape}")
        if not (len(self.kind) == len(self.pos) == len(self.depth) == n and len(self.dep_ptr) == n + 1):
            raise ValueError("Trace arrays have inconsistent lengths")
        if self.dep_ptr[0] != 0 or self.dep_ptr[-1] != len(self.dep_pos) or np.any(np.diff(self.dep_ptr) < 0):
            raise ValueError("Trace.dep_ptr must rise from 0 to len(dep_pos)")
        if n and self.pos[0] != 0:
            raise ValueError("a trace must start an operation (pos 0)")
        if n > 1 and np.any((self.pos[1:] != 0) & (self.pos[1:] != self.pos[:-1] + 1)):
            raise ValueError("positions within an operation must be 0, 1, 2, ...")
        owner = np.repeat(np.arange(n), np.diff(self.dep_ptr))
        if np.any(self.dep_pos >= self.pos[owner]):
            raise ValueError("an access may depend only on earlier positions of its operation")
        same = owner[1:] == owner[:-1]
        if np.any(same & (self.dep_pos[1:] <= self.dep_pos[:-1])):
            raise ValueError("dependency positions must be ascending")

    @classmethod
    def empty(cls) -> Trace:
        return cls(*(np.zeros(1 if f == "dep_ptr" else 0, dtype=dt) for f, dt in zip(FIELDS, DTYPES)))

    @classmethod
    def concat(cls, traces: Sequence[Trace]) -> Trace:
        """The traces one after the other (``dep_ptr`` shifted)."""
        ts = list(traces)
        if not ts:
            return cls.empty()
        ptr = [ts[0].dep_ptr]
        off = int(ts[0].dep_ptr[-1])
        for t in ts[1:]:
            ptr.append(t.dep_ptr[1:] + off)
            off += int(t.dep_ptr[-1])
        return cls(*(np.concatenate([getattr(t, f) for t in ts]).astype(dt, copy=False)
                     for f, dt in zip(FIELDS[:4], DTYPES[:4])),
                   np.concatenate(ptr).astype(np.int64, copy=False),
                   np.concatenate([t.dep_pos for t in ts]).astype(np.uint32, copy=False))


FIELDS = ("vaddr", "kind", "pos", "depth", "dep_ptr", "dep_pos")
DTYPES = (np.uint64, np.uint8, np.uint32, np.uint16, np.int64, np.uint32)


def concat(traces: Sequence[Trace]) -> Trace:
    """:meth:`Trace.concat`."""
    return Trace.concat(traces)


def from_dep_sets(vaddr: Sequence[int] | np.ndarray, kind: Sequence[int] | np.ndarray,
                  pos: Sequence[int] | np.ndarray, dep: Sequence[int], depth: Sequence[int] | np.ndarray) -> Trace:
    """A trace from per-access columns, ``dep`` given as Python int bit sets of positions."""
    lists = [_positions(int(d)) for d in dep]
    ptr = np.zeros(len(lists) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(x) for x in lists])
    flat = [q for x in lists for q in x]
    dh = np.asarray(depth)
    if len(dh) and int(dh.max()) > MAX_DEPTH:
        raise ValueError(f"a dependency depth over {MAX_DEPTH} does not fit Trace.depth (uint16)")
    return Trace(np.asarray(vaddr, dtype=np.uint64), np.asarray(kind, dtype=np.uint8),
                 np.asarray(pos, dtype=np.uint32), dh.astype(np.uint16),
                 ptr, np.array(flat, dtype=np.uint32))


def from_accesses(ops: list[list[Access]]) -> Trace:
    """The trace of these operations (each a list of accesses in program order)."""
    acc = [a for op in ops for a in op]
    if not acc:
        return Trace.empty()
    pos = [p for op in ops for p in range(len(op))]
    return from_dep_sets([a.vaddr for a in acc], [a.kind for a in acc], pos, [a.dep for a in acc],
                         [a.depth for a in acc])


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
        depth[j] = 1 + max((depth[i] for i in _positions(dep[j])), default=0)
    out = [Access(ld.vaddr, KIND_LOAD, dep[j], depth[j], ld.what) for j, ld in enumerate(loads)]
    out.append(Access(value, KIND_STRUCT_PAGE, dep[n], depth[n], "page->flags"))
    return out
