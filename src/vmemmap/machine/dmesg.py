"""Import a machine from a kernel log (``dmesg``, ``journalctl -k``, ``/var/log/kern.log``, a serial console).

What is read (only the first boot in the log; a second ``Linux version`` line after the map ends it):

* The firmware map, as ``e820__print_table("BIOS-e820")`` prints it (arch/x86/kernel/e820.c)::

      BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable          (3.x .. 6.x, end inclusive)
       BIOS-e820: 0000000000000000 - 000000000009fc00 (usable)               (2.6.2x e820_print_map, end exclusive)

  (``BIOS-e801``, ``BIOS-88`` and ``Xen`` sources too).  Entries are sorted; overlapping entries of one
  type are merged (``e820__update_table`` / ``sanitize_e820_map`` does the same); overlapping entries of
  different types are an :class:`InputError` naming both lines.  This is ``Machine.e820``.
* The kernel's edits, applied in log order to a copy (``Machine.e820_kernel``; ``None`` when the log shows
  none): ``e820: update [mem A-B] usable ==> reserved`` (``e820__range_update``), ``e820: remove [mem A-B]
  usable`` (``e820__range_remove``), their 2.6.2x-3.x forms ``e820 update range: A - B (usable) ==>
  (reserved)`` / ``e820 remove range: A - B (usable)``, and whole re-printed maps (``modified:``,
  ``user:``, ``reserve setup_data:``) which replace the copy.  After each edit the copy is sorted and
  adjacent entries of one type merged, as ``e820__update_table`` does.  Note: ``e820__range_update_kexec``
  prints the same ``e820: update`` line for the kexec table; it is indistinguishable in the log.
* NUMA: ``ACPI: SRAT: Node N PXM P [mem A-B]`` (with ``hotplug`` / ``non-volatile`` suffixes; end
  inclusive; arch/x86/mm/srat.c / drivers/acpi/numa/srat.c ``acpi_numa_memory_affinity_init``), the
  2.6.21 form ``SRAT: Node N PXM P A-B`` (end exclusive), ``SRAT: PXM P -> APIC A -> Node N`` for CPUs
  (the APIC id is used as the CPU number, which matches Linux's numbering on QEMU and most BIOSes),
  AMD K8 northbridge lines ``Node N MemBase B Limit L`` (arch/x86/mm/amdtopology.c, 2.6.21
  k8topology.c) when there is no SRAT, and as a last resort the per-node ``Early memory node ranges``
  lines (mm/page_alloc.c ``free_area_init``) or 2.6.21's ``Bootmem setup node N A-B``.  When the log says
  the kernel did not use NUMA (``No NUMA configuration found`` + ``Faking a node``, ``SRAT not used``,
  ``NUMA turned off``, ``nodes only cover ... Not used``) the machine has no nodes, like the kernel.
* CPU features: ``Using GB pages for direct mapping`` (arch/x86/mm/init.c ``probe_page_size_mask``) →
  gbpages; ``max_arch_pfn = 0x10000000000`` (52-bit, arch/x86/kernel/e820.c ``e820__end_of_ram_pfn``) →
  la57; ``NX (Execute Disable) protection: active`` → nx; ``Hypervisor detected``, ``Booting
  paravirtualized kernel on KVM/Xen/...``, or a virtual ``DMI:`` vendor → hypervisor.  pse is always set
  (every x86-64 CPU has it).
* The kernel command line from ``Command line:`` (or ``Kernel command line:``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vmemmap.errors import InputError
from vmemmap.machine.model import (
    CpuFeatures,
    E820Entry,
    Machine,
    NumaNode,
    format_size,
    merge_ranges,
    normalize_e820_type,
)

_HEX = r"(0x[0-9a-fA-F]+)"
_PREFIX = re.compile(r"^(?:<\d+>)?(?:.*?\bkernel: )?(?:\[\s*\d+\.\d+\] ?)?")
_FIRMWARE_WHO = ("BIOS-e820", "BIOS-e801", "BIOS-88", "Xen")
_KERNEL_WHO = ("modified", "user", "reserve setup_data")
_WHO = "|".join(re.escape(w) for w in _FIRMWARE_WHO + _KERNEL_WHO)
_E820_NEW = re.compile(rf"(?:^|\s)({_WHO}): \[mem {_HEX}-{_HEX}\] (.+?)\s*$")
_E820_OLD = re.compile(rf"(?:^|\s)({_WHO}): ([0-9a-fA-F]{{8,16}}) - ([0-9a-fA-F]{{8,16}}) (?:\((.+?)\)|(type \d+))\s*$")
_UPD_NEW = re.compile(rf"e820: update \[mem {_HEX}-{_HEX}\] (.+?) ==> (.+?)\s*$")
_UPD_OLD = re.compile(r"e820 update range: ([0-9a-fA-F]+) - ([0-9a-fA-F]+) \((.+?)\) ==> \((.+?)\)")
_RM_NEW = re.compile(rf"e820: remove \[mem {_HEX}-{_HEX}\]\s*(.*?)\s*$")
_RM_OLD = re.compile(r"e820 remove range: ([0-9a-fA-F]+) - ([0-9a-fA-F]+)\s*(?:\((.+?)\))?")
_SRAT_NEW = re.compile(rf"SRAT: Node (\d+) PXM (\d+) \[mem {_HEX}-{_HEX}\](.*)$")
_SRAT_OLD = re.compile(r"SRAT: Node (\d+) PXM (\d+) ([0-9a-fA-F]+)-([0-9a-fA-F]+)\s*$")
_SRAT_CPU = re.compile(r"SRAT: PXM (\d+) -> (?:x2)?APIC (0x[0-9a-fA-F]+|\d+) -> Node (\d+)")
_K8 = re.compile(r"Node (\d+) MemBase ([0-9a-fA-F]{8,16}) Limit ([0-9a-fA-F]{8,16})")
_EARLY_NODE = re.compile(rf"^\s*node\s+(\d+): \[mem {_HEX}-{_HEX}\]")
_BOOTMEM_NODE = re.compile(r"Bootmem setup node (\d+) ([0-9a-fA-F]{16})-([0-9a-fA-F]{16})")
_NUMA_OFF = re.compile(
    r"No NUMA configuration found|SRAT: SRAT not used|NUMA turned off|nodes only cover .* Not used"
    r"|SRAT: .*[Ii]gnoring SRAT|NUMA: .*Not used"
)
_CMDLINE = re.compile(r"(?:^|\s)Command line: (.*)$")
_KCMDLINE = re.compile(r"Kernel command line: (.*)$")
_VERSION = re.compile(r"Linux version (\S+)")
_MAX_ARCH_PFN = re.compile(r"max_arch_pfn = (0x[0-9a-fA-F]+)")
_HYPERVISOR = re.compile(
    r"Hypervisor detected: |Booting paravirtualized kernel on (?!bare hardware)"
    r"|DMI: .*(QEMU|KVM|VMware|VirtualBox|Bochs|Xen|Microsoft Corporation Virtual Machine|Google Compute Engine|Amazon EC2)"
)


def strip_prefix(line: str) -> str:
    """Drop a syslog/journal prefix and the ``[    0.000000] `` timestamp."""
    return _PREFIX.sub("", line.rstrip("\r\n"), count=1)


@dataclass
class DmesgFacts:
    """What one boot's log says about the machine (before validation)."""

    firmware: list[tuple[int, int, str, int]] = field(default_factory=list)  # start, end, type, line
    kernel: list[tuple[int, int, str]] | None = None
    srat: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    srat_hotplug: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    srat_cpus: dict[int, list[int]] = field(default_factory=dict)
    k8: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    early: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    numa_off: bool = False
    gbpages: bool = False
    la57: bool = False
    nx: bool = True
    hypervisor: bool = False
    cmdline: str | None = None
    kcmdline: str | None = None
    version: str | None = None


# ------------------------------------------------------------- e820__range_update & co

def _update_table(entries: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """``e820__update_table``: sort, drop empty entries, merge adjacent/overlapping entries of one type."""
    out: list[tuple[int, int, str]] = []
    for s, e, t in sorted(x for x in entries if x[1] > x[0]):
        if out and out[-1][2] == t and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e), t)
        else:
            out.append((s, e, t))
    return out


def e820_range_update(
    entries: list[tuple[int, int, str]], start: int, end: int, old: str, new: str
) -> list[tuple[int, int, str]]:
    """``__e820__range_update``: the parts of ``old``-typed entries inside ``[start, end)`` become ``new``."""
    out: list[tuple[int, int, str]] = []
    for s, e, t in entries:
        if t != old or e <= start or s >= end:
            out.append((s, e, t))
            continue
        if s < start:
            out.append((s, start, t))
        out.append((max(s, start), min(e, end), new))
        if e > end:
            out.append((end, e, t))
    return _update_table(out)


def e820_range_remove(
    entries: list[tuple[int, int, str]], start: int, end: int, old: str | None
) -> list[tuple[int, int, str]]:
    """``e820__range_remove``: cut ``[start, end)`` out of entries (only ``old``-typed ones if given)."""
    out: list[tuple[int, int, str]] = []
    for s, e, t in entries:
        if (old is not None and t != old) or e <= start or s >= end:
            out.append((s, e, t))
            continue
        if s < start:
            out.append((s, start, t))
        if e > end:
            out.append((end, e, t))
    return _update_table(out)


def format_e820_table(entries: Iterable[E820Entry], who: str = "BIOS-e820", style: str = "modern") -> list[str]:
    """The lines the kernel prints for an e820 table (without timestamps).

    ``style="modern"``: ``e820__print_table`` (3.x .. 6.x), ``BIOS-e820: [mem 0x...-0x...] usable`` with
    an inclusive end.  ``style="2.6"``: 2.6.2x ``e820_print_map``, `` BIOS-e820: %016Lx - %016Lx (usable)``
    with an exclusive end; types beyond ACPI NVS print as ``type N`` without parentheses.
    """
    lines = []
    for e in entries:
        if style == "modern":
            lines.append(f"{who}: [mem {e.start:#018x}-{e.end - 1:#018x}] {e.type}")
        elif style == "2.6":
            if e.type in ("usable", "reserved", "ACPI data", "ACPI NVS"):
                t = f"({e.type})"
            else:
                t = f"type {e.code}"
            lines.append(f" {who}: {e.start:016x} - {e.end:016x} {t}")
        else:
            raise ValueError(f"unknown e820 print style {style!r}")
    return lines


# ------------------------------------------------------------------------- parsing

def _type(where: str, lineno: int, text: str) -> str:
    try:
        return normalize_e820_type(text)
    except ValueError as exc:
        raise InputError(f"{where}:{lineno}: {exc}") from None


def scan_dmesg(lines: Iterable[tuple[int, str]], where: str) -> DmesgFacts:
    """Collect the facts of the first boot in ``lines`` (pairs of 1-based line number and text)."""
    f = DmesgFacts()
    last_who: str | None = None
    in_early = False
    for lineno, raw in lines:
        line = strip_prefix(raw)
        if (m := _VERSION.search(line)) and "Linux version" in line:
            if f.firmware:
                break  # a second boot in the same log
            f.version = m.group(1)
            continue
        m = _E820_NEW.search(line)
        old_m = None if m else _E820_OLD.search(line)
        if m or old_m:
            if m:
                who, s, e, t = m.group(1), int(m.group(2), 16), int(m.group(3), 16) + 1, m.group(4)
            else:
                assert old_m is not None
                who, s, e = old_m.group(1), int(old_m.group(2), 16), int(old_m.group(3), 16)
                t = old_m.group(4) or old_m.group(5)
            typ = _type(where, lineno, t)
            if who in _FIRMWARE_WHO:
                if e > s:
                    f.firmware.append((s, e, typ, lineno))
            else:
                if last_who != who or f.kernel is None:
                    f.kernel = []
                f.kernel.append((s, e, typ))
                f.kernel = _update_table(f.kernel)
            last_who = who
            continue
        last_who = None
        if (m := _UPD_NEW.search(line)) or (m := _UPD_OLD.search(line)):
            s = int(m.group(1), 16)
            e = int(m.group(2), 16) + (1 if m.re is _UPD_NEW else 0)
            old, new = _type(where, lineno, m.group(3)), _type(where, lineno, m.group(4))
            base = f.kernel if f.kernel is not None else [(a, b, t) for a, b, t, _ in f.firmware]
            f.kernel = e820_range_update(_update_table(base), s, e, old, new)
            continue
        if (m := _RM_NEW.search(line)) or (m := _RM_OLD.search(line)):
            s = int(m.group(1), 16)
            e = int(m.group(2), 16) + (1 if m.re is _RM_NEW else 0)
            old_t = _type(where, lineno, m.group(3)) if m.group(3) else None
            base = f.kernel if f.kernel is not None else [(a, b, t) for a, b, t, _ in f.firmware]
            f.kernel = e820_range_remove(_update_table(base), s, e, old_t)
            continue
        if m := _SRAT_NEW.search(line):
            nid, s, e = int(m.group(1)), int(m.group(3), 16), int(m.group(4), 16) + 1
            target = f.srat_hotplug if "hotplug" in m.group(5) else f.srat
            target.setdefault(nid, []).append((s, e))
            continue
        if m := _SRAT_OLD.search(line):
            nid, s, e = int(m.group(1)), int(m.group(3), 16), int(m.group(4), 16)
            f.srat.setdefault(nid, []).append((s, e))
            continue
        if m := _SRAT_CPU.search(line):
            apic = m.group(2)
            f.srat_cpus.setdefault(int(m.group(3)), []).append(int(apic, 16) if apic.startswith("0x") else int(apic))
            continue
        if m := _K8.search(line):
            s, lim = int(m.group(2), 16), int(m.group(3), 16)
            e = lim + 1 if lim & 0xFFF == 0xFFF else lim
            f.k8.setdefault(int(m.group(1)), []).append((s, e))
            continue
        if "Early memory node ranges" in line:
            in_early = True
            continue
        if in_early and (m := _EARLY_NODE.search(line)):
            f.early.setdefault(int(m.group(1)), []).append((int(m.group(2), 16), int(m.group(3), 16) + 1))
            continue
        in_early = False
        if m := _BOOTMEM_NODE.search(line):
            f.early.setdefault(int(m.group(1)), []).append((int(m.group(2), 16), int(m.group(3), 16)))
            continue
        if _NUMA_OFF.search(line) or "Faking a node" in line:
            f.numa_off = True
            continue
        if "Using GB pages for direct mapping" in line:
            f.gbpages = True
        elif m := _MAX_ARCH_PFN.search(line):
            f.la57 = int(m.group(1), 16) >= 1 << 40
        elif "NX (Execute Disable) protection: active" in line:
            f.nx = True
        elif "NX (Execute Disable) protection" in line and ("cannot" in line or "missing" in line):
            f.nx = False
        elif _HYPERVISOR.search(line):
            f.hypervisor = True
        elif f.cmdline is None and (m := _CMDLINE.search(line)):
            f.cmdline = m.group(1).strip()
        elif f.kcmdline is None and (m := _KCMDLINE.search(line)):
            f.kcmdline = m.group(1).strip()
    return f


def _firmware_map(f: DmesgFacts, where: str) -> tuple[E820Entry, ...]:
    if not f.firmware:
        raise InputError(f"{where}: no BIOS-e820 lines found: not a kernel log with a memory map")
    out: list[tuple[int, int, str, int]] = []
    for item in sorted(f.firmware, key=lambda x: (x[0], x[1])):
        s, e, t, ln = item
        if out and s < out[-1][1]:
            ps, pe, pt, pln = out[-1]
            if pt != t:
                raise InputError(
                    f"{where}:{ln}: e820 entry [mem {s:#x}-{e - 1:#x}] {t} overlaps line {pln} "
                    f"[mem {ps:#x}-{pe - 1:#x}] {pt}"
                )
            out[-1] = (ps, max(pe, e), pt, pln)
        else:
            out.append(item)
    return tuple(E820Entry(s, e, t) for s, e, t, _ in out)


def _nodes(f: DmesgFacts) -> tuple[NumaNode, ...]:
    if f.numa_off:
        return ()
    if f.srat or f.srat_hotplug:
        nids = sorted(set(f.srat) | set(f.srat_hotplug) | set(f.srat_cpus))
        return tuple(
            NumaNode(
                nid,
                tuple(merge_ranges(f.srat.get(nid, []))),
                tuple(sorted(set(f.srat_cpus.get(nid, [])))),
                tuple(merge_ranges(f.srat_hotplug.get(nid, []))),
            )
            for nid in nids
        )
    source = f.k8 or (f.early if len(f.early) > 1 else {})
    return tuple(NumaNode(nid, tuple(merge_ranges(source[nid]))) for nid in sorted(source))


def cpu_from_facts(f: DmesgFacts) -> CpuFeatures:
    """CPU features the log shows (pse is architectural on x86-64)."""
    return CpuFeatures(pse=True, gbpages=f.gbpages, la57=f.la57, nx=f.nx, hypervisor=f.hypervisor)


def machine_from_facts(
    f: DmesgFacts,
    where: str,
    name: str,
    description: str | None = None,
    cpu: CpuFeatures | None = None,
    cmdline: str | None = None,
) -> Machine:
    """Build and validate the :class:`Machine` a log describes."""
    e820 = _firmware_map(f, where)
    kernel = tuple(E820Entry(s, e, t) for s, e, t in f.kernel) if f.kernel is not None else None
    nodes = _nodes(f)
    if description is None:
        ram = sum(e.size for e in e820 if e.type == "usable")
        kern = f"Linux {f.version}" if f.version else "a kernel"
        description = f"imported from a dmesg of {kern}: {format_size(ram)} usable, {max(1, len(nodes))} node(s)"
    return Machine(
        name=name,
        description=description,
        e820=e820,
        nodes=nodes,
        cpu=cpu or cpu_from_facts(f),
        cmdline=cmdline if cmdline is not None else (f.cmdline or f.kcmdline or ""),
        source=where,
        e820_kernel=kernel,
    )


def looks_like_dmesg(text: str) -> bool:
    """True if the text contains at least one firmware e820 line."""
    return any(
        (_E820_NEW.search(strip_prefix(ln)) or _E820_OLD.search(strip_prefix(ln)))
        for ln in text.splitlines()
        if "e820" in ln or "Xen:" in ln or "BIOS-88" in ln
    )


def parse_dmesg_text(text: str, where: str = "<dmesg>", name: str = "dmesg") -> Machine:
    """Parse the text of a kernel log."""
    facts = scan_dmesg(enumerate(text.splitlines(), start=1), where)
    return machine_from_facts(facts, where, name)


def load_dmesg(path: str | Path) -> Machine:
    """Load a machine from a kernel log file (``source`` = the path, ``name`` = the file stem)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{p}: cannot read kernel log: {exc}") from None
    return parse_dmesg_text(text, str(p), p.stem)
