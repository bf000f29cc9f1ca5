"""Memory models: FLATMEM, DISCONTIGMEM, SPARSEMEM (static / EXTREME) and SPARSEMEM_VMEMMAP.

All share :class:`vmemmap.models.base.MemoryModel`; :func:`make_model` picks one by its DESIGN.md
contract-6 name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmemmap.models.base import MemmapPiece, MemoryModel, Result

if TYPE_CHECKING:
    from vmemmap.kernel import Kernel

__all__ = ["MemoryModel", "Result", "MemmapPiece", "make_model"]


def make_model(kernel: Kernel, name: str) -> MemoryModel:
    """The model object for a booted kernel (``kernel.model_name`` already checked legal)."""
    from vmemmap.models.discontigmem import Discontigmem
    from vmemmap.models.flatmem import Flatmem
    from vmemmap.models.sparsemem import Sparsemem
    from vmemmap.models.vmemmap import Vmemmap

    if name == "flatmem":
        return Flatmem(kernel)
    if name == "discontigmem":
        return Discontigmem(kernel)
    if name == "sparsemem":
        return Sparsemem(kernel, extreme=False)
    if name == "sparsemem-extreme":
        return Sparsemem(kernel, extreme=True)
    if name == "vmemmap":
        return Vmemmap(kernel, basepages=False)
    if name == "vmemmap-4k":
        return Vmemmap(kernel, basepages=True)
    raise ValueError(name)
