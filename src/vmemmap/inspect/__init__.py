"""Reading real kernel memory: ELF cores (QEMU ``dump-guest-memory``, kdump ``/proc/vmcore``).

* :mod:`~vmemmap.inspect.elfcore` -- PT_LOAD segments, notes, VMCOREINFO, QEMU CPU state;
* :mod:`~vmemmap.inspect.dumpmem` -- :class:`DumpMem`, physical memory with PhysMem's read API;
* :mod:`~vmemmap.inspect.kernel` -- :class:`DumpKernel`: symbols, page-table root, the walker, the
  bases and mem_section decoded with the model code, crash-style ``vtop`` / ``kmem -n`` text;
* :mod:`~vmemmap.inspect.elfwrite` -- write cores (also of a simulated kernel).
"""

from .dumpmem import DumpMem, DumpReadError
from .elfcore import ElfCore, QemuCpuState, VmcoreInfo, parse_vmcoreinfo

__all__ = ["DumpMem", "DumpReadError", "ElfCore", "QemuCpuState", "VmcoreInfo", "parse_vmcoreinfo"]
