"""Benchmark (not a test): bulk pfn_to_page / page_to_pfn against native C and the scalar path.

    python3 benchmarks/bench_pfn_to_page.py [--n 10000000] [--scalar-n 10000]

For every memory model era 2.6.24 can build on ``qemu-2g`` (flatmem, discontigmem, sparsemem,
sparsemem-extreme, vmemmap, vmemmap-4k) plus ``vmemmap`` in 6.1 (``vmemmap_base`` is a variable):

* **bulk**: ``m.pfn_to_page_array`` over N valid pfns (random over the RAM ranges, fixed seed) and
  ``m.page_to_pfn_array`` over the resulting pages;
* **C**: a native loop (written to a temp dir, built with ``cc -O2 -shared -fPIC``, called through
  ctypes) doing the model's arithmetic on the model's data extracted from the booted kernel
  (FLATMEM: the ``mem_map`` value; DISCONTIGMEM: the ``memnodemap`` bytes and the
  ``node_mem_map``/``node_start_pfn`` arrays; SPARSEMEM: the raw ``section_mem_map`` words from
  ``m.sections.words_array`` — one level for the static array, root + index for EXTREME — decoded
  with ``SECTION_MAP_MASK`` in C; VMEMMAP: the base). ``page_to_pfn`` reads ``page->flags`` in the
  kernel (section or node number); the C loop gets those words, read from simulated memory once
  before timing. The C results must equal the bulk results on all N pfns before anything is timed;
* **python-scalar**: ``m.pfn_to_page(pfn).value`` / ``m.page_to_pfn(page).value`` in a plain loop
  over the first ``--scalar-n`` pfns (per-op time extrapolated), compared with the bulk values.

Times are ``time.perf_counter``, best of 3. Ratios are from this one run on this machine: they say
nothing absolute (docs: "Speed is measured in benchmarks").
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from vmemmap.eras import load_era
from vmemmap.kernel import Kernel, boot, legal_models
from vmemmap.machine import load_machine

SEED = 20240607
REPEAT = 3

C_SOURCE = r"""
#include <stdint.h>
#include <stddef.h>

/* SP (sizeof(struct page)) is a compile-time constant, as in the kernel: -DSP=56 / -DSP=64 */

/* FLATMEM: mem_map + (pfn - ARCH_PFN_OFFSET), ARCH_PFN_OFFSET = 0.
 * SPARSEMEM_VMEMMAP: vmemmap + pfn (same arithmetic, different base). */
void base_pfn_to_page(const uint64_t *pfn, uint64_t *out, size_t n, uint64_t base)
{
    for (size_t i = 0; i < n; i++)
        out[i] = base + pfn[i] * SP;
}

void base_page_to_pfn(const uint64_t *page, uint64_t *out, size_t n, uint64_t base)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (page[i] - base) / SP;
}

/* DISCONTIGMEM (2.6.2x x86-64): nid = memnodemap[(pfn << PAGE_SHIFT) >> memnode_shift];
 * NODE_DATA(nid)->node_mem_map + (pfn - NODE_DATA(nid)->node_start_pfn) */
void discontig_pfn_to_page(const uint64_t *pfn, uint64_t *out, size_t n, const uint8_t *memnodemap,
                           unsigned shift, const uint64_t *node_mem_map, const uint64_t *node_start_pfn)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t p = pfn[i];
        unsigned nid = memnodemap[(p << 12) >> shift];
        out[i] = node_mem_map[nid] + (p - node_start_pfn[nid]) * SP;
    }
}

/* page_to_pfn: nid = page_to_nid(page) (node field of page->flags, 0 without NODES_SHIFT) */
void discontig_page_to_pfn(const uint64_t *page, const uint64_t *flags, uint64_t *out, size_t n,
                           unsigned nodes_pgshift, uint64_t nodes_mask,
                           const uint64_t *node_mem_map, const uint64_t *node_start_pfn)
{
    for (size_t i = 0; i < n; i++) {
        unsigned nid = (unsigned)((flags[i] >> nodes_pgshift) & nodes_mask);
        out[i] = (page[i] - node_mem_map[nid]) / SP + node_start_pfn[nid];
    }
}

/* SPARSEMEM: __section_mem_map_addr(__nr_to_section(pfn >> PFN_SECTION_SHIFT)) + pfn.
 * Static: words[nr]. EXTREME: words[root_off[nr / per_root] + nr % per_root] (root_off models the
 * mem_section[root] pointer; per_root is a power of two). */
static inline uint64_t section_word(const uint64_t *words, const int64_t *root_off, unsigned root_shift,
                                    uint64_t nr)
{
    if (!root_off)
        return words[nr];
    return words[root_off[nr >> root_shift] + (nr & ((1ull << root_shift) - 1))];
}

void sparse_pfn_to_page(const uint64_t *pfn, uint64_t *out, size_t n, const uint64_t *words,
                        const int64_t *root_off, unsigned root_shift, unsigned section_shift,
                        uint64_t map_mask)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t p = pfn[i];
        uint64_t w = section_word(words, root_off, root_shift, p >> section_shift);
        out[i] = (w & map_mask) + p * SP;
    }
}

/* page_to_pfn: nr = page_to_section(page) (section field of page->flags);
 * page - __section_mem_map_addr(__nr_to_section(nr)) */
void sparse_page_to_pfn(const uint64_t *page, const uint64_t *flags, uint64_t *out, size_t n,
                        const uint64_t *words, const int64_t *root_off, unsigned root_shift,
                        unsigned sections_pgshift, uint64_t sections_mask, uint64_t map_mask)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t nr = (flags[i] >> sections_pgshift) & sections_mask;
        uint64_t w = section_word(words, root_off, root_shift, nr);
        out[i] = (page[i] - (w & map_mask)) / SP;
    }
}
"""

U64P = np.ctypeslib.ndpointer(dtype=np.uint64, flags="C_CONTIGUOUS")
U8P = np.ctypeslib.ndpointer(dtype=np.uint8, flags="C_CONTIGUOUS")
SZ = ctypes.c_size_t
U64 = ctypes.c_uint64
UINT = ctypes.c_uint


def find_cc() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


class CLib:
    """The C loops, compiled once per ``sizeof(struct page)``."""

    def __init__(self, cc: str, tmp: str, sp: int) -> None:
        src = os.path.join(tmp, "pfn_to_page.c")
        with open(src, "w") as f:
            f.write(C_SOURCE)
        so = os.path.join(tmp, f"libpfn_sp{sp}.so")
        subprocess.run([cc, "-O2", "-shared", "-fPIC", f"-DSP={sp}", "-o", so, src], check=True)
        lib = ctypes.CDLL(so)
        lib.base_pfn_to_page.argtypes = [U64P, U64P, SZ, U64]
        lib.base_page_to_pfn.argtypes = [U64P, U64P, SZ, U64]
        lib.discontig_pfn_to_page.argtypes = [U64P, U64P, SZ, U8P, UINT, U64P, U64P]
        lib.discontig_page_to_pfn.argtypes = [U64P, U64P, U64P, SZ, UINT, U64, U64P, U64P]
        # root_off may be NULL (static SPARSEMEM): declared as a plain pointer
        lib.sparse_pfn_to_page.argtypes = [U64P, U64P, SZ, U64P, ctypes.c_void_p, UINT, UINT, U64]
        lib.sparse_page_to_pfn.argtypes = [U64P, U64P, U64P, SZ, U64P, ctypes.c_void_p, UINT, UINT, U64, U64]
        for fn in ("base_pfn_to_page", "base_page_to_pfn", "discontig_pfn_to_page", "discontig_page_to_pfn",
                   "sparse_pfn_to_page", "sparse_page_to_pfn"):
            getattr(lib, fn).restype = None
        self.lib = lib


# ---------------------------------------------------------------------- model data -> C calls


def page_flags_of(k: Kernel, pages: np.ndarray) -> np.ndarray:
    """``page->flags`` of every page, read from simulated memory (once per distinct page)."""
    uniq, inv = np.unique(pages, return_inverse=True)
    return k.mem.peek_u64_array(uniq)[inv.reshape(-1)].astype(np.uint64)


def c_functions(k: Kernel, clib: CLib, pages: np.ndarray) -> tuple[Callable, Callable, str]:
    """(pfn_to_page(pfns, out), page_to_pfn(pages, out), description of the data handed to C)."""
    lib, m, name = clib.lib, k.model, k.model_name
    if name == "flatmem":
        mem_map = k.mem.peek(k.sym("mem_map"), 8)
        return (lambda p, o: lib.base_pfn_to_page(p, o, p.size, mem_map),
                lambda g, o: lib.base_page_to_pfn(g, o, g.size, mem_map),
                f"mem_map={mem_map:#x}")
    if name.startswith("vmemmap"):
        base = int(m._base_value())  # vmemmap constant, or the value of the vmemmap_base variable
        return (lambda p, o: lib.base_pfn_to_page(p, o, p.size, base),
                lambda g, o: lib.base_page_to_pfn(g, o, g.size, base),
                f"vmemmap={base:#x} ({'constant' if m.constant else 'vmemmap_base variable'})")
    if name == "discontigmem":
        memnode = k.sym("memnode")
        shift = k.mem.peek(memnode, 4)
        mapsize = k.mem.peek(memnode + 4, 4)
        mapp = k.mem.peek(memnode + 8, 8)
        nodemap = np.frombuffer(bytes(k.mem.peek(mapp + i, 1) for i in range(mapsize)), dtype=np.uint8).copy()
        nids = max(k.nodes) + 1
        nmm = np.zeros(nids, dtype=np.uint64)
        nstart = np.zeros(nids, dtype=np.uint64)
        for nid in k.nodes:
            pgdat = k.mem.peek(k.sym("node_data") + 8 * nid, 8)
            nmm[nid] = k.mem.peek(pgdat + m.lay["node_mem_map"], 8)
            nstart[nid] = k.mem.peek(pgdat + m.lay["node_start_pfn"], 8)
        pf = k.page_flags
        flags = page_flags_of(k, pages) if pf.nodes_width else np.zeros(pages.size, dtype=np.uint64)
        nmask = (1 << pf.nodes_width) - 1
        return (lambda p, o: lib.discontig_pfn_to_page(p, o, p.size, nodemap, shift, nmm, nstart),
                lambda g, o: lib.discontig_page_to_pfn(g, flags, o, g.size, pf.nodes_pgshift, nmask, nmm, nstart),
                f"memnodemap {mapsize} B shift {shift}, {len(k.nodes)} node(s)")
    if name in ("sparsemem", "sparsemem-extreme"):
        st, era = m.sections, k.era
        mask = era.section_map_mask
        pf = k.page_flags
        flags = page_flags_of(k, pages)
        smask = (1 << pf.sections_width) - 1
        if st.extreme:
            per_root = st.per_root
            root_shift = per_root.bit_length() - 1
            assert 1 << root_shift == per_root
            root_off = np.full(st.nr_roots, -1, dtype=np.int64)
            chunks = []
            for i, r in enumerate(sorted(st.roots)):
                root_off[r] = i * per_root
                chunks.append(st.words_array(np.arange(r * per_root, (r + 1) * per_root, dtype=np.int64)))
            words = np.ascontiguousarray(np.concatenate(chunks), dtype=np.uint64)
            roots_ptr = root_off.ctypes.data
            desc = f"{len(st.roots)} root(s) x {per_root} sections, words from words_array"
        else:
            words = st.words_array(np.arange(st.nr_sections, dtype=np.int64))
            root_off, root_shift, roots_ptr = None, 0, None
            desc = f"static mem_section[{st.nr_sections}] words from words_array"
        keep = (words, root_off, flags)  # keep the buffers alive while C uses them
        shift = era.pfn_section_shift

        def p2pg(p: np.ndarray, o: np.ndarray, _keep=keep) -> None:
            lib.sparse_pfn_to_page(p, o, p.size, words, roots_ptr, root_shift, shift, mask)

        def pg2p(g: np.ndarray, o: np.ndarray, _keep=keep) -> None:
            lib.sparse_page_to_pfn(g, flags, o, g.size, words, roots_ptr, root_shift,
                                   pf.sections_pgshift, smask, mask)
        return p2pg, pg2p, desc
    raise ValueError(name)


# ---------------------------------------------------------------------- timing


def best_of(fn: Callable[[], object], repeat: int = REPEAT) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def random_pfns(k: Kernel, n: int, seed: int) -> np.ndarray:
    """n pfns uniform over the kernel's RAM (range chosen by size, then a pfn inside it)."""
    rng = np.random.default_rng(seed)
    r = k.ram_pfn_ranges()
    starts = np.array([s for s, _, _ in r], dtype=np.uint64)
    lens = np.array([e - s for s, e, _ in r], dtype=np.uint64)
    idx = rng.choice(len(r), size=n, p=lens / lens.sum())
    off = (rng.random(n) * lens[idx]).astype(np.uint64)
    return starts[idx] + np.minimum(off, lens[idx] - np.uint64(1))


def edge_pfns(k: Kernel) -> np.ndarray:
    """First and last pfn of every RAM range, and pfns either side of each section boundary inside RAM."""
    out = set()
    shift = k.era.pfn_section_shift
    for s, e, _ in k.ram_pfn_ranges():
        out.update((s, e - 1))
        b = ((s >> shift) + 1) << shift
        while b < e:
            out.update((b - 1, b))
            b += 1 << shift
    return np.array(sorted(out), dtype=np.uint64)


def mismatch(label: str, inputs: np.ndarray, got: np.ndarray, want: np.ndarray, notes: list[str]) -> bool:
    bad = np.flatnonzero(got != want)
    if bad.size == 0:
        return False
    i = int(bad[0])
    notes.append(f"{label}: {bad.size} of {inputs.size} differ; first at input {int(inputs[i]):#x}: "
                 f"got {int(got[i]):#x}, expected {int(want[i]):#x}")
    return True


def run_case(era: str, model: str, n: int, scalar_n: int, clibs: dict[int, CLib] | None,
             cc: str | None, tmp: str) -> tuple[list[list[str]], list[str]]:
    k = boot(load_machine("qemu-2g"), era, model)
    m = k.model
    notes: list[str] = []
    pfns = random_pfns(k, n, SEED)
    t_b_p2pg, pages = best_of(lambda: m.pfn_to_page_array(pfns))
    t_b_pg2p, back = best_of(lambda: m.page_to_pfn_array(pages))
    pages = np.asarray(pages, dtype=np.uint64)
    mismatch(f"{era} {model}: page_to_pfn_array(pfn_to_page_array(p)) round trip", pfns, back, pfns, notes)
    valid = m.pfn_valid_array(pfns)
    if not valid.all():
        notes.append(f"{era} {model}: pfn_valid_array False for {int((~valid).sum())} RAM pfns, "
                     f"first {int(pfns[np.flatnonzero(~valid)[0]]):#x}")

    # C: same arithmetic, same data; verified on all n pfns before timing
    t_c_p2pg = t_c_pg2p = float("nan")
    if clibs is not None and cc is not None:
        sp = k.era.struct_page_size
        if sp not in clibs:
            clibs[sp] = CLib(cc, tmp, sp)
        c_p2pg, c_pg2p, desc = c_functions(k, clibs[sp], pages)
        out = np.empty_like(pfns)
        c_p2pg(pfns, out)
        ok1 = not mismatch(f"{era} {model}: C pfn_to_page vs bulk", pfns, out, pages, notes)
        c_pg2p(pages, out)
        ok2 = not mismatch(f"{era} {model}: C page_to_pfn vs bulk", pages, out, back, notes)
        if ok1:
            t_c_p2pg, _ = best_of(lambda: c_p2pg(pfns, out))
        if ok2:
            t_c_pg2p, _ = best_of(lambda: c_pg2p(pages, out))
        del desc

    # python-scalar on a subset, compared with the bulk values; plus range/section edges
    sub = pfns[:scalar_n].tolist()
    subpages = pages[:scalar_n].tolist()
    t_s_p2pg, s_pages = best_of(lambda: [m.pfn_to_page(p).value for p in sub])
    t_s_pg2p, s_pfns = best_of(lambda: [m.page_to_pfn(g).value for g in subpages])
    mismatch(f"{era} {model}: scalar pfn_to_page vs bulk", pfns[:scalar_n],
             np.array(s_pages, dtype=np.uint64), pages[:scalar_n], notes)
    mismatch(f"{era} {model}: scalar page_to_pfn vs bulk", pages[:scalar_n],
             np.array(s_pfns, dtype=np.uint64), back[:scalar_n], notes)
    edges = edge_pfns(k)
    e_bulk = np.asarray(m.pfn_to_page_array(edges), dtype=np.uint64)
    e_scal = np.array([m.pfn_to_page(int(p)).value for p in edges], dtype=np.uint64)
    mismatch(f"{era} {model}: scalar vs bulk pfn_to_page at range/section edges", edges, e_scal, e_bulk, notes)
    mismatch(f"{era} {model}: bulk page_to_pfn round trip at range/section edges", edges,
             np.asarray(m.page_to_pfn_array(e_bulk), dtype=np.uint64), edges, notes)
    e_sp = np.array([m.page_to_pfn(int(g)).value for g in e_scal], dtype=np.uint64)
    mismatch(f"{era} {model}: scalar page_to_pfn round trip at range/section edges", edges, e_sp, edges, notes)

    rows = []
    label = f"{model} ({era})"
    for op, tb, tc, ts in (("pfn_to_page", t_b_p2pg, t_c_p2pg, t_s_p2pg),
                           ("page_to_pfn", t_b_pg2p, t_c_pg2p, t_s_pg2p)):
        nb, nc, ns = tb / n * 1e9, tc / n * 1e9, ts / scalar_n * 1e9
        rows.append([label, op, f"{nb:.2f}", f"{nc:.2f}" if nc == nc else "n/a", f"{ns:.0f}",
                     f"{nb / nc:.1f}" if nc == nc else "n/a", f"{ns / nb:.0f}"])
    return rows, notes


def table(header: list[str], rows: list[list[str]]) -> str:
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda r: "  ".join(c.rjust(w[i]) if i >= 2 else c.ljust(w[i]) for i, c in enumerate(r))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * x for x in w)] + [line(r) for r in rows])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10**7, help="pfns for bulk and C (default 10^7)")
    ap.add_argument("--scalar-n", type=int, default=10**4, help="pfns for the scalar loop (default 10^4)")
    args = ap.parse_args()
    cc = find_cc()
    if cc is None:
        print("bench_pfn_to_page: no C compiler (cc / gcc) on PATH: the C column is skipped", file=sys.stderr)
    cases = [("2.6.24", mdl) for mdl in legal_models(load_era("2.6.24"), load_machine("qemu-2g"))]
    cases.append(("6.1", "vmemmap"))
    print(f"qemu-2g, {args.n:,} random RAM pfns (seed {SEED}); scalar loop over the first {args.scalar_n:,}; "
          f"best of {REPEAT}; C: {cc + ' -O2' if cc else 'none (skipped)'}")
    rows: list[list[str]] = []
    notes: list[str] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_pfn_to_page.") as tmp:
        clibs: dict[int, CLib] | None = {} if cc else None
        for era, mdl in cases:
            r, nts = run_case(era, mdl, args.n, args.scalar_n, clibs, cc, tmp)
            rows += r
            notes += nts
            print(f"  {mdl} ({era}) done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(table(["model", "op", "ns/op bulk", "ns/op C", "ns/op python-scalar", "bulk/C", "python/bulk"], rows))
    if notes:
        print("\nDISAGREEMENTS:")
        for x in notes:
            print("  " + x)
    else:
        print("\nall checks agree: C == bulk on every pfn, scalar == bulk on the subset and at range/section edges, "
              "round trips exact")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 1 if notes else 0


if __name__ == "__main__":
    sys.exit(main())
