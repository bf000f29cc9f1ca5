"""The cost instrument (issue 5): CPU presets, traces, the scalar and bulk simulators, `vmemmap cost`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmemmap.cli import main
from vmemmap.cost.cpu import cpu_names, load_cpu, parse_cpu
from vmemmap.cost.run import contract_json, cost
from vmemmap.cost.sim import (F_CYC, F_DMISS, F_L1, F_L2, F_PSC, F_WALK, F_WMISS, STRETCH, BulkState, simulate,
                               simulate_scalar)
from vmemmap.cost.trace import KIND_LOAD, KIND_STRUCT_PAGE, Access, Trace, concat, from_accesses, from_dep_sets
from vmemmap.cost.workloads import WORKLOADS, build_trace, make_ops, scalar_trace
from vmemmap.eras import load_era
from vmemmap.errors import InputError
from vmemmap.kernel import BootOptions, boot
from vmemmap.machine import load_machine

REQUIRED_CPUS = {"k8", "core2", "nehalem", "skylake", "icelake", "zen2", "zen4"}


def tiny_cpu(**over: object) -> dict:
    """A CPU with tiny structures (lots of misses, evictions, PSC and smash activity)."""
    d = {
        "name": "tiny", "clock": {"ghz": 1.0, "source": "test"},
        "tlb": [
            {"level": 1, "page_sizes": ["4k"], "entries": 4, "ways": 2, "source": "test"},
            {"level": 1, "page_sizes": ["2m", "1g"], "entries": 2, "ways": 2, "source": "test"},
            {"level": 2, "page_sizes": ["4k", "2m"], "entries": 8, "ways": 2, "smash_1g": True, "source": "test"},
        ],
        "tlb_latency": {"l2_hit": 3, "source": "test"},
        "psc": [
            {"name": "pde", "levels": ["pd"], "entries": 2, "ways": 2, "source": "test"},
            {"name": "upper", "levels": ["pdpt", "pml4"], "entries": 2, "ways": 1, "source": "test"},
        ],
        "cache": [
            {"name": "L1D", "size": 512, "ways": 2, "line": 64, "latency": 4, "source": "test"},
            {"name": "L2", "size": 2048, "ways": 4, "line": 64, "latency": 10, "source": "test"},
            {"name": "LLC", "size": 8192, "ways": 8, "line": 64, "latency": 30, "source": "test"},
        ],
        "dram": {"cycles": 0, "ns": 100, "source": "test"},
    }
    d.update(over)
    return d


def wide_cpu() -> dict:
    """Small arrays of more than 16 ways (the simulator's stamp-LRU path) next to narrow ones."""
    return tiny_cpu(
        tlb=[{"level": 1, "page_sizes": ["4k", "2m", "1g"], "entries": 18, "ways": 18, "source": "test"},
             {"level": 2, "page_sizes": ["4k", "2m"], "entries": 40, "ways": 20, "smash_1g": True, "source": "test"}],
        psc=[{"name": "all", "levels": ["pml4", "pdpt", "pd"], "entries": 17, "ways": 17, "source": "test"}],
        cache=[{"name": "L1D", "size": 64 * 17, "ways": 17, "line": 64, "latency": 4, "source": "test"},
               {"name": "L2", "size": 64 * 16 * 3, "ways": 16, "line": 64, "latency": 10, "source": "test"},
               {"name": "LLC", "size": 64 * 24 * 6, "ways": 24, "line": 64, "latency": 30, "source": "test"}])


def odd_cpu() -> dict:
    """Way counts that are not powers of two, and direct-mapped sets: vector compares of 1, 3, 5, 6 and
    12 slots (tags in 1, 4, 8 and 16 slots for caches, spare slots empty)."""
    return tiny_cpu(
        tlb=[{"level": 1, "page_sizes": ["4k", "2m", "1g"], "entries": 12, "ways": 12, "source": "test"},
             {"level": 2, "page_sizes": ["4k", "2m"], "entries": 18, "ways": 6, "smash_1g": True, "source": "test"}],
        psc=[{"name": "pde", "levels": ["pd"], "entries": 5, "ways": 5, "source": "test"},
             {"name": "upper", "levels": ["pdpt", "pml4"], "entries": 3, "ways": 1, "source": "test"}],
        cache=[{"name": "L1D", "size": 64 * 8, "ways": 1, "line": 64, "latency": 4, "source": "test"},
               {"name": "L2", "size": 64 * 3 * 4, "ways": 3, "line": 64, "latency": 10, "source": "test"},
               {"name": "LLC", "size": 64 * 12 * 4, "ways": 12, "line": 64, "latency": 30, "source": "test"}])


@pytest.fixture(scope="module")
def k4k():
    return boot(load_machine("qemu-2g"), "2.6.21-seed", "vmemmap-4k")


@pytest.fixture(scope="module")
def pool(k4k) -> np.ndarray:
    """Mapped addresses of every kind: 4 KiB memmap pages, the 2 MiB direct map, kernel variables."""
    ops = make_ops(k4k, "virt_to_page-slab", 40, 5)
    mm = k4k.model.pfn_to_page_array(ops.pfns)
    syms = np.array(sorted(k4k.symbols.values()), dtype=np.uint64)
    unmapped = np.array([k4k.layout.vmalloc_start], dtype=np.uint64)     # faults: skipped by both
    return np.concatenate([mm, mm + np.uint64(4096), ops.args, syms, unmapped])


# ---------------------------------------------------------------------- presets

def test_presets_load_and_cite_sources() -> None:
    assert REQUIRED_CPUS <= set(cpu_names())
    for name in cpu_names():
        c = load_cpu(name)
        assert c.tlbs and c.caches and c.dram_cycles > c.caches[-1].latency
        assert all(t.source for t in c.tlbs) and all(x.source for x in c.caches)
        assert {1, 2} <= {t.level for t in c.tlbs}
    assert load_cpu("opteron").name == "k8"
    with pytest.raises(InputError):
        load_cpu("pentium-pro")
    bad = tiny_cpu()
    del bad["tlb"][0]["source"]
    with pytest.raises(InputError, match="no source"):
        parse_cpu(bad, "test")


# ---------------------------------------------------------------------- hand-worked example

def test_hand_worked_two_entry_lru(k4k) -> None:
    """2-entry fully associative L1 DTLB, no L2 TLB entries, no PSC, one large cache.

    Pages A, B, C are consecutive 4 KiB pages of the base-page vmemmap (their PTEs share one
    64-byte line). Sequence A B A C B (one access per op, no dependencies):

    * TLB (LRU, 2 entries): A miss, B miss, A hit, C miss (evicts B), B miss (evicts A):
      4 misses, 4 walks of 4 references (pgd, pud, pmd, pte) = 16 walk references.
    * cache (big enough never to evict): the first walk misses its 4 entry lines, later walks hit
      them; data lines A, B, C miss once each: 7 misses.
    * cycles (l2_hit 2, L1D 4, DRAM 100): A 2+4*100+100 = 502; B 2+4*4+100 = 118; A 4;
      C 2+16+100 = 118; B 2+16+4 = 22; total 764.
    """
    cpu = parse_cpu(tiny_cpu(
        tlb=[{"level": 1, "page_sizes": ["4k"], "entries": 2, "ways": 2, "source": "t"},
             {"level": 2, "page_sizes": ["1g"], "entries": 1, "ways": 1, "source": "t"}],
        tlb_latency={"l2_hit": 2, "source": "t"}, psc=[],
        cache=[{"name": "L1D", "size": "1M", "ways": 16, "line": 64, "latency": 4, "source": "t"}],
        dram={"cycles": 100, "ns": 0, "source": "t"}), "test")
    base = k4k.layout.vmemmap_base + 8 * 4096     # PTE index 8: A, B, C's PTEs in one line
    a, b, c = base, base + 4096, base + 8192
    assert k4k.tables.walk(a).page_size == 4096
    v = np.array([a, b, a, c, b], dtype=np.uint64)
    z = np.zeros(5, dtype=np.uint8)
    tr = from_dep_sets(v, z + KIND_STRUCT_PAGE, z, [0] * 5, z + 1)
    for out in (simulate_scalar(cpu, k4k.tables, tr), simulate(BulkState.new(cpu, k4k.tables), tr, per_op=True)):
        assert out[:, F_L1].tolist() == [1, 1, 0, 1, 1]
        assert out[:, F_L2].tolist() == [1, 1, 0, 1, 1]
        assert out[:, F_WALK].tolist() == [4, 4, 0, 4, 4]
        assert out[:, F_WMISS].tolist() == [4, 0, 0, 0, 0]
        assert out[:, F_DMISS].tolist() == [1, 1, 0, 1, 0]
        assert out[:, F_CYC].tolist() == [502, 118, 4, 118, 22]


def test_dependent_accesses_chain_their_latency(k4k) -> None:
    """Two accesses in one op, the second depending on the first: the op costs the sum, not the max."""
    cpu = parse_cpu(tiny_cpu(), "test")
    v = np.array([k4k.sym("mem_map"), k4k.layout.page_offset], dtype=np.uint64)
    kind = np.array([KIND_LOAD, KIND_STRUCT_PAGE], dtype=np.uint8)
    pos = np.array([0, 1], dtype=np.uint8)
    indep = simulate_scalar(cpu, k4k.tables, from_dep_sets(v, kind, pos, [0, 0], pos + 1))
    chained = simulate_scalar(cpu, k4k.tables, from_dep_sets(v, kind, pos, [0, 1], pos + 1))
    assert chained[0, F_CYC] > indep[0, F_CYC] > 0


# ---------------------------------------------------------------------- scalar == bulk

@st.composite
def traces(draw, n_pool: int) -> tuple[list[int], list[int], list[int]]:
    ops = draw(st.lists(st.integers(1, 4), min_size=1, max_size=40))
    idx, pos, dep = [], [], []
    for length in ops:
        for p in range(length):
            idx.append(draw(st.integers(0, n_pool - 1)))
            pos.append(p)
            dep.append(draw(st.integers(0, (1 << p) - 1)) if p else 0)
    return idx, pos, dep


@pytest.mark.parametrize("make_cpu,threads,stretch", [(tiny_cpu, 1, STRETCH), (wide_cpu, 1, STRETCH),
                                                     (tiny_cpu, 2, 3), (wide_cpu, 2, 1), (wide_cpu, 1, 5),
                                                     (odd_cpu, 1, STRETCH), (odd_cpu, 2, 7)])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_scalar_equals_bulk_on_random_traces(k4k, pool, make_cpu, threads, stretch, data) -> None:
    """Random traces, in two calls (the state carries over); small ``stretch``es cut each call into
    many translation/cache passes, and ``threads`` = 2 overlaps them on a worker thread."""
    idx, pos, dep = data.draw(traces(len(pool)))
    v = pool[np.array(idx)]
    p = np.array(pos, dtype=np.uint32)
    tr = from_dep_sets(v, np.ones(len(v), np.uint8), p, dep, p + 1)
    tr.validate()
    cpu = parse_cpu(make_cpu(), "test")
    st_ = BulkState.new(cpu, k4k.tables)
    half = tr.head(max(1, tr.n_ops // 2))
    rest = tr.ops_slice(half.n_ops, tr.n_ops)
    bulk = np.vstack([simulate(st_, t, per_op=True, threads=threads, stretch=stretch) for t in (half, rest)])
    assert np.array_equal(bulk, simulate_scalar(cpu, k4k.tables, tr))
    total = simulate(BulkState.new(cpu, k4k.tables), tr, threads=threads, stretch=stretch)
    assert np.array_equal(total[0], bulk.sum(axis=0))


@pytest.mark.parametrize("which", [0, 2])
def test_a_failing_pass_raises_and_leaves_the_simulator_usable(k4k, pool, monkeypatch, which) -> None:
    """An exception in the translation (0) or cache (2: totals) pass -- here on its third stretch -- reaches
    the caller: the two-thread pipeline neither hangs nor swallows it, and the next run gives the
    usual results."""
    from vmemmap.cost import sim
    from vmemmap.cost.simgen import kernels

    cpu = parse_cpu(tiny_cpu(), "test")
    v = np.resize(pool, 400)
    z = np.zeros(len(v), dtype=np.uint8)
    tr = from_dep_sets(v, z + KIND_STRUCT_PAGE, z, [0] * len(v), z + 1)
    want = simulate(BulkState.new(cpu, k4k.tables), tr, threads=1)
    st_ = BulkState.new(cpu, k4k.tables)
    passes = list(kernels(st_))
    real = passes[which]
    compiled = sim._compiled
    calls = [0]

    def failing(*args):  # noqa: ANN002, ANN202
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("pass failed")
        return compiled(real, args)(*args)

    passes[which] = failing
    st_.passes = tuple(passes)
    monkeypatch.setattr(sim, "_compiled", lambda disp, args: disp if disp is failing else compiled(disp, args))
    with pytest.raises(RuntimeError, match="pass failed"):
        simulate(st_, tr, threads=2, stretch=50)
    assert calls[0] == 3
    monkeypatch.undo()
    assert np.array_equal(simulate(BulkState.new(cpu, k4k.tables), tr, threads=2, stretch=50), want)


def test_long_operations_with_far_back_dependencies(k4k, pool) -> None:
    """Operations of 5,000 accesses (past any fixed-width mask), depending on accesses thousands of
    positions back: scalar == bulk, and the critical path follows the dependencies.

    Worked by construction: when each access waits for the one before it, the op's cycles are the sum
    of its accesses' latencies -- the cycles of the same accesses run as 5,000 independent one-access
    ops (same order, so the same TLB/cache outcomes); when none waits, the op costs their maximum.
    """
    rng = np.random.default_rng(5)
    length, n_ops = 5000, 3
    v = pool[rng.integers(0, len(pool) - 1, length * n_ops)]        # the last pool entry faults: not here
    pos = np.tile(np.arange(length), n_ops)
    far = []
    for p in pos.tolist():
        bits = 0
        if p:
            for q in {0, max(0, p - 4000), int(rng.integers(0, p))}:
                bits |= 1 << q
        far.append(bits)
    tr = from_dep_sets(v, np.ones(len(v), np.uint8), pos, far, np.ones(len(v)))
    tr.validate()
    assert tr.n_ops == n_ops and int(tr.pos.max()) == length - 1
    cpu = parse_cpu(tiny_cpu(), "test")
    scalar = simulate_scalar(cpu, k4k.tables, tr)
    assert np.array_equal(simulate(BulkState.new(cpu, k4k.tables), tr, per_op=True), scalar)
    st_ = BulkState.new(cpu, k4k.tables)
    chunks = [simulate(st_, tr.ops_slice(i, i + 1), per_op=True) for i in range(n_ops)]
    assert np.array_equal(np.vstack(chunks), scalar)
    one = v[:length]
    alone = simulate_scalar(cpu, k4k.tables, from_dep_sets(one, np.ones(length), np.zeros(length), [0] * length,
                                                           np.ones(length)))
    chain = [(1 << (p - 1)) if p else 0 for p in range(length)]
    for deps, want in ((chain, int(alone[:, F_CYC].sum())), ([0] * length, int(alone[:, F_CYC].max()))):
        t1 = from_dep_sets(one, np.ones(length), np.arange(length), deps, np.ones(length))
        got = simulate(BulkState.new(cpu, k4k.tables), t1, per_op=True)
        assert got.shape[0] == 1 and int(got[0, F_CYC]) == want
        assert np.array_equal(got, simulate_scalar(cpu, k4k.tables, t1))


def test_trace_format_round_trips() -> None:
    """from_accesses keeps bit sets of any width as ascending CSR positions; slicing and concat rebase."""
    ops = [[Access(0x1000, KIND_LOAD, 0, 1, "a"), Access(0x2000, KIND_LOAD, 1, 2, "b"),
            Access(0x3000, KIND_STRUCT_PAGE, 0b11, 3, "c")],
           [Access(0x4000 + 8 * p, KIND_LOAD, (1 << 0) | (1 << (p - 1)) if p else 0, 2 if p else 1, "x")
            for p in range(70)]]
    tr = from_accesses(ops)
    tr.validate()
    assert (tr.n, tr.n_ops, tr.op_starts.tolist()) == (73, 2, [0, 3])
    assert tr.deps(2).tolist() == [0, 1] and tr.deps(3).tolist() == [] and tr.deps(4).tolist() == [0]
    assert tr.deps(3 + 69).tolist() == [0, 68]
    assert tr.pos.dtype == np.uint32 and tr.depth.dtype == np.uint16 and tr.dep_ptr.dtype == np.int64
    assert tr.dep_ptr.tolist()[:5] == [0, 0, 1, 3, 3] and int(tr.dep_ptr[-1]) == len(tr.dep_pos) == 3 + 1 + 2 * 68
    second = tr.ops_slice(1, 2)
    assert second.equals(from_accesses(ops[1:])) and second.dep_ptr[0] == 0
    assert tr.head(1).equals(from_accesses(ops[:1])) and tr.head(5).equals(tr)
    assert tr.ops_slice(2, 9).n == 0 and concat([tr.head(1), second]).equals(tr)
    assert Trace.concat([]).n == 0 and concat([Trace.empty(), tr]).equals(tr)
    bad = from_dep_sets([1, 2], [0, 0], [0, 1], [0, 0b10], [1, 1])
    with pytest.raises(ValueError, match="earlier positions"):
        bad.validate()


@pytest.mark.parametrize("cpu_name", sorted(REQUIRED_CPUS))
def test_scalar_equals_bulk_every_preset(cpu_name: str) -> None:
    k = boot(load_machine("opteron-2007"), "2.6.21-seed", "discontigmem")
    tr = build_trace(k, make_ops(k, "pfn_to_page-random", 400, 3))
    cpu = load_cpu(cpu_name)
    bulk = simulate(BulkState.new(cpu, k.tables), tr, per_op=True)
    assert np.array_equal(bulk, simulate_scalar(cpu, k.tables, tr))
    assert bulk[:, F_WALK].sum() > 0 and bulk[:, 15].sum() == 0


def test_psc_skips_upper_levels(k4k) -> None:
    """The second walk of a page next door hits the PDE cache and reads only the PTE."""
    cpu = parse_cpu(tiny_cpu(tlb=[{"level": 1, "page_sizes": ["4k"], "entries": 1, "ways": 1, "source": "t"},
                                  {"level": 2, "page_sizes": ["1g"], "entries": 1, "ways": 1, "source": "t"}]),
                    "test")
    a = k4k.layout.vmemmap_base
    v = np.array([a, a + 4096], dtype=np.uint64)
    z = np.zeros(2, np.uint8)
    out = simulate_scalar(cpu, k4k.tables, from_dep_sets(v, z + 1, z, [0, 0], z + 1))
    assert out[:, F_WALK].tolist() == [4, 1] and out[:, F_PSC].tolist() == [0, 1]


# ---------------------------------------------------------------------- traces

@pytest.mark.parametrize("machine,era,models", [
    ("opteron-2007", "2.6.21-seed", ["discontigmem", "sparsemem", "sparsemem-extreme", "vmemmap"]),
    ("qemu-2g", "2.6.24", ["flatmem", "vmemmap-4k"]),
    ("qemu-2g", "6.1", ["vmemmap"]),
])
def test_bulk_trace_equals_scalar_trace(machine: str, era: str, models: list[str]) -> None:
    for model in models:
        k = boot(load_machine(machine), era, model)
        for wl in WORKLOADS:
            ops = make_ops(k, wl, 150, 11)
            assert build_trace(k, ops).head(150).equals(scalar_trace(k, ops)), (model, wl)


def test_depths_follow_the_code() -> None:
    """FLATMEM: mem_map then the struct page (depth 2); the seed's vmemmap: a constant (depth 1);
    6.1's vmemmap_base: a load again (depth 2)."""
    m = load_machine("qemu-2g")
    for era, model, loads, depth in (("2.6.21-seed", "flatmem", 1, 2), ("2.6.21-seed", "vmemmap", 0, 1),
                                      ("6.1", "vmemmap", 1, 2), ("2.6.24", "sparsemem-extreme", 2, 3)):
        k = boot(m, era, model)
        tr = scalar_trace(k, make_ops(k, "pfn_to_page-random", 5, 1))
        first = tr.head(1)
        assert int(np.count_nonzero(first.kind == KIND_LOAD)) == loads, (era, model)
        assert int(first.depth.max()) == depth, (era, model)


@pytest.mark.parametrize("era", ["2.6.24", "6.1"])
def test_buddy_operations_scalar_equals_bulk(era: str) -> None:
    """Order-10 buddy operations are thousands of accesses long (1024 struct pages checked), with
    dependencies far back in the op; both simulators agree on them, presets with > 16-way arrays too."""
    k = boot(load_machine("qemu-2g"), era, "vmemmap")
    tr = build_trace(k, make_ops(k, "buddy-order-10", 3, 1))
    tr.validate()
    assert int(tr.pos.max()) > 1024
    owner = np.repeat(np.arange(tr.n), np.diff(tr.dep_ptr))
    assert int((tr.pos[owner] - tr.dep_pos).max()) > 1000          # a dependency over 1000 positions back
    for cpu in (parse_cpu(tiny_cpu(), "test"), load_cpu("zen4")):
        assert np.array_equal(simulate(BulkState.new(cpu, k.tables), tr, per_op=True),
                              simulate_scalar(cpu, k.tables, tr))


def test_generated_passes_are_per_cpu_and_content_addressed(tmp_path, monkeypatch) -> None:
    """Each CPU model gets its own source (its geometry as literals); the same model, the same file."""
    from vmemmap.cost import simgen

    monkeypatch.setenv("VMEMMAP_CACHE_DIR", str(tmp_path))
    k = boot(load_machine("qemu-2g"), "6.1", "vmemmap")
    srcs = {name: simgen.kernel_source(BulkState.new(load_cpu(name), k.tables)) for name in ("k8", "zen4")}
    assert srcs["k8"] != srcs["zen4"]
    assert "_victim_l(t_blk, b, 72)" in srcs["zen4"] and "32768 sets x 16 ways" in srcs["zen4"]
    assert srcs["k8"] == simgen.kernel_source(BulkState.new(load_cpu("k8"), k.tables))
    for src in srcs.values():
        compile(src, "generated", "exec")
    assert simgen.kernel_dir() == str(tmp_path / "sim")
    # an unusable cache directory falls back to one under the system temporary directory
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("VMEMMAP_CACHE_DIR", str(blocker))
    assert simgen.kernel_dir().startswith(__import__("tempfile").gettempdir())


def test_interpreted_passes_equal_scalar(tmp_path) -> None:
    """Without numba's compiler (NUMBA_DISABLE_JIT=1) the generated passes run as plain Python and
    still agree with ScalarSim (a fresh interpreter, so the setting takes effect)."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from vmemmap.cost.cpu import load_cpu\n"
        "from vmemmap.cost.sim import COMPILED, BulkState, simulate, simulate_scalar\n"
        "from vmemmap.cost.workloads import build_trace, make_ops\n"
        "from vmemmap.kernel import boot\n"
        "from vmemmap.machine import load_machine\n"
        "k = boot(load_machine('qemu-2g'), '2.6.24', 'sparsemem')\n"
        "tr = build_trace(k, make_ops(k, 'virt_to_page-slab', 40, 3))\n"
        "cpu = load_cpu('skylake')\n"
        "bulk = simulate(BulkState.new(cpu, k.tables), tr, per_op=True, threads=2, stretch=7)\n"
        "assert np.array_equal(bulk, simulate_scalar(cpu, k.tables, tr))\n"
        "print('same', int(bulk.sum()))\n")
    env = dict(__import__("os").environ, NUMBA_DISABLE_JIT="1", VMEMMAP_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("same ")


def test_five_level_walks_scalar_equals_bulk() -> None:
    """LA57: five-level walks, the fully associative PSC holding four levels, and Intel's split PSCs."""
    k = boot(load_machine("server-64t"), "6.1", "vmemmap", BootOptions(la57=True))
    assert k.tables.levels == 5
    for wl in ("pfn_to_page-random", "page_address-random"):
        tr = build_trace(k, make_ops(k, wl, 300, 2))
        for name in ("icelake", "zen4"):
            cpu = load_cpu(name)
            bulk = simulate(BulkState.new(cpu, k.tables), tr, per_op=True)
            assert np.array_equal(bulk, simulate_scalar(cpu, k.tables, tr)), (wl, name)
            assert bulk[:, F_WALK].sum() > 0 and bulk[:, F_PSC].sum() > 0


# ---------------------------------------------------------------------- cost()

def test_constant_vmemmap_loads_less_than_flatmem() -> None:
    res = cost(load_machine("qemu-2g"), load_era("2.6.21-seed"), load_cpu("k8"), "pfn_to_page-random", 2000, 1,
               ["flatmem", "vmemmap"])
    by = {r["model"]: r for r in res["results"]}
    assert by["vmemmap"]["loads_per_op"] < by["flatmem"]["loads_per_op"]
    assert by["vmemmap"]["_detail"]["depth_max"] < by["flatmem"]["_detail"]["depth_max"]


def test_deterministic_for_a_seed() -> None:
    args = (load_machine("qemu-numa2"), load_era("2.6.24"), load_cpu("skylake"), "virt_to_page-slab", 3000)
    a, b, c = (contract_json(cost(*args, seed)) for seed in (7, 7, 8))
    assert a == b and a != c


def test_cli_json_shape() -> None:
    r = CliRunner().invoke(main, ["cost", "for_each_page", "-m", "qemu-2g", "--era", "2.6.21-seed", "--cpu", "zen4",
                                  "--ops", "500", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert set(d) == {"workload", "cpu", "machine", "results"}
    assert (d["workload"], d["cpu"], d["machine"]) == ("for_each_page", "zen4", "qemu-2g")
    assert [x["model"] for x in d["results"]] == ["flatmem", "discontigmem", "sparsemem", "sparsemem-extreme",
                                                   "vmemmap", "vmemmap-4k"]
    for x in d["results"]:
        assert set(x) == {"model", "ops", "loads_per_op", "tlb_misses_per_op", "walk_refs_per_op",
                          "cache_misses_per_op", "cycles_per_op"}
        assert x["ops"] == 500 and x["cycles_per_op"] > 0


def test_cli_errors() -> None:
    r = CliRunner().invoke(main, ["cost", "buddy-order-99", "-m", "qemu-2g", "--ops", "10"])
    assert r.exit_code == 2 and "vmemmap: error:" in r.output and "MAX_ORDER" in r.output
    r = CliRunner().invoke(main, ["cost", "no-such-workload", "-m", "qemu-2g", "--ops", "10"])
    assert r.exit_code == 2 and "unknown workload" in r.output
    r = CliRunner().invoke(main, ["cost", "for_each_page", "-m", "qemu-2g", "--cpu", "486"])
    assert r.exit_code == 2 and "unknown CPU" in r.output
