"""``vmemmap experiment``: the issue-5 experiments as sweeps of ``vmemmap.cost.run.cost``.

:func:`run_experiment` runs one experiment (``sweeps.EXPERIMENTS``) and writes into ``out``:
``NAME.json`` (every cost result, every table), ``NAME.md`` (the tables as markdown, the exact
command) and ``NAME-*.svg`` figures. Deterministic for a seed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmemmap.cost.sim import COMPILED
from vmemmap.errors import InputError
from vmemmap.experiments.common import Runner, all_workloads
from vmemmap.experiments.sweeps import EXPERIMENTS

NAMES = (*EXPERIMENTS, "all")


def command(name: str, ops: int, seed: int, quick: bool, out: str) -> str:
    return f"vmemmap experiment {name} --ops {ops} --seed {seed}{' --quick' if quick else ''} --out {out}"


def run_experiment(name: str, out: Path, ops: int, seed: int, quick: bool = False,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run experiment ``name``; write its JSON, markdown and SVGs into ``out``; return the JSON object."""
    if name not in EXPERIMENTS:
        raise InputError(f"unknown experiment {name!r}; choose one of {', '.join(NAMES)}")
    if ops < 1:
        raise InputError("--ops must be at least 1")
    out.mkdir(parents=True, exist_ok=True)
    fn, title = EXPERIMENTS[name]
    r = Runner(ops, seed, progress)
    res = fn(r, quick, out)
    obj = {
        "experiment": name,
        "title": title,
        "command": command(name, ops, seed, quick, str(out)),
        "ops": ops,
        "seed": seed,
        "quick": quick,
        "compiled": COMPILED,
        "workloads_registered": all_workloads(),
        "setup": res["setup"],
        "tables": [{k: t[k] for k in ("title", "columns", "rows")} for t in res["tables"]],
        "figures": res["figures"],
        "runs": r.rows,
        "skipped": r.skipped,
    }
    (out / f"{name}.json").write_text(json.dumps(obj, indent=1, sort_keys=False, default=_num) + "\n")
    md = [f"# {name}: {title}", "", f"`{obj['command']}`", ""]
    for t in res["tables"]:
        md += [f"**{t['title']}**", "", t["markdown"], ""]
    for f in res["figures"]:
        md += [f"![{f}]({f})", ""]
    for s in r.skipped:
        md.append(f"- not run: {s['model']} on {s['machine']} ({s['cpu']}, {s['workload']}): {s['why']}")
    (out / f"{name}.md").write_text("\n".join(md).rstrip() + "\n")
    return obj


def _num(v: Any) -> Any:
    import numpy as np

    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    raise TypeError(f"not JSON: {type(v).__name__}")


def summary(obj: dict[str, Any]) -> list[str]:
    """A few lines per experiment: its first table's title and size, files written."""
    lines = [f"{obj['experiment']}: {len(obj['runs'])} model runs, {obj['ops']} ops each (seed {obj['seed']})"]
    for t in obj["tables"]:
        lines.append(f"  table: {t['title']} ({len(t['rows'])} rows)")
    for f in obj["figures"]:
        lines.append(f"  figure: {f}")
    return lines
