"""Kernel eras as data.

One TOML file per era in this folder (``2.6.21-seed.toml`` ... ``6.12.toml``); :func:`load_era` reads
one into an :class:`Era`. Every number in those files is a kernel constant with its source given next
to it (``kernel-reference.md`` section or kernel file @ version). Code elsewhere never asks "which
version is this?": it asks the era for the rule (``era.pfn_valid_rule``, ``era.vmemmap_message`` ...).

The kernel virtual address map of each era (the mm.txt / mm.rst rows, KASLR) lives in
``eras/maps/<era>.toml`` and is read by :mod:`vmemmap.layout`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from vmemmap.errors import InputError

#: Model names (DESIGN.md contract 6).
MODEL_NAMES: tuple[str, ...] = (
    "flatmem",
    "discontigmem",
    "sparsemem",
    "sparsemem-extreme",
    "vmemmap",
    "vmemmap-4k",
)


@dataclass(frozen=True)
class ModelRule:
    """Whether an era's x86-64 Kconfig can build a memory model, and on which machines.

    ``numa``: ``"any"``, ``"only"`` (needs a NUMA machine, e.g. DISCONTIGMEM was the 2.6.2x NUMA
    model) or ``"never"`` (FLATMEM: ``ARCH_FLATMEM_ENABLE`` depends on ``!NUMA``). ``why`` is the
    Kconfig fact, shown when the model is refused or flagged.
    """

    legal: bool
    numa: str = "any"
    why: str = ""
    what_if: bool = False  # buildable only as a what-if (not selectable in that era's x86-64 Kconfig)


@dataclass(frozen=True)
class Era:
    """Constants and rules of one kernel era (kernel-reference.md §2-§6)."""

    name: str
    version: str
    description: str
    # --- paging / address width (kernel-reference §3.1) -------------------------------------------
    la57_supported: bool
    max_physmem_bits_l4: int
    max_physmem_bits_l5: int | None
    physical_mask_shift: int
    # --- sparsemem (kernel-reference §2.4) --------------------------------------------------------
    section_size_bits: int
    struct_page_size: int
    mem_section_size: int
    mem_section_is_pointer: bool  # 4.15+: `struct mem_section **mem_section`, allocated at boot
    nr_section_roots_round_up: bool  # DIV_ROUND_UP (by 3.13) vs plain division (<= 2.6.32)
    section_flags: tuple[str, ...]  # names in bit order: bit 0 first
    section_map_last_bit: int  # number of low flag bits masked off by SECTION_MAP_MASK
    section_nid_shift: int  # sparse_encode_early_nid shift
    valid_section_flag: str  # flag tested by valid_section(): PRESENT (2.6.21) or HAS_MEM_MAP
    pfn_valid_rule: str  # 'present' | 'has_mem_map' | 'subsection'
    subsection_shift: int | None  # 21 in 5.3+ (SUBSECTION_SHIFT), None before
    usage_size: int  # sizeof(struct mem_section_usage) (0 before sub-sections)
    section_in_page_flags_with_vmemmap: bool  # 2.6.24/2.6.25: SECTIONS_WIDTH even with VMEMMAP
    nodes_shift: int  # CONFIG_NODES_SHIFT
    zones_width: int  # ZONES_WIDTH (order_base_2(MAX_NR_ZONES))
    zone_names: tuple[str, ...]  # enum zone_type order
    # --- memory models ----------------------------------------------------------------------------
    models: dict[str, ModelRule]
    default_model_numa: str
    default_model_uma: str
    # --- boot (kernel-reference §4, §6.3) ----------------------------------------------------------
    boot_allocator: str  # 'bootmem' (bottom-up from goal) | 'memblock' (top-down)
    max_dma_address: int  # __pa(MAX_DMA_ADDRESS): the bootmem goal
    memmap_buffer: str  # 'per-section' (each section allocated alone) | 'node' (sparse_buffer)
    directmap_gbpages: bool  # CONFIG_DIRECT_GBPAGES default (1 GiB direct map when the CPU has it)
    vmemmap_4k_without_pse: bool  # 2.6.27+: base pages if !cpu_has_pse; before: PMD only
    vmemmap_leaf_prot: int  # PAGE_KERNEL_LARGE (2.6.26+) or PAGE_KERNEL|PSE (2.6.24)
    vmemmap_message: str  # 'none' | 'per-pmd' | 'coalesced'
    vmemmap_message_at_boot: bool  # printk(KERN_DEBUG) reaches dmesg; pr_debug (4.12+) does not
    e820_format: str  # 'old' (" BIOS-e820: 0000.. - 0000.. (usable)") | 'new' ("[mem 0x..-0x..]")
    early_pgt_buf_pages: int  # INIT_PGT_BUF_SIZE / PAGE_SIZE: direct-map tables from brk first
    printk_log_buf: str  # 'ringbuffer' | 'single' | 'none': what log_buf_len= allocates at boot
    phys_base_variable: bool  # __pa() of kernel-image addresses adds the phys_base variable (2.6.22+)
    physical_start: int  # CONFIG_PHYSICAL_START: where the kernel image is loaded
    kernel_image_bytes: int  # size of the image in RAM (text+data+bss) we reserve at boot
    pgdat_size: int  # sizeof(pg_data_t) of the era's (Debian) config: what alloc_node_data() rounds up
    node_data_roundup: int  # alloc_node_data(): nd_size = roundup(sizeof(pg_data_t), this)
    # --- memory hotplug (kernel-reference §5) ---------------------------------------------------------
    memhp_default_online_type: str  # mhp_default_online_type without memhp_default_state= (auto_online_blocks)
    sources: dict[str, str] = field(default_factory=dict)
    # the era TOML's [hotplug] table: probe granularity, online types, zone choice, offline/remove,
    # usemap size class, memmap_on_memory scope, and how FLATMEM/DISCONTIGMEM hot-add (vmemmap.hotplug)
    hotplug: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # the era TOML's [buddy] table: struct page / struct zone offsets, page flag bits and the rules of
    # the buddy allocator's paths (vmemmap.cost.buddy): the step lists of the allocation and free paths
    # (alloc, free, pcp_alloc, pcp_free, free_prepare), pcp_orders, the PageBuddy encoding (page_buddy),
    # page_is_buddy's test order, where the pageblock bitmap lives (pageblock); keys a table leaves out
    # take the 2.6 rules (vmemmap.cost.buddy.DEFAULTS); empty for eras whose allocator is not modelled
    buddy: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # --- what-if overrides (:func:`what_if`; never set by an era TOML) --------------------------------
    #: None: the era map's CONFIG_DYNAMIC_MEMORY_LAYOUT; False: a build without it (constant
    #: __PAGE_OFFSET, VMALLOC_START, VMEMMAP_START), see :func:`what_if`
    dynamic_memory_layout: bool | None = None
    what_ifs: tuple[str, ...] = ()   # the overrides applied, in words (shown in reports)

    # --- derived ------------------------------------------------------------------------------------
    def max_physmem_bits(self, la57: bool = False) -> int:
        """MAX_PHYSMEM_BITS for the paging mode (``pgtable_l5_enabled() ? 52 : 46`` in 4.20+)."""
        if la57:
            if not self.la57_supported or self.max_physmem_bits_l5 is None:
                raise InputError(f"era {self.name} has no 5-level paging")
            return self.max_physmem_bits_l5
        return self.max_physmem_bits_l4

    @property
    def page_shift(self) -> int:
        return 12

    @property
    def pfn_section_shift(self) -> int:
        """PFN_SECTION_SHIFT = SECTION_SIZE_BITS - PAGE_SHIFT."""
        return self.section_size_bits - self.page_shift

    @property
    def pages_per_section(self) -> int:
        return 1 << self.pfn_section_shift

    def sections_shift(self, la57: bool = False) -> int:
        """SECTIONS_SHIFT = MAX_PHYSMEM_BITS - SECTION_SIZE_BITS."""
        return self.max_physmem_bits(la57) - self.section_size_bits

    def nr_mem_sections(self, la57: bool = False) -> int:
        return 1 << self.sections_shift(la57)

    def sections_per_root(self, extreme: bool = True) -> int:
        """SECTIONS_PER_ROOT: PAGE_SIZE / sizeof(struct mem_section) with EXTREME, else 1."""
        return (4096 // self.mem_section_size) if extreme else 1

    def nr_section_roots(self, la57: bool = False, extreme: bool = True) -> int:
        n = self.nr_mem_sections(la57)
        per = self.sections_per_root(extreme)
        return -(-n // per) if self.nr_section_roots_round_up else n // per

    def section_flag(self, name: str) -> int:
        """The bit value of a section flag, e.g. ``'HAS_MEM_MAP'`` -> 0x2."""
        try:
            return 1 << self.section_flags.index(name)
        except ValueError:
            raise KeyError(f"era {self.name} has no section flag {name}") from None

    @property
    def section_map_mask(self) -> int:
        """SECTION_MAP_MASK: ~((1 << last_bit) - 1) as a 64-bit value."""
        return ~((1 << self.section_map_last_bit) - 1) & 0xFFFF_FFFF_FFFF_FFFF

    def model_rule(self, model: str) -> ModelRule:
        if model not in MODEL_NAMES:
            raise InputError(f"unknown memory model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
        return self.models.get(model, ModelRule(False, why=f"{model} does not exist in {self.name}"))


def era_names() -> list[str]:
    """All era names, oldest first."""
    names = [
        p.name[: -len(".toml")]
        for p in resources.files(__package__).iterdir()
        if p.name.endswith(".toml")
    ]
    return sorted(names, key=_version_key)


def _version_key(name: str) -> tuple[int, ...]:
    ver = name.split("-")[0]
    return tuple(int(x) for x in ver.split("."))


def _int(v: Any) -> int:
    if isinstance(v, int):
        return v
    return int(str(v), 0)


@cache
def load_era(name: str) -> Era:
    """Load an era by name (``'6.1'``, ``'2.6.21-seed'``...)."""
    names = era_names()
    if name not in names:
        raise InputError(f"unknown era {name!r}; known eras: {', '.join(names)}")
    text = resources.files(__package__).joinpath(f"{name}.toml").read_text()
    d = tomllib.loads(text)
    models = {
        m: ModelRule(
            legal=bool(r.get("legal", True)),
            numa=str(r.get("numa", "any")),
            why=str(r.get("why", "")),
            what_if=bool(r.get("what_if", False)),
        )
        for m, r in d.pop("models").items()
    }
    hotplug = d.pop("hotplug", {})
    buddy = d.pop("buddy", {})
    ints = {
        "max_physmem_bits_l4", "physical_mask_shift", "section_size_bits", "struct_page_size",
        "mem_section_size", "section_map_last_bit", "section_nid_shift", "usage_size", "nodes_shift",
        "zones_width", "max_dma_address", "early_pgt_buf_pages", "vmemmap_leaf_prot", "physical_start", "kernel_image_bytes",
        "pgdat_size", "node_data_roundup",
    }
    kw: dict[str, Any] = {}
    for k, v in d.items():
        if k in ints:
            kw[k] = _int(v)
        elif k in ("max_physmem_bits_l5", "subsection_shift"):
            kw[k] = None if v in (0, "none") else _int(v)
        elif k in ("section_flags", "zone_names"):
            kw[k] = tuple(v)
        else:
            kw[k] = v
    kw["models"] = models
    kw["hotplug"] = hotplug
    kw["buddy"] = buddy
    return Era(**kw)


# ---------------------------------------------------------------------- what-if variants of an era

#: struct page sizes a what-if may ask for: multiples of 8 (the kernel's struct page holds unsigned
#: longs and pointers) up to one cache line pair
STRUCT_PAGE_SIZES = range(8, 129, 8)


def what_if(era: Era, *, struct_page_size: int | None = None, flatmem: bool = False,
            constant_layout: bool = False) -> Era:
    """A copy of ``era`` with experiment overrides (the era's name, constants and maps are kept).

    * ``struct_page_size``: ``sizeof(struct page)`` (56 in 2.6.x, 64 with HAVE_ALIGNED_STRUCT_PAGE);
      every memmap size, ``pfn_to_page`` offset and the KASLR vmemmap region follow it.
    * ``flatmem``: FLATMEM buildable on non-NUMA machines (x86-64 lost ``ARCH_FLATMEM_ENABLE`` in
      2.6.26: arch/x86/Kconfig keeps it for X86_32 only), ``mem_map`` from the era's boot allocator.
    * ``constant_layout``: a build without CONFIG_DYNAMIC_MEMORY_LAYOUT (arch/x86/Kconfig @ 6.1: it is
      selected only by RANDOMIZE_MEMORY and X86_5LEVEL), so ``__PAGE_OFFSET``/``VMEMMAP_START`` are the
      constants ``__PAGE_OFFSET_BASE_L4``/``__VMEMMAP_BASE_L4`` (page_64_types.h, pgtable_64_types.h)
      and no conversion loads ``page_offset_base``/``vmemmap_base``. 4-level paging only, no KASLR.
    """
    import dataclasses

    notes = list(era.what_ifs)
    kw: dict[str, Any] = {}
    if struct_page_size is not None:
        if struct_page_size not in STRUCT_PAGE_SIZES:
            raise InputError(f"struct page size {struct_page_size} must be a multiple of 8 from 8 to 128 bytes")
        kw["struct_page_size"] = struct_page_size
        notes.append(f"sizeof(struct page) = {struct_page_size}")
    if flatmem:
        models = dict(era.models)
        models["flatmem"] = ModelRule(True, numa="never", what_if=True,
                                      why="what-if: FLATMEM on x86-64 (ARCH_FLATMEM_ENABLE is X86_32 only after 2.6.25)")
        kw["models"] = models
        notes.append("FLATMEM allowed (non-NUMA)")
    if constant_layout:
        kw["dynamic_memory_layout"] = False
        notes.append("CONFIG_DYNAMIC_MEMORY_LAYOUT=n (constant vmemmap, 4-level, no KASLR)")
    return dataclasses.replace(era, what_ifs=tuple(notes), **kw)


# ---------------------------------------------------------------------- which era is this kernel?

#: last minor release of each closed major series, to place a release on one line (2.6 counts by its
#: third number): 2.6.0-2.6.39, 3.0-3.19, 4.0-4.20, 5.0-5.19, then 6.x
_LAST_MINOR = {3: 19, 4: 20, 5: 19}


def parse_release(text: str) -> tuple[int, ...] | None:
    """The version numbers at the start of a kernel release or package version:
    ``6.12.117+deb12-cloud-amd64`` → (6, 12, 117); ``6.1.0-56-cloud-amd64`` → (6, 1, 0); ``2.6.24-1`` → (2, 6, 24)."""
    import re

    m = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)


def _ordinal(v: tuple[int, ...]) -> int:
    """A release's position on one line of kernel releases (2.6.N → N; 3.0 → 40; ...)."""
    if v[:2] == (2, 6):
        return v[2] if len(v) > 2 else 0
    if v[0] < 3:
        return 0
    pos = 40  # 3.0 follows 2.6.39
    for major in range(3, v[0]):
        pos += _LAST_MINOR.get(major, 19) + 1
    return pos + v[1]


def _series(v: tuple[int, ...]) -> tuple[int, ...]:
    """The release series an era is named after: (2, 6, N) for 2.6.x, else (major, minor)."""
    return v[:3] if v[:2] == (2, 6) else v[:2]


def era_for_release(release: str) -> tuple[str, str | None]:
    """The era modelling a kernel release: ``(name, note)``.

    A release of an era's series (6.1.x → ``6.1``, 6.12.x → ``6.12``) maps to it and ``note`` is None;
    any other release gets the nearest era on the release line (ties: the older era) and a note naming
    the era used; so does a text with no version at all (the newest era)."""
    names = era_names()
    v = parse_release(release)
    if v is None:
        return names[-1], (f"kernel release {release!r} not understood: modelled with era {names[-1]} "
                           f"(the newest era)")
    for name in names:
        if "-" not in name and _series(_version_key(name)) == _series(v):
            return name, None
    pos = _ordinal(v)
    best = min(names, key=lambda n: (abs(_ordinal(_version_key(n)) - pos), _ordinal(_version_key(n))))
    return best, (f"kernel {release} has no era of its own: modelled with the nearest era, {best} "
                  f"(eras: {', '.join(names)})")
