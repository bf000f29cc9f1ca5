"""Errors the command line turns into one-line messages (DESIGN.md contract 7)."""

from __future__ import annotations


class VmemmapError(Exception):
    """Base class. ``exit_status`` 2 means bad input, 1 any other failure."""

    exit_status = 1


class InputError(VmemmapError):
    """Bad input from the user: a machine file, an option value, an address."""

    exit_status = 2


class ModelNotBuildable(InputError):
    """The era's kernel cannot be configured with this memory model on this machine."""


class BootError(VmemmapError):
    """The simulated kernel could not boot (e.g. out of memory for the memmap)."""


class PageFault(VmemmapError):
    """A kernel virtual address has no present translation."""

    def __init__(self, vaddr: int, level: str, msg: str | None = None) -> None:
        self.vaddr = vaddr
        self.level = level
        super().__init__(msg or f"page fault at {vaddr:#018x}: {level} entry not present")
