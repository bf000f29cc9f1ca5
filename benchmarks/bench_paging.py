"""Benchmark (not a test): vectorised page-table building and bulk translation.

    python3 benchmarks/bench_paging.py

* map 64 TiB of direct map with 1 GiB leaves and 1 TiB of vmemmap with 2 MiB leaves (512 Ki
  entries), 4- and 5-level;
* translate_array() over 10**6 vmemmap addresses vs a pure-Python loop of translate();
* ptdump() of the result.
"""

from __future__ import annotations

import time

import numpy as np

from vmemmap.paging import PageTables
from vmemmap.paging.entry import __PAGE_KERNEL_LARGE
from vmemmap.paging.ptdump import ptdump, x86_64_markers
from vmemmap.physmem import PhysMem

G1, M2, T1 = 1 << 30, 1 << 21, 1 << 40


def build(levels: int) -> tuple[PageTables, float, float]:
    nxt = [1 << 44]

    def alloc(nid: int) -> int:
        nxt[0] += 4096
        return nxt[0]
    pt = PageTables(PhysMem(), levels, alloc)
    po, vm = (0xFF11000000000000, 0xFFD4000000000000) if levels == 5 else \
        (0xFFFF888000000000, 0xFFFFEA0000000000)
    t0 = time.perf_counter()
    pt.map(po, 0, 64 * T1, G1, __PAGE_KERNEL_LARGE)
    t1 = time.perf_counter()
    pt.map(vm, 1 << 42, T1, M2, __PAGE_KERNEL_LARGE)
    t2 = time.perf_counter()
    return pt, t1 - t0, t2 - t1


def main() -> None:
    for levels in (4, 5):
        pt, a, b = build(levels)
        print(f"{levels}-level: map 64 TiB / 1G leaves {a * 1e3:8.1f} ms; "
              f"1 TiB / 2M leaves (512Ki entries) {b * 1e3:8.1f} ms; tables {pt.table_pages()}")
    pt, _, _ = build(4)
    rng = np.random.default_rng(1)
    va = np.uint64(0xFFFFEA0000000000) + (rng.integers(0, T1 // 8, 10**6, dtype=np.uint64)
                                          * np.uint64(8))
    t0 = time.perf_counter()
    bulk = pt.translate_array(va)
    t1 = time.perf_counter()
    n_loop = 100_000
    loop = [pt.translate(int(v)) for v in va[:n_loop]]
    t2 = time.perf_counter()
    assert bulk[:n_loop].tolist() == loop
    per_bulk = (t1 - t0) / va.size
    per_loop = (t2 - t1) / n_loop
    print(f"translate_array 10^6 addresses: {(t1 - t0) * 1e3:.1f} ms "
          f"({per_bulk * 1e9:.0f} ns/addr); translate() loop: {per_loop * 1e6:.2f} us/addr "
          f"(measured on {n_loop}); ratio {per_loop / per_bulk:.0f}x")
    t0 = time.perf_counter()
    text = ptdump(pt, x86_64_markers(levels=4, page_offset=0xFFFF888000000000,
                                     vmalloc_start=0xFFFFC90000000000,
                                     vmemmap_start=0xFFFFEA0000000000,
                                     fixaddr_start=0xFFFFFFFFFF578000))
    print(f"ptdump: {len(text.splitlines())} lines in {(time.perf_counter() - t0) * 1e3:.1f} ms")
    t0 = time.perf_counter()
    runs = pt.runs(0, 1 << 64)
    print(f"runs(0, 2**64): {len(runs)} runs in {(time.perf_counter() - t0) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
