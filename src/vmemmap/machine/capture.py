"""Import a machine from an oracle capture (``shared/oracle/captures/*.log``, see the oracle README).

A capture starts with ``# cmd: qemu-system-x86_64 ...`` and then the guest's serial console; the init
script prints blocks between ``@@BEGIN NAME@@`` and ``@@END NAME@@``.  The e820 map, the kernel's e820
edits, SRAT nodes and the command line come from the first ``DMESG`` block (the full ``dmesg`` of the
first snapshot; later snapshots hold only new lines), parsed by :mod:`vmemmap.machine.dmesg`.  Without a
DMESG block the console lines before the first ``@@`` marker are used.

CPU features come from the QEMU command line, since a TCG guest's log rarely names them:

* no ``-cpu``: QEMU's default ``qemu64`` model -- pse and nx, no pdpe1gb, no la57;
* ``-cpu max`` (or ``host``): gbpages and la57 (the la57-6G capture: ``max_arch_pfn = 0x10000000000``,
  ``Using GB pages for direct mapping``);
* feature switches on the model (``-cpu max,-la57``, ``qemu64,+pdpe1gb``, ``la57=off``) are applied;
* hypervisor is always set: QEMU sets CPUID.1:ECX.HYPERVISOR for every model.

Positive evidence in the log (``Using GB pages``, a 52-bit ``max_arch_pfn``) also sets the bit.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from vmemmap.errors import InputError
from vmemmap.machine.dmesg import machine_from_facts, scan_dmesg
from vmemmap.machine.model import CpuFeatures, Machine

_FEATURE_ALIASES = {"pdpe1gb": "gbpages", "la57": "la57", "pse": "pse", "nx": "nx", "hypervisor": "hypervisor"}


def looks_like_capture(text: str) -> bool:
    """The first line is ``# cmd: qemu-system-...``."""
    first = text.lstrip().split("\n", 1)[0]
    return first.startswith("# cmd:") and "qemu-system" in first


def qemu_cpu_features(cmd: str) -> CpuFeatures:
    """CPU features of a QEMU command line's ``-cpu`` option (default ``qemu64``)."""
    try:
        argv = shlex.split(cmd)
    except ValueError:
        argv = cmd.split()
    spec = "qemu64"
    for i, arg in enumerate(argv[:-1]):
        if arg == "-cpu":
            spec = argv[i + 1]
    model, *switches = spec.split(",")
    feats = {"pse": True, "gbpages": False, "la57": False, "nx": True, "hypervisor": True}
    if model in ("max", "host"):
        feats.update(gbpages=True, la57=True)
    for sw in switches:
        on: bool | None = None
        name = sw
        if sw[:1] in ("+", "-"):
            on, name = sw[0] == "+", sw[1:]
        elif "=" in sw:
            name, val = sw.split("=", 1)
            on = val.lower() in ("on", "true", "yes", "1")
        elif sw:
            on = True
        key = _FEATURE_ALIASES.get(name.replace("_", "-").lower())
        if key is not None and on is not None:
            feats[key] = on
    return CpuFeatures(**feats)


def _qemu_option(cmd: str, opt: str) -> str | None:
    try:
        argv = shlex.split(cmd)
    except ValueError:
        return None
    for i, arg in enumerate(argv[:-1]):
        if arg == opt:
            return argv[i + 1]
    return None


def parse_capture_text(text: str, where: str = "<capture>", name: str = "capture") -> Machine:
    """A :class:`Machine` from the text of an oracle capture."""
    lines = text.splitlines()
    if not lines or not looks_like_capture(text):
        raise InputError(f"{where}:1: not an oracle capture (expected '# cmd: qemu-system-x86_64 ...')")
    cmd = lines[0].strip()[len("# cmd:") :].strip()
    begin = next((i for i, ln in enumerate(lines) if ln.strip() == "@@BEGIN DMESG@@"), None)
    if begin is not None:
        end = next((i for i in range(begin + 1, len(lines)) if lines[i].strip() == "@@END DMESG@@"), len(lines))
        body = [(i + 1, lines[i]) for i in range(begin + 1, end)]
    else:
        stop = next((i for i, ln in enumerate(lines) if ln.startswith("@@")), len(lines))
        body = [(i + 1, lines[i]) for i in range(1, stop)]
    facts = scan_dmesg(body, where)
    if not facts.firmware:
        raise InputError(f"{where}: capture has no BIOS-e820 lines in its DMESG block")
    q = qemu_cpu_features(cmd)
    cpu = CpuFeatures(
        pse=q.pse,
        gbpages=q.gbpages or facts.gbpages,
        la57=q.la57 or facts.la57,
        nx=q.nx and facts.nx,
        hypervisor=True,
    )
    mem = _qemu_option(cmd, "-m")
    cpu_opt = _qemu_option(cmd, "-cpu")
    bits = [f"-m {mem}"] if mem else []
    if cpu_opt:
        bits.append(f"-cpu {cpu_opt}")
    numa = cmd.count("-numa node")
    if numa:
        bits.append(f"{numa} -numa nodes")
    kern = f"Linux {facts.version}" if facts.version else "Linux"
    description = f"QEMU guest of oracle capture {name} ({' '.join(bits) or 'defaults'}; {kern})"
    return machine_from_facts(facts, where, name, description=description, cpu=cpu)


def load_capture(path: str | Path) -> Machine:
    """Load an oracle capture file (``name`` = the file stem, e.g. ``base-2G``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{p}: cannot read capture: {exc}") from None
    return parse_capture_text(text, str(p), p.stem)
