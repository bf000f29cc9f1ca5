"""The buddy allocator's allocation and free of one order-K block, executed on the simulated kernel.

Models ``mm/page_alloc.c`` of the era. Everything that differs between eras is data in the
``[buddy]`` table of ``eras/<era>.toml`` (2.6.21-seed, 2.6.24, 6.1 and 6.12 have one; other eras
refuse): the step lists of the allocation and free paths (``alloc``, ``free``, ``pcp_alloc``,
``pcp_free``, ``free_prepare``), how ``PageBuddy`` is encoded (``page_buddy``), the order of
``page_is_buddy``'s tests, where the pageblock bitmap lives (``pageblock``), offsets of ``struct
page``/``struct zone``/``struct free_area`` and the flag bits the page checks test. Each step is one
method below named after the kernel function it models.

**2.6.21 / 2.6.24** (``buffered_rmqueue`` for order > 0): ``__rmqueue`` (2.6.24
``__rmqueue_smallest``) walks ``zone->free_area[order .. MAX_ORDER-1]`` testing ``list_empty(&area->
free_list[mt])``, takes the list head's page, ``list_del``, ``rmv_page_order``, ``nr_free--``, then
``expand`` puts each upper half ``page[size]`` on the next lower list (``list_add``, ``nr_free++``,
``set_page_order``); ``prep_new_page`` checks the head page and sets ``private``/``_count``. The free
(``__free_pages`` → ``put_page_testzero`` → ``__free_pages_ok``): ``free_pages_check`` on every page,
``page_zone(page)``, ``__free_one_page``: (2.6.24) the pageblock migratetype
(``get_pageblock_flags_group``: page_zone, page_to_pfn, one ``test_bit`` per bit), ``PageCompound``,
``page_to_pfn`` for ``page_idx``, then per order ``__page_find_buddy`` and ``page_is_buddy``
(``page_zone_id`` of both, ``PageBuddy``, ``page_order``, ``BUG_ON(page_count(buddy))``), merging
(``list_del``, ``nr_free--``, ``rmv_page_order``); ``set_page_order`` and ``list_add``.

**6.1 / 6.12** (mm/page_alloc.c, mm/internal.h, include/linux/page-flags.h @ v6.1 / v6.12):
``rmqueue_buddy`` → ``__rmqueue`` (the CMA balance test reads ``zone->vm_stat[NR_FREE_CMA_PAGES]``
and ``[NR_FREE_PAGES]`` for a movable allocation) → ``__rmqueue_smallest`` (``get_page_from_free_area``,
``del_page_from_free_list``: ``list_del``, ``__ClearPageBuddy``, ``set_page_private(0)``,
``nr_free--``; ``expand``: ``add_to_free_list``, ``set_buddy_order``; 6.1 also
``set_pcppage_migratetype``), 6.1 ``get_pcppage_migratetype`` (``page->index``) for the free-page
accounting, ``check_new_pages`` (``page_expected_state`` on every page: ``_mapcount``, ``mapping``,
``_refcount``, ``memcg_data``, ``flags``; 6.12 runs it because Debian's init_on_alloc enables
``check_pages_enabled``: the captures' "heap alloc:on"), ``rmqueue``'s
``test_bit(ZONE_BOOSTED_WATERMARK, &zone->flags)``, ``prep_new_page``: ``post_alloc_hook`` (stores
only) and ``clear_page_pfmemalloc`` (``ClearPageActive``: ``compound_head``, then the flags). The free:
(6.12 ``PageHead``) ``put_page_testzero``, ``__free_pages_ok``: ``page_to_pfn``, ``page_zone``,
``free_pages_prepare`` (the era's step list: ``PageHWPoison``, ``PageCompound``, (6.12
``page_folio``, ``folio_test_mlocked``), the tail pages' ``check_free_page`` + flag clear,
``PageMappingFlags``, the head's ``check_free_page``, ``page_cpupid_reset_last``, the flag clear),
then 6.1: ``get_pfnblock_migratetype`` + ``has_isolate_pageblock`` + ``__free_one_page``; 6.12:
``free_one_page`` → ``split_large_buddy`` (an order above ``pageblock_order`` is freed one pageblock
at a time, each with its migratetype and ``pfn_to_page`` between them). ``__free_one_page``:
``find_buddy_page_pfn`` (pfn arithmetic) + ``page_is_buddy`` (``PageBuddy`` through
``page->page_type``, ``buddy_order``, ``page_zone_id`` of both), from ``pageblock_order`` up the
buddy's migratetype (6.1 ``get_pageblock_migratetype(buddy)`` with its ``page_to_pfn``; 6.12
``get_pfnblock_migratetype(buddy, buddy_pfn)``), ``del_page_from_free_list``; ``set_buddy_order``,
``buddy_merge_likely`` (loads only below order MAX_ORDER-2), ``add_to_free_list``. The pageblock
bitmap is ``section_to_usemap(__pfn_to_section(pfn))`` = ``ms->usage->pageblock_flags`` (one
``READ_ONCE`` word).

**Per-cpu lists** (2.6: order 0; 6.x: ``pcp_allowed_order``: orders 0..PAGE_ALLOC_COSTLY_ORDER and
pageblock_order with THP): what the pcp refill (``rmqueue_bulk``) and drain (``free_pcppages_bulk``)
run per page is modelled, not the pcp list handling nor what runs when a page is taken from or put on
a pcp list (``free_unref_page_prepare``'s checks, ``check_new_pcp``). 2.6: ``__rmqueue(zone, 0)`` and
``__free_one_page(page, zone, 0)``. 6.1 refill: ``__rmqueue`` + ``check_pcp_refill``
(= ``check_new_pages`` without CONFIG_DEBUG_VM); drain: ``get_pcppage_migratetype``,
``bulkfree_pcp_prepare`` (= ``check_free_page`` of the head without DEBUG_VM), ``page_to_pfn``,
``__free_one_page``. 6.12 refill: ``__rmqueue`` (the checks moved to ``__rmqueue_pcplist``); drain:
``page_to_pfn``, ``get_pfnblock_migratetype``, ``__free_one_page``.

The memory-model operations are the model's own code (``k.model._page_to_pfn``, ``_pfn_to_page``,
``_page_to_nid``, the section lookup ``sections.nr_to_section``), so changing a model changes the cost.

**State.** After boot free memory sits in MAX_ORDER-1 blocks. Each operation takes a RAM block of
``MAX_ORDER_NR_PAGES`` pages (aligned, wholly RAM, one zone and node; reserved blocks are not
excluded) and makes it the head of its zone's ``free_area[MAX_ORDER-1]`` list (the list's next entry is
the block below it), lower orders empty, its pages free (``_count``/``_refcount`` 0, ``_mapcount`` -1,
``PageBuddy`` + ``private`` = MAX_ORDER-1 on the head), every pageblock MIGRATE_MOVABLE. The allocation
of order K then splits it down to K and the free merges it back. All stores run inside
``KernelMemory.journal()`` and are undone, so every operation sees the same state.

**Accesses.** Every load is recorded (``Acc``): loads of ``struct page`` fields made by the allocator
are ``KIND_STRUCT_PAGE``; loads of other kernel data (zone, ``NODE_DATA``, pageblock bitmap) and every
load inside a memory-model primitive are ``KIND_LOAD``. Each C-level read is one load (``test_bit``
and friends read through ``volatile`` pointers; plain field reads are counted once per expression,
read-modify-writes of a field as one load). The per-page check loops read their fields in bulk
(``peek_u64_array`` through the same page tables) and record exactly the loads the scalar reads would.
Stores change the simulated memory but are not trace accesses. Dependencies follow the data flow:
every value carries the set of load positions it derives from (``Val``); for a model primitive the
dependencies inside it are found by ``trace.op_accesses`` on the primitive alone, and a primitive load
whose address moves with the primitive's argument also depends on what the argument derives from.

Not modelled: ``zone->lock`` and the pcp locks, statistics (``__mod_zone_freepage_state``,
``account_freepages``, ``zone_statistics``, vm events), static-key-disabled hooks (page owner, page
table check, KASAN, guard pages, page reporting, shuffling, memory-allocation profiling),
``task_capc`` (``current->capture_control``), the zonelist walk and watermark checks of
``get_page_from_freelist``, init_on_alloc's zeroing (stores) and stores as memory accesses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from vmemmap.cost.trace import KIND_LOAD, KIND_STRUCT_PAGE, op_accesses
from vmemmap.errors import InputError
from vmemmap.kernel import Kernel

PAGE_SHIFT = 12
MASK64 = (1 << 64) - 1
UINT_MAX = 0xFFFFFFFF
LIST_POISON1 = 0x00100100  # include/linux/poison.h
LIST_POISON2 = 0x00200200

# access classes for relocating one block's accesses to another block with the same pattern key
CLS_FIXED = 0    # the same address for every block of the key
CLS_PAGE = 1     # an offset from the block's first struct page
CLS_BITMAP = 2   # a pageblock bitmap word: base + ((pfn - origin) >> pageblock_order) * bits + bit

#: struct page fields read as 32-bit values (atomic_t / unsigned int)
INT_FIELDS = frozenset({"_count", "_refcount", "_mapcount", "page_type"})

#: defaults of the [buddy] keys added after 2.6.24's table: the 2.6 paths
DEFAULTS: dict = {
    "page_buddy": "flags",
    "refcount_field": "_count",
    "pcp_orders": [0],
    "alloc": ["rmqueue", "prep_new_page"],
    "pcp_alloc": ["rmqueue"],
    "free": ["put_page_testzero", "free_pages_check", "page_zone", "free_one_page"],
    "pcp_free": ["free_one_page"],
    "free_prepare": [],
    "free_one_page_pre": ["migratetype", "compound", "page_to_pfn"],
    "page_is_buddy": ["zone_id", "buddy", "order", "count"],
    "merge_del": ["list_del", "nr_free", "clear_buddy"],
    "merge_pageblock": "none",
    "merge_likely_below": -1,
    "rmqueue_sets_pcp_migratetype": False,
    "pageblock_read": "test_bit",
    "usage_pageblock_flags": 0,
}


@dataclass(frozen=True)
class Val:
    """A value the kernel code computed and the load positions (bit set) it derives from."""

    v: int
    deps: int = 0


@dataclass(slots=True)
class Acc:
    vaddr: int
    kind: int
    deps: int
    what: str
    cls: int
    off: int = 0                       # CLS_PAGE: vaddr - first struct page of the block
    bitmap: tuple[int, int, int, int] = (0, 0, 0, 0)   # CLS_BITMAP: (base, origin pfn, pfn offset, bit)


class BuddyError(RuntimeError):
    """The simulated state would make the kernel call bad_page()/BUG(): a modelling bug."""


def buddy_rules(k: Kernel) -> dict:
    b = k.era.buddy
    if not b:
        raise InputError(f"the buddy allocator workloads are modelled for eras with a [buddy] table "
                         f"(2.6.21-seed, 2.6.24, 6.1, 6.12); {k.era.name} has none")
    return {**DEFAULTS, **b}


@dataclass
class BuddyOp:
    """One allocation + free of order ``order`` on the block starting at ``block_pfn``."""

    k: Kernel
    order: int
    block_pfn: int
    acc: list[Acc] = field(default_factory=list)

    def __post_init__(self) -> None:
        k = self.k
        self.b = buddy_rules(k)
        self.sp_off = self.b["struct_page"]
        self.bits = self.b["page_flags"]
        self.zl = self.b["zone"]
        self.sp = k.era.struct_page_size
        self.max_order = int(self.b["max_order"])
        self.mt = int(self.b["alloc_migratetype"])
        self.rc = str(self.b["refcount_field"])
        self.kind = str(self.b["page_buddy"])
        self.page0 = k.model.pfn_to_page_array(np.array([self.block_pfn], dtype=np.uint64))[0].item()
        self.s: dict[str, Val | int | None] = {}

    # ------------------------------------------------------------------ recorded kernel accesses
    def _classify(self, vaddr: int) -> tuple[int, int]:
        off = vaddr - self.page0
        if 0 <= off < (1 << (self.max_order - 1)) * self.sp:
            return CLS_PAGE, off
        return CLS_FIXED, 0

    def ld(self, addr: Val, off: int, size: int, what: str, kind: int = KIND_LOAD) -> Val:
        """A load of ``size`` bytes at ``addr + off`` (its address derives from ``addr.deps``)."""
        va = (addr.v + off) & MASK64
        cls, o = self._classify(va) if kind == KIND_STRUCT_PAGE else (CLS_FIXED, 0)
        pos = len(self.acc)
        self.acc.append(Acc(va, kind, addr.deps, what, cls, o))
        return Val(self.k.mem.load(va, size, what), 1 << pos)

    def pld(self, page: Val, fld: str, what: str | None = None) -> Val:
        """A load of ``page->fld`` (struct page field, offsets from the era's [buddy.struct_page])."""
        size = 4 if fld in INT_FIELDS else 8
        return self.ld(page, self.sp_off[fld], size, what or f"page->{fld}", KIND_STRUCT_PAGE)

    def st(self, addr: int, value: int, size: int = 8) -> None:
        self.k.mem.store(addr & MASK64, value & ((1 << (8 * size)) - 1), size)

    def pst(self, page: Val, fld: str, value: int) -> None:
        self.st(page.v + self.sp_off[fld], value, 4 if fld in INT_FIELDS else 8)

    def page_fields(self, page: Val, first: int, count: int, fields: list[tuple[str, str]]) -> np.ndarray:
        """``count`` pages from ``page + first``, each reading ``fields`` (field, what) in order: the
        same loads ``pld`` makes, read in bulk through the page tables. Returns (count, fields)."""
        sp, n = self.sp, len(fields)
        offs = np.array([self.sp_off[f] for f, _ in fields], dtype=np.uint64)
        base = np.uint64(page.v) + np.arange(first, first + count, dtype=np.uint64) * np.uint64(sp)
        va = (base[:, None] + offs[None, :]).ravel()
        words = self.k.mem.peek_u64_array(va & ~np.uint64(7))
        vals = words >> ((va & np.uint64(7)) * np.uint64(8))
        ints = np.array([f in INT_FIELDS for f, _ in fields] * count)
        vals = np.where(ints, vals & np.uint64(UINT_MAX), vals)
        start = len(self.acc)
        rel = (va - np.uint64(self.page0)).view(np.int64)
        inb = (rel >= 0) & (rel < (1 << (self.max_order - 1)) * sp)
        cls = np.where(inb, CLS_PAGE, CLS_FIXED).tolist()
        off = np.where(inb, rel, 0).tolist()
        self.acc.extend(map(Acc, va.tolist(), repeat(KIND_STRUCT_PAGE), repeat(page.deps),
                            [w for _, w in fields] * count, cls, off))
        if self.k.mem._recorders:   # noqa: SLF001 - keep outer recorders complete, as load() does
            from vmemmap.kernel_memory import Load

            sizes = [4 if f in INT_FIELDS else 8 for f, _ in fields]
            for i, a in enumerate(self.acc[start:]):
                for r in self.k.mem._recorders:  # noqa: SLF001
                    r.append(Load(a.what, a.vaddr, sizes[i % n]))
        return vals.reshape(count, n)

    def fill_field(self, first: int, count: int, fld: str, value: int) -> None:
        """Set ``fld`` of ``count`` struct pages from block page ``first`` (state set-up, not a kernel
        access): one read-modify-write store per 4 KiB of memmap instead of one store per page. The
        block's struct pages are virtually contiguous (one memmap piece: a block never crosses a
        section or node)."""
        size = 4 if fld in INT_FIELDS else 8
        start = self.page0 + first * self.sp
        end = start + count * self.sp
        offs = np.arange(count, dtype=np.int64) * self.sp + self.sp_off[fld]
        val = np.frombuffer((value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"), dtype=np.uint8)
        a = start
        while a < end:
            b = min(end, (a & ~0xFFF) + 0x1000)
            buf = np.frombuffer(self.k.mem.peek(a, b - a).to_bytes(b - a, "little"), dtype=np.uint8).copy()
            lo, hi = a - start, b - start
            sel = offs[(offs >= lo - size + 1) & (offs < hi)]
            for j in range(size):
                pos = sel + j - lo
                ok = (pos >= 0) & (pos < b - a)
                buf[pos[ok]] = val[j]
            self.k.mem.store(a, int.from_bytes(buf.tobytes(), "little"), b - a)
            a = b

    def prim(self, fn: Callable[[int], int], arg: Val) -> Val:
        """Run a memory-model primitive on ``arg``: its loads join the op with their dependencies."""
        k = self.k
        accs = op_accesses(k, lambda: fn(arg.v))
        loads, res = accs[:-1], accs[-1]
        moved = self._arg_moves(fn, arg.v, [a.vaddr for a in loads])
        base = len(self.acc)
        for j, a in enumerate(loads):
            d = _shift_bits(a.dep, base) | (arg.deps if j in moved else 0)
            cls, o = self._classify(a.vaddr)
            self.acc.append(Acc(a.vaddr, KIND_LOAD, d, a.what, cls, o))
        return Val(res.vaddr, _shift_bits(res.dep, base) | arg.deps)

    def _arg_moves(self, fn: Callable[[int], int], arg: int, addrs: list[int]) -> set[int]:
        """Loads of the primitive whose address changes when its argument changes."""
        moved: set[int] = set()
        step = self.sp if arg > 1 << 40 else 1   # a struct page address or a pfn
        for delta in (step, step << self.k.era.pfn_section_shift):
            with self.k.mem.record() as rec:
                try:
                    fn(arg + delta)
                except Exception:  # noqa: BLE001 - another section may not exist: that is movement
                    moved.update(range(len(addrs)))
            for j, a in enumerate(addrs):
                if j >= len(rec) or rec[j].vaddr != a:
                    moved.add(j)
        return moved

    # ------------------------------------------------------------------ kernel helpers
    def flag(self, flags: Val | int, name: str) -> bool:
        v = flags.v if isinstance(flags, Val) else flags
        return bool(v >> int(self.bits[name]) & 1)

    def mask(self, key: str) -> int:
        """A page-flag mask of the era: a list of flag names, or "all" (every bit below NR_PAGEFLAGS)."""
        names = self.bits[key]
        if names == "all":
            return (1 << int(self.bits["nr_pageflags"])) - 1
        return sum(1 << int(self.bits[n]) for n in names)

    def zone_id(self, flags: int) -> int:
        """``page_zone_id``: the section/node and zone fields of page->flags."""
        return flags >> self.k.page_flags.zones_pgshift

    def page_zone(self, page: Val) -> Val:
        """``page_zone``: ``&NODE_DATA(page_to_nid(page))->node_zones[page_zonenum(page)]`` (mm.h)."""
        k = self.k
        nid = self.prim(k.model._page_to_nid, page)
        if k.numa_config:
            pgdat = self.ld(Val(k.sym("node_data") + 8 * nid.v, nid.deps), 0, 8, "node_data[nid]")
        else:
            pgdat = Val(k.nodes[min(k.nodes)].pgdat)  # &contig_page_data: a link-time constant
        flags = self.pld(page, "flags", "page->flags (page_zonenum)")
        pf = k.page_flags
        zid = (flags.v >> pf.zones_pgshift) & ((1 << pf.zones_width) - 1)
        return Val(pgdat.v + zid * int(self.zl["size"]), pgdat.deps | flags.deps)

    def page_count(self, page: Val) -> int:
        """``page_count``: through the compound head (era rule), then ``_count``."""
        rule = self.b["page_count"]
        flags = self.pld(page, "flags", "page->flags (PageCompound/PageTail)")
        head = page
        if rule == "compound-private" and self.flag(flags, "compound"):
            head = self.pld(page, "private", "page->private (compound head)")
        elif rule == "compound-head" and self.flag(flags, "tail"):
            head = self.pld(page, "first_page")
        return self.pld(head, self.rc).v

    def check_page(self, page: Val, mask_key: str) -> None:
        """2.6 ``free_pages_check`` / ``prep_new_page``'s test: mapcount, mapping, count, flag bits."""
        mapcount = self.pld(page, "_mapcount").v
        mapping = self.pld(page, "mapping").v
        count = self.page_count(page)
        flags = self.pld(page, "flags")
        if ((mapcount + 1) & UINT_MAX) or mapping or count or flags.v & self.mask(mask_key):
            raise BuddyError(f"bad_page at {page.v:#x} (flags {flags.v:#x}, count {count}, mapcount {mapcount})")

    def check_pages(self, page: Val, first: int, count: int, mask_key: str) -> None:
        """2.6 ``free_pages_check`` on ``count`` pages: the loads of :meth:`check_page`, in bulk while no
        page is compound (``page_count`` would then read the head: the scalar path runs)."""
        if count <= 0:
            return
        rule = self.b["page_count"]
        ctl = "compound" if rule == "compound-private" else "tail"
        flds = [("_mapcount", "page->_mapcount"), ("mapping", "page->mapping"),
                ("flags", "page->flags (PageCompound/PageTail)"), (self.rc, f"page->{self.rc}"),
                ("flags", "page->flags")]
        if self.k.mem._recorders or rule not in ("compound-private", "compound-head"):  # noqa: SLF001
            for i in range(first, first + count):
                self.check_page(Val(page.v + i * self.sp, page.deps), mask_key)
            return
        fl = self.k.mem.peek_u64_array(np.uint64(page.v) + np.arange(first, first + count, dtype=np.uint64)
                                       * np.uint64(self.sp) + np.uint64(self.sp_off["flags"]))
        if np.any((fl >> np.uint64(int(self.bits[ctl]))) & np.uint64(1)):
            for i in range(first, first + count):
                self.check_page(Val(page.v + i * self.sp, page.deps), mask_key)
            return
        v = self.page_fields(page, first, count, flds)
        self._raise_bad(page, first, v, [0, 1, 3], 4, mask_key)

    def _raise_bad(self, page: Val, first: int, v: np.ndarray, zero_cols: list[int], flag_col: int,
                   mask_key: str) -> None:
        bad = (v[:, zero_cols[0]] != UINT_MAX) | (v[:, flag_col] & np.uint64(self.mask(mask_key)) != 0)
        for c in zero_cols[1:]:
            bad |= v[:, c] != 0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BuddyError(f"bad_page at {page.v + (first + i) * self.sp:#x} ({v[i].tolist()})")

    def expected_state(self, page: Val, first: int, count: int, mask_key: str, flags_clear: bool = False) -> None:
        """6.x ``page_expected_state`` on ``count`` pages (``check_new_page`` / ``check_free_page``):
        the era's ``expected_state`` fields in order; with ``flags_clear`` each page's
        ``flags &= ~PAGE_FLAGS_CHECK_AT_PREP`` follows its check (``free_pages_prepare``'s tail loop)."""
        if count <= 0:
            return
        names = list(self.b["expected_state"])
        flds = [(f, f"page->{f}") for f in names]
        if flags_clear:
            flds.append(("flags", "page->flags (&= ~PAGE_FLAGS_CHECK_AT_PREP)"))
        v = self.page_fields(page, first, count, flds)
        cols = {f: i for i, f in enumerate(names)}
        zero = [cols["_mapcount"]] + [cols[f] for f in names if f not in ("_mapcount", "flags")]
        self._raise_bad(page, first, v, zero, cols["flags"], mask_key)
        # the flag clears store what was loaded (the check passed: no PREP bits are set)

    def area(self, zone: Val, order: int) -> int:
        return zone.v + int(self.zl["free_area"]) + order * int(self.b["free_area_size"])

    def list_head(self, zone: Val, order: int, mt: int) -> Val:
        return Val(self.area(zone, order) + 16 * mt, zone.deps)

    def list_del(self, entry: Val) -> None:
        nxt = self.ld(entry, 0, 8, "page->lru.next", KIND_STRUCT_PAGE)
        prv = self.ld(entry, 8, 8, "page->lru.prev", KIND_STRUCT_PAGE)
        self.st(nxt.v + 8, prv.v)
        self.st(prv.v, nxt.v)
        self.st(entry.v, LIST_POISON1)
        self.st(entry.v + 8, LIST_POISON2)

    def list_add(self, new: Val, head: Val, tail: bool = False) -> None:
        """``list_add`` (``__list_add(new, head, head->next)``) or ``list_add_tail`` (``head->prev``)."""
        if tail:
            prv = self.ld(head, 8, 8, "free_list.prev")
            self.st(prv.v, new.v)
            self.st(new.v, head.v)
            self.st(new.v + 8, prv.v)
            self.st(head.v + 8, new.v)
            return
        nxt = self.ld(head, 0, 8, "free_list.next")
        self.st(nxt.v + 8, new.v)
        self.st(new.v, nxt.v)
        self.st(new.v + 8, head.v)
        self.st(head.v, new.v)

    def nr_free(self, zone: Val, order: int, delta: int) -> None:
        a = Val(self.area(zone, order), zone.deps)
        n = self.ld(a, int(self.b["nr_free"]), 8, "area->nr_free")
        self.st(a.v + int(self.b["nr_free"]), n.v + delta)

    # PageBuddy: page->flags bit (2.6: PG_buddy), page->page_type bit cleared (6.1: PAGE_TYPE_OPS,
    # PageType(page, PG_buddy)) or page->page_type's top byte (6.12: PGTY_buddy << 24)
    def is_buddy(self, page: Val, what: str) -> bool:
        if self.kind == "flags":
            return self.flag(self.pld(page, "flags", what), "buddy")
        t = self.pld(page, "page_type", what.replace("flags", "page_type")).v
        return self._type_is_buddy(t)

    def _type_is_buddy(self, t: int) -> bool:
        base, bit = int(self.b.get("page_type_base", 0)), int(self.b.get("page_type_buddy", 0))
        if self.kind == "page_type-bit":
            return (t & (base | bit)) == base
        return (t >> 24) == bit

    def set_pagebuddy(self, page: Val) -> None:
        """``__SetPageBuddy``."""
        if self.kind == "flags":
            f = self.pld(page, "flags", "page->flags (__SetPageBuddy)")
            self.st(page.v, f.v | 1 << int(self.bits["buddy"]))
            return
        t = self.pld(page, "page_type", "page->page_type (__SetPageBuddy)").v
        bit = int(self.b["page_type_buddy"])
        if self.kind == "page_type-bit":
            self.pst(page, "page_type", t & ~bit)
        elif not self._type_is_buddy(t):
            self.pst(page, "page_type", bit << 24)

    def clear_pagebuddy(self, page: Val) -> None:
        """``__ClearPageBuddy``."""
        if self.kind == "flags":
            f = self.pld(page, "flags", "page->flags (__ClearPageBuddy)")
            self.st(page.v, f.v & ~(1 << int(self.bits["buddy"])))
            return
        t = self.pld(page, "page_type", "page->page_type (__ClearPageBuddy)").v
        if self.kind == "page_type-bit":
            self.pst(page, "page_type", t | int(self.b["page_type_buddy"]))
        elif t != UINT_MAX:
            self.pst(page, "page_type", UINT_MAX)

    def set_page_order(self, page: Val, order: int) -> None:
        """``set_page_order`` (2.6) / ``set_buddy_order`` (6.x): private, then ``__SetPageBuddy``."""
        self.st(page.v + self.sp_off["private"], order)
        self.set_pagebuddy(page)

    def rmv_page_order(self, page: Val) -> None:
        """``rmv_page_order`` / ``del_page_from_free_list``'s ``__ClearPageBuddy`` + ``set_page_private(0)``."""
        self.clear_pagebuddy(page)
        self.st(page.v + self.sp_off["private"], 0)

    def migratetype(self, page: Val) -> int:
        """``get_pageblock_migratetype`` → ``get_pageblock_flags_group`` (mm/page_alloc.c @ v2.6.24)."""
        if self.b["pageblock"] == "none":
            return 0
        if self.b["pageblock"] == "usage":     # 6.1 get_pageblock_migratetype: page_to_pfn first
            return self.pfnblock_migratetype(page, self.prim(self.k.model._page_to_pfn, page))
        k = self.k
        zone = self.page_zone(page)
        pfn = self.prim(k.model._page_to_pfn, page)
        pbo, nbits = int(self.b["pageblock_order"]), int(self.b["pageblock_bits"])
        if k.model.section_of(0) is not None:   # SPARSEMEM: __pfn_to_section(pfn)->pageblock_flags
            st = k.model.sections
            ms = self.prim(lambda p: st.nr_to_section(p >> k.era.pfn_section_shift) or 0, pfn)
            bitmap = self.ld(ms, 8, 8, "ms->pageblock_flags")
            origin = pfn.v & ~(k.era.pages_per_section - 1)
            idx_deps = pfn.deps
        else:                                   # zone->pageblock_flags, pfn - zone->zone_start_pfn
            bitmap = self.ld(zone, int(self.zl["pageblock_flags"]), 8, "zone->pageblock_flags")
            zsp = self.ld(zone, int(self.zl["zone_start_pfn"]), 8, "zone->zone_start_pfn")
            origin = zsp.v
            idx_deps = pfn.deps | zsp.deps
        bitidx = ((pfn.v - origin) >> pbo) * nbits
        flags = 0
        for b in range(nbits):                  # one test_bit per bit
            word = bitmap.v + ((bitidx + b) >> 6) * 8
            self.acc.append(Acc(word, KIND_LOAD, bitmap.deps | idx_deps, "pageblock_flags word", CLS_BITMAP,
                                0, (bitmap.v, origin, pfn.v - self.block_pfn, b)))
            if self.k.mem.load(word, 8, "pageblock_flags word") >> ((bitidx + b) & 63) & 1:
                flags |= 1 << b
        return flags

    def pfnblock_migratetype(self, page: Val, pfn: Val) -> int:
        """``get_pfnblock_migratetype(page, pfn)`` → ``get_pfnblock_flags_mask`` (mm/page_alloc.c @ v6.1,
        v6.12): ``get_pageblock_bitmap`` = ``section_to_usemap(__pfn_to_section(pfn))`` =
        ``ms->usage->pageblock_flags``, ``pfn_to_bitidx`` = ``((pfn & (PAGES_PER_SECTION-1)) >>
        pageblock_order) * NR_PAGEBLOCK_BITS``, one ``READ_ONCE(bitmap[word_bitidx])``, masked with
        MIGRATETYPE_MASK."""
        k = self.k
        if k.model.section_of(0) is None:
            raise InputError("the 6.x buddy workloads model SPARSEMEM's pageblock bitmap; "
                             "!SPARSEMEM (zone->pageblock_flags) is not modelled for this era")
        pbo, nbits = int(self.b["pageblock_order"]), int(self.b["pageblock_bits"])
        st = k.model.sections
        ms = self.prim(lambda p: st.nr_to_section(p >> k.era.pfn_section_shift) or 0, pfn)
        usage = self.ld(ms, 8, 8, "ms->usage")
        bitmap = Val(usage.v + int(self.b["usage_pageblock_flags"]), usage.deps)
        origin = pfn.v & ~(k.era.pages_per_section - 1)
        bitidx = ((pfn.v - origin) >> pbo) * nbits
        word = bitmap.v + (bitidx >> 6) * 8
        self.acc.append(Acc(word, KIND_LOAD, bitmap.deps | pfn.deps, "pageblock_flags word", CLS_BITMAP,
                            0, (bitmap.v, origin, pfn.v - self.block_pfn, 0)))
        w = self.k.mem.load(word, 8, "pageblock_flags word")
        return (w >> (bitidx & 63)) & int(self.b["migratetype_mask"])

    # ------------------------------------------------------------------ the allocator
    def rmqueue(self, zone: Val, order: int) -> Val:
        """``__rmqueue`` (2.6.21) / ``__rmqueue_smallest`` (2.6.24+) and ``expand``."""
        for cur in range(order, self.max_order):
            head = self.list_head(zone, cur, self.mt)
            nxt = self.ld(head, 0, 8, "area->free_list.next (list_empty)")
            if nxt.v == head.v:
                continue
            page = Val(nxt.v - self.sp_off["lru"], nxt.deps)
            self.list_del(Val(nxt.v, nxt.deps))
            self.rmv_page_order(page)
            self.nr_free(zone, cur, -1)
            high, size = cur, 1 << cur
            while high > order:                 # expand()
                high -= 1
                size >>= 1
                half = Val(page.v + size * self.sp, page.deps)
                self.list_add(Val(half.v + self.sp_off["lru"], half.deps), self.list_head(zone, high, self.mt))
                self.nr_free(zone, high, +1)
                self.set_page_order(half, high)
            if self.b["rmqueue_sets_pcp_migratetype"]:
                self.pst(page, "index", self.mt)   # set_pcppage_migratetype (6.1)
            return page
        raise BuddyError("__rmqueue found every free list empty")

    def page_is_buddy(self, page: Val, buddy: Val, order: int) -> bool:
        """``page_is_buddy``: the era's tests in the era's order (``[buddy] page_is_buddy``)."""
        for test in self.b["page_is_buddy"]:
            if test == "zone_id":
                zp = self.pld(page, "flags", "page->flags (page_zone_id)")
                zb = self.pld(buddy, "flags", "buddy->flags (page_zone_id)")
                if self.zone_id(zp.v) != self.zone_id(zb.v):
                    return False
            elif test == "buddy":
                if not self.is_buddy(buddy, "buddy->flags (PageBuddy)"):
                    return False
            elif test == "order":
                what = "buddy->private (page_order)" if self.kind == "flags" else "buddy->private (buddy_order)"
                if self.pld(buddy, "private", what).v != order:
                    return False
            elif test == "count":
                if self.page_count(buddy) != 0:
                    raise BuddyError("BUG_ON(page_count(buddy) != 0)")
            else:
                raise ValueError(test)
        return True

    def free_one_page(self, page: Val, zone: Val, order: int, pfn: Val | None = None,
                      mt: int | None = None) -> None:
        """``__free_one_page`` (mm/page_alloc.c @ v2.6.21 / v2.6.24 / v6.1 / v6.12)."""
        if self.b["holes_in_zone"]:
            raise InputError("HOLES_IN_ZONE is not modelled")
        for step in self.b["free_one_page_pre"]:    # 2.6: the work done inside __free_one_page
            if step == "migratetype":
                mt = self.migratetype(page)
            elif step == "compound":
                f = self.pld(page, "flags", "page->flags (PageCompound)")
                if self.flag(f, "compound"):
                    raise BuddyError("compound page freed: not part of this workload")
            elif step == "page_to_pfn":
                pfn = self.prim(self.k.model._page_to_pfn, page)
        assert pfn is not None and mt is not None
        pbo, mergeable = int(self.b.get("pageblock_order", 0)), int(self.b.get("pcptypes", 0))
        buddy_pfn = 0
        while order < self.max_order - 1:
            buddy_pfn = pfn.v ^ (1 << order)           # __find_buddy_pfn / __page_find_buddy
            buddy = Val(page.v + (buddy_pfn - pfn.v) * self.sp, page.deps | pfn.deps)
            if not self.page_is_buddy(page, buddy, order):
                break
            rule = self.b["merge_pageblock"]
            if rule != "none" and order >= pbo:        # migratetype_is_mergeable: mt < MIGRATE_PCPTYPES
                bpfn = (self.prim(self.k.model._page_to_pfn, buddy) if rule == "page_to_pfn"
                        else Val(buddy_pfn, pfn.deps))
                bmt = self.pfnblock_migratetype(buddy, bpfn)
                if mt != bmt and (mt >= mergeable or bmt >= mergeable):
                    break
            for d in self.b["merge_del"]:
                if d == "list_del":
                    self.list_del(Val(buddy.v + self.sp_off["lru"], buddy.deps))
                elif d == "nr_free":
                    self.nr_free(zone, order, -1)
                elif d == "clear_buddy":
                    self.rmv_page_order(buddy)
            comb = buddy_pfn & pfn.v
            page = Val(page.v + (comb - pfn.v) * self.sp, page.deps | pfn.deps)
            pfn = Val(comb, pfn.deps)
            order += 1
        self.set_page_order(page, order)
        tail = False
        if order < int(self.b["merge_likely_below"]):  # buddy_merge_likely (6.x)
            higher = buddy_pfn & pfn.v
            hpage = Val(page.v + (higher - pfn.v) * self.sp, page.deps | pfn.deps)
            hb = higher ^ (1 << (order + 1))
            tail = self.page_is_buddy(hpage, Val(hpage.v + (hb - higher) * self.sp, hpage.deps), order + 1)
        self.list_add(Val(page.v + self.sp_off["lru"], page.deps), self.list_head(zone, order, mt), tail)
        self.nr_free(zone, order, +1)

    # ------------------------------------------------------------------ the paths' steps
    def _alloc_step(self, step: str) -> None:
        s, zone, page = self.s, self.s["zone"], self.s.get("page")
        if step == "rmqueue":
            s["page"] = self.rmqueue(zone, self.order)
        elif step == "cma_balance":                 # __rmqueue, CONFIG_CMA, ALLOC_CMA (movable)
            self.ld(zone, int(self.zl["vm_stat_nr_free_cma_pages"]), 8, "zone->vm_stat[NR_FREE_CMA_PAGES]")
            self.ld(zone, int(self.zl["vm_stat_nr_free_pages"]), 8, "zone->vm_stat[NR_FREE_PAGES]")
        elif step == "pcp_migratetype":             # get_pcppage_migratetype (6.1)
            self.pld(page, "index", "page->index (get_pcppage_migratetype)")
        elif step == "check_new_pages":
            self.expected_state(page, 0, 1 << self.order, "new_check")
        elif step == "zone_boosted":                # rmqueue: test_bit(ZONE_BOOSTED_WATERMARK, &zone->flags)
            self.ld(zone, int(self.zl["flags"]), 8, "zone->flags (ZONE_BOOSTED_WATERMARK)")
        elif step == "prep_new_page":               # 2.6 prep_new_page
            self.check_page(page, "new_check")
            f = self.pld(page, "flags", "page->flags (&= ~PG_uptodate...)")
            self.st(page.v, f.v)
            self.st(page.v + self.sp_off["private"], 0)
            self.pst(page, self.rc, 1)              # set_page_refcounted
        elif step == "post_alloc_hook":             # 6.x: set_page_private(0), set_page_refcounted
            self.st(page.v + self.sp_off["private"], 0)
            self.pst(page, self.rc, 1)
        elif step == "clear_page_pfmemalloc":       # prep_new_page: ClearPageActive (PF_HEAD: compound_head)
            h = self.pld(page, "compound_head", "page->compound_head (ClearPageActive)")
            head = Val(h.v - 1, h.deps) if h.v & 1 else page
            f = self.pld(head, "flags", "page->flags (clear_page_pfmemalloc)")
            self.st(head.v, f.v & ~(1 << int(self.bits["active"])))
        else:
            raise ValueError(f"unknown buddy alloc step {step!r}")

    def _free_step(self, step: str) -> None:
        s, page = self.s, self.s["page"]
        if step == "put_page_testzero":
            c = self.pld(page, self.rc, f"page->{self.rc} (put_page_testzero)")
            self.pst(page, self.rc, c.v - 1)
        elif step == "page_head":                   # 6.12 __free_pages: PageHead before the put
            self.pld(page, "flags", "page->flags (PageHead)")
        elif step == "free_pages_check":            # 2.6 __free_pages_ok: every page of the block
            self.check_pages(page, 0, 1 << self.order, "free_check")
        elif step == "page_zone":
            s["fzone"] = self.page_zone(page)
        elif step == "page_to_pfn":
            s["pfn"] = self.prim(self.k.model._page_to_pfn, page)
        elif step == "free_pages_prepare":
            for sub in self.b["free_prepare"]:
                self._prepare_step(sub)
        elif step == "pfnblock_migratetype":
            s["mt"] = self.pfnblock_migratetype(page, s["pfn"])
        elif step == "pcp_migratetype":             # free_pcppages_bulk: get_pcppage_migratetype (6.1)
            s["mt"] = self.pld(page, "index", "page->index (get_pcppage_migratetype)").v
        elif step == "check_free":                  # bulkfree_pcp_prepare → check_free_page (6.1)
            self.expected_state(page, 0, 1, "free_check")
        elif step == "has_isolate_pageblock":       # __free_pages_ok (6.1)
            self.ld(s["fzone"], int(self.zl["nr_isolate_pageblock"]), 8, "zone->nr_isolate_pageblock")
        elif step == "free_one_page":               # 2.6: __free_one_page does the lookups itself
            self.free_one_page(page, s.get("fzone") or s["zone"], self.order)
        elif step == "__free_one_page":
            self.free_one_page(page, s.get("fzone") or s["zone"], self.order, s["pfn"], s["mt"])
        elif step == "split_large_buddy":           # 6.12 free_one_page → split_large_buddy
            self.split_large_buddy(page, s["fzone"], s["pfn"], self.order)
        else:
            raise ValueError(f"unknown buddy free step {step!r}")

    def _prepare_step(self, step: str) -> None:
        """One step of ``free_pages_prepare`` (mm/page_alloc.c @ v6.1 / v6.12, check_free true)."""
        page = self.s["page"]
        if step == "hwpoison":
            self.pld(page, "flags", "page->flags (PageHWPoison)")
        elif step == "compound":                    # PageCompound: PG_head || compound_head & 1
            f = self.pld(page, "flags", "page->flags (PageCompound)")
            if not self.flag(f, "head"):
                h = self.pld(page, "compound_head", "page->compound_head (PageCompound)")
                if h.v & 1:
                    raise BuddyError("compound page freed: not part of this workload")
        elif step == "folio":                       # page_folio → _compound_head
            self.pld(page, "compound_head", "page->compound_head (page_folio)")
        elif step == "mlocked":
            self.pld(page, "flags", "page->flags (folio_test_mlocked)")
        elif step == "tail_checks":                 # for i in 1 .. 2^order-1: check_free_page + flags clear
            if self.order:
                self.expected_state(page, 1, (1 << self.order) - 1, "free_check", flags_clear=True)
        elif step == "mapping_flags":
            self.pld(page, "mapping", "page->mapping (PageMappingFlags)")
        elif step == "check_free":
            self.expected_state(page, 0, 1, "free_check")
        elif step == "cpupid_reset":                # page_cpupid_reset_last: a flags RMW if LAST_CPUPID fits
            pf = self.k.page_flags
            used = pf.sections_width + pf.nodes_width + pf.zones_width + int(self.b["last_cpupid_shift"])
            if used <= 64 - int(self.bits["nr_pageflags"]):
                self.pld(page, "flags", "page->flags (page_cpupid_reset_last)")
        elif step == "flags_clear":
            self.pld(page, "flags", "page->flags (&= ~PAGE_FLAGS_CHECK_AT_PREP)")
        else:
            raise ValueError(f"unknown free_pages_prepare step {step!r}")

    def split_large_buddy(self, page: Val, zone: Val, pfn: Val, order: int) -> None:
        """``split_large_buddy`` (mm/page_alloc.c @ v6.12 with the stable fix "don't call pfn_to_page()
        on possibly non-existent PFN"): one ``__free_one_page`` per pageblock above pageblock_order."""
        end = pfn.v + (1 << order)
        order = min(order, int(self.b["pageblock_order"]))
        while True:
            mt = self.pfnblock_migratetype(page, pfn)
            self.free_one_page(page, zone, order, pfn, mt)
            pfn = Val(pfn.v + (1 << order), pfn.deps)
            if pfn.v == end:
                break
            page = self.prim(self.k.model._pfn_to_page, pfn)

    def run(self) -> list[Acc]:
        """Set up the block as the free list head, allocate order K and free it; stores undone."""
        k = self.k
        if self.b["pageblock"] == "section-or-zone" and k.model.section_of(0) is None:
            ensure_zone_usemap(k, self.zone_addr(), k.zone_of(self.block_pfn))   # boot state, kept
        pcp = self.order in [int(o) for o in self.b["pcp_orders"]]
        with k.mem.journal():
            self.s = {"zone": self.setup()}
            for step in self.b["pcp_alloc" if pcp else "alloc"]:
                self._alloc_step(step)
            for step in self.b["pcp_free" if pcp else "free"]:
                self._free_step(step)
        return self.acc

    # ------------------------------------------------------------------ state after boot
    def zone_addr(self) -> int:
        k = self.k
        z = k.zone_of(self.block_pfn)
        if z is None:
            raise InputError(f"pfn {self.block_pfn:#x} is in no zone")
        return k.nodes[z.nid].pgdat + z.idx * int(self.zl["size"])

    def setup(self) -> Val:
        """The free lists of the block's zone with the block at the head of free_area[MAX_ORDER-1]."""
        k, sp, so = self.k, self.sp, self.sp_off
        zone = Val(self.zone_addr())
        types = max(1, int(self.b["migrate_types"]))
        for order in range(self.max_order):
            for mt in range(types):
                h = self.area(zone, order) + 16 * mt
                self.st(h, h)
                self.st(h + 8, h)
            self.st(self.area(zone, order) + int(self.b["nr_free"]), 0)
        top = self.max_order - 1
        head = self.area(zone, top) + 16 * self.mt
        lru = self.page0 + so["lru"]
        below = self.block_pfn - (1 << top)
        nxt = head
        z = k.zone_of(self.block_pfn)
        if z is not None and below >= z.start_pfn and k.is_ram_pfn(below):
            nxt = k.model.pfn_to_page_array(np.array([below], dtype=np.uint64))[0].item() + so["lru"]
        self.st(head, lru)
        self.st(lru, nxt)
        self.st(lru + 8, head)
        self.st(self.area(zone, top) + int(self.b["nr_free"]), 1)
        self.fill_field(0, 1 << self.order, "_mapcount", UINT_MAX)
        if self.kind == "flags":
            flags = k.mem.peek(self.page0, 8)
            self.st(self.page0, flags | 1 << int(self.bits["buddy"]))
        else:
            # page_type aliases _mapcount (page_mapcount_reset at init: -1): the heads expand and the
            # merges look at, then the free block's head as __SetPageBuddy leaves it
            for j in range(self.order, top):
                self.st(self.page0 + (1 << j) * sp + so["_mapcount"], -1, 4)
            bit = int(self.b["page_type_buddy"])
            t = UINT_MAX & ~bit if self.kind == "page_type-bit" else bit << 24
            self.st(self.page0 + so["page_type"], t, 4)
        self.st(self.page0 + so["private"], top)
        self._pageblock_state(zone)
        return zone

    def _pageblock_state(self, zone: Val) -> None:
        """Every pageblock MIGRATE_MOVABLE (memmap_init_zone at boot); the zone's bitmap allocated by
        ``setup_usemap`` for !SPARSEMEM (placed here, after boot, if it is not there yet)."""
        if self.b["pageblock"] == "none":
            return
        k = self.k
        pbo, nbits = int(self.b["pageblock_order"]), int(self.b["pageblock_bits"])
        if k.model.section_of(0) is not None:   # ms->pageblock_flags (2.6.24) / ms->usage->pageblock_flags
            ms = k.model.sections.section_addr_nocheck(self.block_pfn >> k.era.pfn_section_shift)
            base = k.mem.peek(ms + 8, 8) + int(self.b["usage_pageblock_flags"])
            origin = self.block_pfn & ~(k.era.pages_per_section - 1)
        else:
            base = ensure_zone_usemap(k, zone.v, k.zone_of(self.block_pfn))
            origin = k.mem.peek(zone.v + int(self.zl["zone_start_pfn"]), 8)
        for blk in range(self.block_pfn, self.block_pfn + (1 << (self.max_order - 1)), 1 << pbo):
            bit = ((blk - origin) >> pbo) * nbits
            for b in range(nbits):
                word = base + ((bit + b) >> 6) * 8
                v = k.mem.peek(word, 8)
                on = self.mt >> b & 1
                v = (v | 1 << ((bit + b) & 63)) if on else (v & ~(1 << ((bit + b) & 63)))
                self.st(word, v)


def ensure_zone_usemap(k: Kernel, zone_va: int, z) -> int:  # noqa: ANN001 - vmemmap.kernel.Zone
    """``setup_usemap`` (mm/page_alloc.c @ v2.6.24, !SPARSEMEM): ``zone->pageblock_flags`` =
    ``alloc_bootmem_node(pgdat, usemap_size(zonesize))``, and ``zone->zone_start_pfn``. kernel.py does
    not place them at boot, so they are placed on first use (one bootmem allocation on the node)."""
    zl = k.era.buddy["zone"]
    ptr = k.mem.peek(zone_va + int(zl["pageblock_flags"]), 8)
    if ptr:
        return ptr
    pbo, nbits = int(k.era.buddy["pageblock_order"]), int(k.era.buddy["pageblock_bits"])
    blocks = -(-z.spanned_pages // (1 << pbo))
    size = -(-(blocks * nbits) // 64) * 8            # usemap_size(): roundup to unsigned long
    pa = k.memblock.alloc(size, 64, z.nid, "pageblock_flags")
    va = pa + k.page_offset
    k.mem.store(zone_va + int(zl["pageblock_flags"]), va)
    k.mem.store(zone_va + int(zl["zone_start_pfn"]), z.start_pfn)
    return va


def _shift_bits(bits: int, base: int) -> int:
    return bits << base


def block_pfns(k: Kernel) -> np.ndarray:
    """Every MAX_ORDER-aligned block wholly in one RAM range, one zone and one node."""
    n = 1 << (int(buddy_rules(k)["max_order"]) - 1)
    out = []
    for s, e, _ in k.ram_pfn_ranges():
        a = -(-s // n) * n
        if a + n <= e:
            out.append(np.arange(a, e - n + 1, n, dtype=np.int64))
    blocks = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
    keep = np.ones(len(blocks), dtype=bool)
    for z in k.zones:   # a block across a zone boundary is not one buddy block
        for edge in (z.start_pfn, z.end_pfn):
            keep &= ~((blocks < edge) & (blocks + n > edge))
    return blocks[keep].astype(np.uint64)


def scalar_op(k: Kernel, order: int, block_pfn: int) -> list[Acc]:
    """One buddy-order-K operation on one block, run through the model's code."""
    return BuddyOp(k, order, block_pfn).run()
