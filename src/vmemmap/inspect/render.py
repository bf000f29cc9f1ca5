"""Text and JSON for ``vmemmap inspect``, in crash's formats where crash has one.

* Sections: crash ``dump_mem_sections()`` (memory.c; columns NR SECTION CODED_MEM_MAP MEM_MAP STATE
  PFN), with :func:`vmemmap.kmem.mkstring` -- the same printf formats as :mod:`vmemmap.kmem` (crash
  @ 489093c2183f), which this module shares.
* ``--vtop``: crash ``cmd_vtop()`` → ``do_vtop()`` for a kernel address (memory.c: the
  ``VIRTUAL  PHYSICAL`` header and ``"%-8lx  %-8lx\\n\\n"``) and ``x86_64_kvtop()`` verbose output
  (x86_64.c: ``x86_64_kpgd_offset`` prints ``PGD DIRECTORY: <init_top_pgt>`` and ``PAGE DIRECTORY:
  <pgd entry>``; ``x86_64_p4d_offset`` / ``_pud_offset`` / ``_pmd_offset`` / ``_pte_offset`` print
  ``"   P4D: %lx => %lx"`` with the entry's *physical* address and value; huge leaves print
  ``"  PAGE: %lx  (1GB)"`` / ``(2MB)``, base pages ``"  PAGE: %lx"``; then
  ``x86_64_translate_pte()``'s ``PTE PHYSICAL FLAGS`` table).  crash then prints the page's
  ``kmem -p`` line (``dump_mem_map``); we do not (no struct page layout here) -- ``--pfn`` gives the
  struct page address instead.  Not modelled: crash's swap decoding of a non-present, non-zero pte;
  crash masks with its own ``PHYSICAL_PAGE_MASK`` (46 bits with 4-level paging), we with bits 12..51.
"""

from __future__ import annotations

from typing import Any

from vmemmap.kmem import CENTER, LJUST, LONG_DEC, LONG_HEX, OUTPUT_RADIX, RJUST, VADDR_PRLEN, mkstring
from vmemmap.paging.entry import (
    _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_GLOBAL, _PAGE_NX, _PAGE_PCD, _PAGE_PRESENT, _PAGE_PROTNONE,
    _PAGE_PSE, _PAGE_PWT, _PAGE_RW, _PAGE_USER, PTE_PFN_MASK, entry_flags,
)
from vmemmap.paging.tables import Walk

from .kernel import DumpKernel, SectionRow

__all__ = ["sections_text", "vtop_text", "translate_pte_text", "pfn_rows", "inspect_text", "inspect_data",
           "crash_pte_flags"]

MASK64 = (1 << 64) - 1
_PAGE_SIZE_NAME = {1 << 30: "1GB", 1 << 21: "2MB"}


def sections_text(rows: list[SectionRow]) -> str:
    """crash ``dump_mem_sections(0)`` for ``rows`` (the dashed rule, header, one line per section)."""
    out = ["-" * 67, "\n\nNR  %s  %s  %s  %s PFN\n" % (
        mkstring("SECTION", VADDR_PRLEN, CENTER | LJUST),
        mkstring("CODED_MEM_MAP", max(VADDR_PRLEN, len("CODED_MEM_MAP")), CENTER | LJUST),
        mkstring("MEM_MAP", VADDR_PRLEN, CENTER | LJUST),
        mkstring("STATE", len("STATE"), CENTER))]
    for r in rows:
        out.append("%2d  %s  %s  %s  %s %s\n" % (
            r.nr,
            mkstring(r.addr, VADDR_PRLEN, CENTER | LONG_HEX),
            mkstring(r.coded, max(VADDR_PRLEN, len("CODED_MEM_MAP")), CENTER | LONG_HEX | RJUST),
            mkstring(r.mem_map, VADDR_PRLEN, CENTER | LONG_HEX | RJUST),
            mkstring(r.state, len("STATE"), CENTER),
            mkstring(r.pfn, VADDR_PRLEN, (LONG_DEC if OUTPUT_RADIX == 10 else LONG_HEX) | LJUST)))
    return "".join(out)


def crash_pte_flags(pte: int) -> str:
    """The parenthesised flag list of crash ``x86_64_translate_pte()``."""
    if not pte:
        return "(no mapping)"
    names = []
    for bit, name in ((_PAGE_PRESENT, "PRESENT"), (_PAGE_RW, "RW"), (_PAGE_USER, "USER"), (_PAGE_PWT, "PWT"),
                      (_PAGE_PCD, "PCD"), (_PAGE_ACCESSED, "ACCESSED"), (_PAGE_DIRTY, "DIRTY")):
        if pte & bit:
            names.append(name)
    if pte & _PAGE_PSE and pte & _PAGE_PRESENT:
        names.append("PSE")
    if pte & _PAGE_PROTNONE and not pte & _PAGE_PRESENT:
        names.append("PROTNONE")
    if pte & _PAGE_GLOBAL:
        names.append("GLOBAL")
    if pte & _PAGE_NX:
        names.append("NX")
    return "(" + "|".join(names) + ")"


def translate_pte_text(pte: int) -> str:
    """crash ``x86_64_translate_pte(pte, 0, 0)`` for a present entry."""
    ptebuf = f"{pte:x}"
    len1 = max(len(ptebuf), len("PTE"))
    physbuf = f"{pte & PTE_PFN_MASK:x}"
    len2 = max(len(physbuf), len("PHYSICAL"))
    return (f"{mkstring('PTE', len1, CENTER | LJUST)}  {mkstring('PHYSICAL', len2, CENTER | LJUST)}  FLAGS\n"
            f"{mkstring(ptebuf, len1, CENTER | RJUST)}  {mkstring(physbuf, len2, CENTER | RJUST)}  "
            f"{crash_pte_flags(pte)}\n")


def vtop_text(dk: DumpKernel, vaddr: int) -> str:
    """crash ``vtop ADDR`` for a kernel virtual address, up to (not including) the page line."""
    w = dk.vtop(vaddr)
    out = [f"{mkstring('VIRTUAL', VADDR_PRLEN, LJUST)}  {mkstring('PHYSICAL', VADDR_PRLEN, LJUST)}\n"]
    if w.phys is None:
        out.append(f"{vaddr:<8x}  (not mapped)\n\n")
    else:
        out.append(f"{vaddr:<8x}  {w.phys:<8x}\n\n")
    out.append(_kvtop_verbose(dk, w))
    out.append("\n")
    return "".join(out)


def _kvtop_verbose(dk: DumpKernel, w: Walk) -> str:
    out = [f"PGD DIRECTORY: {dk.pgd_vaddr:x}\n"]
    for i, s in enumerate(w.steps):
        if i == 0:
            out.append(f"PAGE DIRECTORY: {s.entry:x}\n")
        else:
            out.append(f"   {s.level.upper()}: {s.entry_phys:x} => {s.entry:x}\n")
        if not s.entry & _PAGE_PRESENT:
            return "".join(out)
    last = w.steps[-1]
    if w.leaf_level in ("pud", "pmd"):
        out.append(f"  PAGE: {last.entry & PTE_PFN_MASK:x}  ({_PAGE_SIZE_NAME[w.page_size or 0]})\n\n")
    else:
        out.append(f"  PAGE: {(w.phys or 0) & PTE_PFN_MASK:x}\n\n")
    out.append(translate_pte_text(last.entry))
    return "".join(out)


def walk_data(dk: DumpKernel, vaddr: int) -> dict[str, Any]:
    w = dk.vtop(vaddr)
    return {
        "virtual": f"{vaddr:#x}",
        "physical": None if w.phys is None else f"{w.phys:#x}",
        "page_size": w.page_size,
        "leaf_level": w.leaf_level,
        "steps": [{"level": s.level, "index": s.index, "table": f"{s.table_phys:#x}",
                   "entry_addr": f"{s.entry_phys:#x}", "entry": f"{s.entry:#018x}",
                   "flags": entry_flags(s.entry, s.level)} for s in w.steps],
    }


def pfn_rows(dk: DumpKernel, pfns: list[int]) -> list[dict[str, Any]]:
    rows = []
    for pfn in pfns:
        page = dk.pfn_to_page(pfn)
        rows.append({"pfn": f"{pfn:#x}", "page": f"{page:#x}", "page_to_pfn": f"{dk.page_to_pfn(page):#x}",
                     "valid": dk.pfn_valid(pfn)})
    return rows


def inspect_data(dk: DumpKernel, vtops: list[int], pfns: list[int]) -> dict[str, Any]:
    """Everything ``inspect --json`` prints."""
    return {
        "dump": str(dk.core.path),
        "kind": dk.core.kind,
        "kernel": {
            "release": dk.release,
            "levels": dk.levels,
            "page_offset_base": f"{dk.page_offset_base:#x}",
            "vmemmap_base": f"{dk.vmemmap_base:#x}",
            "pgd": f"{dk.pgd_phys:#x}",
            "phys_base": None if dk.phys_base is None else f"{dk.phys_base:#x}",
            "struct_page_size": dk.struct_page_size,
            "sources": dict(dk.sources),
            "notes": list(dk.notes),
        },
        "sections": [r.to_dict() for r in dk.section_rows()],
        "vtop": [walk_data(dk, v) for v in vtops],
        "pfn": pfn_rows(dk, pfns),
    }


def inspect_text(dk: DumpKernel, vtops: list[int], pfns: list[int]) -> str:
    """The text report: header, crash-style sections, one crash ``vtop`` per address, pfn lines."""
    out = [
        f"DUMP: {dk.core.path} ({dk.core.kind}, {len(dk.core.segments)} PT_LOAD)\n",
        f"RELEASE: {dk.release or '(unknown: no VMCOREINFO)'}\n",
        f"PAGING: {dk.levels}-level  pgd {dk.pgd_phys:#x}\n",
        f"PAGE_OFFSET_BASE: {dk.page_offset_base:#x}\n",
        f"VMEMMAP_BASE: {dk.vmemmap_base:#x}\n",
    ]
    for k, v in dk.sources.items():
        out.append(f"  {k}: {v}\n")
    for n in dk.notes:
        out.append(f"note: {n}\n")
    rows = dk.section_rows()
    if rows:
        out.append("\n")
        out.append(sections_text(rows))
    for v in vtops:
        out.append("\n")
        out.append(vtop_text(dk, v))
    if pfns:
        out.append("\n")
        out.append(f"{'PFN':<18}  {mkstring('PAGE', VADDR_PRLEN, LJUST)}  {'PAGE_TO_PFN':<18}  VALID\n")
        for r in pfn_rows(dk, pfns):
            valid = {True: "yes", False: "no", None: "?"}[r["valid"]]
            out.append(f"{r['pfn']:<18}  {r['page'][2:]:<16}  {r['page_to_pfn']:<18}  {valid}\n")
    return "".join(out)
