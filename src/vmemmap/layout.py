"""The kernel virtual address map of an era (DESIGN.md contract 1).

Data: one file per era in ``eras/maps/<era>.toml`` holding the rows of that era's
``Documentation/x86_64/mm.txt`` / ``Documentation/x86/x86_64/mm.txt`` / ``Documentation/arch/x86/x86_64/mm.rst``
exactly as published (kernel-reference.md section 3.4), the layout constants of
``page_64_types.h`` / ``pgtable_64_types.h`` (section 3.3), the KASLR rules of ``arch/x86/mm/kaslr.c``
(section 3.5) and the ``address_markers[]`` of ``arch/x86/mm/dump_pagetables.c``.

KASLR placement follows ``kernel_randomize_memory()`` step by step (region sizes, entropy split
``remain_entropy / (ARRAY_SIZE - i)``, ``rand % (entropy + 1)`` masked to PUD (or P4D in 4.20 5-level),
``vaddr`` advanced by the region size then rounded up), but the random numbers come from Python's
``random.Random(kaslr_seed)`` instead of ``prandom`` seeded by ``kaslr_get_random_long("Memory")``: a seed
gives a layout the kernel *could* produce, not the one a real boot with that seed would.
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from vmemmap.eras import Era, load_era
from vmemmap.errors import InputError, VmemmapError

__all__ = [
    "Region",
    "Layout",
    "KaslrPlan",
    "build_layout",
    "canonical",
    "pgd_index",
    "describe",
    "load_map",
    "kaslr_plan",
    "kaslr_bases_feasible",
]

TB_SHIFT = 40
TB = 1 << TB_SHIFT
PAGE_SHIFT = 12
PUD_SIZE = 1 << 30  # 1 GiB
P4D_SIZE = 1 << 39  # 512 GiB (5-level paging)
U64 = (1 << 64) - 1


# --------------------------------------------------------------------------------------------------
# value types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """One row of the address map: ``[start, end]`` with ``end`` inclusive."""

    name: str
    start: int
    end: int
    description: str
    size_text: str
    hole: bool

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def __contains__(self, addr: object) -> bool:
        return isinstance(addr, int) and self.start <= addr <= self.end


@dataclass(frozen=True)
class Layout:
    """The kernel virtual address map of one era, paging mode and (optional) KASLR seed."""

    era: str
    la57: bool
    levels: int
    kaslr_seed: int | None
    regions: tuple[Region, ...]
    page_offset: int
    vmalloc_start: int
    vmalloc_end: int
    vmemmap_base: int
    vmemmap_end: int
    vmemmap_is_constant: bool
    start_kernel_map: int
    modules_vaddr: int
    modules_end: int
    physmem_end: int | None
    markers: tuple[tuple[int, str], ...]
    # extra facts used by validate() and by callers that need them
    max_physmem_bits: int = 46
    struct_page_size: int = 64
    max_pfn: int | None = None
    dynamic_layout: bool = False
    kaslr_fixed: bool = False  # KASLR bases given as found (a capture's KCORE values), not from a seed

    def region(self, name: str) -> Region:
        """The region called ``name`` (``'vmemmap'``, ``'direct-map'``...); KeyError if absent."""
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(f"no region {name!r} in the {self.era} layout")

    @property
    def direct_map(self) -> Region:
        return self.region("direct-map")

    @property
    def vmemmap(self) -> Region:
        return self.region("vmemmap")

    def validate(self) -> None:
        """Raise :class:`VmemmapError` unless the map is consistent.

        Checks: regions in address order and disjoint; every region canonical for the paging mode; a
        ``vmemmap`` region large enough for the struct pages of every frame the direct map can reach
        (``min(1 << MAX_PHYSMEM_BITS, direct-map size) / 4096 * sizeof(struct page)``: with KASLR the
        direct-map region, i.e. ``physmem_end``, bounds memory); a direct map large enough for that memory
        and for ``max_pfn`` when known. The vmemmap check fails for 4.20 KASLR with > ~54 TB of RAM on
        5-level paging: the 1 TB fixed vmemmap region fixed by 00e5a2bbcc31.
        """
        prev: Region | None = None
        for r in self.regions:
            if r.end < r.start:
                raise VmemmapError(f"{self.era}: region {r.name} ends before it starts")
            if not (canonical(r.start, self.la57) and canonical(r.end, self.la57)):
                raise VmemmapError(f"{self.era}: region {r.name} {r.start:#x}-{r.end:#x} is not canonical")
            if prev is not None and r.start <= prev.end:
                raise VmemmapError(
                    f"{self.era}: region {r.name} ({r.start:#x}) overlaps {prev.name} (ends {prev.end:#x})"
                )
            prev = r
        try:
            vm = self.vmemmap
            dm = self.direct_map
        except KeyError as e:
            raise VmemmapError(str(e)) from None
        reachable = min(1 << self.max_physmem_bits, dm.size)
        need = (reachable >> PAGE_SHIFT) * self.struct_page_size
        if vm.size < need:
            raise VmemmapError(
                f"{self.era}: vmemmap region {vm.size:#x} bytes is too small for "
                f"{reachable >> PAGE_SHIFT:#x} struct pages ({need:#x} bytes)"
            )
        if self.vmemmap_end - self.vmemmap_base + 1 < need:
            raise VmemmapError(f"{self.era}: vmemmap window too small")
        if self.kaslr_seed is None and not self.kaslr_fixed and dm.size < (1 << self.max_physmem_bits):
            raise VmemmapError(
                f"{self.era}: direct map ({dm.size:#x} bytes) smaller than MAX_PHYSMEM_BITS {self.max_physmem_bits}"
            )
        if self.max_pfn is not None and dm.size < (self.max_pfn << PAGE_SHIFT):
            raise VmemmapError(
                f"{self.era}: direct map ({dm.size:#x} bytes) too small for max_pfn {self.max_pfn:#x}"
            )

    def to_json(self) -> dict[str, Any]:
        """DESIGN.md contract 1: ``{era, la57, kaslr_seed, regions: [{name, start, end, size, description}]}``."""
        return {
            "era": self.era,
            "la57": self.la57,
            "kaslr_seed": self.kaslr_seed,
            "regions": [
                {
                    "name": r.name,
                    "start": f"{r.start:#x}",
                    "end": f"{r.end:#x}",
                    "size": f"{r.size:#x}",
                    "description": r.description,
                }
                for r in self.regions
            ],
        }


# --------------------------------------------------------------------------------------------------
# address helpers
# --------------------------------------------------------------------------------------------------


def canonical(addr: int, la57: bool = False) -> bool:
    """True when bits 63..47 (4-level) or 63..56 (5-level) of ``addr`` are all equal."""
    if not 0 <= addr <= U64:
        return False
    top = 56 if la57 else 47
    high = addr >> top
    return high == 0 or high == (1 << (64 - top)) - 1


def pgd_index(addr: int, la57: bool = False) -> int:
    """``pgd_index()``: bits 47..39 (4-level, PGDIR_SHIFT 39) or 56..48 (5-level, PGDIR_SHIFT 48)."""
    return (addr >> (48 if la57 else 39)) & 511


def describe(addr: int, layout: Layout) -> Region | None:
    """The region of ``layout`` containing ``addr`` (holes included), or None (unpublished gap)."""
    for r in layout.regions:
        if r.start <= addr <= r.end:
            return r
    return None


# --------------------------------------------------------------------------------------------------
# map data
# --------------------------------------------------------------------------------------------------


@cache
def load_map(era_name: str) -> dict[str, Any]:
    """Read ``eras/maps/<era>.toml`` (package data, works from the editable install and a wheel)."""
    f = resources.files("vmemmap.eras").joinpath("maps", f"{era_name}.toml")
    try:
        text = f.read_text()
    except FileNotFoundError:
        raise InputError(f"no address map for era {era_name!r}") from None
    return tomllib.loads(text)


def _hex(v: Any) -> int:
    return v if isinstance(v, int) else int(str(v), 0)


def _fmt_size(n: int) -> str:
    for unit, shift in (("PB", 50), ("TB", 40), ("GB", 30), ("MB", 20), ("kB", 10)):
        if n >= 1 << shift and n % (1 << (shift - 2)) == 0:
            v = n / (1 << shift)
            return f"{v:g} {unit}"
    return f"{n:#x} bytes"


# --------------------------------------------------------------------------------------------------
# KASLR (arch/x86/mm/kaslr.c kernel_randomize_memory)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KaslrPlan:
    """The deterministic part of ``kernel_randomize_memory()``: where and how big."""

    vaddr_start: int
    vaddr_end: int
    sizes_tb: tuple[int, int, int]  # page_offset_base, vmalloc_base, vmemmap_base regions
    align: int  # PUD_SIZE (or P4D_SIZE: 4.20 with 5-level paging)
    remain_entropy: int


def kaslr_plan(
    era: Era | str,
    la57: bool = False,
    max_pfn: int | None = None,
    padding_tb: int | None = None,
    p2pdma: bool | None = None,
) -> KaslrPlan:
    """Region sizes, range and alignment exactly as ``kernel_randomize_memory()`` computes them.

    ``memory_tb = DIV_ROUND_UP(max_pfn << PAGE_SHIFT, 1 TB) + CONFIG_RANDOMIZE_MEMORY_PHYSICAL_PADDING``;
    region 0 = ``min(max, memory_tb)`` (kept at the maximum with PCI_P2PDMA after 7ffb791423c7);
    region 1 = ``VMALLOC_SIZE_TB``; region 2 = 1 TB (4.20) or
    ``DIV_ROUND_UP((region0 << (40 - PAGE_SHIFT)) * sizeof(struct page), 1 TB)`` (00e5a2bbcc31).
    ``max_pfn=None`` stands for a machine below 1 TiB (``memory_tb`` = 1 + padding).
    """
    e = load_era(era) if isinstance(era, str) else era
    m = load_map(e.name)
    if not m.get("kaslr"):
        raise InputError(f"era {e.name} has no memory KASLR (CONFIG_RANDOMIZE_MEMORY arrived in 4.8)")
    if la57 and not e.la57_supported:
        raise InputError(f"era {e.name} has no 5-level paging")
    mode = m["l5" if la57 else "l4"]
    maxbits = e.max_physmem_bits(la57)
    if padding_tb is None:
        padding_tb = int(m.get("kaslr_padding_tb", 0))
    if not 0 <= padding_tb <= 0x40:
        raise InputError(f"padding_tb must be 0..64 (CONFIG_RANDOMIZE_MEMORY_PHYSICAL_PADDING), not {padding_tb}")
    if p2pdma is None:
        p2pdma = bool(m.get("kaslr_p2pdma", False))
    elif p2pdma and m.get("kaslr_direct_max") == "physical_mask_shift":
        raise InputError(f"era {e.name} predates the PCI_P2PDMA KASLR rule (7ffb791423c7)")
    if m.get("kaslr_direct_max") == "physical_mask_shift":
        max_tb = 1 << (int(m["kaslr_physical_mask_shift"]) - TB_SHIFT)
    else:
        max_tb = 1 << (maxbits - TB_SHIFT)
    mem_bytes = TB if max_pfn is None else (max_pfn << PAGE_SHIFT)
    memory_tb = -(-mem_bytes // TB) + padding_tb
    region0 = max_tb if (p2pdma or memory_tb >= max_tb) else memory_tb
    region1 = int(mode["vmalloc_size_tb"])
    if m.get("kaslr_vmemmap") == "fixed":
        region2 = 1
    else:
        vmemmap_size = (region0 << (TB_SHIFT - PAGE_SHIFT)) * e.struct_page_size
        region2 = -(-vmemmap_size // TB)
    vaddr_start = _hex(mode["page_offset"])
    vaddr_end = _hex(mode["kaslr_vaddr_end"])
    remain = vaddr_end - vaddr_start - (region0 + region1 + region2) * TB
    if remain < 0:
        raise VmemmapError(
            f"{e.name}: KASLR regions ({region0}+{region1}+{region2} TB) exceed the randomisation range"
        )
    align = P4D_SIZE if (la57 and m.get("kaslr_align_l5") == "p4d") else PUD_SIZE
    return KaslrPlan(vaddr_start, vaddr_end, (region0, region1, region2), align, remain)


def _round_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _kaslr_place(plan: KaslrPlan, seed: int) -> tuple[int, int, int]:
    """The placement loop of ``kernel_randomize_memory()`` with a Python PRNG for ``prandom``."""
    rng = random.Random(seed)
    vaddr = plan.vaddr_start
    remain = plan.remain_entropy
    bases: list[int] = []
    n = len(plan.sizes_tb)
    for i, size_tb in enumerate(plan.sizes_tb):
        entropy = remain // (n - i)
        rand = rng.getrandbits(64)  # prandom_bytes_state(&rand_state, &rand, sizeof(rand))
        entropy = (rand % (entropy + 1)) & ~(plan.align - 1) & U64
        vaddr += entropy
        bases.append(vaddr)
        vaddr += size_tb << TB_SHIFT
        vaddr = _round_up(vaddr + 1, plan.align)
        remain -= entropy
    return bases[0], bases[1], bases[2]


def kaslr_bases_feasible(
    era: Era | str,
    page_offset: int,
    vmalloc_base: int,
    vmemmap_base: int,
    la57: bool = False,
    max_pfn: int | None = None,
    padding_tb: int | None = None,
    p2pdma: bool | None = None,
) -> bool:
    """Could ``kernel_randomize_memory()`` have produced these three bases (for some random stream)?"""
    plan = kaslr_plan(era, la57, max_pfn, padding_tb, p2pdma)
    vaddr = plan.vaddr_start
    remain = plan.remain_entropy
    n = 3
    for i, (base, size_tb) in enumerate(zip((page_offset, vmalloc_base, vmemmap_base), plan.sizes_tb)):
        entropy = base - vaddr
        if entropy < 0 or entropy % plan.align or entropy > remain // (n - i):
            return False
        vaddr = _round_up(base + (size_tb << TB_SHIFT) + 1, plan.align)
        remain -= entropy
    return True


# --------------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------------

_RANDOMISED = ("direct-map", "vmalloc", "vmemmap")


def build_layout(
    era: Era | str,
    la57: bool = False,
    kaslr_seed: int | None = None,
    max_pfn: int | None = None,
    padding_tb: int | None = None,
    *,
    p2pdma: bool | None = None,
    kaslr_bases: tuple[int, int, int] | None = None,
) -> Layout:
    """Build (and validate) the address map of ``era``.

    ``la57`` selects the 5-level table (eras with ``la57_supported``); ``kaslr_seed`` randomises
    page_offset_base / vmalloc_base / vmemmap_base (4.20+; arch/x86/mm/kaslr.c), the published rows of
    those three regions moving to the random bases with the KASLR region sizes, and the holes of
    ``[vaddr_start, vaddr_end)`` recomputed around them. ``max_pfn`` and ``padding_tb`` feed the direct-map
    region size; ``p2pdma`` overrides the era's CONFIG_PCI_P2PDMA behaviour (7ffb791423c7).
    ``kaslr_bases`` = (page_offset_base, vmalloc_base, vmemmap_base) places the three randomised regions at
    bases a real KASLR boot chose (e.g. read from /proc/kcore in an oracle capture) instead of drawing them
    from ``kaslr_seed``; the region sizes are ``kernel_randomize_memory``'s as with a seed.
    """
    e = load_era(era) if isinstance(era, str) else era
    m = load_map(e.name)
    if la57 and not e.la57_supported:
        raise InputError(f"era {e.name} has no 5-level paging (la57)")
    if (kaslr_seed is not None or kaslr_bases is not None) and not m.get("kaslr"):
        raise InputError(f"era {e.name} has no memory KASLR (CONFIG_RANDOMIZE_MEMORY arrived in 4.8)")
    maxbits = e.max_physmem_bits(la57)
    if max_pfn is not None and not 0 < max_pfn <= 1 << (maxbits - PAGE_SHIFT):
        raise InputError(f"max_pfn {max_pfn:#x} is outside 1..2^{maxbits - PAGE_SHIFT} (MAX_PHYSMEM_BITS {maxbits})")
    mode = m["l5" if la57 else "l4"]

    fields: dict[str, int] = {
        "page_offset": _hex(mode["page_offset"]),
        "vmalloc_start": _hex(mode["vmalloc_start"]),
        "vmemmap_base": _hex(mode["vmemmap_start"]),
        "start_kernel_map": _hex(mode["start_kernel_map"]),
        "modules_vaddr": _hex(mode["modules_vaddr"]),
        "modules_end": _hex(mode["modules_end"]),
    }
    for k in ("fixaddr_start", "ldt_base", "kasan_start", "kasan_end"):
        if k in mode:
            fields[k] = _hex(mode[k])
    if "vmalloc_end" in mode:
        vmalloc_end = _hex(mode["vmalloc_end"])
    else:
        vmalloc_end = fields["vmalloc_start"] + (int(mode["vmalloc_size_tb"]) << TB_SHIFT) - 1
    vmemmap_end = _hex(mode["vmemmap_end"])

    rows = _published_rows(mode["rows"], fields)
    physmem_end: int | None = ((1 << maxbits) - 1) if m.get("physmem_end") else None

    if kaslr_seed is not None or kaslr_bases is not None:
        plan = kaslr_plan(e, la57, max_pfn, padding_tb, p2pdma)
        b0, b1, b2 = kaslr_bases if kaslr_bases is not None else _kaslr_place(plan, kaslr_seed or 0)
        s0, s1, s2 = (t << TB_SHIFT for t in plan.sizes_tb)
        fields.update(page_offset=b0, vmalloc_start=b1, vmemmap_base=b2)
        vmalloc_end = b1 + s1 - 1
        vmemmap_end = b2 + s2 - 1
        if physmem_end is not None:
            physmem_end = s0 - 1  # __pa_nodebug(vaddr - 1) after region 0
        published = {r.name: r for r in rows}
        inside = [
            Region(n, b, b + s - 1, published[n].description, _fmt_size(s), False)
            for n, b, s in zip(_RANDOMISED, (b0, b1, b2), (s0, s1, s2))
        ]
        kept = [r for r in rows if r.end < plan.vaddr_start or r.start >= plan.vaddr_end]
        holes: list[Region] = []
        cursor = plan.vaddr_start
        for i, r in enumerate(inside + [Region("end", plan.vaddr_end, plan.vaddr_end, "", "", True)]):
            if r.start > cursor:
                holes.append(
                    Region(f"kaslr-hole-{i}", cursor, r.start - 1, "... unused hole (KASLR)", _fmt_size(r.start - cursor), True)
                )
            cursor = r.end + 1
        rows = sorted(kept + inside + holes, key=lambda r: r.start)

    markers: list[tuple[int, str]] = []
    for mk in mode.get("markers", []):
        if mk.get("config"):
            continue  # compiled only with e.g. CONFIG_KASAN, off in the configs we model
        at = str(mk["at"])
        markers.append((fields[at] if at in fields else int(at, 0), str(mk["name"])))

    layout = Layout(
        era=e.name,
        la57=la57,
        levels=5 if la57 else 4,
        kaslr_seed=kaslr_seed,
        regions=tuple(rows),
        page_offset=fields["page_offset"],
        vmalloc_start=fields["vmalloc_start"],
        vmalloc_end=vmalloc_end,
        vmemmap_base=fields["vmemmap_base"],
        vmemmap_end=vmemmap_end,
        vmemmap_is_constant=not bool(m.get("dynamic_layout")),
        start_kernel_map=fields["start_kernel_map"],
        modules_vaddr=fields["modules_vaddr"],
        modules_end=fields["modules_end"],
        physmem_end=physmem_end,
        markers=tuple(markers),
        max_physmem_bits=maxbits,
        struct_page_size=e.struct_page_size,
        max_pfn=max_pfn,
        dynamic_layout=bool(m.get("dynamic_layout")),
        kaslr_fixed=kaslr_bases is not None,
    )
    layout.validate()
    return layout


def _published_rows(raw: list[dict[str, Any]], fields: dict[str, int]) -> list[Region]:
    """Rows in published order; address-less "... unused hole ..." rows span their neighbours' gap."""
    out: list[Region] = []
    pending: list[dict[str, Any]] = []

    def addr(v: Any) -> int:
        s = str(v)
        return fields[s] if s in fields else int(s, 0)

    for r in raw:
        if r.get("noncanonical"):
            continue
        if "start" not in r:
            pending.append(r)
            continue
        start, end = addr(r["start"]), addr(r["end"])
        for p in pending:  # spans from the previous row's end to this row's start
            lo = out[-1].end + 1 if out else 0
            out.append(Region(str(p["name"]), lo, start - 1, str(p["description"]), str(p.get("size", "")), True))
        pending.clear()
        out.append(Region(str(r["name"]), start, end, str(r["description"]), str(r["size"]), bool(r["hole"])))
    if pending:
        raise ValueError("an address-less row cannot end a table")
    return out
