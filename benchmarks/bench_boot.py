"""Benchmark (not a test): boot time and peak memory of every built-in machine, 2 GiB .. 64 TiB.

    python3 benchmarks/bench_boot.py [--repeat 3] [--config 2.6.31:vmemmap ...] [--machine server-64t ...]

Boots each ``builtin_machines()`` entry in era 6.12 with ``vmemmap``, in 6.1 with ``sparsemem-extreme``
and in 2.6.26 and 2.6.31 with ``vmemmap`` (2 MiB leaves from bootmem, one ``vmemmap_populate`` per
section; ``--config``/``--machine`` pick a subset). Every boot runs in a fresh Python subprocess, so its
memory is its own:

* **boot ms**: ``time.perf_counter`` around ``boot()`` only (modules imported, era and machine loaded
  before the clock starts); best of ``--repeat`` fresh subprocesses, except that a boot slower than
  ``--slow`` seconds is not repeated (column **runs**: 6.1 sparsemem-extreme on the 64 TiB machine
  takes about two minutes, see README.md);
* **maxRSS**: the child's ``getrusage(RUSAGE_SELF).ru_maxrss`` after the boot (MiB), and **base**:
  the same figure just before ``boot()`` (interpreter + numpy + vmemmap imported). ``maxRSS - base``
  is what the boot itself added at its peak;
* **sections**: present SPARSEMEM sections (``m.sections.present_array()``), **RAM**: the kernel's
  RAM pfn ranges.

The per-unit columns (µs per section, ns per GiB, ns per 4 KiB page) and the least-squares fit
``boot ms ≈ a + b·sections`` show what the cost follows: a per-page cost of even 1 ns would make the
64 TiB boot take 17 s. Numbers are from this one run on this machine (docs: "Speed is measured in
benchmarks").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

CHILD = r"""
import json, resource, sys, time
import numpy as np
from vmemmap.eras import load_era
from vmemmap.kernel import boot
from vmemmap.machine import load_machine
name, era_name, model = sys.argv[1:4]
era = load_era(era_name)
machine = load_machine(name)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
k = boot(machine, era, model)
t = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ram_pages = sum(e - s for s, e, _ in k.ram_pfn_ranges())
print(json.dumps({
    "seconds": t, "maxrss_kib": peak, "base_kib": base,
    "sections": int(k.model.sections.present_array().size),
    "ram_pages": ram_pages, "nodes": len(k.nodes), "la57": k.la57,
    "frames": k.phys.frames_materialised(), "bytes_held": k.phys.bytes_held(),
}))
"""

CONFIGS = [("6.12", "vmemmap"), ("6.1", "sparsemem-extreme"), ("2.6.26", "vmemmap"), ("2.6.31", "vmemmap")]


def run_child(machine: str, era: str, model: str) -> dict:
    p = subprocess.run([sys.executable, "-c", CHILD, machine, era, model], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{machine} {era} {model}: boot failed:\n{p.stderr.strip()}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def table(header: list[str], rows: list[list[str]]) -> str:
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda r: "  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(r))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * x for x in w)] + [line(r) for r in rows])


def main() -> int:
    from vmemmap.machine import builtin_machines

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="fresh subprocesses per boot, best time kept")
    ap.add_argument("--slow", type=float, default=10.0, help="a boot slower than this (s) is not repeated")
    ap.add_argument("--config", action="append", metavar="ERA:MODEL",
                    help="only this era:model (repeatable; default: all of " +
                         ", ".join(f"{e}:{m}" for e, m in CONFIGS) + ")")
    ap.add_argument("--machine", action="append", metavar="NAME", help="only this built-in machine (repeatable)")
    args = ap.parse_args()
    configs = [tuple(c.split(":", 1)) for c in args.config] if args.config else CONFIGS
    machines = sorted(builtin_machines(), key=lambda m: m.ram_bytes)
    if args.machine:
        machines = [m for m in machines if m.name in args.machine]
    print(f"{len(machines)} built-in machines x {len(configs)} configurations, each boot in a fresh "
          f"subprocess, best of {args.repeat} (boots over {args.slow:g} s run once)")
    t_all = time.perf_counter()
    fits: dict[tuple[str, str], list[tuple[int, float]]] = {}
    rows: list[list[str]] = []
    for era, model in configs:
        for mach in machines:
            runs = [run_child(mach.name, era, model)]
            while len(runs) < args.repeat and runs[0]["seconds"] < args.slow:
                runs.append(run_child(mach.name, era, model))
            best = min(r["seconds"] for r in runs)
            r = runs[0]
            peak = max(x["maxrss_kib"] for x in runs) / 1024
            base = min(x["base_kib"] for x in runs) / 1024
            secs, pages = r["sections"], r["ram_pages"]
            gib = pages * 4096 / 2**30
            fits.setdefault((era, model), []).append((secs, best))
            rows.append([
                mach.name, f"{era} {model}", f"{gib:,.1f}", f"{r['nodes']}", f"{secs:,}",
                f"{best * 1e3:,.1f}", f"{len(runs)}", f"{peak:,.0f}", f"{base:,.0f}", f"{peak - base:,.0f}",
                f"{best * 1e6 / secs:,.1f}", f"{best * 1e9 / gib:,.0f}", f"{best * 1e9 / pages:.3f}",
            ])
            print(f"  {mach.name} {era} {model}: {best * 1e3:.0f} ms ({time.perf_counter() - t_all:.0f} s)",
                  file=sys.stderr, flush=True)
    print(table(["machine", "era model", "RAM GiB", "nodes", "sections", "boot ms", "runs", "maxRSS MiB",
                 "base MiB", "boot +MiB", "µs/section", "ns/GiB", "ns/page"], rows))
    print()
    for (era, model), pts in fits.items():
        if len({p[0] for p in pts}) < 2:
            continue  # a line needs two section counts
        x = np.array([p[0] for p in pts], dtype=float)
        y = np.array([p[1] for p in pts], dtype=float) * 1e3
        b, a = np.polyfit(x, y, 1)
        print(f"fit {era} {model}: boot ms ≈ {a:.1f} + {b * 1e3:.2f} µs × sections "
              f"(sections {int(x.min()):,} .. {int(x.max()):,})")
    print(f"total {time.perf_counter() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
