"""The machine this program runs on (``--machine this``).

* Memory map: ``/proc/iomem`` when it is readable and shows real (non-zero) addresses, i.e. as root
  (kernel/resource.c hides addresses from unprivileged readers); otherwise ``/sys/firmware/memmap/N/{start,
  end,type}`` (drivers/firmware/memmap.c: the firmware-provided e820 map, end inclusive, type strings as
  ``e820_type_to_string`` gives them), which is world readable.
* NUMA: ``/sys/devices/system/node/nodeN/memoryM`` links (drivers/base/node.c) give each node's memory
  blocks; block M covers ``[M * block_size, (M + 1) * block_size)`` with ``block_size`` from
  ``/sys/devices/system/memory/block_size_bytes`` (hex, drivers/base/memory.c).  A block linked from
  several nodes (a node boundary inside a block) is given to the lowest node.  Ranges are clipped to the
  e820 map's extent.  With a single node, ``nodes`` is empty (one cannot tell an SRAT node from the
  kernel's fake node 0).  CPUs come from ``nodeN/cpulist``.
* CPU features: the first ``flags`` line of ``/proc/cpuinfo`` (``pse pdpe1gb la57 nx hypervisor``).
* Command line: ``/proc/cmdline``.

Every path is read below ``root`` so tests can point the reader at a fake tree.
"""

from __future__ import annotations

import re
from pathlib import Path

from vmemmap.errors import InputError
from vmemmap.machine.iomem import IOMEM_TYPES, parse_iomem_entries
from vmemmap.machine.model import (
    CpuFeatures,
    E820Entry,
    Machine,
    NumaNode,
    format_size,
    intersect_ranges,
    merge_ranges,
    normalize_e820_type,
)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def parse_cpulist(text: str) -> tuple[int, ...]:
    """``0-3,8,10-11`` → (0, 1, 2, 3, 8, 10, 11) (lib/bitmap.c ``bitmap_parselist`` format)."""
    out: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return tuple(sorted(set(out)))


def _firmware_memmap(root: Path) -> list[E820Entry] | None:
    base = root / "sys/firmware/memmap"
    if not base.is_dir():
        return None
    entries: list[E820Entry] = []
    dirs = sorted((d for d in base.iterdir() if d.name.isdigit()), key=lambda d: int(d.name))
    for d in dirs:
        start, end, typ = (_read(d / n) for n in ("start", "end", "type"))
        if start is None or end is None or typ is None:
            raise InputError(f"{d}: incomplete firmware memmap entry (needs start, end, type)")
        try:
            s, e = int(start.strip(), 16), int(end.strip(), 16) + 1
        except ValueError:
            raise InputError(f"{d}: bad start/end {start.strip()!r}/{end.strip()!r}") from None
        name = typ.strip()
        try:
            t = IOMEM_TYPES.get(name) or normalize_e820_type(name)
        except ValueError:
            t = "reserved"  # e820_type_to_string's default for unknown types is "Reserved"
        if e > s:
            entries.append(E820Entry(s, e, t))
    if not entries:
        return None
    entries.sort(key=lambda x: (x.start, x.end))
    for a, b in zip(entries, entries[1:]):
        if b.start < a.end:
            raise InputError(f"{base}: firmware memmap entries overlap: {a} and {b}")
    return entries


def _cpu(root: Path) -> CpuFeatures:
    text = _read(root / "proc/cpuinfo")
    if text is None:
        return CpuFeatures()
    m = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    if not m:
        return CpuFeatures()
    flags = set(m.group(1).split())
    return CpuFeatures(
        pse="pse" in flags,
        gbpages="pdpe1gb" in flags,
        la57="la57" in flags,
        nx="nx" in flags,
        hypervisor="hypervisor" in flags,
    )


def _nodes(root: Path, extent: list[tuple[int, int]]) -> tuple[NumaNode, ...]:
    node_dir = root / "sys/devices/system/node"
    bs_text = _read(root / "sys/devices/system/memory/block_size_bytes")
    if not node_dir.is_dir() or bs_text is None:
        return ()
    try:
        block = int(bs_text.strip(), 16)
    except ValueError:
        raise InputError(f"{root / 'sys/devices/system/memory/block_size_bytes'}: bad value {bs_text.strip()!r}") from None
    if block <= 0:
        return ()
    owner: dict[int, int] = {}
    cpus: dict[int, tuple[int, ...]] = {}
    nids = sorted(
        int(d.name[4:]) for d in node_dir.iterdir() if re.fullmatch(r"node\d+", d.name)
    )
    for nid in nids:
        d = node_dir / f"node{nid}"
        for m in d.iterdir():
            if re.fullmatch(r"memory\d+", m.name):
                owner.setdefault(int(m.name[6:]), nid)
        cl = _read(d / "cpulist")
        cpus[nid] = parse_cpulist(cl) if cl else ()
    by_node: dict[int, list[tuple[int, int]]] = {}
    for blk, nid in owner.items():
        by_node.setdefault(nid, []).append((blk * block, (blk + 1) * block))
    if len(by_node) <= 1:
        return ()
    out = []
    for nid in nids:
        rngs = intersect_ranges(merge_ranges(by_node.get(nid, [])), extent)
        if rngs or cpus.get(nid):
            out.append(NumaNode(nid, tuple(rngs), cpus.get(nid, ())))
    return tuple(out)


def read_this(root: Path = Path("/")) -> Machine:
    """The machine at ``root`` (``/`` = this host).  See the module docstring."""
    root = Path(root)
    e820: list[E820Entry] | None = None
    text = _read(root / "proc/iomem")
    source_kind = "/proc/iomem"
    if text is not None and re.search(r"^[0-9a-fA-F]*[1-9a-fA-F][0-9a-fA-F]*-", text, re.MULTILINE):
        e820 = parse_iomem_entries(text, str(root / "proc/iomem"))
    if e820 is None:
        e820 = _firmware_memmap(root)
        source_kind = "/sys/firmware/memmap"
    if e820 is None:
        raise InputError(
            "this: cannot read the memory map: /proc/iomem shows no addresses (not root) and "
            "/sys/firmware/memmap is missing"
        )
    usable = merge_ranges([(e.start, e.end) for e in e820 if e.type == "usable"])
    extent = [(0, max(e.end for e in e820))]
    nodes = _nodes(root, extent)
    # drop node ranges that hold no usable RAM (block-granular ranges may cover only holes)
    nodes = tuple(
        NumaNode(n.nid, tuple(r for r in n.ranges if intersect_ranges([r], usable)), n.cpus) for n in nodes
    )
    nodes = tuple(n for n in nodes if n.ranges or n.cpus)
    host = (_read(root / "proc/sys/kernel/hostname") or "").strip()
    ram = sum(e - s for s, e in usable)
    return Machine(
        name="this",
        description=f"this host{f' ({host})' if host else ''}, from {source_kind}: {format_size(ram)} usable, "
        f"{max(1, len(nodes))} node(s)",
        e820=tuple(e820),
        nodes=nodes,
        cpu=_cpu(root),
        cmdline=(_read(root / "proc/cmdline") or "").strip(),
        source="this",
    )
