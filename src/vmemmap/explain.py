"""``vmemmap explain``: one conversion, step by step, for a newcomer.

For ``pfn`` (``pfn_to_page``), ``page`` (``page_to_pfn``) and ``virt`` (``virt_to_page``) on a booted
kernel this says, in numbered steps:

1. which kernel macro runs and where it is defined (include/asm-generic/memory_model.h for every
   model; ``__nr_to_section``/``__section_mem_map_addr`` in include/linux/mmzone.h for SPARSEMEM;
   ``phys_to_nid``/``memnodemap`` in include/asm-x86_64/mmzone.h for DISCONTIGMEM; ``__pa`` for
   ``virt_to_page``), with the era's facts that decide its shape (``vmemmap`` a constant or the
   ``vmemmap_base`` variable, ``mem_section`` an array or a pointer, the flag mask...);
2. every load the model's code executed (address, what, value read) and how the MMU translated that
   address (each page-table level: index, entry, and the leaf's page size);
3. the arithmetic that gives the result, with the numbers just loaded, and the result's own walk;
4. with a CPU preset, the cost simulator's narration (:class:`vmemmap.cost.sim.ScalarSim` ``explain``)
   of the TLBs, page walk and caches for those accesses, cold.

Nothing is asserted: the loads are the ones :class:`vmemmap.models.base.MemoryModel` recorded; the
values are read back from the simulated memory; the walks are :meth:`PageTables.walk`. ``virt`` runs
``__pa`` and ``__pfn_to_page`` separately so each load is shown under the macro that made it; their
concatenation equals the loads of ``virt_to_page`` (tests/test_explain.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vmemmap.errors import InputError, PageFault
from vmemmap.kernel import Kernel
from vmemmap.kernel_memory import Load

PAGE_SHIFT = 12
MEMORY_MODEL_H = "include/asm-generic/memory_model.h"
MMZONE_H = "include/linux/mmzone.h"

#: Per model (DESIGN.md contract-6 names): the CONFIG symbol, the idea in one sentence, and the
#: ``__pfn_to_page``/``__page_to_pfn`` bodies as include/asm-generic/memory_model.h writes them
#: (v2.6.21 for FLATMEM/DISCONTIGMEM; the SPARSEMEM and SPARSEMEM_VMEMMAP bodies are the same text
#: from v2.6.24 to 6.12).
MODEL_CODE: dict[str, dict[str, str]] = {
    "flatmem": {
        "config": "CONFIG_FLATMEM",
        "idea": "one array, mem_map, holds a struct page for every pfn from ARCH_PFN_OFFSET (0 on x86-64) to "
                "end_pfn, holes included; mem_map is a variable, so the code loads it first",
        "pfn_to_page": "#define __pfn_to_page(pfn)  (mem_map + ((pfn) - ARCH_PFN_OFFSET))",
        "page_to_pfn": "#define __page_to_pfn(page) ((unsigned long)((page) - mem_map) + ARCH_PFN_OFFSET)",
    },
    "discontigmem": {
        "config": "CONFIG_DISCONTIGMEM",
        "idea": "every NUMA node has its own struct page array (NODE_DATA(nid)->node_mem_map); a pfn's node "
                "comes from the memnodemap hash table: memnodemap[(pfn << PAGE_SHIFT) >> memnode_shift] "
                "(phys_to_nid, include/asm-x86_64/mmzone.h)",
        "pfn_to_page": "#define __pfn_to_page(pfn) ({ unsigned long __pfn = (pfn); "
                       "unsigned long __nid = arch_pfn_to_nid(__pfn); "
                       "NODE_DATA(__nid)->node_mem_map + arch_local_page_offset(__pfn, __nid); })",
        "page_to_pfn": "#define __page_to_pfn(pg) ({ struct page *__pg = (pg); "
                       "struct pglist_data *__pgdat = NODE_DATA(page_to_nid(__pg)); "
                       "(unsigned long)(__pg - __pgdat->node_mem_map) + __pgdat->node_start_pfn; })",
    },
    "sparsemem": {
        "config": "CONFIG_SPARSEMEM (SPARSEMEM_STATIC)",
        "idea": "memory is cut into sections; each present section's struct pages are a separate array, found "
                "through the mem_section table; the pointer stored there is pre-biased by the section's "
                "first pfn (sparse_encode_mem_map, mm/sparse.c) so adding the absolute pfn gives the struct page",
        "pfn_to_page": "#define __pfn_to_page(pfn) ({ unsigned long __pfn = (pfn); "
                       "struct mem_section *__sec = __pfn_to_section(__pfn); "
                       "__section_mem_map_addr(__sec) + __pfn; })",
        "page_to_pfn": "#define __page_to_pfn(pg) ({ const struct page *__pg = (pg); "
                       "int __sec = page_to_section(__pg); "
                       "(unsigned long)(__pg - __section_mem_map_addr(__nr_to_section(__sec))); })",
    },
    "vmemmap": {
        "config": "CONFIG_SPARSEMEM_VMEMMAP",
        "idea": "all struct pages form one virtually contiguous array at vmemmap; only the parts that describe "
                "present memory are backed, by the page tables (vmemmap_populate, arch/x86/mm/init_64.c), so "
                "the conversion is plain pointer arithmetic",
        "pfn_to_page": "#define __pfn_to_page(pfn)  (vmemmap + (pfn))",
        "page_to_pfn": "#define __page_to_pfn(page) (unsigned long)((page) - vmemmap)",
    },
}
MODEL_CODE["sparsemem-extreme"] = dict(MODEL_CODE["sparsemem"], config="CONFIG_SPARSEMEM_EXTREME")
MODEL_CODE["vmemmap-4k"] = dict(MODEL_CODE["vmemmap"], config="CONFIG_SPARSEMEM_VMEMMAP (base-page vmemmap)")

#: What each recorded load reads, for a newcomer (keys are the ``Load.what`` strings the models use).
LOAD_GLOSS: dict[str, str] = {
    "vmemmap_base": "the variable holding where the vmemmap array starts (the dynamic memory layout: KASLR or "
                    "5-level paging can move it at boot; arch/x86/kernel/head64.c)",
    "page_offset_base": "the variable holding where the direct map starts (PAGE_OFFSET with the dynamic layout)",
    "phys_base": "the variable holding how far the relocatable kernel image was moved from where it was linked",
    "mem_map": "the global pointer to the one struct page array",
    "end_pfn": "the end of RAM, for pfn_valid",
    "mem_section": "the pointer to the root array of the section table (struct mem_section **, 4.15+)",
    "mem_section[root]": "one root: the pointer to a page of struct mem_section entries (SPARSEMEM_EXTREME)",
    "ms->section_mem_map": "the section's word: the encoded memmap pointer with flag bits in its low bits",
    "ms->usage": "the section's usage map pointer (sub-section bitmap, 5.3+)",
    "usage->subsection_map": "which 2 MiB sub-sections of the section are present",
    "page->flags": "the struct page's flags word: section, node and zone numbers live in its top bits",
    "memnode_shift": "how many address bits one memnodemap slot covers",
    "memnodemap": "the pointer to the memnodemap byte array (phys >> shift -> node id)",
    "memnodemap[addr >> shift]": "the node id of this physical address",
    "node_data[nid]": "NODE_DATA(nid): the node's pg_data_t",
    "pgdat->node_mem_map": "the node's struct page array",
    "pgdat->node_start_pfn": "the node's first pfn",
    "pgdat->node_spanned_pages": "how many pfns the node spans",
    "num_physpages": "the number of physical pages, for pfn_valid",
}

_SIZE_NAME = {12: "4 KiB", 21: "2 MiB", 30: "1 GiB"}


def _hx(v: int) -> str:
    return f"{v:#x}"


# ---------------------------------------------------------------------- the MMU's view

def mmu_walk(k: Kernel, vaddr: int) -> dict[str, Any]:
    """How the MMU translates ``vaddr`` in the booted kernel's page tables: every level read."""
    w = k.tables.walk(vaddr)
    levels = []
    for s in w.steps:
        levels.append({"level": s.level, "index": s.index, "entry_phys": _hx(s.entry_phys), "entry": _hx(s.entry)})
    out: dict[str, Any] = {"vaddr": _hx(vaddr), "levels": levels}
    if w.phys is None:
        out.update(phys=None, page_size=None, leaf=None)
    else:
        out.update(phys=_hx(w.phys), page_size=w.page_size, leaf=w.leaf_level)
    return out


def walk_lines(walk: dict[str, Any]) -> list[str]:
    """The walk as sentences: one per level, then where it lands."""
    lines = []
    n = len(walk["levels"])
    for i, lv in enumerate(walk["levels"]):
        entry = int(lv["entry"], 16)
        head = f"{lv['level']}[{lv['index']}] at phys {lv['entry_phys']} = {lv['entry']}"
        if i < n - 1:
            lines.append(f"{head} -> next table at phys {entry & 0x000F_FFFF_FFFF_F000:#x}")
        elif walk["phys"] is None:
            lines.append(f"{head}: not present -> page fault")
        else:
            size = walk["page_size"]
            name = _SIZE_NAME.get(size.bit_length() - 1, f"{size} B")
            kind = "a huge page (PSE bit set)" if lv["level"] in ("pud", "pmd") else "a page"
            lines.append(f"{head}: leaf, {kind} of {name} -> phys {walk['phys']}")
    return lines


# ---------------------------------------------------------------------- steps

def _step(title: str, text: list[str], **data: Any) -> dict[str, Any]:
    return {"title": title, "text": text, **data}


def _load_step(k: Kernel, ld: Load) -> dict[str, Any]:
    value = k.mem.peek(ld.vaddr, ld.size)
    walk = mmu_walk(k, ld.vaddr)
    gloss = LOAD_GLOSS.get(ld.what)
    text = [f"read {ld.size} bytes at {ld.vaddr:#x}: {ld.what} = {value:#x}"]
    if gloss:
        text.append(f"({gloss})")
    text.append("the MMU translates the address:")
    text += ["  " + ln for ln in walk_lines(walk)]
    return _step(f"load {ld.what}", text, load={"what": ld.what, "vaddr": _hx(ld.vaddr), "size": ld.size,
                                                "value": _hx(value)}, walk=walk)


def _values(k: Kernel, loads: tuple[Load, ...] | list[Load]) -> dict[str, int]:
    """The value each load read, by its ``what`` (the last one wins: a name repeats only for loops)."""
    return {ld.what: k.mem.peek(ld.vaddr, ld.size) for ld in loads}


def _macro_step(k: Kernel, op: str) -> dict[str, Any]:
    model = k.model_name
    code = MODEL_CODE[model]
    era = k.era
    m = k.model
    text = [f"{op}() is {'__' + op}() under {code['config']}, defined in {MEMORY_MODEL_H}:",
            f"  {code[op]}",
            f"the idea: {code['idea']}."]
    facts: dict[str, Any] = {"macro": f"__{op}", "source": MEMORY_MODEL_H, "definition": code[op],
                             "config": code["config"]}
    if model.startswith("vmemmap"):
        if getattr(m, "constant", False):
            text.append(f"in {era.name} vmemmap is a constant, (struct page *){m.base:#x} (VMEMMAP_START): "
                        f"no load is needed to find the array")
        else:
            text.append(f"in {era.name} vmemmap is (struct page *)vmemmap_base, a variable "
                        f"(CONFIG_DYNAMIC_MEMORY_LAYOUT): the code must load it")
        facts["vmemmap_is_constant"] = bool(getattr(m, "constant", False))
    elif model.startswith("sparsemem"):
        st = m.sections
        sps = era.section_size_bits
        text.append(f"helpers ({MMZONE_H}): __pfn_to_section(pfn) = __nr_to_section(pfn >> PFN_SECTION_SHIFT), "
                    f"PFN_SECTION_SHIFT = {era.pfn_section_shift} (SECTION_SIZE_BITS {sps} - PAGE_SHIFT 12)")
        if st.extreme:
            kind = ("struct mem_section **mem_section, allocated at boot" if era.mem_section_is_pointer
                    else "a static array of root pointers")
            text.append(f"__nr_to_section(nr) = &mem_section[nr / SECTIONS_PER_ROOT][nr % SECTIONS_PER_ROOT], "
                        f"SECTIONS_PER_ROOT = {st.per_root}; in {era.name} mem_section is {kind}")
        else:
            text.append("__nr_to_section(nr) = &mem_section[nr][0]: a static array, so finding the section is "
                        "address arithmetic, no load")
        text.append(f"__section_mem_map_addr(sec) = sec->section_mem_map & SECTION_MAP_MASK "
                    f"({era.section_map_mask:#x}: the low {era.section_map_last_bit} bits are flags "
                    f"{', '.join(era.section_flags)})")
        facts.update(sections_per_root=st.per_root, section_map_mask=_hx(era.section_map_mask))
    elif model == "discontigmem":
        text.append("arch_pfn_to_nid(pfn) = phys_to_nid(pfn << PAGE_SHIFT) = memnodemap[addr >> memnode_shift]; "
                    "arch_local_page_offset(pfn, nid) = pfn - NODE_DATA(nid)->node_start_pfn "
                    "(include/asm-x86_64/mmzone.h, arch/x86_64/mm/numa.c)")
    text.append(f"sizeof(struct page) is {era.struct_page_size} bytes in {era.name}, so pointer arithmetic on "
                f"struct page * moves in steps of {era.struct_page_size}")
    return _step(f"the kernel code: __{op}", text, **facts)


def _pa_step(k: Kernel, vaddr: int, loads: list[Load]) -> dict[str, Any]:
    lay = k.layout
    image = vaddr >= lay.start_kernel_map
    text = ["virt_to_page(kaddr) = pfn_to_page(__pa(kaddr) >> PAGE_SHIFT) (include/asm-x86_64/page.h in 2.6.21, "
            "arch/x86/include/asm/page.h from 2.6.28)"]
    if image:
        if k.era.phys_base_variable:
            text.append(f"{vaddr:#x} is a kernel-image address (>= __START_KERNEL_map {lay.start_kernel_map:#x}): "
                        "__pa = kaddr - __START_KERNEL_map + phys_base (the relocatable kernel's offset, a variable)")
        else:
            text.append(f"{vaddr:#x} is a kernel-image address: __pa = kaddr - __START_KERNEL_map")
    elif lay.dynamic_layout:
        text.append(f"{vaddr:#x} is a direct-map address: __pa = kaddr - PAGE_OFFSET, and PAGE_OFFSET is the "
                    "variable page_offset_base (dynamic memory layout), so it is loaded")
    else:
        text.append(f"{vaddr:#x} is a direct-map address: __pa = kaddr - PAGE_OFFSET, PAGE_OFFSET the constant "
                    f"{lay.page_offset:#x}: no load")
    return _step("the kernel code: virt_to_page and __pa", text, macro="virt_to_page",
                 definition="pfn_to_page(__pa(kaddr) >> PAGE_SHIFT)", pa_loads=len(loads))


def _arith_pfn_to_page(k: Kernel, pfn: int, page: int, vals: dict[str, int]) -> list[str]:
    """The sum ``__pfn_to_page`` made, with the numbers just loaded."""
    sp = k.era.struct_page_size
    name = k.model_name
    m = k.model
    if name.startswith("vmemmap"):
        base = m.base if getattr(m, "constant", False) else vals["vmemmap_base"]
        return [f"vmemmap + pfn = {base:#x} + {pfn:#x} * {sp} = {page:#x}"]
    if name == "flatmem":
        return [f"mem_map + (pfn - 0) = {vals['mem_map']:#x} + {pfn:#x} * {sp} = {page:#x}"]
    if name == "discontigmem":
        shift = vals["memnode_shift"]
        nid = vals["memnodemap[addr >> shift]"]
        start = vals["pgdat->node_start_pfn"]
        return [f"phys {pfn << PAGE_SHIFT:#x} >> memnode_shift {shift} = slot {(pfn << PAGE_SHIFT) >> shift}: "
                f"node {nid}",
                f"node_mem_map + (pfn - node_start_pfn) = {vals['pgdat->node_mem_map']:#x} + "
                f"({pfn:#x} - {start:#x}) * {sp} = {page:#x}"]
    # SPARSEMEM
    era = k.era
    nr = pfn >> era.pfn_section_shift
    st = m.sections
    word = vals["ms->section_mem_map"]
    dec = word & era.section_map_mask
    lines = [f"section number = pfn >> {era.pfn_section_shift} = {nr}"]
    if st.extreme:
        lines.append(f"root = {nr} / {st.per_root} = {nr // st.per_root}, entry {nr % st.per_root} of that root")
    lines += [f"section_mem_map = {word:#x}: flags {', '.join(st.flag_names(word)) or 'none'}; "
              f"& SECTION_MAP_MASK = {dec:#x} (= the section's memmap - its first pfn * {sp})",
              f"{dec:#x} + pfn {pfn:#x} * {sp} = {page:#x}"]
    return lines


def _arith_page_to_pfn(k: Kernel, page: int, pfn: int, vals: dict[str, int]) -> list[str]:
    sp = k.era.struct_page_size
    name = k.model_name
    m = k.model
    if name.startswith("vmemmap"):
        base = m.base if getattr(m, "constant", False) else vals["vmemmap_base"]
        return [f"(page - vmemmap) / sizeof(struct page) = ({page:#x} - {base:#x}) / {sp} = {pfn:#x}"]
    if name == "flatmem":
        return [f"(page - mem_map) / {sp} + 0 = ({page:#x} - {vals['mem_map']:#x}) / {sp} = {pfn:#x}"]
    pf = k.page_flags
    flags = vals["page->flags"]
    if name == "discontigmem":
        nid = (flags >> pf.nodes_pgshift) & ((1 << pf.nodes_width) - 1) if pf.nodes_width else 0
        return [f"page_to_nid: page->flags {flags:#x} >> NODES_PGSHIFT {pf.nodes_pgshift} & "
                f"{(1 << pf.nodes_width) - 1:#x} = node {nid}",
                f"(page - node_mem_map) / {sp} + node_start_pfn = ({page:#x} - {vals['pgdat->node_mem_map']:#x}) "
                f"/ {sp} + {vals['pgdat->node_start_pfn']:#x} = {pfn:#x}"]
    nr = (flags >> pf.sections_pgshift) & ((1 << pf.sections_width) - 1)
    word = vals["ms->section_mem_map"]
    dec = word & k.era.section_map_mask
    return [f"page_to_section: page->flags {flags:#x} >> SECTIONS_PGSHIFT {pf.sections_pgshift} & "
            f"{(1 << pf.sections_width) - 1:#x} = section {nr}",
            f"section_mem_map = {word:#x} & SECTION_MAP_MASK = {dec:#x}",
            f"(page - {dec:#x}) / {sp} = ({page:#x} - {dec:#x}) / {sp} = {pfn:#x}"]


# ---------------------------------------------------------------------- validation

def _check_pfn(k: Kernel, pfn: int) -> None:
    if pfn >= k.max_arch_pfn:
        raise InputError(f"pfn {pfn:#x} is beyond MAX_PHYSMEM_BITS ({k.era.max_physmem_bits(k.la57)} bits): "
                         f"no struct page can exist for it")
    if not k.model.pfn_valid(pfn).value:
        raise InputError(f"pfn {pfn:#x} (phys {pfn << PAGE_SHIFT:#x}) has no struct page in this kernel: "
                         f"pfn_valid() is false ({_ram_hint(k)})")


def _ram_hint(k: Kernel) -> str:
    rs = k.ram_pfn_ranges()
    if not rs:
        return "no RAM"
    shown = ", ".join(f"{s:#x}-{e - 1:#x}" for s, e, _ in rs[:4])
    return f"RAM pfns: {shown}{', ...' if len(rs) > 4 else ''}"


def _check_page(k: Kernel, page: int) -> None:
    sp = k.era.struct_page_size
    for p in k.model.memmap_pieces():
        end = p.vaddr + (p.end_pfn - p.start_pfn) * sp
        if p.vaddr <= page < end:
            if (page - p.vaddr) % sp:
                raise InputError(f"{page:#x} is inside the memmap but not at the start of a struct page "
                                 f"({sp} bytes each): try {page - (page - p.vaddr) % sp:#x}")
            return
    pieces = k.model.memmap_pieces()
    where = f"{pieces[0].vaddr:#x}..." if pieces else "nowhere"
    raise InputError(f"{page:#x} is not a struct page address in this kernel's memmap "
                     f"({k.model_name}; the memmap starts at {where})")


def _check_virt(k: Kernel, vaddr: int) -> None:
    lay = k.layout
    dm_end = lay.page_offset + (k.max_pfn << PAGE_SHIFT)
    in_direct = lay.page_offset <= vaddr < dm_end
    in_image = lay.start_kernel_map <= vaddr < k.image_end
    if not (in_direct or in_image):
        raise InputError(f"{vaddr:#x} is not a direct-map or kernel-image address: virt_to_page() is only valid "
                         f"there (direct map {lay.page_offset:#x}-{dm_end - 1:#x})")
    try:
        k.tables.translate(vaddr)
    except (PageFault, InputError):
        raise InputError(f"{vaddr:#x} is in the direct map but not mapped (a hole in RAM)") from None


# ---------------------------------------------------------------------- the explanation

def explain(k: Kernel, kind: str, value: int, cpu: Any = None) -> dict[str, Any]:
    """The numbered explanation of one conversion (``kind``: pfn, page or virt) as data.

    ``cpu`` (a :class:`vmemmap.cost.cpu.Cpu`) adds the simulator's narration of the accesses.
    Bad values raise :class:`InputError` with one line.
    """
    m = k.model
    steps: list[dict[str, Any]] = []
    if kind == "pfn":
        _check_pfn(k, value)
        op, pfn = "pfn_to_page", value
        steps.append(_macro_step(k, op))
        res = m.pfn_to_page(pfn)
        loads = list(res.loads)
        page = res.value
        steps += [_load_step(k, ld) for ld in loads]
        arith = _arith_pfn_to_page(k, pfn, page, _values(k, loads))

        def run() -> int:
            return m._pfn_to_page(pfn)
    elif kind == "virt":
        _check_virt(k, value)
        op = "virt_to_page"
        with k.mem.record() as pa_rec:
            phys = k.pa(value)
        pfn = phys >> PAGE_SHIFT
        _check_pfn(k, pfn)
        steps.append(_pa_step(k, value, list(pa_rec)))
        steps += [_load_step(k, ld) for ld in pa_rec]
        base = "kaddr - __START_KERNEL_map + phys_base" if value >= k.layout.start_kernel_map else "kaddr - PAGE_OFFSET"
        steps.append(_step("__pa done", [f"__pa({value:#x}) = {base} = {phys:#x}; >> PAGE_SHIFT = pfn {pfn:#x}"],
                           phys=_hx(phys), pfn=_hx(pfn)))
        steps.append(_macro_step(k, "pfn_to_page"))
        res = m.pfn_to_page(pfn)
        loads = list(pa_rec) + list(res.loads)
        page = res.value
        steps += [_load_step(k, ld) for ld in res.loads]
        arith = _arith_pfn_to_page(k, pfn, page, _values(k, res.loads))

        def run() -> int:
            return m._pfn_to_page(k.pa(value) >> PAGE_SHIFT)
    elif kind == "page":
        _check_page(k, value)
        op, page = "page_to_pfn", value
        steps.append(_macro_step(k, op))
        res = m.page_to_pfn(page)
        loads = list(res.loads)
        pfn = res.value
        steps += [_load_step(k, ld) for ld in loads]
        arith = _arith_page_to_pfn(k, page, pfn, _values(k, loads))

        def run() -> int:
            m._page_to_pfn(page)
            return page
    else:
        raise InputError(f"explain takes pfn, page or virt, not {kind!r}")

    if not loads:
        arith.insert(0, "no memory was read: the conversion is arithmetic on constants")
    steps.append(_step("the arithmetic", arith))
    valid = bool(m.pfn_valid(pfn).value)
    result_walk = mmu_walk(k, page)
    facts = {"pfn": _hx(pfn), "phys": _hx(pfn << PAGE_SHIFT), "page": _hx(page), "section": m.section_of(pfn),
             "nid": k.nid_of_pfn(pfn), "zone": _zone_name(k, pfn), "ram": k.is_ram_pfn(pfn), "pfn_valid": valid}
    text = ([f"struct page {page:#x} describes pfn {pfn:#x} (physical {pfn << PAGE_SHIFT:#x})"]
            if kind != "page" else [f"struct page {page:#x} is pfn {pfn:#x} (physical {pfn << PAGE_SHIFT:#x})"])
    where = [f"node {facts['nid']}" if facts["nid"] is not None else None,
             f"zone {facts['zone']}" if facts["zone"] else None,
             f"section {facts['section']}" if facts["section"] is not None else None]
    if any(where):
        text.append(", ".join(w for w in where if w))
    if not facts["ram"]:
        text.append("this pfn is not usable RAM (a hole or reserved range) but the model still has a struct page for it")
    text.append(f"{len(loads)} kernel load(s) in all; the struct page itself is mapped like this:")
    text += ["  " + ln for ln in walk_lines(result_walk)]
    steps.append(_step("the result", text, result=facts, walk=result_walk))
    out: dict[str, Any] = {
        "machine": k.machine.name, "era": k.era.name, "model": k.model_name, "config": MODEL_CODE[k.model_name]["config"],
        "op": op, "input": _hx(value), "value": _hx(page if kind != "page" else pfn),
        "loads": [dict(ld.to_json(), value=_hx(k.mem.peek(ld.vaddr, ld.size))) for ld in loads],
        "steps": [dict(s, n=i + 1) for i, s in enumerate(steps)],
    }
    if cpu is not None:
        cost = cost_narration(k, cpu, run, include_page=kind != "page")
        out["steps"].append(dict(cost, n=len(out["steps"]) + 1))
        out["cost"] = {key: cost[key] for key in ("cpu", "cycles", "counters")}
    return out


def _zone_name(k: Kernel, pfn: int) -> str | None:
    z = k.zone_of(pfn)
    return z.name if z is not None else None


def cost_narration(k: Kernel, cpu: Any, run: Callable[[], int], include_page: bool = True) -> dict[str, Any]:
    """The accesses of one operation through ``cpu``'s TLBs, page walk and caches, cold, narrated by
    :class:`vmemmap.cost.sim.ScalarSim` (its ``explain`` callback)."""
    from vmemmap.cost.sim import FIELD_NAMES, F_CYC, ScalarSim
    from vmemmap.cost.trace import from_accesses, op_accesses

    acc = op_accesses(k, run)
    if not include_page:
        acc = acc[:-1]  # page_to_pfn does not touch the struct page it is given
    title = f"what it costs on {cpu.name} (cold TLBs and caches)"
    if not acc:
        return _step(title, ["no memory access: nothing for the TLBs or caches to do (0 cycles)"],
                     cpu=cpu.name, cycles=0, counters={}, narration=[])
    lines: list[str] = []
    row = ScalarSim(cpu, k.tables, explain=lines.append).run(from_accesses([acc]))[0]
    counters = {n: int(v) for n, v in zip(FIELD_NAMES, row)}
    names = [f"[{i}] {a.what} at {a.vaddr:#x} (waits for {', '.join(str(p) for p in _bits(a.dep)) or 'nothing'})"
             for i, a in enumerate(acc)]
    text = ["the accesses, in program order (an access waits for the loads its address comes from):"]
    text += ["  " + n for n in names]
    text.append("the simulator, access by access:")
    text += ["  " + ln for ln in lines if not ln.startswith("-- op")]
    text.append(f"total: {int(row[F_CYC])} cycles on the critical path")
    return _step(title, text, cpu=cpu.name, cycles=int(row[F_CYC]), counters=counters, narration=lines)


def _bits(x: int) -> list[int]:
    return [i for i in range(x.bit_length()) if x >> i & 1]
