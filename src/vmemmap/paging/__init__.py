"""x86-64 paging: entry format (entry.py), page tables in simulated physical memory (tables.py)
and the kernel's ptdump text (ptdump.py).  See docs/architecture.md and kernel-reference.md §6."""

from .entry import (
    LEVELS,
    PTE_FLAGS_MASK,
    PTE_PFN_MASK,
    entry_flags,
    entry_phys,
    entry_prot,
    is_leaf,
    is_present,
    make_entry,
)
from . import ptdump  # the module; call ptdump.ptdump(tables, markers)
from .ptdump import kernel_walk_ranges, printk_prot, x86_64_markers
from .tables import Leaf, PageTables, Run, Walk, WalkStep, format_prot_short

__all__ = [
    "LEVELS", "PTE_FLAGS_MASK", "PTE_PFN_MASK", "entry_flags", "entry_phys", "entry_prot",
    "is_leaf", "is_present", "make_entry", "kernel_walk_ranges", "printk_prot", "ptdump",
    "x86_64_markers", "Leaf", "PageTables", "Run", "Walk", "WalkStep", "format_prot_short",
]
