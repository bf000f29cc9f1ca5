"""The machine this program runs on (``--machine this``), and what could and could not be read.

Sources, each read below ``root`` (``/`` = this host) so tests point the reader at fixture trees
(tests/data/host-*/), never at the host they run on:

* Memory map, first that works:

  1. ``/proc/iomem`` when readable and showing real addresses. Since 4.15 (51d7b120418e) the kernel
     shows every address as 0 to a reader without CAP_SYS_ADMIN (kernel/resource.c ``r_show``): a
     zeroed file means "not root" and is recorded as such.
  2. ``/sys/firmware/memmap/N/{start,end,type}`` (drivers/firmware/memmap.c: the firmware's e820 map,
     end inclusive, type strings as ``e820_type_to_string`` gives them), world readable.
  3. ``/sys/devices/system/memory/memoryN`` blocks (drivers/base/memory.c): each present block is
     ``block_size_bytes`` of RAM at ``N * block_size`` (``phys_index`` is the block's first section
     number / sections_per_block, printed ``%08lx``). Block-granular: the sub-1 MiB holes and the
     firmware's reserved ranges are invisible, so this is the last resort.
* Memory blocks (block size, online/offline counts) from ``/sys/devices/system/memory``.
* NUMA: ``/sys/devices/system/node/nodeN/memoryM`` links (drivers/base/node.c) give each node's
  memory blocks; a block linked from several nodes is given to the lowest. Ranges are clipped to the
  map's extent and to usable RAM. With a single node ``nodes`` is empty (one cannot tell an SRAT node
  from the kernel's fake node 0). CPUs from ``nodeN/cpulist``. Without the node directory, a
  ``/proc/zoneinfo`` showing several nodes gives each node its zones' spans (``start_pfn``,
  ``spanned``: mm/vmstat.c ``zoneinfo_show_print``).
* Zones: ``/proc/zoneinfo`` (per node and zone: start_pfn, spanned, present, managed) for the report.
* CPU features: the first ``flags`` line of ``/proc/cpuinfo`` (``pse pdpe1gb la57 nx hypervisor``).
* Command line ``/proc/cmdline``; kernel release ``/proc/sys/kernel/osrelease`` (what ``uname -r``
  prints); the era that models it is :func:`vmemmap.eras.era_for_release`'s nearest era.

:func:`inspect_host` returns a :class:`HostReport`: the machine plus every source's outcome ("read",
"absent", "permission denied", "zeroed", "bad") and notes for the user. :func:`read_this` returns
just the machine, and hands the notes to the sink the command line installs (:func:`set_note_sink`).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

PAGE_SHIFT = 12


# ---------------------------------------------------------------------- what was read

@dataclass(frozen=True)
class Source:
    """One source of host facts and what happened when it was read."""

    path: str  # as on the host, e.g. "/proc/iomem"
    status: str  # "read" | "absent" | "permission denied" | "zeroed" | "bad" | "unused"
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class ZoneInfo:
    """One ``Node N, zone NAME`` block of /proc/zoneinfo."""

    nid: int
    zone: str
    start_pfn: int
    spanned: int
    present: int
    managed: int


@dataclass(frozen=True)
class MemoryBlocks:
    """/sys/devices/system/memory: the block size and each block's state."""

    block_size: int
    online: tuple[int, ...]  # block ids (phys_index): block N is [N * block_size, (N + 1) * block_size)
    offline: tuple[int, ...]
    other: tuple[int, ...] = ()  # going-offline or unreadable state

    @property
    def count(self) -> int:
        return len(self.online) + len(self.offline) + len(self.other)


@dataclass(frozen=True)
class HostReport:
    """This host as far as it could be read: the machine, the kernel release, its era, and notes."""

    machine: Machine
    release: str | None
    era: str
    era_note: str | None
    map_source: str
    sources: tuple[Source, ...]
    blocks: MemoryBlocks | None = None
    zones: tuple[ZoneInfo, ...] = ()
    extra_notes: tuple[str, ...] = field(default=())

    def notes(self, era: bool = True) -> list[str]:
        """One sentence per thing the user should know: where the map came from when it was not
        /proc/iomem, what could not be read and why, and (``era``) the era of the running kernel."""
        out = [] if self.map_source == "/proc/iomem" else [f"this: memory map from {self.map_source}"]
        for s in self.sources:
            if s.status not in ("read", "unused"):
                out.append(f"this: {s.path} not used: {s.status}{f' ({s.detail})' if s.detail else ''}")
        out += list(self.extra_notes)
        if not era:
            return out
        if self.release is None:
            out.append(f"this: kernel release unknown (no osrelease): modelled with era {self.era}")
        elif self.era_note:
            out.append(f"this: {self.era_note}")
        else:
            out.append(f"this: kernel {self.release} is modelled with era {self.era}")
        return out

    def to_json(self) -> dict[str, Any]:
        m = self.machine
        d: dict[str, Any] = {
            **m.summary(),
            "release": self.release,
            "era": self.era,
            "map_source": self.map_source,
            "e820": [{"start": hex(e.start), "end": hex(e.end), "type": e.type} for e in m.e820],
            "numa_nodes": [{"nid": n.nid, "ranges": [[hex(s), hex(e)] for s, e in n.ranges], "cpus": list(n.cpus)}
                           for n in m.nodes],
            "sources": [s.to_json() for s in self.sources],
            "notes": self.notes(),
        }
        if self.blocks is not None:
            b = self.blocks
            d["memory_blocks"] = {"block_size": hex(b.block_size), "count": b.count, "online": len(b.online),
                                  "offline": len(b.offline), "offline_blocks": list(b.offline)}
        d["zones"] = [{"nid": z.nid, "zone": z.zone, "start_pfn": hex(z.start_pfn), "spanned": z.spanned,
                       "present": z.present, "managed": z.managed} for z in self.zones]
        return d


class _Reader:
    """Reads files below ``root`` and remembers, per source, what happened."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sources: dict[str, Source] = {}

    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def read(self, rel: str, record: str | None = None) -> str | None:
        """The text of ``/rel`` or None; a failure is recorded under ``record`` (default: the path)."""
        key = record or "/" + rel.lstrip("/")
        try:
            return self.path(rel).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            self.note(key, "absent")
        except PermissionError:
            self.note(key, "permission denied", "not root?")
        except IsADirectoryError:
            self.note(key, "bad", "is a directory")
        except OSError as e:
            self.note(key, "bad", e.strerror or errno.errorcode.get(e.errno or 0, str(e)))
        return None

    def listdir(self, rel: str) -> list[Path] | None:
        key = "/" + rel.lstrip("/")
        p = self.path(rel)
        try:
            return sorted(p.iterdir())
        except FileNotFoundError:
            self.note(key, "absent")
        except PermissionError:
            self.note(key, "permission denied", "not root?")
        except NotADirectoryError:
            self.note(key, "bad", "not a directory")
        except OSError as e:
            self.note(key, "bad", e.strerror or str(e))
        return None

    def note(self, key: str, status: str, detail: str = "") -> None:
        if key not in self.sources or self.sources[key].status == "read":
            self.sources[key] = Source(key, status, detail)

    def ok(self, key: str, detail: str = "") -> None:
        self.sources.setdefault(key, Source(key, "read", detail))


# ---------------------------------------------------------------------- parsers

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


_ZONE_HEAD = re.compile(r"^Node\s+(\d+),\s+zone\s+(\S+)\s*$")
_ZONE_FIELD = re.compile(r"^\s+(spanned|present|managed|start_pfn:)\s+(\d+)\s*$")


def parse_zoneinfo(text: str) -> tuple[ZoneInfo, ...]:
    """The zones of /proc/zoneinfo (mm/vmstat.c ``zoneinfo_show_print``): ``Node N, zone NAME`` heads,
    then ``spanned``/``present``/``managed`` and ``start_pfn:`` lines. Zones with no pages are kept."""
    zones: list[ZoneInfo] = []
    cur: dict[str, Any] | None = None

    def flush() -> None:
        if cur is not None:
            zones.append(ZoneInfo(cur["nid"], cur["zone"], cur.get("start_pfn:", 0), cur.get("spanned", 0),
                                  cur.get("present", 0), cur.get("managed", 0)))

    for ln in text.splitlines():
        m = _ZONE_HEAD.match(ln)
        if m:
            flush()
            cur = {"nid": int(m.group(1)), "zone": m.group(2)}
            continue
        f = _ZONE_FIELD.match(ln)
        if f and cur is not None and f.group(1) not in cur:
            cur[f.group(1)] = int(f.group(2))
    flush()
    return tuple(zones)


def _iomem(rd: _Reader) -> list[E820Entry] | None:
    text = rd.read("proc/iomem")
    if text is None:
        return None
    if not re.search(r"^[0-9a-fA-F]*[1-9a-fA-F][0-9a-fA-F]*-", text, re.MULTILINE):
        rd.note("/proc/iomem", "zeroed",
                "every address reads 0: the kernel hides them from readers without CAP_SYS_ADMIN "
                "(kernel/resource.c r_show), i.e. not root")
        return None
    try:
        entries = parse_iomem_entries(text, str(rd.path("proc/iomem")))
    except InputError as e:
        rd.note("/proc/iomem", "bad", str(e))
        return None
    rd.ok("/proc/iomem")
    return entries


def _firmware_memmap(rd: _Reader) -> list[E820Entry] | None:
    key = "/sys/firmware/memmap"
    ds = rd.listdir("sys/firmware/memmap")
    if ds is None:
        return None
    entries: list[E820Entry] = []
    for d in sorted((d for d in ds if d.name.isdigit()), key=lambda d: int(d.name)):
        rel = f"sys/firmware/memmap/{d.name}"
        start, end, typ = (rd.read(f"{rel}/{n}", key) for n in ("start", "end", "type"))
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
        rd.note(key, "bad", "no entries")
        return None
    entries.sort(key=lambda x: (x.start, x.end))
    for a, b in zip(entries, entries[1:]):
        if b.start < a.end:
            raise InputError(f"{rd.path('sys/firmware/memmap')}: firmware memmap entries overlap: {a} and {b}")
    rd.ok(key)
    return entries


def _block_size(rd: _Reader) -> int | None:
    rel = "sys/devices/system/memory/block_size_bytes"
    text = rd.read(rel, "/sys/devices/system/memory")
    if text is None:
        return None
    try:
        bs = int(text.strip(), 16)
    except ValueError:
        raise InputError(f"{rd.path(rel)}: bad value {text.strip()!r}") from None
    return bs if bs > 0 else None


def _memory_blocks(rd: _Reader) -> MemoryBlocks | None:
    """drivers/base/memory.c: ``memoryN/state`` is online, offline or going-offline."""
    bs = _block_size(rd)
    if bs is None:
        return None
    ds = rd.listdir("sys/devices/system/memory")
    if ds is None:
        return None
    online, offline, other = [], [], []
    for d in ds:
        if not re.fullmatch(r"memory\d+", d.name):
            continue
        n = int(d.name[6:])
        # phys_index (%08lx): the block's first section / sections_per_block, i.e. its block id
        pi = rd.read(f"sys/devices/system/memory/{d.name}/phys_index", "/sys/devices/system/memory")
        if pi is not None:
            try:
                n = int(pi.strip(), 16)
            except ValueError:
                raise InputError(f"{rd.path('sys/devices/system/memory')}/{d.name}/phys_index: bad value "
                                 f"{pi.strip()!r}") from None
        st = rd.read(f"sys/devices/system/memory/{d.name}/state", "/sys/devices/system/memory")
        state = (st or "").strip()
        (online if state == "online" else offline if state == "offline" else other).append(n)
    rd.ok("/sys/devices/system/memory")
    return MemoryBlocks(bs, tuple(sorted(online)), tuple(sorted(offline)), tuple(sorted(other)))


def _cpu(rd: _Reader) -> CpuFeatures:
    text = rd.read("proc/cpuinfo")
    if text is None:
        return CpuFeatures()
    m = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    if not m:
        rd.note("/proc/cpuinfo", "bad", "no flags line: default CPU features")
        return CpuFeatures()
    rd.ok("/proc/cpuinfo")
    flags = set(m.group(1).split())
    return CpuFeatures(
        pse="pse" in flags,
        gbpages="pdpe1gb" in flags,
        la57="la57" in flags,
        nx="nx" in flags,
        hypervisor="hypervisor" in flags,
    )


def _sysfs_nodes(rd: _Reader, block: int | None) -> tuple[NumaNode, ...] | None:
    """Nodes from /sys/devices/system/node (None when that directory cannot be read)."""
    ds = rd.listdir("sys/devices/system/node")
    if ds is None or block is None:
        return None
    owner: dict[int, int] = {}
    cpus: dict[int, tuple[int, ...]] = {}
    nids = sorted(int(d.name[4:]) for d in ds if re.fullmatch(r"node\d+", d.name))
    for nid in nids:
        sub = rd.listdir(f"sys/devices/system/node/node{nid}") or []
        for m in sub:
            if re.fullmatch(r"memory\d+", m.name):
                owner.setdefault(int(m.name[6:]), nid)
        cl = rd.read(f"sys/devices/system/node/node{nid}/cpulist", "/sys/devices/system/node")
        cpus[nid] = parse_cpulist(cl) if cl else ()
    rd.ok("/sys/devices/system/node")
    by_node: dict[int, list[tuple[int, int]]] = {}
    for blk, nid in owner.items():
        by_node.setdefault(nid, []).append((blk * block, (blk + 1) * block))
    if len(by_node) <= 1:
        return ()
    return tuple(NumaNode(nid, tuple(merge_ranges(by_node.get(nid, []))), cpus.get(nid, ())) for nid in nids)


def _zoneinfo_nodes(zones: tuple[ZoneInfo, ...], align: int) -> tuple[NumaNode, ...]:
    """Node ranges from zone spans, rounded out to ``align`` (the memory block size): a zone's span starts
    at its first present pfn (pfn 1 when page 0 is reserved) while the node owns the whole block."""
    spans: dict[int, list[tuple[int, int]]] = {}
    for z in zones:
        if z.spanned:
            s, e = z.start_pfn << PAGE_SHIFT, (z.start_pfn + z.spanned) << PAGE_SHIFT
            spans.setdefault(z.nid, []).append((s // align * align, -(-e // align) * align))
    if len(spans) <= 1:
        return ()
    out, prev_end = [], 0
    for nid, r in sorted(spans.items(), key=lambda kv: min(kv[1])):
        rs = [(max(s, prev_end), e) for s, e in merge_ranges(r) if e > prev_end]
        prev_end = max([prev_end] + [e for _, e in rs])
        out.append(NumaNode(nid, tuple(rs)))
    return tuple(sorted(out, key=lambda n: n.nid))


def _release(rd: _Reader) -> str | None:
    text = rd.read("proc/sys/kernel/osrelease")
    if text is not None and text.strip():
        rd.ok("/proc/sys/kernel/osrelease")
        return text.strip()
    if rd.root == Path("/"):
        return os.uname().release
    return None


# ---------------------------------------------------------------------- the host

def inspect_host(root: Path | str = Path("/")) -> HostReport:
    """Read the host at ``root`` (see the module docstring); :class:`InputError` if no memory map."""
    from vmemmap.eras import era_for_release, era_names

    rd = _Reader(Path(root))
    extra: list[str] = []
    blocks = _memory_blocks(rd)
    e820 = _iomem(rd)
    map_source = "/proc/iomem"
    if e820 is not None:
        rd.note("/sys/firmware/memmap", "unused")
    else:
        e820 = _firmware_memmap(rd)
        map_source = "/sys/firmware/memmap"
    if e820 is None and blocks is not None and blocks.count:
        ranges = merge_ranges([(b * blocks.block_size, (b + 1) * blocks.block_size)
                               for b in blocks.online + blocks.offline + blocks.other])
        e820 = [E820Entry(s, e, "usable") for s, e in ranges]
        map_source = "/sys/devices/system/memory (block-granular: holes and reserved ranges are not visible)"
    if e820 is None:
        why = "; ".join(f"{k}: {rd.sources[k].status}"
                        for k in ("/proc/iomem", "/sys/firmware/memmap", "/sys/devices/system/memory")
                        if k in rd.sources and rd.sources[k].status != "read")
        raise InputError(f"this: cannot read the memory map ({why or 'no source'})")
    usable = merge_ranges([(e.start, e.end) for e in e820 if e.type == "usable"])
    extent = [(0, max(e.end for e in e820))]

    zones: tuple[ZoneInfo, ...] = ()
    zt = rd.read("proc/zoneinfo")
    if zt is not None:
        zones = parse_zoneinfo(zt)
        if zones:
            rd.ok("/proc/zoneinfo")
        else:
            rd.note("/proc/zoneinfo", "bad", "no 'Node N, zone NAME' lines")

    nodes = _sysfs_nodes(rd, blocks.block_size if blocks else None)
    if nodes is None:
        nodes = _zoneinfo_nodes(zones, blocks.block_size if blocks else 1 << 20)
        if nodes:
            extra.append("this: NUMA nodes from /proc/zoneinfo zone spans (no /sys/devices/system/node)")
    # block-granular node ranges may cover holes: keep only what holds usable RAM, within the map
    nodes = tuple(
        NumaNode(n.nid, tuple(r for r in intersect_ranges(list(n.ranges), extent) if intersect_ranges([r], usable)),
                 n.cpus)
        for n in nodes
    )
    nodes = tuple(n for n in nodes if n.ranges or n.cpus)
    if blocks is not None and blocks.offline:
        extra.append(f"this: {len(blocks.offline)} of {blocks.count} memory blocks are offline "
                     f"({format_size(len(blocks.offline) * blocks.block_size)}): in the map but not in use")

    release = _release(rd)
    if release is None:
        era, era_note = era_names()[-1], None
    else:
        era, era_note = era_for_release(release)
    host = (rd.read("proc/sys/kernel/hostname") or "").strip()
    ram = sum(e - s for s, e in usable)
    machine = Machine(
        name="this",
        description=f"this host{f' ({host})' if host else ''}, from {map_source.split(' ')[0]}: "
        f"{format_size(ram)} usable, {max(1, len(nodes))} node(s)",
        e820=tuple(e820),
        nodes=nodes,
        cpu=_cpu(rd),
        cmdline=(rd.read("proc/cmdline") or "").strip(),
        source="this",
    )
    order = ["/proc/iomem", "/sys/firmware/memmap", "/sys/devices/system/memory", "/sys/devices/system/node",
             "/proc/zoneinfo", "/proc/cpuinfo", "/proc/cmdline", "/proc/sys/kernel/osrelease"]
    sources = tuple(rd.sources[k] for k in order if k in rd.sources)
    return HostReport(machine, release, era, era_note, map_source, sources, blocks, zones, tuple(extra))


#: where :func:`read_this` sends its notes (the command line prints them on stderr); None: nowhere
_note_sink: Callable[[str], None] | None = None


def set_note_sink(sink: Callable[[str], None] | None) -> None:
    """Route the notes of :func:`read_this` (what could not be read, the era) to ``sink``."""
    global _note_sink
    _note_sink = sink


def read_this(root: Path | str = Path("/")) -> Machine:
    """The machine at ``root`` (``/`` = this host); notes go to the sink set by :func:`set_note_sink`."""
    rep = inspect_host(root)
    if _note_sink is not None:
        for n in rep.notes(era=False):  # the command line says which era it picked, if it picked one
            _note_sink(n)
    return rep.machine


def host_era(root: Path | str = Path("/")) -> tuple[str, str | None, str | None]:
    """``(era, release, note)`` for the kernel running at ``root`` (its osrelease, i.e. ``uname -r``)."""
    from vmemmap.eras import era_for_release, era_names

    rd = _Reader(Path(root))
    release = _release(rd)
    if release is None:
        return era_names()[-1], None, "kernel release unknown: the newest era"
    era, note = era_for_release(release)
    return era, release, note
