"""The hardware: what RAM exists, where, on which NUMA node, and which paging features the CPU has.

A :class:`Machine` is a handful of ranges (never anything per page):

* ``e820`` -- the BIOS-provided physical memory map, as the firmware reported it and the kernel printed
  it with ``e820__print_table("BIOS-e820")`` (arch/x86/kernel/e820.c; ``e820_print_map`` in 2.6.2x).
  Sorted and non-overlapping; end addresses are exclusive here (the kernel prints them inclusive since
  3.x, exclusive in 2.6.2x).
* ``e820_kernel`` -- optional: the map after the kernel's own edits that a log showed
  (``e820__range_update`` / ``e820__range_remove`` lines, ``modified:``/``user:`` maps), followed by
  ``e820__update_table`` (sort + merge adjacent entries of one type).  ``None`` when the source does
  not show it (TOML files usually, built-ins).  The simulated kernel applies its era's own trims
  (page 0, the 0xa0000-0xfffff legacy hole) to ``e820`` itself; ``e820_kernel`` is for checking that.
* ``nodes`` -- NUMA memory affinity as ACPI SRAT reports it (arch/x86/mm/srat.c
  ``acpi_numa_memory_affinity_init``; drivers/acpi/numa/srat.c), or as AMD K8 northbridge registers
  report it (arch/x86/mm/amdtopology.c, ``k8_scan_nodes`` in 2.6.21).  An empty tuple means "no NUMA
  configuration found": the kernel fakes one node 0 spanning all RAM (``dummy_numa_init``).
  Hot-pluggable SRAT ranges (``ACPI: SRAT: ... hotplug``) are kept apart in ``NumaNode.hotplug``: they
  are not RAM at boot, but they raise ``max_possible_pfn``.
* ``cpu`` -- the X86_FEATURE bits that decide page sizes and paging depth.

Validation mirrors what the kernel refuses (arch/x86/mm/numa.c ``numa_cleanup_meminfo`` rejects
overlapping nodes; ``numa_meminfo_cover_memory`` rejects nodes that do not cover e820 RAM) but is
stricter where the kernel would silently fall back: a bad machine is an :class:`InputError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vmemmap.errors import InputError

#: x86-64 architectural limit on physical addresses (MAX_PHYSMEM_BITS with 5-level paging).
MAX_PHYS_ADDR = 1 << 52
#: ``MAX_NUMNODES`` with NODES_SHIFT=10 (Debian's x86-64 config).
MAX_NUMNODES = 1 << 10

#: e820 type codes (arch/x86/include/asm/e820/types.h ``enum e820_type``) by the name
#: ``e820_print_type`` prints.
E820_TYPE_CODES: dict[str, int] = {
    "usable": 1,  # E820_TYPE_RAM
    "reserved": 2,  # E820_TYPE_RESERVED
    "ACPI data": 3,  # E820_TYPE_ACPI
    "ACPI NVS": 4,  # E820_TYPE_NVS
    "unusable": 5,  # E820_TYPE_UNUSABLE
    "persistent (type 7)": 7,  # E820_TYPE_PMEM
    "persistent (type 12)": 12,  # E820_TYPE_PRAM
    "soft reserved": 0xEFFFFFFF,  # E820_TYPE_SOFT_RESERVED
}

_TYPE_ALIASES: dict[str, str] = {
    "usable": "usable",
    "ram": "usable",
    "system ram": "usable",
    "reserved": "reserved",
    "acpi data": "ACPI data",
    "acpi": "ACPI data",
    "acpi tables": "ACPI data",
    "acpi nvs": "ACPI NVS",
    "nvs": "ACPI NVS",
    "acpi non-volatile storage": "ACPI NVS",
    "unusable": "unusable",
    "unusable memory": "unusable",
    "persistent (type 7)": "persistent (type 7)",
    "pmem": "persistent (type 7)",
    "persistent memory": "persistent (type 7)",
    "persistent (type 12)": "persistent (type 12)",
    "pram": "persistent (type 12)",
    "persistent memory (legacy)": "persistent (type 12)",
    "soft reserved": "soft reserved",
    "soft-reserved": "soft reserved",
}


def normalize_e820_type(name: str) -> str:
    """Canonical e820 type name as ``e820_print_type`` (arch/x86/kernel/e820.c) prints it.

    Accepts the printed names (``usable``, ``ACPI data``, ...), the /proc/iomem names (``System RAM``,
    ``ACPI Tables``, ...), a few short aliases (``ram``, ``nvs``, ``pmem``), and ``type N``.
    Raises ``ValueError`` for anything else.
    """
    key = " ".join(name.strip().split()).lower()
    if key in _TYPE_ALIASES:
        return _TYPE_ALIASES[key]
    if key.startswith("type "):
        try:
            code = int(key[5:], 0)
        except ValueError:
            pass
        else:
            for n, c in E820_TYPE_CODES.items():
                if c == code:
                    return n
            return f"type {code}"
    raise ValueError(f"unknown e820 type {name!r} (known: {', '.join(E820_TYPE_CODES)}, 'type N')")


@dataclass(frozen=True)
class E820Entry:
    """One e820 map entry ``[start, end)`` (``struct e820_entry`` has addr+size; end is exclusive)."""

    start: int
    end: int
    type: str

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def code(self) -> int | None:
        """Numeric e820 type (``enum e820_type``), ``None`` if unknown."""
        if self.type in E820_TYPE_CODES:
            return E820_TYPE_CODES[self.type]
        if self.type.startswith("type "):
            return int(self.type[5:])
        return None

    def __str__(self) -> str:  # the modern e820__print_table format, inclusive end
        return f"[mem {self.start:#018x}-{self.end - 1:#018x}] {self.type}"


@dataclass(frozen=True)
class NumaNode:
    """A NUMA node: SRAT memory affinity ranges ``[start, end)`` and the CPUs on it.

    ``hotplug`` holds SRAT ranges flagged hot-pluggable (ACPI_SRAT_MEM_HOT_PLUGGABLE): no RAM at boot.
    """

    nid: int
    ranges: tuple[tuple[int, int], ...]
    cpus: tuple[int, ...] = ()
    hotplug: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class CpuFeatures:
    """The X86_FEATURE bits that shape the kernel's paging (arch/x86/include/asm/cpufeatures.h)."""

    pse: bool = True  # X86_FEATURE_PSE: 2 MiB pages
    gbpages: bool = False  # X86_FEATURE_GBPAGES (pdpe1gb): 1 GiB pages
    la57: bool = False  # X86_FEATURE_LA57: 5-level paging possible
    nx: bool = True  # X86_FEATURE_NX
    hypervisor: bool = False  # X86_FEATURE_HYPERVISOR (affects 6.x memory block size)


def merge_ranges(ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    """Sort ``[start, end)`` ranges and merge overlapping or adjacent ones (empty ranges dropped)."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(r for r in ranges if r[1] > r[0]):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def intersect_ranges(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Intersection of two sorted, disjoint range lists."""
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        s = max(a[i][0], b[j][0])
        e = min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def format_size(n: int) -> str:
    """Human size with a binary suffix: ``2 GiB``, ``639 KiB``, ``1.5 GiB``."""
    for shift, unit in ((50, "PiB"), (40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.2f} {unit}".replace(".00 ", " ")
    return f"{n} B"


def _fmt(r: tuple[int, int]) -> str:
    return f"[mem {r[0]:#x}-{r[1] - 1:#x}]"


def check_e820(entries: tuple[E820Entry, ...] | list[E820Entry], where: str, what: str = "e820") -> None:
    """Raise InputError unless ``entries`` are well formed, sorted and non-overlapping."""
    prev: E820Entry | None = None
    for i, e in enumerate(entries):
        if not isinstance(e.start, int) or not isinstance(e.end, int):
            raise InputError(f"{where}: {what}[{i}]: addresses must be integers")
        if e.start < 0 or e.end <= e.start:
            raise InputError(f"{where}: {what}[{i}]: empty or negative range {e.start:#x}-{e.end:#x}")
        if e.end > MAX_PHYS_ADDR:
            raise InputError(f"{where}: {what}[{i}]: {e} ends beyond the 52-bit physical address space")
        try:
            canonical = normalize_e820_type(e.type)
        except ValueError as exc:
            raise InputError(f"{where}: {what}[{i}]: {exc}") from None
        if canonical != e.type:
            raise InputError(f"{where}: {what}[{i}]: type {e.type!r} should be written {canonical!r}")
        if prev is not None and e.start < prev.end:
            raise InputError(f"{where}: {what}[{i}]: {e} overlaps or is out of order with {what}[{i - 1}] {prev}")
        prev = e


@dataclass(frozen=True)
class Machine:
    """A machine: firmware memory map, NUMA nodes, CPU features.  See the module docstring.

    Construction validates (raises :class:`InputError` naming ``source``): e820 sorted and disjoint with
    known types and at least one usable range; node ids unique and in range; node ranges sorted,
    non-empty, disjoint across nodes (``numa_cleanup_meminfo``), each containing some usable RAM; and
    all usable RAM covered by the nodes (``numa_meminfo_cover_memory``) when nodes are given.
    """

    name: str
    description: str
    e820: tuple[E820Entry, ...]
    nodes: tuple[NumaNode, ...]
    cpu: CpuFeatures
    cmdline: str = ""
    source: str = field(default="builtin", compare=False)
    e820_kernel: tuple[E820Entry, ...] | None = field(default=None, compare=True)

    def __post_init__(self) -> None:
        where = self.source if self.source not in ("builtin", "") else f"machine {self.name!r}"
        if not self.name:
            raise InputError(f"{where}: machine name is empty")
        check_e820(self.e820, where)
        if self.e820_kernel is not None:
            check_e820(self.e820_kernel, where, "e820_kernel")
        usable = self.usable()
        if not usable:
            raise InputError(f"{where}: the e820 map has no usable RAM")
        seen: set[int] = set()
        all_ranges: list[tuple[int, int, int]] = []
        for node in self.nodes:
            if not 0 <= node.nid < MAX_NUMNODES:
                raise InputError(f"{where}: node {node.nid}: node id out of range 0..{MAX_NUMNODES - 1}")
            if node.nid in seen:
                raise InputError(f"{where}: node {node.nid} given twice")
            seen.add(node.nid)
            if not node.ranges and not node.hotplug and not node.cpus:
                raise InputError(f"{where}: node {node.nid} has neither memory ranges nor CPUs")
            for kind, rngs in (("range", node.ranges), ("hotplug range", node.hotplug)):
                last_end = -1
                for s, e in rngs:
                    if s < 0 or e <= s or e > MAX_PHYS_ADDR:
                        raise InputError(f"{where}: node {node.nid}: bad {kind} {s:#x}-{e:#x}")
                    if s < last_end:
                        raise InputError(f"{where}: node {node.nid}: {kind}s not sorted/disjoint at {_fmt((s, e))}")
                    last_end = e
                    all_ranges.append((s, e, node.nid))
            for r in node.ranges:
                if not intersect_ranges([r], usable):
                    raise InputError(
                        f"{where}: node {node.nid} range {_fmt(r)} contains no usable RAM (outside the e820 RAM)"
                    )
        all_ranges.sort()
        for (s1, e1, n1), (s2, e2, n2) in zip(all_ranges, all_ranges[1:]):
            if s2 < e1:
                raise InputError(
                    f"{where}: node {n2} {_fmt((s2, e2))} overlaps with node {n1} {_fmt((s1, e1))}"
                )
        if self.nodes:
            covered = merge_ranges([(s, e) for s, e, _ in all_ranges])
            missing = sum(e - s for s, e in usable) - sum(e - s for s, e in intersect_ranges(usable, covered))
            if missing:
                gap = next(r for r in usable if intersect_ranges([r], covered) != [r])
                raise InputError(
                    f"{where}: NUMA nodes do not cover {missing:#x} bytes of usable RAM (e.g. in {_fmt(gap)})"
                )

    # ----------------------------------------------------------------- derived views
    def usable(self) -> list[tuple[int, int]]:
        """e820 ``usable`` ranges, merged where adjacent (what ``e820__memblock_setup`` adds)."""
        return merge_ranges([(e.start, e.end) for e in self.e820 if e.type == "usable"])

    @property
    def ram_bytes(self) -> int:
        """Total usable RAM in bytes."""
        return sum(e - s for s, e in self.usable())

    @property
    def numa(self) -> bool:
        """True when the firmware describes more than one node."""
        return len(self.nodes) > 1

    @property
    def nr_nodes(self) -> int:
        """Number of nodes the kernel ends up with (1 when it fakes node 0)."""
        return max(1, len(self.nodes))

    @property
    def max_phys(self) -> int:
        """End (exclusive) of the highest usable range: ``max_pfn << PAGE_SHIFT`` before page rounding."""
        return self.usable()[-1][1]

    @property
    def max_possible_phys(self) -> int:
        """``max_possible_pfn << PAGE_SHIFT`` before page rounding: the end of RAM or of any SRAT range.

        acpi_numa_memory_affinity_init (arch/x86/mm/srat.c, drivers/acpi/numa/srat.c) raises
        ``max_possible_pfn`` to the end of every memory affinity entry, hot-pluggable or not (the numa2-2G
        capture shows 0x80000 where max_pfn is 0x7ffe0; dimm-cold shows the hotplug range's end).
        """
        top = self.max_phys
        for n in self.nodes:
            for _, e in n.ranges + n.hotplug:
                top = max(top, e)
        return top

    @property
    def cpus(self) -> tuple[int, ...]:
        return tuple(sorted(c for n in self.nodes for c in n.cpus))

    def node_ranges(self) -> dict[int, list[tuple[int, int]]]:
        """Usable RAM of each node: e820 RAM intersected with the node's SRAT ranges.

        Without NUMA information the whole of RAM is node 0 (``dummy_numa_init``).  Nodes whose ranges
        hold no RAM are listed with an empty list.  Keys are in nid order.
        """
        usable = self.usable()
        if not self.nodes:
            return {0: usable}
        return {n.nid: intersect_ranges(usable, merge_ranges(n.ranges)) for n in sorted(self.nodes, key=lambda n: n.nid)}

    def node_of(self, phys: int) -> int | None:
        """Node of a physical address in usable RAM; ``None`` if ``phys`` is not usable RAM."""
        for nid, ranges in self.node_ranges().items():
            for s, e in ranges:
                if s <= phys < e:
                    return nid
        return None

    def e820_type_at(self, phys: int) -> str | None:
        """The firmware's e820 type of ``phys`` (``None`` in a hole of the map)."""
        for e in self.e820:
            if e.start <= phys < e.end:
                return e.type
        return None

    def summary(self) -> dict[str, Any]:
        """The ``vmemmap machines --json`` row (DESIGN.md contract 5)."""
        return {"name": self.name, "description": self.description, "ram": hex(self.ram_bytes), "nodes": self.nr_nodes}

    def to_toml(self) -> str:
        """This machine as a TOML machine file (see :mod:`vmemmap.machine.toml_file`)."""
        from vmemmap.machine.toml_file import machine_to_toml

        return machine_to_toml(self)
