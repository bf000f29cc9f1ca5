#!/usr/bin/env python3
"""Write docs/memory-models.md and its pictures (docs/figures/models/*.svg), all made by the tool.

The page's text is below; every ``{run: CMD}`` becomes CMD's real output and every picture comes
from ``vmemmap report --svg-dir`` in this run. From the repository root, after ``pip install .``:

    python3 scripts/make_memory_models_page.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIG = ROOT / "docs" / "figures" / "models"

# (report arguments, drawing name, file name under docs/figures/models/)
PICTURES = [
    ("-m opteron-2007 --era 2.6.21-seed --model vmemmap", "address-map", "address-map-2.6.21-seed.svg"),
    ("-m qemu-2g --era 6.1 --kaslr-seed 7", "address-map", "address-map-6.1-kaslr7.svg"),
    ("-m opteron-2007 --era 2.6.24 --model sparsemem-extreme", "physical-map", "physical-map-opteron-2007-2.6.24.svg"),
    ("-m qemu-numa2 --era 6.1", "physical-map", "physical-map-qemu-numa2-6.1.svg"),
    ("-m opteron-2007 --era 2.6.21-seed --model vmemmap", "vmemmap-leaves",
     "vmemmap-leaves-opteron-2007-2.6.21-seed.svg"),
    ("-m qemu-numa2 --era 6.1", "vmemmap-leaves", "vmemmap-leaves-qemu-numa2-6.1.svg"),
]

PAGE = r"""# The memory models, pictured

A memory model answers one question: where is the `struct page` of page frame *pfn*? And back again.
Linux on x86-64 has had four answers: FLATMEM, DISCONTIGMEM, SPARSEMEM (static or EXTREME) and
SPARSEMEM_VMEMMAP. This page shows each answer as vmemmap runs it. Every picture and every output
block was made by the tool (`python3 scripts/make_memory_models_page.py`). Open the same drawings
interactively with `vmemmap report` (hover a region for its range and size).

## The kernel address map, then and now

In the seed (2.6.21 plus "x86_64 implement SPARSE_VIRTUAL"), the virtual memory map is a fixed
1 TiB window at the constant `0xffffe20000000000`. `pfn_to_page(pfn)` is `vmemmap + pfn`, with no
load at all. Each row's height grows with log2 of its size.

![2.6.21-seed address map](figures/models/address-map-2.6.21-seed.svg)

Since 4.x (CONFIG_DYNAMIC_MEMORY_LAYOUT, and KASLR) the vmemmap window moves at boot.
`kernel_randomize_memory()` places the direct map, vmalloc and vmemmap at random 1 GiB-aligned
bases. `vmemmap` is then the variable `vmemmap_base`, read from memory by every `pfn_to_page`.
Below is 6.1 with KASLR seed 7; the bracket marks the randomisation window.

![6.1 address map with KASLR](figures/models/address-map-6.1-kaslr7.svg)

## The physical side: nodes, zones, sections, memory blocks

The seed's machine is a 4-socket Opteron with 16 GiB. The BIOS hoists the 512 MiB under the PCI hole
above 4 GiB. SPARSEMEM cuts physical memory into 128 MiB sections, and a section exists
(`SECTION_MARKED_PRESENT`) only where there is RAM.

![opteron-2007 physical map, 2.6.24](figures/models/physical-map-opteron-2007-2.6.24.svg)

A 6.1 kernel on a 2-node QEMU guest also has memory blocks: the sysfs units hot-plug works in.

![qemu-numa2 physical map, 6.1](figures/models/physical-map-qemu-numa2-6.1.svg)

## FLATMEM: one array

`pfn_to_page(pfn) = mem_map + (pfn - ARCH_PFN_OFFSET)` (include/asm-generic/memory_model.h). There
is one `mem_map` array for all of memory, holes included. The conversion loads `mem_map`, a variable,
and that one load is what the seed's claim is about. FLATMEM cannot be built on NUMA, so this uses the
single-node `qemu-2g`.

{run: vmemmap translate -m qemu-2g --era 2.6.24 --model flatmem pfn 0x10000}

## DISCONTIGMEM: an array per node

`pfn_to_page` first finds the node. x86-64 hashes the physical address through `memnodemap[addr >>
memnode_shift]`, then uses that node's `node_mem_map` and `node_start_pfn` (include/asm-x86/mmzone_64.h @
2.6.24). That is six dependent loads:

{run: vmemmap translate -m qemu-numa2 --era 2.6.24 --model discontigmem pfn 0x10000}

## SPARSEMEM: a table of sections

`__pfn_to_section(pfn)->section_mem_map` holds the section's `mem_map - section_start_pfn` with flag
bits below. So `pfn_to_page = __section_mem_map_addr(ms) + pfn`. SPARSEMEM_STATIC reads one word from
a static array. SPARSEMEM_EXTREME first loads the root pointer.

{run: vmemmap translate -m qemu-numa2 --era 2.6.24 --model sparsemem pfn 0x10000}

{run: vmemmap translate -m qemu-numa2 --era 2.6.24 --model sparsemem-extreme pfn 0x10000}

## SPARSEMEM_VMEMMAP: one virtual array, mapped where there is RAM

The seed's answer: keep SPARSEMEM's sections for bookkeeping, but map one virtually contiguous
`struct page` array at `vmemmap`. Each section's slice is backed by 2 MiB pages (PMD leaves) taken
from the node the section belongs to. `pfn_to_page` is `vmemmap + pfn` again, as in FLATMEM, but
with a constant in place of a variable:

{run: vmemmap translate -m qemu-numa2 --era 2.6.24 --model vmemmap pfn 0x10000}

The drawing shows how each node's RAM (left) is described by a stretch of the vmemmap window
(middle), whose 2 MiB leaves are backed by memory of the same node (right):

![vmemmap leaves, opteron-2007, 2.6.21-seed](figures/models/vmemmap-leaves-opteron-2007-2.6.21-seed.svg)

The same for 6.1 on the 2-node guest. The page tables it draws are the ones `vmemmap conform`
checks, leaf by leaf, against the real kernel's (docs/accuracy.md):

![vmemmap leaves, qemu-numa2, 6.1](figures/models/vmemmap-leaves-qemu-numa2-6.1.svg)

With KASLR-era kernels the constant becomes `vmemmap_base`, one load again:

{run: vmemmap translate -m qemu-numa2 --era 6.1 pfn 0x10000}

## Side by side

`vmemmap compare` runs every model an era can build on one machine:

{run: vmemmap compare -m opteron-2007 --era 2.6.24}

What these loads cost, through TLBs, page walks and caches, is the subject of
[cost-experiments.md](cost-experiments.md). For one conversion explained step by step, use
`vmemmap explain pfn 0x10000 -m qemu-2g --era 6.1` ([guide](guide/explain.md)).
"""


def _run(cmd: str) -> str:
    env = dict(os.environ, COLUMNS="110", NO_COLOR="1", TERM="dumb")
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=1800)
    if p.returncode:
        raise SystemExit(f"{cmd}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout.rstrip()


def main() -> int:
    FIG.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        done: dict[str, Path] = {}
        for args, drawing, name in PICTURES:
            if args not in done:
                d = Path(tmp) / str(len(done))
                _run(f"vmemmap report {args} --no-compare --svg-dir {d} -o {d}.html")
                done[args] = d
            shutil.copyfile(done[args] / f"{drawing}.svg", FIG / name)
            print(f"docs/figures/models/{name}", file=sys.stderr)
    text = re.sub(r"\{run: ([^}]*)\}", lambda m: f"```\n$ {m.group(1)}\n{_run(m.group(1))}\n```", PAGE)
    (ROOT / "docs" / "memory-models.md").write_text(text)
    print("docs/memory-models.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
