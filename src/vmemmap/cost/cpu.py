"""CPU presets: TLBs, paging-structure caches, data caches and latencies, as data.

Each preset is a TOML file in ``cost/cpus/``. Every structure carries a ``source`` (document and
section); ``estimate = true`` marks a structure we could not source, ``estimates = [fields]`` the
fields of an otherwise sourced one. These files are the *only* place a cost number lives: the
simulator (``cost/sim.py``) reads nothing else.

Schema (sizes take K/M/G suffixes)::

    name, aliases, description
    [clock]        ghz, source
    [[tlb]]        level (1|2), page_sizes (["4k","2m","1g"]), entries, ways, smash_1g?, source
    [tlb_latency]  l2_hit (cycles added when the L1 DTLB misses and the L2 TLB hits), source
    [[psc]]        name, levels (["pml5","pml4","pdpt","pd"]), entries, ways, source
    [[cache]]      name, size, ways, line, latency (load-to-use cycles), source   (L1D first)
    [dram]         cycles + ns (load-to-use = cycles + ns * ghz, rounded), source
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from vmemmap.errors import InputError

PAGE_SIZES = {"4k": 0, "2m": 1, "1g": 2}
SIZE_NAMES = ("4k", "2m", "1g")
SIZE_SHIFT = (12, 21, 30)
PSC_LEVELS = {"pd": 0, "pdpt": 1, "pml4": 2, "pml5": 3}


@dataclass(frozen=True)
class TlbArray:
    """One set-associative LRU TLB array: ``entries // ways`` sets of ``ways`` entries."""

    level: int
    page_sizes: tuple[str, ...]
    entries: int
    ways: int
    smash_1g: bool = False   # 1 GiB translations are held as 2 MiB entries (AMD "smashing")
    source: str = ""
    estimates: tuple[str, ...] = ()

    @property
    def sets(self) -> int:
        return max(1, self.entries // self.ways)

    def holds(self, size_class: int) -> int | None:
        """The size class an entry for a ``size_class`` page has in this array, or None."""
        if size_class == 2 and self.smash_1g and "2m" in self.page_sizes:
            return 1
        return size_class if SIZE_NAMES[size_class] in self.page_sizes else None


@dataclass(frozen=True)
class Psc:
    """A paging-structure cache (Intel PML4/PDPTE/PDE caches, AMD's page walk cache)."""

    name: str
    levels: tuple[str, ...]
    entries: int
    ways: int
    source: str = ""
    estimates: tuple[str, ...] = ()

    @property
    def sets(self) -> int:
        return max(1, self.entries // self.ways)


@dataclass(frozen=True)
class Cache:
    name: str
    size: int
    ways: int
    line: int
    latency: int
    source: str = ""
    estimates: tuple[str, ...] = ()

    @property
    def sets(self) -> int:
        return max(1, self.size // (self.ways * self.line))


@dataclass(frozen=True)
class Cpu:
    name: str
    description: str
    ghz: float
    tlbs: tuple[TlbArray, ...]
    l2_tlb_latency: int
    pscs: tuple[Psc, ...]
    caches: tuple[Cache, ...]
    dram_cycles: int
    aliases: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)
    estimates: tuple[str, ...] = ()    # "structure.field" names that are estimates

    def tlb_reach(self, level: int) -> dict[str, int]:
        """Bytes covered per page size by the TLB arrays of ``level``."""
        out: dict[str, int] = {}
        for t in self.tlbs:
            if t.level == level:
                for s in t.page_sizes:
                    out[s] = out.get(s, 0) + t.sets * t.ways * (1 << SIZE_SHIFT[PAGE_SIZES[s]])
        return out


def _size(v: Any, what: str) -> int:
    if isinstance(v, int):
        return v
    s = str(v).strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        if s[-1] in mult:
            return int(s[:-1]) * mult[s[-1]]
        return int(s, 0)
    except (ValueError, IndexError):
        raise InputError(f"{what}: bad size {v!r}") from None


def _est(d: dict[str, Any], fields: tuple[str, ...]) -> tuple[str, ...]:
    if d.get("estimate"):
        return fields
    return tuple(d.get("estimates", ()))


def parse_cpu(data: dict[str, Any], origin: str) -> Cpu:
    """Build a :class:`Cpu` from a preset's TOML table; every structure must cite a source."""
    try:
        name = data["name"]
        est: list[str] = []
        sources: dict[str, str] = {}

        def need_source(d: dict[str, Any], label: str) -> str:
            src = d.get("source", "")
            if not src:
                raise InputError(f"{origin}: {label} has no source")
            sources[label] = src
            return src

        clock = data["clock"]
        need_source(clock, "clock")
        est += [f"clock.{f}" for f in _est(clock, ("ghz",))]
        tlbs = []
        for i, t in enumerate(data.get("tlb", [])):
            label = f"tlb[{i}] L{t['level']} {'/'.join(t['page_sizes'])}"
            for s in t["page_sizes"]:
                if s not in PAGE_SIZES:
                    raise InputError(f"{origin}: {label}: page size {s!r} is not one of 4k, 2m, 1g")
            e = _est(t, ("entries", "ways"))
            est += [f"{label}.{f}" for f in e]
            tlbs.append(TlbArray(int(t["level"]), tuple(t["page_sizes"]), int(t["entries"]), int(t["ways"]),
                                 bool(t.get("smash_1g", False)), need_source(t, label), e))
        lat = data["tlb_latency"]
        need_source(lat, "tlb_latency")
        est += [f"tlb_latency.{f}" for f in _est(lat, ("l2_hit",))]
        pscs = []
        for p in data.get("psc", []):
            for lv in p["levels"]:
                if lv not in PSC_LEVELS:
                    raise InputError(f"{origin}: psc {p['name']}: level {lv!r} is not one of {', '.join(PSC_LEVELS)}")
            e = _est(p, ("entries", "ways"))
            est += [f"psc {p['name']}.{f}" for f in e]
            pscs.append(Psc(p["name"], tuple(p["levels"]), int(p["entries"]), int(p["ways"]),
                            need_source(p, f"psc {p['name']}"), e))
        caches = []
        for c in data.get("cache", []):
            e = _est(c, ("size", "ways", "line", "latency"))
            est += [f"{c['name']}.{f}" for f in e]
            caches.append(Cache(c["name"], _size(c["size"], c["name"]), int(c["ways"]), int(c["line"]),
                                int(c["latency"]), need_source(c, c["name"]), e))
        if not 1 <= len(caches) <= 3:
            raise InputError(f"{origin}: 1 to 3 cache levels expected, got {len(caches)}")
        dram = data["dram"]
        need_source(dram, "dram")
        est += [f"dram.{f}" for f in _est(dram, ("latency",))]
        ghz = float(clock["ghz"])
        dram_cycles = int(round(float(dram.get("cycles", 0)) + float(dram.get("ns", 0)) * ghz))
        return Cpu(name, data.get("description", ""), ghz, tuple(tlbs), int(lat["l2_hit"]), tuple(pscs),
                   tuple(caches), dram_cycles, tuple(data.get("aliases", ())), sources, tuple(est))
    except KeyError as e:
        raise InputError(f"{origin}: missing {e.args[0]!r}") from None


def cpu_names() -> list[str]:
    files = resources.files("vmemmap.cost").joinpath("cpus")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def load_cpu(name: str) -> Cpu:
    """A built-in preset by name or alias (``k8``, ``opteron``, ``skylake``...)."""
    files = resources.files("vmemmap.cost").joinpath("cpus")
    for n in cpu_names():
        data = tomllib.loads(files.joinpath(n + ".toml").read_text())
        if name == n or name in data.get("aliases", ()):
            return parse_cpu(data, f"cpus/{n}.toml")
    raise InputError(f"unknown CPU {name!r}; choose one of {', '.join(cpu_names())}")
