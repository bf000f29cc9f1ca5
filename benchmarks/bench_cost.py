"""Benchmark (not a test): simulated accesses per second of the cost simulator.

    python3 benchmarks/bench_cost.py [--ops 1000000] [--buddy-ops 20000] [--scalar-accesses 20000]
                                     [--naive-accesses 200000] [--repeat 5]

For each (machine, era, model, workload, CPU) case the workload's trace is built once, then:

* **bulk**: ``sim.simulate`` (the two passes written out for the CPU model by ``cost/simgen.py`` and
  compiled by numba -- compiled, or loaded from numba's disk cache, before timing; the first-time
  compile is printed as ``compile s``) over the whole trace, ``BulkState.new`` (the page-table
  snapshot) included, as ``vmemmap cost`` runs it, with the threads ``sim.sim_threads()`` gives
  (2 on a machine with two or more CPUs: the translation and cache passes overlap). Rates: wall
  clock (``time.perf_counter``), and the process's CPU time (``time.process_time``, both threads:
  the work done, whatever the overlap). ``mem acc/s`` counts every memory access the simulator
  sends through its cache model -- the trace's accesses and the page walks' references (the issue's
  "each walk reference is a memory access") -- per wall-clock second;
* **scalar**: ``sim.ScalarSim`` (pure Python, the step-by-step explainer) over the first operations
  holding ``--scalar-accesses`` accesses;
* **naive**: the loop one writes first -- a pure-Python ``OrderedDict`` LRU TLB of 4 KiB page numbers
  (the CPU's L1 4K entries), ``PageTables.walk`` on a miss, no caches -- over the first operations
  holding ``--naive-accesses`` accesses.

Buddy allocator cases (``buddy-order-4``: one allocation and one free of an order-4 block, hundreds
of accesses per operation) run with ``--buddy-ops`` operations.

Rates are accesses per second (an access = one kernel load/store or struct page touch), best of
``--repeat``; ratios are bulk/naive and bulk/scalar from this one run on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import OrderedDict

import numpy as np

from vmemmap.cost.cpu import load_cpu
from vmemmap.cost.sim import COMPILED, F_WALK, BulkState, ScalarSim, sim_threads, simulate
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
BUDDY_CASES = [
    ("qemu-2g", "2.6.24", "vmemmap", "buddy-order-4", "k8"),
    ("qemu-2g", "6.1", "vmemmap", "buddy-order-4", "zen4"),
]


def best(fn, repeat: int, clock=time.perf_counter) -> float:  # noqa: ANN001
    t = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        t.append(clock() - t0)
    return min(t)


def head_accesses(tr: Trace, accesses: int) -> Trace:
    """The first operations of ``tr`` holding about ``accesses`` accesses (at least one op)."""
    starts = tr.op_starts
    return tr.head(max(1, int(np.searchsorted(starts, accesses))))


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
    ap.add_argument("--buddy-ops", type=int, default=20_000)
    ap.add_argument("--scalar-accesses", type=int, default=20_000)
    ap.add_argument("--naive-accesses", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=20240607)
    a = ap.parse_args()
    print(f"numba compiled: {COMPILED}; Python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"simulator threads: {sim_threads()}")
    print("| machine | era | model | workload | cpu | ops | accesses | acc/op | walk refs/acc | compile s "
          "| bulk M acc/s (wall) | bulk M acc/s (CPU) | bulk M mem acc/s (wall) | scalar k acc/s | naive k acc/s "
          "| bulk/naive | bulk/scalar |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cases = CASES + BUDDY_CASES
    for machine, era, model, workload, cpu_name in cases:
        k = boot(load_machine(machine), era, model)
        n_ops = a.buddy_ops if workload.startswith("buddy-") else a.ops
        tr = build_trace(k, make_ops(k, workload, n_ops, a.seed))
        cpu = load_cpu(cpu_name)
        t0 = time.perf_counter()
        simulate(BulkState.new(cpu, k.tables), tr.head(10))      # compile (or load the cache)
        tcomp = time.perf_counter() - t0
        walk_refs = int(simulate(BulkState.new(cpu, k.tables), tr)[0, F_WALK])
        tb = best(lambda: simulate(BulkState.new(cpu, k.tables), tr), a.repeat)
        tc = best(lambda: simulate(BulkState.new(cpu, k.tables), tr), a.repeat, time.process_time)
        sc = head_accesses(tr, a.scalar_accesses)
        ts = best(lambda: ScalarSim(cpu, k.tables).run(sc), 1)
        nv = head_accesses(tr, a.naive_accesses)
        l1_4k = sum(t.entries for t in cpu.tlbs if t.level == 1 and "4k" in t.page_sizes) or 64
        vas = [int(v) for v in nv.vaddr]
        tn = best(lambda: naive_tlb(k.tables, vas, l1_4k), 1)
        rb, rcpu, rs, rn = tr.n / tb, tr.n / tc, sc.n / ts, nv.n / tn
        rmem = (tr.n + walk_refs) / tb
        print(f"| {machine} | {era} | {model} | {workload} | {cpu_name} | {tr.n_ops:,} | {tr.n:,} | "
              f"{tr.n / tr.n_ops:.1f} | {walk_refs / tr.n:.2f} | {tcomp:.1f} | {rb / 1e6:.1f} | {rcpu / 1e6:.1f} | "
              f"{rmem / 1e6:.1f} | {rs / 1e3:.1f} | {rn / 1e3:.1f} | {rb / rn:.0f} | {rb / rs:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
