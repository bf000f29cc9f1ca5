"""Benchmark (not a test): simulated accesses per second of the cost simulator.

    python3 benchmarks/bench_cost.py [--ops 1000000] [--scalar-ops 20000] [--naive-ops 200000]

For each (machine, era, model, workload, CPU) case the workload's trace is built once, then:

* **bulk**: ``sim.simulate`` (numba-compiled loop; compiled before timing) over the whole trace;
* **scalar**: ``sim.ScalarSim`` (pure Python, the step-by-step explainer) over the first
  ``--scalar-ops`` operations;
* **naive**: the loop one writes first — a pure-Python ``OrderedDict`` LRU TLB of 4 KiB page numbers
  (the CPU's L1 4K entries), ``PageTables.walk`` on a miss, no caches — over the first
  ``--naive-ops`` operations.

Rates are accesses per second (an access = one kernel load or struct page touch), best of 3,
``time.perf_counter``; ratios are bulk/naive and bulk/scalar from this one run on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import OrderedDict

import numpy as np

from vmemmap.cost.cpu import load_cpu
from vmemmap.cost.sim import COMPILED, BulkState, ScalarSim, simulate
from vmemmap.cost.trace import Trace
from vmemmap.cost.workloads import build_trace, make_ops
from vmemmap.kernel import boot
from vmemmap.machine import load_machine

CASES = [
    ("opteron-2007", "2.6.21-seed", "discontigmem", "pfn_to_page-random", "k8"),
    ("opteron-2007", "2.6.21-seed", "vmemmap", "pfn_to_page-random", "k8"),
    ("opteron-2007", "2.6.21-seed", "vmemmap", "for_each_page", "k8"),
    ("opteron-2007", "2.6.21-seed", "sparsemem-extreme", "virt_to_page-slab", "k8"),
    ("desktop-32g", "6.1", "vmemmap", "pfn_to_page-random", "zen4"),
    ("desktop-32g", "6.1", "vmemmap", "for_each_page", "skylake"),
]


def best(fn, repeat: int = 3) -> float:  # noqa: ANN001
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return min(t)


def naive_tlb(tables, vaddrs: list[int], entries: int) -> int:  # noqa: ANN001
    """A first-draft TLB: LRU over 4 KiB page numbers, a real walk on each miss."""
    tlb: OrderedDict[int, int] = OrderedDict()
    misses = 0
    for va in vaddrs:
        vpn = va >> 12
        if vpn in tlb:
            tlb.move_to_end(vpn)
            continue
        misses += 1
        w = tables.walk(va)
        tlb[vpn] = w.phys or 0
        if len(tlb) > entries:
            tlb.popitem(last=False)
    return misses


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--scalar-ops", type=int, default=20_000)
    ap.add_argument("--naive-ops", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=20240607)
    a = ap.parse_args()
    print(f"numba compiled: {COMPILED}; Python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs")
    print(f"| machine | era | model | workload | cpu | accesses | bulk M acc/s | scalar k acc/s | naive k acc/s "
          f"| bulk/naive | bulk/scalar |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    warm = False
    for machine, era, model, workload, cpu_name in CASES:
        k = boot(load_machine(machine), era, model)
        tr = build_trace(k, make_ops(k, workload, a.ops, a.seed))
        cpu = load_cpu(cpu_name)
        if not warm:
            simulate(BulkState.new(cpu, k.tables), tr.head(10))      # compile (or load the cache)
            warm = True
        tb = best(lambda: simulate(BulkState.new(cpu, k.tables), tr))
        # BulkState.new (the page-table snapshot) is inside the timing: it is part of a run
        sc = tr.head(a.scalar_ops)
        ts = best(lambda: ScalarSim(cpu, k.tables).run(sc), 1)
        nv = tr.head(a.naive_ops)
        l1_4k = sum(t.entries for t in cpu.tlbs if t.level == 1 and "4k" in t.page_sizes) or 64
        vas = [int(v) for v in nv.vaddr]
        tn = best(lambda: naive_tlb(k.tables, vas, l1_4k), 1)
        rb, rs, rn = tr.n / tb, sc.n / ts, nv.n / tn
        print(f"| {machine} | {era} | {model} | {workload} | {cpu_name} | {tr.n:,} | {rb / 1e6:.1f} | "
              f"{rs / 1e3:.1f} | {rn / 1e3:.1f} | {rb / rn:.0f} | {rb / rs:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
