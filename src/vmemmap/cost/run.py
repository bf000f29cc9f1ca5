"""``vmemmap cost``: one workload on every legal memory model of a machine and era, side by side.

For each model the machine is booted, the workload's trace is built from the model's own operations
(``workloads.TraceBuilder``, the first chunk self-checked against the scalar operations on a small
sample) and run through the bulk simulator with the chosen CPU preset, a chunk of operations at a time
(at most ``CHUNK_ACCESSES`` accesses each) so that long traces (``buddy-order-10``: thousands of
accesses per op) stream in bounded memory. JSON: DESIGN.md contract 9.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vmemmap.cost.cpu import SIZE_NAMES, Cpu
from vmemmap.cost.sim import COMPILED, F_CYC, F_DMISS, F_L1, F_L2, F_PSC, F_WALK, F_WMISS, BulkState, simulate
from vmemmap.cost.trace import KIND_LOAD, Trace
from vmemmap.cost.workloads import TraceBuilder, make_ops, verify_trace
from vmemmap.eras import Era
from vmemmap.errors import InputError
from vmemmap.kernel import BootOptions, boot, legal_models
from vmemmap.machine import Machine

CHUNK_OPS = 1 << 16
CHUNK_ACCESSES = 1 << 21  # a chunk of ops is built and simulated at a time: memory stays bounded
VERIFY_OPS = 32
PTE_BUDGET = 256 << 20    # as compare.py: skip a base-page vmemmap whose PTE pages we cannot hold


@dataclass
class _Tally:
    """What the summary needs from every chunk of a streamed trace."""

    loads: int = 0
    accesses: int = 0
    depth_max: int = 0
    depth_sum: int = 0

    def add(self, tr: Trace) -> None:
        self.loads += int(np.count_nonzero(tr.kind == KIND_LOAD))
        self.accesses += tr.n
        starts = tr.op_starts
        if len(starts):
            depth = np.maximum.reduceat(tr.depth.astype(np.int64), starts)
            self.depth_max = max(self.depth_max, int(depth.max()))
            self.depth_sum += int(depth.sum())


def _summary(model: str, ops: int, tally: _Tally, tot: np.ndarray, cpu: Cpu) -> dict[str, Any]:
    nc = len(cpu.caches)
    return {
        "model": model,
        "ops": ops,
        "loads_per_op": tally.loads / ops,
        "tlb_misses_per_op": float(tot[F_L2:F_L2 + 3].sum()) / ops,
        "walk_refs_per_op": float(tot[F_WALK]) / ops,
        "cache_misses_per_op": float(tot[F_DMISS + nc - 1] + tot[F_WMISS + nc - 1]) / ops,
        "cycles_per_op": float(tot[F_CYC]) / ops,
        "_detail": {
            "depth_max": tally.depth_max,
            "depth_mean": tally.depth_sum / ops,
            "accesses_per_op": tally.accesses / ops,
            "l1tlb_misses": {SIZE_NAMES[i]: float(tot[F_L1 + i]) / ops for i in range(3)},
            "l2tlb_misses": {SIZE_NAMES[i]: float(tot[F_L2 + i]) / ops for i in range(3)},
            "psc_hits": float(tot[F_PSC]) / ops,
            "data_misses": {cpu.caches[c].name: float(tot[F_DMISS + c]) / ops for c in range(nc)},
            "walk_misses": {cpu.caches[c].name: float(tot[F_WMISS + c]) / ops for c in range(nc)},
        },
    }


def cost(machine: Machine, era: Era, cpu: Cpu, workload: str, ops: int, seed: int,
         models: list[str] | None = None, la57: bool | None = None,
         progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Run ``workload`` on each model; the contract-9 object (plus ``_detail`` per result)."""
    legal = legal_models(era, machine)
    if models:
        for m in models:
            if m not in legal:
                raise InputError(f"model {m} cannot be built for {machine.name} in {era.name} "
                                 f"(legal: {', '.join(legal)})")
        chosen = [m for m in legal if m in models]
    else:
        chosen = list(legal)
    skipped = []
    memmap_est = machine.ram_bytes // 4096 * era.struct_page_size
    if "vmemmap-4k" in chosen and memmap_est // 512 > PTE_BUDGET:
        chosen.remove("vmemmap-4k")
        skipped.append({"model": "vmemmap-4k", "why": "base-page vmemmap page tables too large to hold"})
    results = []
    for mi, model in enumerate(chosen):
        k = boot(machine, era, model, BootOptions(la57=la57))
        o = make_ops(k, workload, ops, seed)
        builder = TraceBuilder(k, o)
        st = BulkState.new(cpu, k.tables)
        tot = np.zeros(16, dtype=np.int64)
        tally = _Tally()
        a = 0
        chunk = min(CHUNK_OPS, 64)
        while a < ops:
            b = min(ops, a + chunk)
            tr = builder.build(a, b)
            if a == 0:
                verify_trace(k, o, tr, VERIFY_OPS)
            tally.add(tr)
            tot += simulate(st, tr)[0]
            per_op = max(1, tr.n // max(1, b - a))
            chunk = max(1, min(CHUNK_OPS, CHUNK_ACCESSES // per_op))
            a = b
            if progress:
                progress(model, mi * ops + a, len(chosen) * ops)
        results.append(_summary(model, ops, tally, tot, cpu))
    return {
        "workload": workload,
        "cpu": cpu.name,
        "machine": machine.name,
        "results": results,
        "_era": era.name,
        "_skipped": skipped,
        "_compiled": COMPILED,
        "_cpu_estimates": list(cpu.estimates),
    }


def contract_json(res: dict[str, Any]) -> dict[str, Any]:
    """Exactly DESIGN.md contract 9."""
    keys = ("model", "ops", "loads_per_op", "tlb_misses_per_op", "walk_refs_per_op", "cache_misses_per_op",
            "cycles_per_op")
    return {"workload": res["workload"], "cpu": res["cpu"], "machine": res["machine"],
            "results": [{k: r[k] for k in keys} for r in res["results"]]}


def render(res: dict[str, Any], cpu: Cpu, console: Console) -> None:
    rs = res["results"]
    t = Table(title=f"{res['workload']} on {res['machine']} under {res['_era']}, CPU {cpu.name} "
                    f"({cpu.description}); {rs[0]['ops'] if rs else 0} ops per model")
    t.add_column("per op", style="cyan", no_wrap=True)
    for r in rs:
        t.add_column(r["model"], justify="right")

    def row(label: str, fn: Callable[[dict[str, Any]], float], fmt: str = "{:.3f}", best: bool = False) -> None:
        vals = [fn(r) for r in rs]
        lo = min(vals) if vals else 0
        t.add_row(label, *[(f"[bold green]{fmt.format(v)}[/]" if best and v == lo else fmt.format(v)) for v in vals])

    row("kernel loads", lambda r: r["loads_per_op"], "{:.2f}", best=True)
    row("dependent-load depth", lambda r: r["_detail"]["depth_max"], "{:.0f}", best=True)
    for s in SIZE_NAMES:
        if any(r["_detail"]["l1tlb_misses"][s] for r in rs):
            row(f"L1 DTLB misses ({s})", lambda r, s=s: r["_detail"]["l1tlb_misses"][s])
    for s in SIZE_NAMES:
        if any(r["_detail"]["l2tlb_misses"][s] for r in rs):
            row(f"L2 TLB misses ({s})", lambda r, s=s: r["_detail"]["l2tlb_misses"][s])
    row("page walks", lambda r: r["tlb_misses_per_op"], best=True)
    row("  PSC hits", lambda r: r["_detail"]["psc_hits"])
    row("  walk references", lambda r: r["walk_refs_per_op"], best=True)
    for c in cpu.caches:
        row(f"{c.name} misses (data)", lambda r, c=c: r["_detail"]["data_misses"][c.name])
        row(f"{c.name} misses (walk)", lambda r, c=c: r["_detail"]["walk_misses"][c.name])
    row("DRAM accesses", lambda r: r["cache_misses_per_op"], best=True)
    row("cycles", lambda r: r["cycles_per_op"], "{:.1f}", best=True)
    console.print(t)
    est = res["_cpu_estimates"]
    if est:
        console.print(escape(f"estimated CPU parameters ({cpu.name}): {', '.join(est)} (see cost/cpus/{cpu.name}.toml)"),
                      style="dim")
    for s in res["_skipped"]:
        console.print(escape(f"{s['model']}: not run: {s['why']}"), style="dim")
    if not res["_compiled"]:
        console.print("numba is not installed: the bulk simulator ran interpreted (slow)", style="yellow")
