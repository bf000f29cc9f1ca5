"""Parse an oracle capture (``shared/oracle/captures/*.log``) into snapshots and blocks.

Format (shared/oracle/README.md): line 1 is ``# cmd: qemu-system-x86_64 ...``; then the guest console.
The init script prints blocks between ``@@BEGIN NAME@@`` and ``@@END NAME@@``; interactive (hot-plug)
captures separate steps with ``@@READY n@@``.  Snapshot 0 is everything before the first ``@@READY``;
snapshot *n* (n >= 1) is what follows ``@@READY n-1@@``.  ``HOST:...`` blocks are what the host did.

Each block is kept as its raw lines; the ``parse_*`` helpers turn the blocks a conformance check needs
into plain data.  Nothing here knows about the simulated kernel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from vmemmap.errors import InputError

_BEGIN = re.compile(r"^@@BEGIN (.+)@@$")
_END = re.compile(r"^@@END (.+)@@$")
_READY = re.compile(r"^@@READY (\d+)@@$")


@dataclass
class Block:
    """One ``@@BEGIN NAME@@ ... @@END NAME@@`` block: its lines (without the markers)."""

    name: str
    lines: list[str]
    line_no: int  # 1-based line number of the BEGIN marker


@dataclass
class Snapshot:
    """The blocks printed between two ``@@READY`` markers (snapshot 0: before the first one)."""

    index: int
    blocks: list[Block] = field(default_factory=list)

    def block(self, name: str) -> Block | None:
        """The first block called ``name`` in this snapshot (``None`` when absent)."""
        return next((b for b in self.blocks if b.name == name), None)

    def names(self) -> list[str]:
        return [b.name for b in self.blocks]


@dataclass
class Capture:
    """A parsed capture: QEMU command, kernel release, snapshots."""

    path: str
    name: str
    cmd: str
    text: str
    snapshots: list[Snapshot]
    console: list[str]  # console lines before the first block (the boot log as it scrolled)

    @property
    def interactive(self) -> bool:
        """A hot-plug capture: more than one snapshot (``@@READY`` markers)."""
        return len(self.snapshots) > 1

    @property
    def first(self) -> Snapshot:
        return self.snapshots[0]

    @property
    def kernel(self) -> str:
        """The kernel release (``uname -r``): from the CMDLINE block's ``uname -a``, else ``Linux version``."""
        blk = self.first.block("CMDLINE")
        if blk:
            for ln in blk.lines:
                parts = ln.split()
                if len(parts) > 2 and parts[0] == "Linux":
                    return parts[2]
        for ln in self.console + (self.first.block("DMESG").lines if self.first.block("DMESG") else []):
            m = re.search(r"Linux version (\S+)", ln)
            if m:
                return m.group(1)
        return "unknown"

    @property
    def cmdline(self) -> str:
        """The kernel command line (``/proc/cmdline``)."""
        blk = self.first.block("CMDLINE")
        if blk and blk.lines:
            return blk.lines[0].strip()
        for ln in self.console:
            m = re.search(r"Command line: (.*)$", ln)
            if m:
                return m.group(1).strip()
        return ""

    @property
    def kaslr(self) -> bool:
        """KASLR is on unless the command line says ``nokaslr``."""
        return "nokaslr" not in self.cmdline.split()

    @property
    def generic_flavour(self) -> bool:
        """Debian's generic flavour (kernel name without ``-cloud``): PAGE_EXTENSION=y."""
        return "-cloud" not in self.kernel


def parse_capture_text(text: str, where: str = "<capture>", name: str = "capture") -> Capture:
    """Split a capture into snapshots of blocks.  Raises :class:`InputError` for anything malformed."""
    lines = text.splitlines()
    first = lines[0].strip() if lines else ""
    if not (first.startswith("# cmd:") and "qemu-system" in first):
        raise InputError(f"{where}:1: not an oracle capture (expected '# cmd: qemu-system-x86_64 ...')")
    cmd = first[len("# cmd:"):].strip()
    snaps = [Snapshot(0)]
    console: list[str] = []
    cur: Block | None = None
    seen_block = False
    for i, raw in enumerate(lines[1:], start=2):
        ln = raw.rstrip("\r")
        s = ln.strip()
        if cur is not None:
            m = _END.match(s)
            if m:
                if m.group(1) != cur.name:
                    raise InputError(f"{where}:{i}: @@END {m.group(1)}@@ closes block {cur.name} "
                                     f"opened at line {cur.line_no}")
                snaps[-1].blocks.append(cur)
                cur = None
            else:
                cur.lines.append(ln)
            continue
        m = _BEGIN.match(s)
        if m:
            cur = Block(m.group(1), [], i)
            seen_block = True
            continue
        m = _READY.match(s)
        if m:
            snaps.append(Snapshot(int(m.group(1)) + 1))
            continue
        if _END.match(s):
            raise InputError(f"{where}:{i}: {s} without a matching @@BEGIN")
        if not seen_block:
            console.append(ln)
    if cur is not None:
        raise InputError(f"{where}:{cur.line_no}: block {cur.name} is never closed (@@END {cur.name}@@)")
    if not snaps[0].blocks:
        raise InputError(f"{where}: capture has no @@BEGIN ...@@ blocks")
    return Capture(path=where, name=name, cmd=cmd, text=text, snapshots=snaps, console=console)


def load_capture(path: str | Path) -> Capture:
    """Read and parse a capture file (``name`` = the file stem, e.g. ``base-2G``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{p}: cannot read capture: {exc.strerror or exc}") from None
    return parse_capture_text(text, str(p), p.stem)


# ---------------------------------------------------------------------- block parsers


def _hex(s: str) -> int:
    return int(s, 16)


def _need(snap: Snapshot, name: str, where: str) -> Block:
    blk = snap.block(name)
    if blk is None:
        raise InputError(f"{where}: snapshot {snap.index} has no {name} block")
    return blk


def parse_kcore(blk: Block) -> dict[str, int]:
    """``SYMVAL name addr=A value=V`` lines: name -> value."""
    out: dict[str, int] = {}
    for ln in blk.lines:
        parts = ln.split()
        if len(parts) >= 4 and parts[0] == "SYMVAL" and parts[3].startswith("value="):
            out[parts[1]] = _hex(parts[3][len("value="):])
    return out


@dataclass
class SectionRow:
    nr: int
    pfn: int
    raw: int
    flags: tuple[str, ...]
    usage: int
    u: tuple[int, ...]  # u[0..2]; the sub-section map is u[2]


@dataclass
class MemSections:
    mem_section: int
    sizeof: int
    per_root: int
    vmemmap_base: int
    roots: dict[int, int]  # root index -> address
    sections: dict[int, SectionRow]


_SECTION = re.compile(
    r"^SECTION (\d+) pfn=(0x[0-9a-f]+) raw=(0x[0-9a-f]+) flags=(\S*) .*?usage=(0x[0-9a-f]+|\(nil\)|0)\s+u\[0\.\.2\]=(\S+)"
)


def parse_memsections(blk: Block) -> MemSections:
    """The MEMSECTIONS block: header, ``ROOT r at ADDR``, ``SECTION nr pfn= raw= flags= ... u[0..2]=``."""
    head = {"mem_section": 0, "sizeof": 0, "per_root": 0, "vmemmap_base": 0}
    roots: dict[int, int] = {}
    secs: dict[int, SectionRow] = {}
    for ln in blk.lines:
        s = ln.strip()
        if s.startswith("MEMSECTION "):
            for kv in s.split()[1:]:
                k, _, v = kv.partition("=")
                if k in head:
                    head[k] = int(v, 0)
        elif s.startswith("ROOT "):
            parts = s.split()
            roots[int(parts[1])] = int(parts[3], 16)
        elif s.startswith("SECTION "):
            m = _SECTION.match(s)
            if not m:
                continue
            u = tuple(_hex(x) for x in m.group(6).split(",") if x)
            usage = m.group(5)
            secs[int(m.group(1))] = SectionRow(
                nr=int(m.group(1)), pfn=int(m.group(2), 16), raw=int(m.group(3), 16),
                flags=tuple(f for f in m.group(4).split(",") if f),
                usage=int(usage, 16) if usage.startswith("0x") else 0, u=u,
            )
    return MemSections(roots=roots, sections=secs, **head)


@dataclass
class PtRun:
    """``MAP va_start-va_end SIZE LEVEL -> pa start-end FLAGS``: a run of leaves."""

    vstart: int
    vend: int
    level: str  # PUD PMD PTE
    pstart: int
    pend: int
    flags: tuple[str, ...]

    @property
    def page_size(self) -> int:
        return {"PUD": 1 << 30, "PMD": 1 << 21, "PTE": 1 << 12}[self.level]


@dataclass
class PtWalk:
    levels: int
    range: tuple[int, int]
    page_offset_base: int
    runs: list[PtRun]
    leafcount: dict[str, int]


_MAP = re.compile(
    r"^MAP (0x[0-9a-f]+)-(0x[0-9a-f]+)\s+\d+K (PUD|PMD|PTE) -> pa (0x[0-9a-f]+)-(0x[0-9a-f]+)\s*(.*)$"
)


def parse_ptwalk(blk: Block) -> PtWalk:
    """A PTWALK_VMEMMAP / PTWALK_DIRECTMAP block."""
    levels, rng, pob = 4, (0, 0), 0
    runs: list[PtRun] = []
    counts: dict[str, int] = {}
    for ln in blk.lines:
        s = ln.strip()
        if s.startswith("PTWALK "):
            m = re.search(r"levels=(\d)", s)
            levels = int(m.group(1)) if m else 4
            m = re.search(r"range (0x[0-9a-f]+)-(0x[0-9a-f]+)", s)
            if m:
                rng = (int(m.group(1), 16), int(m.group(2), 16) + 1)
            m = re.search(r"page_offset_base=(0x[0-9a-f]+)", s)
            pob = int(m.group(1), 16) if m else 0
        elif s.startswith("MAP "):
            m = _MAP.match(s)
            if m:
                runs.append(PtRun(int(m.group(1), 16), int(m.group(2), 16), m.group(3), int(m.group(4), 16),
                                  int(m.group(5), 16), tuple(m.group(6).split())))
        elif s.startswith("LEAFCOUNT "):
            parts = s.split()
            counts[parts[1]] = int(parts[2])
    return PtWalk(levels, rng, pob, runs, counts)


@dataclass
class MemoryBlock:
    nr: int
    state: str
    online: int
    valid_zones: str
    node: int


@dataclass
class MemoryBlocks:
    block_size: int
    auto_online: str
    params: dict[str, str]
    blocks: dict[int, MemoryBlock]


def parse_memory_blocks(blk: Block) -> MemoryBlocks:
    """``block_size_bytes`` (hex, as sysfs prints it), params, and one ``memoryN k=v ...`` line per block."""
    size, auto = 0, ""
    params: dict[str, str] = {}
    blocks: dict[int, MemoryBlock] = {}
    for ln in blk.lines:
        s = ln.strip()
        if s.startswith("block_size_bytes"):
            size = int(s.split()[1], 16)
        elif s.startswith("auto_online_blocks"):
            auto = s.split()[1] if len(s.split()) > 1 else ""
        elif s.startswith("param "):
            parts = s.split(None, 2)
            params[parts[1]] = parts[2] if len(parts) > 2 else ""
        elif s.startswith("memory"):
            m = re.match(r"memory(\d+) (.*)$", s)
            if not m:
                continue
            kv = dict(re.findall(r"(\w+)=(.*?)(?= \w+=|$)", m.group(2)))
            node = kv.get("node", "node-1")
            blocks[int(m.group(1))] = MemoryBlock(
                nr=int(m.group(1)), state=kv.get("state", ""), online=int(kv.get("online", "0") or 0),
                valid_zones=kv.get("valid_zones", "").strip(), node=int(node[4:]) if node.startswith("node") else -1,
            )
    return MemoryBlocks(size, auto, params, blocks)


@dataclass
class ZoneInfo:
    nid: int
    zone: str
    spanned: int
    present: int
    managed: int
    start_pfn: int | None  # printed only for populated zones


def parse_zoneinfo(blk: Block) -> list[ZoneInfo]:
    """``/proc/zoneinfo``: per ``Node N, zone NAME`` its spanned/present/managed and start_pfn."""
    out: list[ZoneInfo] = []
    cur: ZoneInfo | None = None
    for ln in blk.lines:
        m = re.match(r"^Node (\d+), zone\s+(\S+)", ln)
        if m:
            cur = ZoneInfo(int(m.group(1)), m.group(2), 0, 0, 0, None)
            out.append(cur)
            continue
        if cur is None:
            continue
        parts = ln.split()
        if len(parts) == 2 and parts[0] in ("spanned", "present", "managed"):
            setattr(cur, parts[0], int(parts[1]))
        elif len(parts) == 2 and parts[0] == "start_pfn:":
            cur.start_pfn = int(parts[1])
    return out


def parse_nodes(blk: Block) -> dict[int, list[int]]:
    """The NODES block: node id -> its memory block numbers."""
    out: dict[int, list[int]] = {}
    for ln in blk.lines:
        m = re.match(r"^--- node(\d+) .*?blocks=(.*)$", ln.strip())
        if m:
            out[int(m.group(1))] = [int(x) for x in m.group(2).split()]
    return out


_INITMEM = re.compile(r"Initmem setup node (\d+) \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]")


def parse_initmem(lines: list[str]) -> dict[int, tuple[int, int]]:
    """``Initmem setup node N [mem A-B]`` (mm/mm_init.c free_area_init_node): node -> [A, B+1)."""
    out: dict[int, tuple[int, int]] = {}
    for ln in lines:
        m = _INITMEM.search(ln)
        if m:
            out[int(m.group(1))] = (int(m.group(2), 16), int(m.group(3), 16) + 1)
    return out


_RAMDISK = re.compile(r"RAMDISK: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]")
_NODE_DATA = re.compile(r"NODE_DATA\((\d+)\) allocated \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]")


def parse_initrd(lines: list[str]) -> tuple[int, int] | None:
    """``RAMDISK: [mem A-B]`` (reserve_initrd, arch/x86/kernel/setup.c): where the boot loader put it."""
    for ln in lines:
        m = _RAMDISK.search(ln)
        if m:
            return int(m.group(1), 16), int(m.group(2), 16) + 1
    return None


def parse_node_data(lines: list[str]) -> dict[int, int]:
    """``NODE_DATA(n) allocated [mem A-B]`` (alloc_node_data, arch/x86/mm/numa.c): node -> start."""
    out: dict[int, int] = {}
    for ln in lines:
        m = _NODE_DATA.search(ln)
        if m:
            out[int(m.group(1))] = int(m.group(2), 16)
    return out


def dmesg_lines(cap: Capture) -> list[str]:
    """The first snapshot's full dmesg (the console before the first block if there is no DMESG block)."""
    blk = cap.first.block("DMESG")
    return blk.lines if blk else cap.console


__all__ = [
    "Block", "Snapshot", "Capture", "parse_capture_text", "load_capture", "parse_kcore", "parse_memsections",
    "parse_ptwalk", "parse_memory_blocks", "parse_initrd", "parse_node_data", "parse_zoneinfo", "parse_nodes", "parse_initmem", "dmesg_lines",
    "MemSections", "SectionRow", "PtWalk", "PtRun", "MemoryBlocks", "MemoryBlock", "ZoneInfo", "_need",
]


def parse_iomem_ram(blk: Block) -> list[tuple[int, int, str]]:
    """``System RAM`` resources of ``/proc/iomem``: ``(start, end_exclusive, name)``.

    At any depth: driver-managed memory nests under its device's resource (``virtio0`` holding
    ``System RAM (virtio_mem)``, ``add_memory_driver_managed``); the name keeps the driver suffix.
    """
    out: list[tuple[int, int, str]] = []
    for ln in blk.lines:
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) : (System RAM.*)$", ln.strip())
        if m:
            out.append((int(m.group(1), 16), int(m.group(2), 16) + 1, m.group(3).strip()))
    return out
