"""Import a machine from a copy of ``/proc/iomem`` (kernel/resource.c ``r_show``).

Only top-level lines (no leading indentation) are read; nested lines (``Kernel code``, ``System ROM``,
device BARs) are ignored.  The resource names are those ``e820__reserve_resources`` gives
(arch/x86/kernel/e820.c ``e820_type_to_string``):

============================== =====================
/proc/iomem name               e820 type
============================== =====================
``System RAM``                 ``usable``
``Reserved`` / ``reserved``    ``reserved``
``ACPI Tables``                ``ACPI data``
``ACPI Non-volatile Storage``  ``ACPI NVS``
``Unusable memory``            ``unusable``
``Persistent Memory``          ``persistent (type 7)``
``Persistent Memory (legacy)`` ``persistent (type 12)``
``Soft Reserved``              ``soft reserved``
============================== =====================

Everything else at top level (``PCI Bus``, ``Video ROM``, ``IOAPIC 0``, ``Local APIC``, ...) is not part
of the e820 map and is skipped.  /proc/iomem shows the map *after* the kernel's own edits (page 0 is
``Reserved``) plus hot-added RAM, so ``Machine.e820`` here is the kernel's view; there is no NUMA
information (``nodes`` is empty) and CPU features are the defaults.  A copy read without root shows all
addresses as zero (``kptr_restrict``-style hiding in ``iomem_is_exclusive``/``r_show``): that is an error.
"""

from __future__ import annotations

import re
from pathlib import Path

from vmemmap.errors import InputError
from vmemmap.machine.model import CpuFeatures, E820Entry, Machine, format_size

_LINE = re.compile(r"^([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.+?)\s*$")
_ANY = re.compile(r"^\s*([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.+?)\s*$")

IOMEM_TYPES: dict[str, str] = {
    "System RAM": "usable",
    "Reserved": "reserved",
    "reserved": "reserved",
    "ACPI Tables": "ACPI data",
    "ACPI Non-volatile Storage": "ACPI NVS",
    "Unusable memory": "unusable",
    "Persistent Memory": "persistent (type 7)",
    "Persistent Memory (legacy)": "persistent (type 12)",
    "Soft Reserved": "soft reserved",
}


def looks_like_iomem(text: str) -> bool:
    """Every non-blank line has the ``start-end : name`` shape and some top-level line is System RAM."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not all(_ANY.match(ln) for ln in lines):
        return False
    return any((m := _LINE.match(ln)) and m.group(3) == "System RAM" for ln in lines)


def parse_iomem_entries(text: str, where: str, first_line: int = 1) -> list[E820Entry]:
    """The e820-like entries of /proc/iomem text (top level only), sorted, checked for overlap."""
    entries: list[tuple[int, int, str, int]] = []
    nonzero = False
    for lineno, ln in enumerate(text.splitlines(), start=first_line):
        if not ln.strip():
            continue
        if not _ANY.match(ln):
            raise InputError(f"{where}:{lineno}: not a /proc/iomem line: {ln.strip()[:60]!r}")
        m = _LINE.match(ln)
        if not m:
            continue  # nested resource
        s, e_incl, name = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
        if s or e_incl:
            nonzero = True
        if name not in IOMEM_TYPES:
            continue
        if e_incl < s:
            raise InputError(f"{where}:{lineno}: end below start in {ln.strip()!r}")
        entries.append((s, e_incl + 1, IOMEM_TYPES[name], lineno))
    if not nonzero:
        raise InputError(f"{where}: all /proc/iomem addresses are zero (read it as root)")
    if not any(t == "usable" for _, _, t, _ in entries):
        raise InputError(f"{where}: no top-level 'System RAM' lines")
    entries.sort()
    for (s1, e1, t1, l1), (s2, e2, t2, l2) in zip(entries, entries[1:]):
        if s2 < e1:
            raise InputError(f"{where}:{l2}: {s2:x}-{e2 - 1:x} {t2} overlaps line {l1} {s1:x}-{e1 - 1:x} {t1}")
    return [E820Entry(s, e, t) for s, e, t, _ in entries]


def parse_iomem_text(text: str, where: str = "<iomem>", name: str = "iomem", cpu: CpuFeatures | None = None) -> Machine:
    """A :class:`Machine` from /proc/iomem text."""
    e820 = tuple(parse_iomem_entries(text, where))
    ram = sum(e.size for e in e820 if e.type == "usable")
    return Machine(
        name=name,
        description=f"imported from /proc/iomem: {format_size(ram)} usable",
        e820=e820,
        nodes=(),
        cpu=cpu or CpuFeatures(),
        source=where,
    )


def load_iomem(path: str | Path) -> Machine:
    """Load a copy of /proc/iomem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{p}: cannot read: {exc}") from None
    return parse_iomem_text(text, str(p), p.stem)
