"""vmemmap: Linux x86-64 physical memory models, executable.

Builds the kernel address map, page tables (real x86-64 entry format), the mem_section table and the
memmap for a machine and a kernel era, and runs ``pfn_to_page`` and friends under FLATMEM,
DISCONTIGMEM, SPARSEMEM and SPARSEMEM_VMEMMAP while recording every kernel load.
"""

__version__ = "0.1.0"
