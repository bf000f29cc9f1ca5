"""What every experiment shares: synthetic machines, one row per ``cost()`` result, markdown tables.

Every number in an experiment's output is a field of a :func:`vmemmap.cost.run.cost` result (the
models booted and executed, the trace simulated) or arithmetic on the era and CPU preset data
(memmap bytes, TLB reach), labelled as such. Nothing is typed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vmemmap.cost.cpu import Cpu, load_cpu
from vmemmap.cost.run import cost
from vmemmap.cost.workloads import WORKLOADS
from vmemmap.eras import Era
from vmemmap.errors import InputError
from vmemmap.machine import Machine
from vmemmap.machine.toml_file import parse_toml_text

GiB = 1 << 30
TiB = 1 << 40
PAGE_SIZE = 4096

#: workloads with random (TLB-hostile) addresses, used where an experiment is about TLB reach;
#: taken from WORKLOADS at run time, so a workload counts once it is registered
RANDOM_WORKLOADS = ("pfn_to_page-random", "virt_to_page-slab", "page_address-random")
BUDDY_OPS_DIVISOR = 10
METRICS = ("loads_per_op", "tlb_misses_per_op", "walk_refs_per_op", "cache_misses_per_op", "cycles_per_op")
METRIC_LABEL = {"loads_per_op": "loads", "tlb_misses_per_op": "TLB misses", "walk_refs_per_op": "walk refs",
                "cache_misses_per_op": "DRAM", "cycles_per_op": "cycles"}


#: the buddy allocator orders the experiments run (``buddy-order-K``): the page (order 0, what most
#: allocations are), a middle order, and MAX_ORDER-1 (the longest split and merge chain)
BUDDY_ORDERS = (0, 4, 10)


def all_workloads() -> list[str]:
    """Every registered workload, in registration order, then ``buddy-order-K`` for BUDDY_ORDERS."""
    return list(WORKLOADS) + [f"buddy-order-{k}" for k in BUDDY_ORDERS]


def random_workloads() -> list[str]:
    return [w for w in RANDOM_WORKLOADS if w in WORKLOADS]


def size_name(n: int) -> str:
    for unit, s in (("TiB", TiB), ("GiB", GiB)):
        if n >= s and n % s == 0:
            return f"{n // s} {unit}"
    return f"{n / GiB:.3g} GiB"


def flat_machine(top: int, gbpages: bool = True) -> Machine:
    """A synthetic single-node machine whose RAM ends at ``top``: usable [0, 639 KiB) + [1 MiB, top).

    No PCI hole and no NUMA, so FLATMEM is legal and one ``mem_map`` covers all RAM; 2 MiB pages,
    1 GiB pages when ``gbpages`` (the direct map then uses them). Built as TOML text through the
    ordinary machine parser (docs/machines.md), so it is validated like any machine file.
    """
    name = f"flat-{size_name(top).replace(' ', '').lower()}{'' if gbpages else '-2m'}"
    text = (f'name = "{name}"\n'
            f'description = "synthetic single-node machine, RAM [1 MiB, {size_name(top)})"\n'
            f'[cpu]\npse = true\ngbpages = {"true" if gbpages else "false"}\nla57 = false\n'
            '[[e820]]\nstart = "0x0"\nend = "0x9fc00"\ntype = "usable"\n'
            '[[e820]]\nstart = "0x9fc00"\nend = "0x100000"\ntype = "reserved"\n'
            f'[[e820]]\nstart = "0x100000"\nend = "{top:#x}"\ntype = "usable"\n')
    return parse_toml_text(text, f"<synthetic {name}>", name)


@dataclass
class Runner:
    """Runs ``cost()`` and keeps every result as flat rows (one per model)."""

    ops: int
    seed: int
    progress: Callable[[str], None] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    _cpus: dict[str, Cpu] = field(default_factory=dict)

    def cpu(self, name: str) -> Cpu:
        if name not in self._cpus:
            self._cpus[name] = load_cpu(name)
        return self._cpus[name]

    def ops_for(self, workload: str) -> int:
        """``ops``, or a tenth of it for ``buddy-order-K`` (an operation is an allocation and a free that
        touch up to 2^K struct pages: thousands of accesses for high orders)."""
        return max(1, self.ops // BUDDY_OPS_DIVISOR) if workload.startswith("buddy-order-") else self.ops

    def run(self, machine: Machine, era: Era, cpu: str, workload: str, models: list[str] | None = None,
            **tags: Any) -> list[dict[str, Any]]:
        """One ``cost()`` call; its results as rows tagged with ``tags`` (variant, size...)."""
        if self.progress:
            self.progress(f"{workload} on {machine.name}, {era.name}{' what-if' if era.what_ifs else ''}, "
                          f"{cpu}{' ' + ','.join(models) if models else ''}")
        try:
            res = cost(machine, era, self.cpu(cpu), workload, self.ops_for(workload), self.seed, models)
        except InputError as e:
            # e.g. a workload a model or era cannot run: recorded, the sweep goes on
            self.skipped.append({"machine": machine.name, "era": era.name, "cpu": cpu, "workload": workload,
                                 **tags, "model": ",".join(models or ["*"]), "why": str(e)})
            return []
        out = []
        for r in res["results"]:
            row = {"machine": machine.name, "ram_bytes": machine.ram_bytes, "era": era.name,
                   "what_if": list(era.what_ifs), "cpu": cpu, "workload": workload, **tags,
                   **{k: r[k] for k in ("model", "ops", *METRICS)}, "detail": r["_detail"]}
            out.append(row)
        for s in res["_skipped"]:
            self.skipped.append({"machine": machine.name, "era": era.name, "cpu": cpu, "workload": workload, **tags, **s})
        self.rows.extend(out)
        return out


def fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def md_table(columns: list[str], rows: list[list[Any]], digits: int = 3) -> str:
    """A GitHub markdown table; numbers right-aligned."""
    def is_num(c: int) -> bool:
        return any(isinstance(r[c], int | float) and not isinstance(r[c], bool) for r in rows)

    head = "| " + " | ".join(columns) + " |"
    sep = "|" + "|".join("---:" if is_num(i) else "---" for i in range(len(columns))) + "|"
    body = ["| " + " | ".join(fmt(v, digits) for v in r) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def table(title: str, columns: list[str], rows: list[list[Any]], digits: int = 3) -> dict[str, Any]:
    return {"title": title, "columns": columns, "rows": rows, "markdown": md_table(columns, rows, digits)}
