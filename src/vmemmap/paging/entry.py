"""x86-64 page-table entry format: bit names, composite protections, encode/decode.

Bit positions and names follow arch/x86/include/asm/pgtable_types.h (@ 6.12; the low bits are the
same in include/asm-x86_64/pgtable.h @ v2.6.21) -- kernel-reference.md §6.1.  Composite values are
the kernel's, e.g. ``_KERNPG_TABLE`` = P|RW|A|D = 0x063 and ``__PAGE_KERNEL_LARGE`` =
P|RW|A|D|PSE|G|NX = 0x80000000000001e3 (used for the 2 MiB vmemmap leaves since 2.6.26).

The physical frame field is bits 12..51 (``PTE_PFN_MASK``, i.e. ``PHYSICAL_PAGE_MASK`` with
``__PHYSICAL_MASK_SHIFT`` = 52).  In 2 MiB / 1 GiB leaves bit 12 is ``_PAGE_PAT_LARGE`` and the
frame starts at bit 21 / bit 30 (architectural; ``PMD_PAGE_MASK`` / ``PUD_PAGE_MASK``).

Levels are named ``'pgd' 'p4d' 'pud' 'pmd' 'pte'``.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "_PAGE_BIT_PRESENT", "_PAGE_BIT_RW", "_PAGE_BIT_USER", "_PAGE_BIT_PWT", "_PAGE_BIT_PCD",
    "_PAGE_BIT_ACCESSED", "_PAGE_BIT_DIRTY", "_PAGE_BIT_PSE", "_PAGE_BIT_PAT", "_PAGE_BIT_GLOBAL",
    "_PAGE_BIT_SOFTW1", "_PAGE_BIT_SOFTW2", "_PAGE_BIT_SOFTW3", "_PAGE_BIT_PAT_LARGE",
    "_PAGE_BIT_SOFTW4", "_PAGE_BIT_SOFTW5", "_PAGE_BIT_PKEY_BIT0", "_PAGE_BIT_NX",
    "_PAGE_PRESENT", "_PAGE_RW", "_PAGE_USER", "_PAGE_PWT", "_PAGE_PCD", "_PAGE_ACCESSED",
    "_PAGE_DIRTY", "_PAGE_PSE", "_PAGE_PAT", "_PAGE_GLOBAL", "_PAGE_SOFTW1", "_PAGE_SOFTW2",
    "_PAGE_SOFTW3", "_PAGE_SPECIAL", "_PAGE_PAT_LARGE", "_PAGE_SOFTW4", "_PAGE_SOFTW5",
    "_PAGE_PKEY_MASK", "_PAGE_NX", "_PAGE_PROTNONE", "_PAGE_KNL_ERRATUM_MASK",
    "_PAGE_TABLE", "_KERNPG_TABLE", "_PAGE_TABLE_NOENC", "_KERNPG_TABLE_NOENC", "_PAGE_NOCACHE",
    "__PAGE_KERNEL", "__PAGE_KERNEL_EXEC", "__PAGE_KERNEL_RO", "__PAGE_KERNEL_RX",
    "__PAGE_KERNEL_NOCACHE", "__PAGE_KERNEL_LARGE", "__PAGE_KERNEL_LARGE_EXEC",
    "PAGE_SHIFT", "PAGE_SIZE", "PMD_SHIFT", "PMD_SIZE", "PUD_SHIFT", "PUD_SIZE", "P4D_SHIFT",
    "PTRS_PER_TABLE", "PHYSICAL_MASK_SHIFT", "PHYSICAL_MASK", "PTE_PFN_MASK", "PTE_FLAGS_MASK",
    "PMD_PAGE_MASK", "PUD_PAGE_MASK", "MASK64", "LEVELS", "LEAF_LEVELS", "PAGE_SIZE_LEVEL",
    "LEVEL_PAGE_SIZE", "make_entry", "entry_phys", "entry_flags", "entry_prot",
    "frame_mask", "is_present", "is_leaf", "protval_large_2_4k", "protval_4k_2_large",
    "prot_sethuge",
]

# --- bit numbers (pgtable_types.h) -------------------------------------------------------------
_PAGE_BIT_PRESENT: Final = 0    # is present
_PAGE_BIT_RW: Final = 1         # writeable
_PAGE_BIT_USER: Final = 2       # userspace addressable
_PAGE_BIT_PWT: Final = 3        # page write through
_PAGE_BIT_PCD: Final = 4        # page cache disabled
_PAGE_BIT_ACCESSED: Final = 5   # was accessed (raised by CPU)
_PAGE_BIT_DIRTY: Final = 6      # was written to (raised by CPU)
_PAGE_BIT_PSE: Final = 7        # 4 MB (or 2MB) page
_PAGE_BIT_PAT: Final = 7        # on 4KB pages
_PAGE_BIT_GLOBAL: Final = 8     # Global TLB entry PPro+
_PAGE_BIT_SOFTW1: Final = 9     # available for programmer
_PAGE_BIT_SOFTW2: Final = 10
_PAGE_BIT_SOFTW3: Final = 11
_PAGE_BIT_PAT_LARGE: Final = 12  # On 2MB or 1GB pages
_PAGE_BIT_SOFTW4: Final = 57
_PAGE_BIT_SOFTW5: Final = 58
_PAGE_BIT_PKEY_BIT0: Final = 59
_PAGE_BIT_NX: Final = 63        # No execute: only valid after cpuid check

# --- masks -------------------------------------------------------------------------------------
_PAGE_PRESENT: Final = 1 << _PAGE_BIT_PRESENT
_PAGE_RW: Final = 1 << _PAGE_BIT_RW
_PAGE_USER: Final = 1 << _PAGE_BIT_USER
_PAGE_PWT: Final = 1 << _PAGE_BIT_PWT
_PAGE_PCD: Final = 1 << _PAGE_BIT_PCD
_PAGE_ACCESSED: Final = 1 << _PAGE_BIT_ACCESSED
_PAGE_DIRTY: Final = 1 << _PAGE_BIT_DIRTY
_PAGE_PSE: Final = 1 << _PAGE_BIT_PSE
_PAGE_PAT: Final = 1 << _PAGE_BIT_PAT
_PAGE_GLOBAL: Final = 1 << _PAGE_BIT_GLOBAL
_PAGE_SOFTW1: Final = 1 << _PAGE_BIT_SOFTW1
_PAGE_SOFTW2: Final = 1 << _PAGE_BIT_SOFTW2
_PAGE_SOFTW3: Final = 1 << _PAGE_BIT_SOFTW3
_PAGE_SPECIAL: Final = _PAGE_SOFTW1
_PAGE_PAT_LARGE: Final = 1 << _PAGE_BIT_PAT_LARGE
_PAGE_SOFTW4: Final = 1 << _PAGE_BIT_SOFTW4
_PAGE_SOFTW5: Final = 1 << _PAGE_BIT_SOFTW5
_PAGE_PKEY_MASK: Final = 0xF << _PAGE_BIT_PKEY_BIT0
_PAGE_NX: Final = 1 << _PAGE_BIT_NX
_PAGE_PROTNONE: Final = _PAGE_GLOBAL        # only when !_PAGE_PRESENT
#: pud_none()/pmd_none() ignore A and D (Knights Landing erratum), pgtable.h
_PAGE_KNL_ERRATUM_MASK: Final = _PAGE_DIRTY | _PAGE_ACCESSED

# --- composites (pgtable_types.h) --------------------------------------------------------------
_PAGE_TABLE_NOENC: Final = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY  # 0x067
_KERNPG_TABLE_NOENC: Final = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY  # 0x063
_PAGE_TABLE: Final = _PAGE_TABLE_NOENC        # no SME: _ENC is 0
_KERNPG_TABLE: Final = _KERNPG_TABLE_NOENC
#: cachemode2protval(_PAGE_CACHE_MODE_UC) with the default PAT = PCD|PWT
_PAGE_NOCACHE: Final = _PAGE_PCD | _PAGE_PWT

_KERN_BASE = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_GLOBAL
__PAGE_KERNEL: Final = _KERN_BASE | _PAGE_NX                          # 0x8000000000000163
__PAGE_KERNEL_EXEC: Final = _KERN_BASE                                # 0x163
__PAGE_KERNEL_RO: Final = (_KERN_BASE & ~_PAGE_RW) | _PAGE_NX         # 0x8000000000000161
__PAGE_KERNEL_RX: Final = _KERN_BASE & ~_PAGE_RW                      # 0x161
__PAGE_KERNEL_NOCACHE: Final = __PAGE_KERNEL | _PAGE_NOCACHE          # 0x800000000000017b
__PAGE_KERNEL_LARGE: Final = __PAGE_KERNEL | _PAGE_PSE                # 0x80000000000001e3
__PAGE_KERNEL_LARGE_EXEC: Final = __PAGE_KERNEL_EXEC | _PAGE_PSE      # 0x1e3

# --- geometry (pgtable_64_types.h) -------------------------------------------------------------
PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT
PMD_SHIFT: Final = 21
PMD_SIZE: Final = 1 << PMD_SHIFT
PUD_SHIFT: Final = 30
PUD_SIZE: Final = 1 << PUD_SHIFT
P4D_SHIFT: Final = 39
PTRS_PER_TABLE: Final = 512
PHYSICAL_MASK_SHIFT: Final = 52
PHYSICAL_MASK: Final = (1 << PHYSICAL_MASK_SHIFT) - 1
MASK64: Final = (1 << 64) - 1
PTE_PFN_MASK: Final = PHYSICAL_MASK & ~(PAGE_SIZE - 1)                # 0x000ffffffffff000
PTE_FLAGS_MASK: Final = MASK64 & ~PTE_PFN_MASK                        # 0xfff0000000000fff
PMD_PAGE_MASK: Final = PHYSICAL_MASK & ~(PMD_SIZE - 1)                # frame of a 2 MiB leaf
PUD_PAGE_MASK: Final = PHYSICAL_MASK & ~(PUD_SIZE - 1)                # frame of a 1 GiB leaf

LEVELS: Final = ("pgd", "p4d", "pud", "pmd", "pte")
#: levels at which an entry can map a page (PSE leaves at pud/pmd, every present pte)
LEAF_LEVELS: Final = ("pud", "pmd", "pte")
PAGE_SIZE_LEVEL: Final = {PAGE_SIZE: "pte", PMD_SIZE: "pmd", PUD_SIZE: "pud"}
LEVEL_PAGE_SIZE: Final = {"pte": PAGE_SIZE, "pmd": PMD_SIZE, "pud": PUD_SIZE}


def is_present(entry: int) -> bool:
    """``_PAGE_PRESENT`` set: the MMU follows the entry."""
    return bool(entry & _PAGE_PRESENT)


def is_leaf(entry: int, level: str) -> bool:
    """True if a present entry at ``level`` maps a page (pte, or pmd/pud with ``_PAGE_PSE``).

    PSE at pgd/p4d level is reserved on x86-64 (no 512 GiB pages); such entries are not leaves.
    """
    if not entry & _PAGE_PRESENT:
        return False
    if level == "pte":
        return True
    return level in ("pud", "pmd") and bool(entry & _PAGE_PSE)


def frame_mask(entry: int, level: str) -> int:
    """Mask selecting the physical address bits of ``entry`` read at ``level``.

    Bits 12..51 for ptes and table pointers; bits 21..51 for a 2 MiB leaf and 30..51 for a 1 GiB
    leaf, bit 12 being ``_PAGE_PAT_LARGE`` there (pmd_pfn()/pud_pfn() with PMD_PAGE_MASK/PUD_PAGE_MASK).
    """
    if level in ("pmd", "pud") and entry & _PAGE_PSE:
        return PMD_PAGE_MASK if level == "pmd" else PUD_PAGE_MASK
    return PTE_PFN_MASK


def entry_phys(entry: int, level: str) -> int:
    """Physical address in ``entry`` (page frame of a leaf, or the next table's page)."""
    return entry & frame_mask(entry, level)


def entry_prot(entry: int, level: str) -> int:
    """The flag bits of ``entry`` (everything outside its frame field)."""
    return entry & MASK64 & ~frame_mask(entry, level)


_FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (_PAGE_PRESENT, "PRESENT"), (_PAGE_RW, "RW"), (_PAGE_USER, "USER"), (_PAGE_PWT, "PWT"),
    (_PAGE_PCD, "PCD"), (_PAGE_ACCESSED, "ACCESSED"), (_PAGE_DIRTY, "DIRTY"),
)


def entry_flags(entry: int, level: str) -> list[str]:
    """Names of the bits set in ``entry`` (crash ``vtop`` style: PRESENT|RW|...).

    Bit 7 reads ``PSE`` at pud/pmd (and pgd/p4d, where it is reserved) and ``PAT`` in a pte;
    bit 12 reads ``PAT_LARGE`` only in a pud/pmd leaf (elsewhere it is a frame bit).
    """
    out = [name for bit, name in _FLAG_NAMES if entry & bit]
    if entry & _PAGE_PSE:
        out.append("PAT" if level == "pte" else "PSE")
    if entry & _PAGE_GLOBAL:
        out.append("GLOBAL")
    if entry & _PAGE_SOFTW1:
        out.append("SOFTW1")
    if entry & _PAGE_SOFTW2:
        out.append("SOFTW2")
    if entry & _PAGE_SOFTW3:
        out.append("SOFTW3")
    if level in ("pmd", "pud") and entry & _PAGE_PSE and entry & _PAGE_PAT_LARGE:
        out.append("PAT_LARGE")
    if entry & _PAGE_SOFTW4:
        out.append("SOFTW4")
    if entry & _PAGE_SOFTW5:
        out.append("SOFTW5")
    if entry & _PAGE_PKEY_MASK:
        out.append(f"PKEY{(entry & _PAGE_PKEY_MASK) >> _PAGE_BIT_PKEY_BIT0}")
    if entry & _PAGE_NX:
        out.append("NX")
    return out


def make_entry(phys: int, prot: int) -> int:
    """``phys | prot`` (pfn_pte()/pfn_pmd()/mk_pte()); ``phys`` must be page aligned and < 2**52."""
    if phys & ~PTE_PFN_MASK:
        raise ValueError(f"physical address {phys:#x} is not a 4 KiB aligned address below 2**52")
    if prot & ~MASK64 or prot < 0:
        raise ValueError(f"protection {prot:#x} does not fit 64 bits")
    return (phys | prot) & MASK64


def protval_large_2_4k(val: int) -> int:
    """protval_large_2_4k() (pgtable_types.h): move ``_PAGE_PAT_LARGE`` to ``_PAGE_PAT``, drop PSE."""
    return (val & ~(_PAGE_PAT | _PAGE_PAT_LARGE)) | (
        (val & _PAGE_PAT_LARGE) >> (_PAGE_BIT_PAT_LARGE - _PAGE_BIT_PAT))


def protval_4k_2_large(val: int) -> int:
    """protval_4k_2_large(): move ``_PAGE_PAT`` (bit 7 of a pte) to ``_PAGE_PAT_LARGE`` (no PSE)."""
    return (val & ~(_PAGE_PAT | _PAGE_PAT_LARGE)) | (
        (val & _PAGE_PAT) << (_PAGE_BIT_PAT_LARGE - _PAGE_BIT_PAT))


def prot_sethuge(val: int) -> int:
    """prot_sethuge() (arch/x86/mm/init_64.c): a large-page protection has ``_PAGE_PSE``."""
    return val | _PAGE_PSE
