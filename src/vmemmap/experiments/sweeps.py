"""The five experiments of issue 5 item 5, each a sweep of :func:`vmemmap.cost.run.cost` calls.

* ``seed-claim``: the seed's machine (K8 Opteron, 2007) UP / SMP / NUMA, eras 2.6.21-seed and 2.6.24,
  every legal model, every registered workload.
* ``tlb-pressure``: FLATMEM's ``mem_map`` inside the 1 GiB-mapped direct map vs the 2 MiB-mapped
  vmemmap, RAM 4 GiB .. 64 TiB, modern CPUs (6.1 with FLATMEM as a what-if: x86-64 dropped it).
* ``kaslr``: 6.1's variable ``vmemmap_base`` vs the same kernel built without
  CONFIG_DYNAMIC_MEMORY_LAYOUT (constant ``VMEMMAP_START``).
* ``vmemmap-4k``: vmemmap with 2 MiB PMD leaves vs base pages (as HugeTLB vmemmap optimisation leaves
  them), several sizes and CPUs.
* ``struct-page``: sizeof(struct page) 56 / 64 / 32 / 8: memmap bytes, TLB reach, a cost run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vmemmap.cost.cpu import SIZE_SHIFT
from vmemmap.eras import load_era, what_if
from vmemmap.experiments import plots
from vmemmap.experiments.common import (
    PAGE_SIZE,
    GiB,
    Runner,
    TiB,
    all_workloads,
    flat_machine,
    random_workloads,
    size_name,
    table,
)
from vmemmap.machine import load_machine

# ---------------------------------------------------------------------- (a) the seed's claim

SEED_MACHINES = ("opteron-2007-up", "opteron-2007-smp", "opteron-2007")
SEED_KIND = {"opteron-2007-up": "UP", "opteron-2007-smp": "SMP", "opteron-2007": "NUMA"}
SEED_ERAS = ("2.6.21-seed", "2.6.24")


def seed_claim(r: Runner, quick: bool, out: Path) -> dict[str, Any]:
    machines = SEED_MACHINES
    eras = SEED_ERAS[:1] if quick else SEED_ERAS
    workloads = all_workloads()[:1] if quick else all_workloads()
    for mn in machines:
        m = load_machine(mn)
        for en in eras:
            for w in workloads:
                r.run(m, load_era(en), "k8", w, kind=SEED_KIND[mn])
    tables = []
    winners = []
    for w in workloads:
        rows = []
        for mn in machines:
            for en in eras:
                sel = [x for x in r.rows if x["machine"] == mn and x["era"] == en and x["workload"] == w]
                if not sel:
                    continue
                lo = min(x["cycles_per_op"] for x in sel)
                for x in sel:
                    rows.append([SEED_KIND[mn], en, x["model"], x["loads_per_op"], x["detail"]["depth_max"],
                                 x["tlb_misses_per_op"], x["walk_refs_per_op"], x["cache_misses_per_op"],
                                 x["cycles_per_op"], x["cycles_per_op"] / lo])
                best = sorted(sel, key=lambda x: x["cycles_per_op"])
                vm = next((x for x in sel if x["model"] == "vmemmap"), None)
                winners.append([w, SEED_KIND[mn], en, best[0]["model"], best[0]["cycles_per_op"],
                                vm["cycles_per_op"] if vm else float("nan"),
                                best[1]["model"] if len(best) > 1 else "", best[1]["cycles_per_op"] if len(best) > 1 else float("nan")])
        tables.append(table(f"{w}: K8, per operation ({r.ops_for(w)} ops, seed {r.seed})",
                            ["machine", "era", "model", "loads", "load depth", "TLB misses", "walk refs", "DRAM",
                             "cycles", "x cheapest"], rows))
    tables.insert(0, table("cheapest model per workload, machine and era (cycles per op)",
                           ["workload", "machine", "era", "cheapest", "cycles", "vmemmap cycles", "runner-up",
                            "runner-up cycles"], winners))
    figs = []
    for en in eras:
        panels = []
        for mn in machines:
            sel = [x for x in r.rows if x["machine"] == mn and x["era"] == en]
            models = list(dict.fromkeys(x["model"] for x in sel))
            lo = {w: min((x["cycles_per_op"] for x in sel if x["workload"] == w), default=0.0) for w in workloads}
            series = {mo: [next((x["cycles_per_op"] - lo[w] for x in sel if x["model"] == mo and x["workload"] == w),
                                0.0) for w in workloads] for mo in models}
            panels.append((f"{SEED_KIND[mn]} ({mn})", workloads, series))
        figs.append(plots.grouped_bars(out / f"seed-claim-{en}.svg",
                                       f"Cycles per operation above the cheapest model, K8, {en}", panels,
                                       "extra cycles / op", ncols=1))
    return {"tables": tables, "figures": figs,
            "setup": {"machines": list(machines), "eras": list(eras), "cpu": "k8", "workloads": workloads}}


# ---------------------------------------------------------------------- (b) TLB pressure

TLB_SIZES = tuple(4 * GiB * 4 ** i for i in range(8))     # 4 GiB .. 64 TiB
TLB_CPUS = ("skylake", "icelake", "zen4")
TLB_ERA = "6.1"


def tlb_pressure(r: Runner, quick: bool, out: Path) -> dict[str, Any]:
    era = what_if(load_era(TLB_ERA), flatmem=True)
    sizes = (4 * GiB, 1 * TiB) if quick else TLB_SIZES
    cpus = TLB_CPUS[:1] if quick else TLB_CPUS
    workloads = random_workloads()[:1] if quick else random_workloads()
    for size in sizes:
        m = flat_machine(size)
        for cpu in cpus:
            for w in workloads:
                r.run(m, era, cpu, w, ["flatmem", "vmemmap"], size=size)
    tables = []
    reach = []
    for cpu in cpus:
        c = r.cpu(cpu)
        l1, l2 = c.tlb_reach(1), c.tlb_reach(2)
        reach.append([cpu, l1.get("2m", 0) >> 21, l2.get("2m", 0) >> 21, l1.get("1g", 0) >> 30, l2.get("1g", 0) >> 30,
                      size_name((l1.get("2m", 0) + l2.get("2m", 0)) // era.struct_page_size * PAGE_SIZE),
                      size_name((l1.get("1g", 0) + l2.get("1g", 0)) // era.struct_page_size * PAGE_SIZE)])
    tables.append(table("TLB entries for the memmap's mappings (CPU presets) and the RAM whose struct pages "
                        "they cover (entries x page size / sizeof(struct page) x 4 KiB)",
                        ["cpu", "L1 2M", "L2 2M", "L1 1G", "L2 1G", "RAM covered by 2M entries",
                         "RAM covered by 1G entries"], reach))
    for w in workloads:
        rows = []
        for size in sizes:
            for cpu in cpus:
                sel = {x["model"]: x for x in r.rows if x.get("size") == size and x["cpu"] == cpu and x["workload"] == w}
                f, v = sel["flatmem"], sel["vmemmap"]
                memmap = size // PAGE_SIZE * era.struct_page_size
                rows.append([size_name(size), cpu, size_name(memmap) if memmap >= GiB else f"{memmap >> 20} MiB",
                             f["tlb_misses_per_op"], v["tlb_misses_per_op"], f["walk_refs_per_op"], v["walk_refs_per_op"],
                             f["cycles_per_op"], v["cycles_per_op"], v["cycles_per_op"] - f["cycles_per_op"]])
        tables.append(table(f"{w}: FLATMEM (mem_map in the 1 GiB direct map) vs vmemmap (2 MiB leaves), "
                            f"6.1, per operation",
                            ["RAM", "cpu", "memmap", "flat TLB miss", "vmemmap TLB miss", "flat walk refs",
                             "vmemmap walk refs", "flat cycles", "vmemmap cycles", "vmemmap - flat"], rows))
    figs = []
    for metric, label in (("tlb_misses_per_op", "page walks / op"), ("cycles_per_op", "cycles / op")):
        panels = []
        for w in workloads:
            for cpu in cpus:
                series = {}
                for mo in ("flatmem", "vmemmap"):
                    series[mo] = [next(x[metric] for x in r.rows if x.get("size") == s and x["cpu"] == cpu
                                       and x["workload"] == w and x["model"] == mo) for s in sizes]
                panels.append((f"{w}, {cpu}", [s / GiB for s in sizes], series))
        figs.append(plots.lines(out / f"tlb-pressure-{metric.split('_')[0]}.svg",
                                f"FLATMEM in 1 GiB pages vs vmemmap in 2 MiB pages: {label}", panels, "RAM (GiB)",
                                label, [size_name(s) for s in sizes]))
    return {"tables": tables, "figures": figs,
            "setup": {"era": TLB_ERA, "what_if": list(era.what_ifs), "sizes": list(sizes), "cpus": list(cpus),
                      "workloads": workloads, "machines": "synthetic single-node, no hole (flat_machine)"}}


# ---------------------------------------------------------------------- (c) KASLR's vmemmap_base

KASLR_MACHINES = ("desktop-32g", "flat-1tib")
KASLR_CPUS = ("skylake", "icelake", "zen4")


def kaslr(r: Runner, quick: bool, out: Path) -> dict[str, Any]:
    base = load_era("6.1")
    const = what_if(base, constant_layout=True)
    machines = [load_machine("desktop-32g")] + ([] if quick else [flat_machine(1 * TiB)])
    cpus = KASLR_CPUS[:1] if quick else KASLR_CPUS
    workloads = all_workloads()[:1] if quick else [w for w in all_workloads() if not w.startswith("buddy-order-")]
    for m in machines:
        for cpu in cpus:
            for w in workloads:
                r.run(m, base, cpu, w, ["vmemmap"], variant="vmemmap_base (dynamic layout)")
                r.run(m, const, cpu, w, ["vmemmap"], variant="constant VMEMMAP_START")
    rows = []
    for m in machines:
        for cpu in cpus:
            for w in workloads:
                sel = {x["variant"]: x for x in r.rows if x["machine"] == m.name and x["cpu"] == cpu and x["workload"] == w}
                d, c = sel["vmemmap_base (dynamic layout)"], sel["constant VMEMMAP_START"]
                rows.append([m.name, cpu, w, d["loads_per_op"], c["loads_per_op"], d["detail"]["depth_max"],
                             c["detail"]["depth_max"], d["cycles_per_op"], c["cycles_per_op"],
                             d["cycles_per_op"] - c["cycles_per_op"]])
    t = table("6.1 vmemmap with vmemmap_base (CONFIG_DYNAMIC_MEMORY_LAYOUT=y, as every distro kernel) vs the same "
              "kernel with the constant VMEMMAP_START, per operation",
              ["machine", "cpu", "workload", "loads (base)", "loads (const)", "depth (base)", "depth (const)",
               "cycles (base)", "cycles (const)", "extra cycles"], rows)
    panels = []
    for m in machines:
        series = {cpu: [row[9] for row in rows if row[0] == m.name and row[1] == cpu] for cpu in cpus}
        panels.append((m.name, workloads, series))
    fig = plots.grouped_bars(out / "kaslr-extra-cycles.svg", "Extra cycles per operation from loading vmemmap_base (6.1)",
                             panels, "cycles / op", ncols=2)
    return {"tables": [t], "figures": [fig],
            "setup": {"era": "6.1", "what_if": list(const.what_ifs), "machines": [m.name for m in machines],
                      "cpus": list(cpus), "workloads": workloads}}


# ---------------------------------------------------------------------- (d) vmemmap in 4 KiB pages

V4K_SIZES = (4 * GiB, 64 * GiB, 1 * TiB)
V4K_CPUS = (("k8", "2.6.24", False), ("skylake", "6.1", True), ("zen4", "6.1", True))


def vmemmap_4k(r: Runner, quick: bool, out: Path) -> dict[str, Any]:
    sizes = V4K_SIZES[:2] if quick else V4K_SIZES
    cpus = V4K_CPUS[1:2] if quick else V4K_CPUS
    workloads = random_workloads()[:1] if quick else random_workloads() + (
        ["for_each_page"] if "for_each_page" in all_workloads() else [])
    for cpu, en, gb in cpus:
        for size in sizes:
            m = flat_machine(size, gbpages=gb)
            for w in workloads:
                r.run(m, load_era(en), cpu, w, ["vmemmap", "vmemmap-4k"], size=size)
    rows = []
    for cpu, en, _ in cpus:
        for size in sizes:
            for w in workloads:
                sel = {x["model"]: x for x in r.rows if x.get("size") == size and x["cpu"] == cpu and x["workload"] == w}
                if "vmemmap-4k" not in sel:
                    continue
                a, b = sel["vmemmap"], sel["vmemmap-4k"]
                rows.append([cpu, en, size_name(size), w, a["tlb_misses_per_op"], b["tlb_misses_per_op"],
                             a["walk_refs_per_op"], b["walk_refs_per_op"], a["cache_misses_per_op"],
                             b["cache_misses_per_op"], a["cycles_per_op"], b["cycles_per_op"],
                             b["cycles_per_op"] / a["cycles_per_op"]])
    t = table("vmemmap in 2 MiB PMD leaves vs 4 KiB PTEs (vmemmap-4k), per operation",
              ["cpu", "era", "RAM", "workload", "TLB miss 2M", "TLB miss 4K", "walk refs 2M", "walk refs 4K",
               "DRAM 2M", "DRAM 4K", "cycles 2M", "cycles 4K", "4K / 2M"], rows)
    panels = []
    for cpu, en, _ in cpus:
        for w in workloads:
            series = {}
            for mo in ("vmemmap", "vmemmap-4k"):
                series[mo] = [next(x["cycles_per_op"] for x in r.rows if x.get("size") == s and x["cpu"] == cpu
                                   and x["workload"] == w and x["model"] == mo) for s in sizes]
            panels.append((f"{w}, {cpu} ({en})", [s / GiB for s in sizes], series))
    fig = plots.lines(out / "vmemmap-4k-cycles.svg", "vmemmap: 2 MiB leaves vs 4 KiB pages, cycles per operation",
                      panels, "RAM (GiB)", "cycles / op", [size_name(s) for s in sizes])
    return {"tables": [t], "figures": [fig],
            "setup": {"sizes": list(sizes), "cpus": [c for c, _, _ in cpus], "eras": {c: e for c, e, _ in cpus},
                      "workloads": workloads, "machines": "synthetic single-node (flat_machine); K8 without 1 GiB pages"}}


# ---------------------------------------------------------------------- (e) sizeof(struct page)

STRUCT_SIZES = (56, 64, 32, 8)
STRUCT_CPUS = ("k8", "skylake", "icelake", "zen4")
STRUCT_RUN_SIZES = (256 * GiB, 4 * TiB)
STRUCT_RUN_CPUS = ("skylake", "zen4")


def struct_page(r: Runner, quick: bool, out: Path) -> dict[str, Any]:
    base = load_era("6.1")
    # the memmap and TLB-reach arithmetic, from the era's page size and the CPU presets
    per_gib = [[sp, (GiB // PAGE_SIZE) * sp, (GiB // PAGE_SIZE) * sp / GiB * 100,
                (TiB // PAGE_SIZE) * sp / GiB] for sp in STRUCT_SIZES]
    t1 = table("memmap per GiB of RAM (262144 struct pages per GiB with 4 KiB pages)",
               ["sizeof(struct page)", "memmap bytes per GiB", "% of RAM", "GiB of memmap per TiB"], per_gib)
    reach_rows = []
    for cpu in STRUCT_CPUS:
        c = r.cpu(cpu)
        e1 = c.tlb_reach(1).get("2m", 0) >> SIZE_SHIFT[1]
        e2 = c.tlb_reach(2).get("2m", 0) >> SIZE_SHIFT[1]
        for sp in STRUCT_SIZES:
            pages_per_leaf = (1 << SIZE_SHIFT[1]) // sp
            reach_rows.append([cpu, sp, e1, e2, size_name(e1 * pages_per_leaf * PAGE_SIZE) if e1 else "0",
                               size_name((e1 + e2) * pages_per_leaf * PAGE_SIZE) if e1 + e2 else "0"])
    t2 = table("TLB reach of the vmemmap: RAM whose struct pages the L1 DTLB / L1+L2 TLB 2 MiB entries cover",
               ["cpu", "sizeof(struct page)", "L1 2M entries", "L2 2M entries", "RAM covered (L1)",
                "RAM covered (L1+L2)"], reach_rows)
    sizes = STRUCT_RUN_SIZES[:1] if quick else STRUCT_RUN_SIZES
    cpus = STRUCT_RUN_CPUS[:1] if quick else STRUCT_RUN_CPUS
    workloads = random_workloads()[:1]
    sps = STRUCT_SIZES[:2] if quick else STRUCT_SIZES
    for size in sizes:
        m = flat_machine(size)
        for cpu in cpus:
            for sp in sps:
                for w in workloads:
                    r.run(m, what_if(base, struct_page_size=sp), cpu, w, ["vmemmap"], size=size, struct_page=sp)
    rows = []
    for size in sizes:
        for cpu in cpus:
            for w in workloads:
                for sp in sps:
                    x = next(x for x in r.rows if x.get("size") == size and x["cpu"] == cpu and x["workload"] == w
                             and x.get("struct_page") == sp)
                    rows.append([size_name(size), cpu, w, sp, x["tlb_misses_per_op"], x["walk_refs_per_op"],
                                 x["cache_misses_per_op"], x["cycles_per_op"]])
    t3 = table("6.1 vmemmap with sizeof(struct page) changed (what-if), per operation",
               ["RAM", "cpu", "workload", "struct page", "TLB misses", "walk refs", "DRAM", "cycles"], rows)
    panels = []
    for size in sizes:
        for w in workloads:
            series = {cpu: [next(x["cycles_per_op"] for x in r.rows if x.get("size") == size and x["cpu"] == cpu
                                 and x["workload"] == w and x.get("struct_page") == sp) for sp in sps] for cpu in cpus}
            panels.append((f"{w}, {size_name(size)}", [f"{sp} B" for sp in sps], series))
    fig = plots.grouped_bars(out / "struct-page-cycles.svg", "vmemmap cycles per operation by sizeof(struct page)",
                             panels, "cycles / op", ncols=2)
    return {"tables": [t1, t2, t3], "figures": [fig],
            "setup": {"struct_page_sizes": list(sps), "sizes": list(sizes), "cpus": list(cpus), "workloads": workloads,
                      "era": "6.1 what-if"}}


EXPERIMENTS = {
    "seed-claim": (seed_claim, "the seed's claim on K8: FLATMEM vs vmemmap vs SPARSEMEM vs DISCONTIGMEM, UP/SMP/NUMA"),
    "tlb-pressure": (tlb_pressure, "FLATMEM's memmap in 1 GiB pages vs vmemmap's 2 MiB leaves, 4 GiB .. 64 TiB"),
    "kaslr": (kaslr, "what loading vmemmap_base costs (6.1 dynamic layout vs constant VMEMMAP_START)"),
    "vmemmap-4k": (vmemmap_4k, "vmemmap in 2 MiB leaves vs 4 KiB pages"),
    "struct-page": (struct_page, "sizeof(struct page) 56/64/32/8: memmap bytes, TLB reach, cost"),
}
