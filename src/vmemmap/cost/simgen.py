"""The bulk simulator's two passes, written out for one CPU model and compiled once.

:func:`vmemmap.cost.sim.simulate` runs a trace in two passes (see sim.py, "Two passes"): the
TLB / walk / paging-structure-cache pass (``translate``) and the cache pass (``caches``). A CPU
model is data (``cost/cpus/*.toml``); this module turns one model's geometry -- for each TLB
array, PSC and cache level its sets, ways, page sizes, block offsets and lookup kind -- into the
Python source of those two functions, every number a literal, and only the code paths that model
uses. numba then compiles straight-line code for exactly that hardware: no loop over arrays, no
per-access reads of the geometry, compares of a fixed number of ways. The hand-written set
operations they call (``_used_n``, ``_victim_l``, ``_hlook``, ``_MATCH`` ...) are the ones in sim.py.

The source is content-addressed (``simk_<sha256>.py`` in :func:`kernel_dir`), so numba compiles it
once per machine and loads the machine code from its on-disk cache afterwards. The generated code
makes exactly the decisions the data-driven description gives; tests/test_cost.py checks it against
:class:`~vmemmap.cost.sim.ScalarSim` on every preset and on random CPUs and traces.
"""

from __future__ import annotations

import hashlib
import re
import importlib.util
import os
import sys
import tempfile
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from vmemmap.cost.sim import BulkState

WMEMO = 1024         # memoised big-page walks (entries of 8 words: tag, base, size|leaf, entry addresses)
PF_AHEAD = 16         # the cache pass starts loading the sets of the access this many ahead
_LOCK = threading.Lock()
_LOADED: dict[str, tuple[Any, Any, Any]] = {}


class _Src:
    """Lines of Python source with an indentation level."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ind = 0

    def __call__(self, text: str) -> None:
        for line in text.strip("\n").splitlines():
            self.lines.append("    " * self.ind + line if line.strip() else "")

    def indent(self, by: int = 1) -> None:
        self.ind += by

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _split(x: str, sets: int, sshift: int) -> str:
    """``st, q = x % sets, x // sets`` with the cheapest form for the geometry."""
    if sets == 1:
        return f"st = 0\nq = {x}"
    if sshift >= 0:
        return f"st = {x} & {sets - 1}\nq = {x} >> {sshift}"
    return f"st = {x} % {sets}\nq = {x} // {sets}"


def _used(blk: str, b: str, ways: int, w: str) -> str:
    """A call of sim's ``_used`` for the set kind (nibble word up to 16 ways, recency list above)."""
    return f"_used_n({blk}, {b}, {w})" if ways <= 16 else f"_used_l({blk}, {b}, {ways}, {w})"


def _victim(blk: str, b: str, ways: int) -> str:
    return f"_victim_n({blk}, {b}, {ways})" if ways <= 16 else f"_victim_l({blk}, {b}, {ways})"


def _match_keys(base: int, ways: int, keys: list[str]) -> str:
    """The way of a fully associative TLB array holding any of ``keys`` (at most one is present), or -1."""
    return f"_way({' | '.join(f'_match{ways}(t_blk, {base}, {k})' for k in keys)})"


def _geometry(st: BulkState, prefix: str, i: int) -> dict[str, int]:
    a = st.arrays
    keys = ("sets", "ways", "sshift", "off", "words", "filt", "coff", "cls", "mask", "smash", "level", "lshift", "pf")
    return {k: int(a[prefix + k][i]) for k in keys if prefix + k in a}


def _tlb_probe(src: _Src, s: int, g: dict[str, int]) -> None:
    """Code that sets ``hw``/``b`` to the way/set holding ``lin``'s entry in TLB array ``s`` (hw -1 if none)."""
    mask = g["mask"]
    # every array counts its entries of each page size (t_szn): a size it holds none of is not
    # looked for (an array of one size that was never filled is not probed at all)
    multi = bin(mask).count("1") > 1
    if not multi:
        src(f"if t_szn[{3 * s + mask.bit_length() - 1}] > 0:")
        src.indent()
    _tlb_probe_sizes(src, s, g, multi)
    if not multi:
        src.indent(-1)


def _tlb_probe_sizes(src: _Src, s: int, g: dict[str, int], multi: bool) -> None:
    """:func:`_tlb_probe`'s lookups, for each page size the array holds."""
    off, ways, mask, filt, coff = g["off"], g["ways"], g["mask"], g["filt"], g["coff"]
    if g["sets"] == 1:
        # fully associative: the two ways that hit last first (a key is in at most one way), then
        # one vector compare (up to 16 ways) or a hash lookup for every page size the array holds
        keys = [f"(lin >> {12 + 9 * sc}) * 4 + {sc + 1}" if (mask >> sc) & 1 else None for sc in range(3)]
        names = [f"k{sc}" if keys[sc] else "-1" for sc in range(3)]
        src(f"b = {off}")
        for sc in range(3):
            if keys[sc]:
                src(f"k{sc} = {keys[sc]}")
        match = " | ".join(f"(x == k{sc})" for sc in range(3) if keys[sc])
        src(f"r0 = t_recent[{2 * s}]\nx = t_blk[{off + 2} + r0]\nif {match}:\n    hw = r0\nelse:")
        src.indent()
        src(f"r1 = t_recent[{2 * s + 1}]\nx = t_blk[{off + 2} + r1]\nif {match}:\n    hw = r1\nelse:")
        src.indent()
        if filt == 2:
            first = True
            for sc in range(3):
                if keys[sc]:
                    cond = ([] if first else ["hw < 0"]) + ([f"t_szn[{3 * s + sc}] > 0"] if multi else [])
                    look = f"hw = _hlook(t_cnt, {coff}, t_blk, {off}, {ways}, k{sc})"
                    src(f"if {' and '.join(cond)}:\n    {look}" if cond else look)
                    first = False
        else:
            if multi:
                for sc in range(3):
                    if keys[sc]:
                        src(f"k{sc} = k{sc} if t_szn[{3 * s + sc}] > 0 else -1")
            src(f"hw = {_match_keys(off + 2, ways, [n for n in names if n != '-1'])}")
        src.indent(-1)
        src(f"if hw >= 0:\n    t_recent[{2 * s + 1}] = r0\n    t_recent[{2 * s}] = hw")
        src.indent(-1)
        return
    first = True
    for sc in range(3):
        if not (mask >> sc) & 1:
            continue
        cond = ([] if first else ["hw < 0"]) + ([f"t_szn[{3 * s + sc}] > 0"] if multi else [])
        if cond:
            src(f"if {' and '.join(cond)}:")
            src.indent()
        src(f"x = lin >> {12 + 9 * sc}")
        src(_split("x", g["sets"], g["sshift"]))
        src(f"b = {off} + st * {g['words']}\nkey = q * 4 + {sc + 1}")
        if ways <= 16:
            src(f"w0 = np.int64(t_blk[b] & 15)\nif t_blk[b + 2 + w0] == key:\n    hw = w0\n"
                f"else:\n    hw = _way(_match{ways}(t_blk, b + 2, key))")
        else:
            src(f"hw = _hlook(t_cnt, {coff} + st * {HASH_BUCKETS}, t_blk, b, {ways}, key)")
        if cond:
            src.indent(-1)
        first = False


def _tlb_take(src: _Src, g: dict[str, int]) -> None:
    """Code for a hit on way ``hw`` of the set at ``b``: most recent; ``phys``, ``real``."""
    ways, words, mask = g["ways"], g["words"], g["mask"]
    src(f"{_used('t_blk', 'b', ways, 'hw')}\npl = t_blk[b + {words - ways} + hw]\nreal = pl & 3")
    sizes = [sc for sc in range(3) if (mask >> sc) & 1]
    if len(sizes) == 1:
        src(f"phys = (pl - real) + (lin & {(1 << (12 + 9 * sizes[0])) - 1})")
    else:
        src("sc = (t_blk[b + 2 + hw] - 1) & 3\nphys = (pl - real) + (lin & ((1 << (12 + 9 * sc)) - 1))")
    src(f"hit_level = {g['level']}")


def _tlb_fill(src: _Src, s: int, g: dict[str, int]) -> None:
    """Code that puts the translation (``phys``, size ``real``) into one TLB array, at the entry size
    the array holds for it (1 GiB smashed to 2 MiB where it does that)."""
    ways, words, mask, filt, coff = g["ways"], g["words"], g["mask"], g["filt"], g["coff"]
    src("sc = real")
    if g["smash"] and (mask >> 1) & 1:
        src("if sc == 2:\n    sc = 1")
    src(f"if ({mask} >> sc) & 1:")
    src.indent()
    src("sh = 12 + 9 * sc\nx = lin >> sh")
    src(_split("x", g["sets"], g["sshift"]))
    src(f"b = {g['off']} + st * {words}\nv = {_victim('t_blk', 'b', ways)}\nkey = q * 4 + sc + 1")
    if filt == 2:
        src(f"_rehash(t_cnt, {coff} + st * {HASH_BUCKETS}, t_blk, b, {ways}, v, t_blk[b + 2 + v], key)")
    if bin(mask).count("1") > 1:
        src(f"old = t_blk[b + 2 + v]\nif old != 0:\n    t_szn[{3 * s} + ((old - 1) & 3)] -= 1\nt_szn[{3 * s} + sc] += 1")
    else:
        # one page size: replacing an entry keeps the count; only a fill of an empty way adds one
        src(f"if t_blk[b + 2 + v] == 0:\n    t_szn[{3 * s} + sc] += 1")
    src(f"t_blk[b + 2 + v] = key\nt_blk[b + {words - ways} + v] = (phys - (lin & ((1 << sh) - 1))) | real")
    if g["level"] == 1:
        src("in_l1 = True")
    src.indent(-1)


def _psc_probe(src: _Src, g: dict[str, int]) -> None:
    """Code that sets ``hitp`` when a PSC holds the level-``hw_`` entry for table index ``pk``."""
    ways = g["ways"]
    src(_split("pk", g["sets"], g["sshift"]))
    src(f"b = {g['off']} + st * {g['words']}\nkey = q * 4 + hw_ + 1")
    if g["filt"] == 2:
        src(f"w2 = _hlook(p_cnt, {g['coff']} + st * {HASH_BUCKETS}, p_blk, b, {ways}, key)\n"
            f"if w2 >= 0:\n    {_used('p_blk', 'b', ways, 'w2')}\n    hitp = True")
        return
    src(f"w2 = _way(_match{ways}(p_blk, b + 2, key))\nif w2 >= 0:\n    {_used('p_blk', 'b', ways, 'w2')}\n"
        "    hitp = True")


def _psc_fill(src: _Src, g: dict[str, int]) -> None:
    ways = g["ways"]
    src(_split("pk", g["sets"], g["sshift"]))
    src(f"b = {g['off']} + st * {g['words']}\nv = {_victim('p_blk', 'b', ways)}\nkey = q * 4 + hw_ + 1")
    if g["filt"] == 2:
        src(f"_rehash(p_cnt, {g['coff']} + st * {HASH_BUCKETS}, p_blk, b, {ways}, v, p_blk[b + 2 + v], key)")
    src("p_blk[b + 2 + v] = key")


def _each_psc(src: _Src, pg: list[dict[str, int]], emit: Any, after_first: str) -> None:
    """``emit`` for every PSC that holds level ``hw_``, in the PSCs' order (``after_first``: a
    condition the later ones also need, e.g. that no earlier one hit)."""
    for s, g in enumerate(pg):
        src(f"if {after_first if s else ''}({g['mask']} >> hw_) & 1:")
        src.indent()
        emit(src, g)
        src.indent(-1)


HASH_BUCKETS = 128    # must equal sim.HASH_BUCKETS (checked in kernel_source)


def kernel_source(st: BulkState) -> str:
    """The Python source of ``translate`` and ``caches`` for ``st``'s CPU model."""
    from vmemmap.cost import sim

    assert sim.HASH_BUCKETS == HASH_BUCKETS
    cpu = st.cpu
    nt, npsc, nc = len(cpu.tlbs), len(cpu.pscs), len(cpu.caches)
    tg = [_geometry(st, "t_", s) for s in range(nt)]
    pg = [_geometry(st, "p_", s) for s in range(npsc)]
    cg = [_geometry(st, "c_", c) for c in range(nc)]
    src = _Src()
    src('''
# Generated by vmemmap.cost.simgen.kernel_source for one CPU model; see that module.
import numpy as np

from vmemmap.cost.sim import (_MATCH, _U, _any, _find, _hlook, _njit, _njit_inline, _prefetch, _psc_fa, _rehash,
                              _tz, _used_l, _used_n, _victim_l, _victim_n, _way)
MATCH_BINDINGS


@_njit
def translate(vaddr, lin_mask, levels, shifts, tphys, tables, child, t_blk, t_recent, t_cnt, p_blk, p_cnt,
              p_recent, phys_out, info_out, wref, ephys, wmemo, t_szn):
    """The TLB / walk / paging-structure-cache pass: each access's physical address, info word
    (sim.py: I_*) and walk references (appended to wref, in walk order); the number of references."""
    n = vaddr.shape[0]
    nw = 0
    prev_pg = -1
    prev_base = 0
    prev_real = 0
    k4 = ephys[8:12]
    for i in range(n):
        lin = np.int64(vaddr[i] & lin_mask)
        if (lin >> 12) == prev_pg:
            # the previous access's 4 KiB page, whose entry it left most recent in its L1 DTLB set:
            # an L1 hit that moves nothing
            phys_out[i] = prev_base + (lin & 4095)
            info_out[i] = 1 | (prev_real << 2)
            continue
        phys = np.int64(-1)
        real = np.int64(0)
        hit_level = 3
        hw = np.int64(-1)
        b = np.int64(0)
''')
    src.indent(2)
    order = [s for s in range(nt) if tg[s]["level"] == 1] + [s for s in range(nt) if tg[s]["level"] == 2]
    depth = 0
    for k, s in enumerate(order):
        src(f"# TLB array {s}: L{tg[s]['level']}, {tg[s]['sets']} x {tg[s]['ways']}-way, page sizes mask {tg[s]['mask']}")
        _tlb_probe(src, s, tg[s])
        src("if hw >= 0:")
        src.indent()
        _tlb_take(src, tg[s])
        src.indent(-1)
        if k + 1 < len(order):
            src("else:")
            src.indent()
            depth += 1
    src.indent(-depth)
    src(f'''
nref = 0
psc_hit = 0
if hit_level == 3:
    # the MMU's walk of the snapshotted tables (the pgd is table 0). Within a 2 MiB region mapped by
    # a 2 MiB or 1 GiB entry every access walks the same entries to the same frame, so such a walk
    # is kept in wmemo (host-side memoisation of a pure function: the tables never change here)
    mk = lin >> 21
    mo = (mk & {WMEMO - 1}) * 8
    if wmemo[mo] == mk + 1:
        rl = wmemo[mo + 2]
        real = rl & 3
        leaf = rl >> 2
        phys = wmemo[mo + 1] + (lin & 2097151)
        eph = wmemo              # the walk's entry addresses: eph[eo + d] for step d
        eo = mo + 3
    else:
        eph = ephys
        eo = 0
        ti = 0
        leaf = -1
        for d in range(levels):
            idx = (lin >> shifts[d]) & 511
            e = tables[ti, idx]
            ephys[d] = tphys[ti] + idx * 8
            if not (e & np.uint64(1)):
                break
            if d == levels - 1:
                phys = np.int64(e & np.uint64(0x000FFFFFFFFFF000)) + (lin & 4095)
                real = 0
                leaf = d
                break
            if shifts[d] <= 30 and (e & np.uint64(0x80)):
                if shifts[d] == 30:
                    phys = np.int64(e & np.uint64(0x000FFFFFC0000000)) + (lin & ((1 << 30) - 1))
                    real = 2
                else:
                    phys = np.int64(e & np.uint64(0x000FFFFFFFE00000)) + (lin & ((1 << 21) - 1))
                    real = 1
                leaf = d
                wmemo[mo] = mk + 1
                wmemo[mo + 1] = phys - (lin & 2097151)
                wmemo[mo + 2] = real | (leaf << 2)
                for d2 in range(leaf + 1):
                    wmemo[mo + 3 + d2] = ephys[d2]
                break
            ti = child[ti, idx]
            if ti < 0:
                break
    if leaf < 0:
        # not mapped: a fault (skipped by the cache pass)
        phys_out[i] = -1
        info_out[i] = 0
        prev_pg = -1
        continue
    start = 0
''')
    src.indent()
    if npsc == 1 and pg[0]["sets"] == 1:
        g = pg[0]
        # _psc_fa's first test, inline: the deepest entry the walk could take from the PSC, in the
        # way that hit last
        src(f"""if leaf >= 1:
    start = -1
    dm = leaf - 1
    hw_ = levels - 2 - dm
    if ({g['mask']} >> hw_) & 1:
        r0 = p_recent[0]
        if p_blk[2 + r0] == (lin >> shifts[dm]) * 4 + hw_ + 1:
            {_used('p_blk', '0', g['ways'], 'r0')}
            start = leaf
    if start < 0:
        start = _psc_fa(p_blk, p_cnt, p_recent, lin, leaf, levels, shifts, k4, {g['mask']}, {g['ways']}, {g['filt']})
    psc_hit = 1 if start > 0 else 0""")
    elif npsc:
        src("for d in range(leaf - 1, -1, -1):\n    hw_ = levels - 2 - d\n    pk = lin >> shifts[d]\n    hitp = False")
        src.indent()
        _each_psc(src, pg, _psc_probe, "not hitp and ")
        src("if hitp:\n    start = d + 1\n    psc_hit = 1\n    break")
        src.indent(-1)
    src("for d in range(start, leaf + 1):\n    wref[nw] = eph[eo + d]\n    nw += 1\nnref = leaf + 1 - start")
    if npsc:
        src("for d in range(start, leaf):\n    hw_ = levels - 2 - d\n    pk = lin >> shifts[d]")
        src.indent()
        _each_psc(src, pg, _psc_fill, "")
        src.indent(-1)
    src.indent(-1)
    src("in_l1 = hit_level == 1\nif hit_level >= 2:")
    src.indent()
    fill2 = [s for s in range(nt) if tg[s]["level"] == 2]
    fill1 = [s for s in range(nt) if tg[s]["level"] == 1]
    if fill2:
        src("if hit_level == 3:")
        src.indent()
        for s in fill2:
            _tlb_fill(src, s, tg[s])
        src.indent(-1)
    for s in fill1:
        _tlb_fill(src, s, tg[s])
    if not fill1 and not fill2:
        src("pass")
    src.indent(-1)
    src('''
prev_pg = lin >> 12 if in_l1 else -1
prev_base = phys - (lin & 4095)
prev_real = real
phys_out[i] = phys
info_out[i] = hit_level | (real << 2) | (psc_hit << 4) | (nref << 5)
''')
    src.indent(-2)
    src("    return nw\n")

    # ---- the cache hierarchy: one access
    lats = tuple(c.latency for c in cpu.caches) + (cpu.dram_cycles,)
    src(f'''

LATS = {lats!r}


@_njit_inline
def access(c_blk, c_one, phys):
    """The cache level that holds ``phys`` ({nc} = DRAM), filling the levels above it."""''')
    src.indent()
    for c in range(nc):
        g = cg[c]
        src(f"# {cpu.caches[c].name}: {g['sets']} sets x {g['ways']} ways")
        src(f"x = phys >> {g['lshift']}")
        src(_split("x", g["sets"], g["sshift"]))
        src(f"b{c} = {g['off']} + st * {g['words']}\nt{c} = q + 1")
        hit_fill = [f"    v = {_victim('c_blk', f'b{u}', cg[u]['ways'])}\n    c_blk[b{u} + 2 + v] = t{u}"
                    for u in range(c)]
        ret = "\n".join(hit_fill + [f"    return {c}"])
        if g["ways"] <= 16:
            cls = g["cls"]
            src(f"w0 = np.int64(c_blk[b{c}] & 15)\nhit = c_blk[b{c} + 2 + w0] == t{c}\nif not hit:\n"
                f"    m = _match{cls}(c_blk, b{c} + 2, t{c})\n    if m != 0:\n        w = np.int64(_tz(m))\n"
                f"        {_used('c_blk', f'b{c}', g['ways'], 'w')}\n        hit = True\nif hit:\n{ret}")
        else:
            src(f"if _any(c_blk, c_one, b{c} + 2, {g['ways']}, t{c}):\n"
                f"    w = _find(c_blk, c_one, b{c} + 2, {g['ways']}, t{c})\n"
                f"    {_used('c_blk', f'b{c}', g['ways'], 'w')}\n{ret}")
    for u in range(nc):
        src(f"v = {_victim('c_blk', f'b{u}', cg[u]['ways'])}\nc_blk[b{u} + 2 + v] = t{u}")
    src(f"return {nc}")
    src.indent(-1)

    # ---- the cache pass
    ls0 = cg[0]["lshift"] if nc else 0
    src('''

@_njit
def caches(pos, dep_ptr, dep_pos, per_op, op, out, phys_in, info_in, wref, c_blk, finish, c_one):
    """The cache pass: each access's walk references then its data through the caches, in the
    one-loop order; counters, latencies and each operation's critical path into ``out`` (row
    ``op`` + 1 onward for ``per_op``; ``op`` is the operation before the stretch's first, -1 for
    none); the stretch's last operation."""
    n = pos.shape[0]
    op_max = 0
    row = op if per_op and op >= 0 else 0
    wi = 0
    last = -1
    for i in range(n):''')
    src.indent(2)
    pf = [c for c in range(1, nc) if cg[c]["pf"]]
    st_item = st.arrays["c_blk"].itemsize
    if pf:
        src(f"j = i + {PF_AHEAD}\nif j < n:\n    pj = phys_in[j]\n    if pj >= 0:")
        for c in pf:
            g = cg[c]
            src(f"        x = pj >> {g['lshift']}")
            src("\n".join("        " + x for x in _split("x", g["sets"], g["sshift"]).splitlines()))
            src(f"        _prefetch(c_blk, {g['off']} + st * {g['words']})")
            if g["words"] * st_item > 64:
                # a set block longer than a host line may straddle two
                src(f"        _prefetch(c_blk, {g['off'] + g['words'] - 1} + st * {g['words']})")
    hl_lat = cpu.l2_tlb_latency
    same = "False" if not nc else f"(x >> {ls0}) == last"
    src(f'''
p = pos[i]
if p == 0:
    if op >= 0:
        out[row, 14] += op_max
    op += 1
    op_max = 0
    row = op if per_op else 0
inf = info_in[i]
hl = inf & 3
f = 0
for e in range(dep_ptr[i], dep_ptr[i + 1]):
    if finish[dep_pos[e]] > f:
        f = finish[dep_pos[e]]
if hl == 0:
    # not mapped: counted, skipped; it finishes when its inputs do
    out[row, 15] += 1
    finish[p] = f
    continue
real = (inf >> 2) & 3
lat = 0
if hl >= 2:
    lat += {hl_lat}
    out[row, 0 + real] += 1
nr = 0
if hl == 3:
    out[row, 3 + real] += 1
    out[row, 7] += (inf >> 4) & 1
    nr = inf >> 5
    out[row, 6] += nr
for r in range(nr + 1):
    # the walk references, then the data
    if r < nr:
        x = wref[wi]
        wi += 1
    else:
        x = phys_in[i]
    # the line the cache access before used is the most recent in its L1D set: a hit that moves nothing
    h = 0 if {same} else access(c_blk, c_one, x)
    last = x >> {ls0}
    col = 11 if r < nr else 8
    for c in range(h):
        out[row, col + c] += 1
    lat += LATS[h]
finish[p] = f + lat
if finish[p] > op_max:
    op_max = finish[p]''')
    src.indent(-2)
    src("    if op >= 0:\n        out[row, 14] += op_max\n    return op")
    text = src.text()
    used = sorted({int(m) for m in re.findall(r"_match(\d+)\(", text)})
    text = text.replace("MATCH_BINDINGS", "\n".join(f"_match{n} = _MATCH[{n}]" for n in used))
    # the cache pass once more for totals (simulate without per-op rows): every count into row 0,
    # with no per-operation row arithmetic
    fn = text[text.index("\n@_njit\ndef caches("):]
    tot = (fn.replace("def caches(", "def caches_tot(")
           .replace("row = op if per_op and op >= 0 else 0", "row = 0")
           .replace("row = op if per_op else 0", "row = 0"))
    assert tot.count("row = 0") == 2 and "row = op" not in tot
    return text + "\n" + tot


def kernel_dir() -> str:
    """Where generated passes live (numba caches their machine code beside them):
    ``$VMEMMAP_CACHE_DIR/sim``, else ``$XDG_CACHE_HOME/vmemmap/sim`` or ``~/.cache/vmemmap/sim``;
    a directory under the system temporary directory if that cannot be written."""
    base = os.environ.get("VMEMMAP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "vmemmap")
    for d in (os.path.join(base, "sim"), os.path.join(tempfile.gettempdir(), f"vmemmap-sim-{os.getuid()}")):
        try:
            os.makedirs(d, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK):
            return d
    raise OSError(f"no writable directory for the simulator's compiled passes (tried {base}/sim)")


def kernels(st: BulkState) -> tuple[Any, Any, Any]:
    """(translate, caches, caches_tot) for ``st``'s CPU model: the generated source, written once (content-
    addressed) and imported once per process."""
    src = kernel_source(st)
    key = hashlib.sha256(src.encode()).hexdigest()[:24]
    got = _LOADED.get(key)
    if got is not None:
        return got
    with _LOCK:
        got = _LOADED.get(key)
        if got is not None:
            return got
        path = os.path.join(kernel_dir(), f"simk_{key}.py")
        try:
            with open(path) as f:
                same = f.read() == src
        except OSError:
            same = False
        if not same:
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "w") as f:
                f.write(src)
            os.replace(tmp, path)
        name = f"vmemmap_simk_{key}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod          # numba's on-disk cache finds the module by name
        spec.loader.exec_module(mod)
        got = _LOADED[key] = (mod.translate, mod.caches, mod.caches_tot)
    return got
