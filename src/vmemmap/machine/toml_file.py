"""TOML machine files: read with :mod:`tomllib`, validated with pydantic v2, written by :func:`machine_to_toml`.

Format (all addresses/sizes accept a plain integer, ``"0x1000"``, ``"4096"``, or a size with a binary
suffix ``"4K"``, ``"128M"``, ``"4G"``, ``"2T"``, ``"1.5G"``; ``_`` separators are ignored; ``end`` is
always exclusive)::

    name = "opteron-2007"            # optional, defaults to the file name without extension
    description = "..."              # optional
    cmdline = "console=ttyS0"        # optional kernel command line

    [cpu]                            # optional; defaults shown
    pse = true                       # X86_FEATURE_PSE  (2 MiB pages)
    gbpages = false                  # X86_FEATURE_GBPAGES (1 GiB pages)
    la57 = false                     # X86_FEATURE_LA57 (5-level paging)
    nx = true
    hypervisor = false

    [[e820]]                         # the BIOS-provided map, one table per entry
    start = "0x0"
    end = "0x9fc00"                  # exclusive; or: size = "639K"
    type = "usable"                  # usable | reserved | "ACPI data" | "ACPI NVS" | unusable |
                                     # "persistent (type 7)" | "persistent (type 12)" | "soft reserved" | "type N"

    [[node]]                         # NUMA nodes (SRAT memory affinity); omit for a non-NUMA machine
    nid = 0
    ranges = [["0x0", "0x120000000"]]   # [start, end) pairs
    cpus = [0, 1]                    # optional
    hotplug = [["16G", "32G"]]       # optional hot-pluggable SRAT ranges (no RAM at boot)

    [[ram]]                          # short-hand: a usable e820 entry (+ a node range if `node` is set)
    start = "4G"
    size = "1G"                      # or end = ...
    node = 0                         # optional; either all [[ram]] tables name a node or none does

    [[e820_kernel]]                  # optional: the map after the kernel's own updates (same keys as e820)

Entries may be given in any order; they are sorted.  Overlapping e820 entries of the same type are merged
(as ``e820__update_table`` does); overlapping entries of different types are an error.  All errors are
:class:`vmemmap.errors.InputError` with one line naming the file and the field (``e820[2].end``) or the
TOML line.  The canonical :class:`Machine` holds only ``e820`` and ``nodes``; ``[[ram]]`` is expanded.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from vmemmap.errors import InputError
from vmemmap.machine.model import CpuFeatures, E820Entry, Machine, NumaNode, normalize_e820_type

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTPE]?)(?:I?B)?$", re.IGNORECASE)


def parse_size(value: Any) -> int:
    """An address or size: int, ``"0x..."``, decimal string, or ``"4G"``-style binary size."""
    if isinstance(value, bool):
        raise ValueError(f"expected an address or size, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"negative value {value}")
        return value
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
            return int(text, 16)
        m = _SIZE_RE.match(text)
        if m:
            num, suffix = m.group(1), m.group(2).upper()
            mult = _SUFFIX[suffix]
            if "." in num:
                whole, frac = num.split(".")
                scaled = int(whole) * mult + int(frac) * mult // 10 ** len(frac)
                if int(frac) * mult % 10 ** len(frac):
                    raise ValueError(f"size {value!r} is not a whole number of bytes")
                return scaled
            return int(num) * mult
    raise ValueError(f"invalid address or size {value!r} (use an integer, '0x...', or a size like '4G')")


def _parse_type(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"e820 type must be a string, got {value!r}")
    return normalize_e820_type(value)


Addr = Annotated[int, BeforeValidator(parse_size)]
E820Type = Annotated[str, BeforeValidator(_parse_type)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class CpuModel(_Strict):
    pse: bool = True
    gbpages: bool = False
    la57: bool = False
    nx: bool = True
    hypervisor: bool = False


class E820Model(_Strict):
    start: Addr
    end: Addr | None = None
    size: Addr | None = None
    type: E820Type = "usable"


class NodeModel(_Strict):
    nid: int = Field(ge=0, lt=1024)
    ranges: list[tuple[Addr, Addr]] = []
    cpus: list[Annotated[int, Field(ge=0)]] = []
    hotplug: list[tuple[Addr, Addr]] = []


class RamModel(_Strict):
    start: Addr
    end: Addr | None = None
    size: Addr | None = None
    node: int | None = Field(default=None, ge=0, lt=1024)


class MachineFile(_Strict):
    name: str | None = None
    description: str = ""
    cmdline: str = ""
    cpu: CpuModel = CpuModel()
    e820: list[E820Model] = []
    ram: list[RamModel] = []
    node: list[NodeModel] = []
    e820_kernel: list[E820Model] | None = None


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _error_line(where: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    # drop pydantic's internal loc parts such as 'function-before[...]'
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    elif err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "missing":
        msg = "required field missing"
    more = len(exc.errors()) - 1
    return f"{where}: {_loc(loc)}: {msg}" + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")


def _span(where: str, field: str, start: int, end: int | None, size: int | None) -> tuple[int, int]:
    if (end is None) == (size is None):
        raise InputError(f"{where}: {field}: give exactly one of 'end' (exclusive) or 'size'")
    stop = end if end is not None else start + (size or 0)
    if stop <= start:
        raise InputError(f"{where}: {field}: end {stop:#x} is not above start {start:#x}")
    return start, stop


def _build_e820(where: str, items: list[tuple[str, int, int, str]]) -> tuple[E820Entry, ...]:
    """Sort entries; merge same-type overlaps (``e820__update_table``); reject conflicting overlaps."""
    items = sorted(items, key=lambda t: (t[1], t[2]))
    out: list[tuple[str, int, int, str]] = []
    for item in items:
        label, s, e, typ = item
        if out and s < out[-1][2]:
            plabel, ps, pe, ptyp = out[-1]
            if ptyp != typ:
                raise InputError(
                    f"{where}: {label} [{s:#x}-{e:#x}) {typ} overlaps {plabel} [{ps:#x}-{pe:#x}) {ptyp}"
                )
            out[-1] = (plabel, ps, max(pe, e), ptyp)
        else:
            out.append(item)
    return tuple(E820Entry(s, e, t) for _, s, e, t in out)


def machine_from_dict(data: dict[str, Any], where: str, default_name: str = "machine") -> Machine:
    """Validate a parsed TOML document and build the canonical :class:`Machine`."""
    try:
        mf = MachineFile.model_validate(data)
    except ValidationError as exc:
        raise InputError(_error_line(where, exc)) from None

    items: list[tuple[str, int, int, str]] = []
    for i, e in enumerate(mf.e820):
        s, t = _span(where, f"e820[{i}]", e.start, e.end, e.size)
        items.append((f"e820[{i}]", s, t, e.type))
    node_ranges: dict[int, list[tuple[int, int]]] = {}
    with_node = [r.node is not None for r in mf.ram]
    if any(with_node) and not all(with_node):
        raise InputError(f"{where}: ram[{with_node.index(False)}].node: either every [[ram]] names a node or none does")
    for i, r in enumerate(mf.ram):
        s, t = _span(where, f"ram[{i}]", r.start, r.end, r.size)
        items.append((f"ram[{i}]", s, t, "usable"))
        if r.node is not None:
            node_ranges.setdefault(r.node, []).append((s, t))
    if not items:
        raise InputError(f"{where}: no [[e820]] or [[ram]] entries: a machine needs a memory map")
    e820 = _build_e820(where, items)

    kernel: tuple[E820Entry, ...] | None = None
    if mf.e820_kernel is not None:
        kitems = []
        for i, e in enumerate(mf.e820_kernel):
            s, t = _span(where, f"e820_kernel[{i}]", e.start, e.end, e.size)
            kitems.append((f"e820_kernel[{i}]", s, t, e.type))
        kernel = _build_e820(where, kitems)

    nodes: dict[int, NumaNode] = {}
    for i, n in enumerate(mf.node):
        if n.nid in nodes:
            raise InputError(f"{where}: node[{i}].nid: node {n.nid} given twice")
        rngs = list(n.ranges) + node_ranges.pop(n.nid, [])
        for j, (s, t) in enumerate(n.ranges):
            if t <= s:
                raise InputError(f"{where}: node[{i}].ranges[{j}]: end {t:#x} is not above start {s:#x}")
        for j, (s, t) in enumerate(n.hotplug):
            if t <= s:
                raise InputError(f"{where}: node[{i}].hotplug[{j}]: end {t:#x} is not above start {s:#x}")
        nodes[n.nid] = NumaNode(n.nid, tuple(sorted(rngs)), tuple(n.cpus), tuple(sorted(n.hotplug)))
    for nid, rngs in node_ranges.items():
        nodes[nid] = NumaNode(nid, tuple(sorted(rngs)))

    return Machine(
        name=mf.name or default_name,
        description=mf.description,
        e820=e820,
        nodes=tuple(nodes[k] for k in sorted(nodes)),
        cpu=CpuFeatures(**mf.cpu.model_dump()),
        cmdline=mf.cmdline,
        source=where,
        e820_kernel=kernel,
    )


def parse_toml_text(text: str, where: str = "<toml>", default_name: str = "machine") -> Machine:
    """Parse the text of a TOML machine file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: invalid TOML: {exc}") from None
    return machine_from_dict(data, where, default_name)


def load_toml(path: str | Path) -> Machine:
    """Load a TOML machine file (``source`` is the path)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read machine file: {exc}") from None
    return parse_toml_text(text, str(p), p.stem)


# ---------------------------------------------------------------------------- writing

def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _pairs(rngs: tuple[tuple[int, int], ...]) -> str:
    return "[" + ", ".join(f'["{s:#x}", "{e:#x}"]' for s, e in rngs) + "]"


def machine_to_toml(m: Machine) -> str:
    """Serialise a :class:`Machine` in the canonical TOML form (``[[e820]]`` + ``[[node]]``)."""
    lines = [f"name = {_toml_str(m.name)}", f"description = {_toml_str(m.description)}"]
    if m.cmdline:
        lines.append(f"cmdline = {_toml_str(m.cmdline)}")
    c = m.cpu
    lines += ["", "[cpu]"]
    for key in ("pse", "gbpages", "la57", "nx", "hypervisor"):
        lines.append(f"{key} = {'true' if getattr(c, key) else 'false'}")
    for table, entries in (("e820", m.e820), ("e820_kernel", m.e820_kernel or ())):
        for e in entries:
            lines += ["", f"[[{table}]]", f'start = "{e.start:#x}"', f'end = "{e.end:#x}"', f"type = {_toml_str(e.type)}"]
    for n in m.nodes:
        lines += ["", "[[node]]", f"nid = {n.nid}", f"ranges = {_pairs(n.ranges)}"]
        if n.cpus:
            lines.append("cpus = [" + ", ".join(str(c) for c in n.cpus) + "]")
        if n.hotplug:
            lines.append(f"hotplug = {_pairs(n.hotplug)}")
    return "\n".join(lines) + "\n"
