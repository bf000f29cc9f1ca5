"""The hardware: what RAM exists (e820), on which NUMA node, and the CPU's paging features.

Public API::

    E820Entry, NumaNode, CpuFeatures, Machine          # frozen dataclasses (model.py)
    load_machine(spec) -> Machine                       # built-in name | path (any format) | 'this'
    builtin_machines() -> list[Machine]                 # sorted by RAM
    builtin_names(), get_builtin(name), DEFAULT_MACHINE
    load_machine_file(path), load_toml(path), load_dmesg(path), load_iomem(path), load_capture(path)
    parse_toml_text, parse_dmesg_text, parse_iomem_text, parse_capture_text, read_this(root=Path('/'))
    machine_to_toml(machine) / Machine.to_toml(), parse_size("4G")
    format_e820_table(entries, who='BIOS-e820', style='modern'|'2.6')   # the kernel's e820 print

See docs/machines.md for the TOML format and the built-in machines.
"""

from vmemmap.machine.capture import load_capture, parse_capture_text, qemu_cpu_features
from vmemmap.machine.dmesg import format_e820_table, load_dmesg, parse_dmesg_text
from vmemmap.machine.iomem import load_iomem, parse_iomem_text
from vmemmap.machine.loader import (
    DEFAULT_MACHINE,
    builtin_machines,
    builtin_names,
    get_builtin,
    load_machine,
    load_machine_file,
)
from vmemmap.machine.model import (
    E820_TYPE_CODES,
    CpuFeatures,
    E820Entry,
    Machine,
    NumaNode,
    format_size,
    merge_ranges,
    normalize_e820_type,
)
from vmemmap.machine.this import read_this
from vmemmap.machine.toml_file import load_toml, machine_to_toml, parse_size, parse_toml_text

__all__ = [
    "DEFAULT_MACHINE",
    "E820_TYPE_CODES",
    "CpuFeatures",
    "E820Entry",
    "Machine",
    "NumaNode",
    "builtin_machines",
    "builtin_names",
    "format_e820_table",
    "format_size",
    "get_builtin",
    "load_capture",
    "load_dmesg",
    "load_iomem",
    "load_machine",
    "load_machine_file",
    "load_toml",
    "machine_to_toml",
    "merge_ranges",
    "normalize_e820_type",
    "parse_capture_text",
    "parse_dmesg_text",
    "parse_iomem_text",
    "parse_size",
    "parse_toml_text",
    "qemu_cpu_features",
    "read_this",
]
