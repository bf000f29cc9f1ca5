"""``--machine SPEC``: built-in machines and file formats recognised by content (DESIGN.md contract 5).

``load_machine(spec)`` tries, in order:

1. a built-in name (``builtin/*.toml`` in this package; ``builtin_machines()`` lists them by RAM);
2. ``this`` (this host, :mod:`vmemmap.machine.this`) or ``this:ROOT`` (a host tree copied below ROOT);
3. an existing file, whose format is recognised by its content, not its name:

   * an oracle capture: first line ``# cmd: qemu-system-...`` (:mod:`.capture`);
   * a TOML machine file: parses as TOML and has ``e820`` or ``ram`` tables (:mod:`.toml_file`);
   * a kernel log: has ``BIOS-e820:`` lines (:mod:`.dmesg`);
   * a ``/proc/iomem`` copy: only ``start-end : name`` lines, some ``System RAM`` (:mod:`.iomem`);
   * something that looks like a broken TOML machine file gets the TOML parser's error.

Anything else is an :class:`InputError` with one line listing the built-in names.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

from vmemmap.errors import InputError
from vmemmap.machine.capture import looks_like_capture, parse_capture_text
from vmemmap.machine.dmesg import looks_like_dmesg, parse_dmesg_text
from vmemmap.machine.iomem import looks_like_iomem, parse_iomem_text
from vmemmap.machine.model import Machine
from vmemmap.machine.this import read_this
from vmemmap.machine.toml_file import machine_from_dict, parse_toml_text

#: The machine ``compare`` uses when none is given (the seed patch's world).
DEFAULT_MACHINE = "opteron-2007"


@lru_cache(maxsize=1)
def _builtins() -> tuple[Machine, ...]:
    pkg = resources.files("vmemmap.machine") / "builtin"
    machines = []
    for entry in sorted(pkg.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            stem = entry.name[: -len(".toml")]
            m = parse_toml_text(entry.read_text(encoding="utf-8"), f"builtin/{entry.name}", stem)
            if m.name != stem:
                raise InputError(f"builtin/{entry.name}: name {m.name!r} differs from the file name")
            machines.append(replace(m, source="builtin"))
    return tuple(sorted(machines, key=lambda m: (m.ram_bytes, m.name)))


def builtin_machines() -> list[Machine]:
    """All built-in machines, sorted by usable RAM (then name)."""
    return list(_builtins())


def builtin_names() -> list[str]:
    """Names of the built-in machines, in :func:`builtin_machines` order."""
    return [m.name for m in _builtins()]


def get_builtin(name: str) -> Machine:
    """A built-in machine by name (:class:`InputError` if unknown)."""
    for m in _builtins():
        if m.name == name:
            return m
    raise InputError(f"unknown built-in machine {name!r} (built-ins: {', '.join(builtin_names())})")


def _looks_like_toml_attempt(text: str) -> bool:
    return bool(re.search(r"^\s*\[\[?\s*(e820|ram|node|cpu)\s*\]\]?\s*$", text, re.MULTILINE)) or bool(
        re.search(r"^\s*name\s*=", text, re.MULTILINE)
    )


def load_machine_file(path: str | Path) -> Machine:
    """Load a machine file of any supported format, recognised by content."""
    p = Path(path)
    where = str(p)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{where}: cannot read machine file: {exc.strerror or exc}") from None
    text = raw.decode("utf-8", errors="replace")
    if looks_like_capture(text):
        return parse_capture_text(text, where, p.stem)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        data = None
        toml_error = str(exc)
    else:
        toml_error = ""
    if isinstance(data, dict) and ("e820" in data or "ram" in data or "node" in data or "cpu" in data):
        return machine_from_dict(data, where, p.stem)
    if looks_like_dmesg(text):
        return parse_dmesg_text(text, where, p.stem)
    if looks_like_iomem(text):
        return parse_iomem_text(text, where, p.stem)
    if data is not None:
        return machine_from_dict(data, where, p.stem)  # valid TOML without a map: say what is missing
    if _looks_like_toml_attempt(text):
        raise InputError(f"{where}: invalid TOML: {toml_error}")
    raise InputError(
        f"{where}: not a recognised machine file (expected a TOML machine file, a kernel log with "
        f"BIOS-e820 lines, a /proc/iomem copy or an oracle capture)"
    )


def load_machine(spec: str) -> Machine:
    """A built-in name, ``this``, or a path to a machine file (see the module docstring)."""
    spec = spec.strip()
    for m in _builtins():
        if m.name == spec:
            return m
    if spec == "this":
        return read_this()
    if spec.startswith("this:"):  # a copy of another host's /proc and /sys below a root directory
        return read_this(Path(spec[5:]).expanduser())
    p = Path(spec).expanduser()
    if p.is_file():
        return load_machine_file(p)
    if p.exists():
        raise InputError(f"{spec}: is not a file (expected a machine file)")
    raise InputError(
        f"unknown machine {spec!r}: not a built-in ({', '.join(builtin_names())}), 'this', or an existing file"
    )
