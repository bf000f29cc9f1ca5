#!/usr/bin/env python3
"""Write docs/guide/: one page per `vmemmap` command, with its --help and real output.

Every output block in the guide is produced by running the installed command in this run; nothing
is typed in. Run from the repository root after `pip install .`:

    python3 scripts/make_user_guide.py            # every command
    python3 scripts/make_user_guide.py cost boot  # only these pages

Commands that need something this machine may not have (QEMU for `capture`, a core for `inspect`)
are run only when it is there; otherwise the page says which command to run and why it was not.
``tests/test_user_guide.py`` checks that every command of the CLI has a page.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide"
MAX_LINES = 60


@dataclass
class Example:
    cmd: str                      # shell command line (run with bash; {tmp} is a scratch folder)
    why: str                      # one sentence: what this shows
    max_lines: int = MAX_LINES
    needs: str = ""               # an executable that must be on PATH, else the example is not run
    stdin: str | None = None


@dataclass
class Page:
    name: str
    intro: str
    examples: list[Example] = field(default_factory=list)
    after: str = ""


PAGES: list[Page] = [
    Page("layout", "The kernel virtual address map of an era: the rows of Documentation/x86/x86_64/mm.txt, "
         "with KASLR placement when a seed is given.", [
             Example("vmemmap layout --era 2.6.21-seed", "The seed's map: vmemmap is the constant 0xffffe20000000000."),
             Example("vmemmap layout --era 6.1 --kaslr-seed 7", "6.1 with KASLR: page_offset_base, vmalloc_base and "
                     "vmemmap_base are variables placed by kernel_randomize_memory()."),
         ]),
    Page("machines", "The built-in machines (e820 map, NUMA nodes, CPU features). `--machine` also takes a "
         "TOML file, a dmesg/`/proc/iomem` text, an oracle capture or `this` (this host).", [
             Example("vmemmap machines", "Every built-in machine."),
         ]),
    Page("boot", "Boot a machine in an era with one memory model and print what that kernel prints at boot "
         "(e820, zones, the vmemmap populate lines, ...).", [
             Example("vmemmap boot --machine qemu-2g --era 6.1", "Debian 6.1's boot messages for a 2 GiB QEMU guest."),
             Example("vmemmap boot --machine opteron-2007 --era 2.6.21-seed --json | head -40",
                     "The same as data (DESIGN.md contract 3)."),
         ]),
    Page("sections", "The mem_section table in crash's `kmem -n` format: section number, its `mem_section` "
         "address, the encoded `section_mem_map` word and the pfn it starts at.", [
             Example("vmemmap sections --machine qemu-2g --era 6.1", "Every present section of a 2 GiB guest."),
         ]),
    Page("ptdump", "The kernel page tables in the format of the kernel's `/sys/kernel/debug/page_tables/kernel` "
         "(arch/x86/mm/dump_pagetables.c).", [
             Example("vmemmap ptdump --machine qemu-2g --era 6.1", "Direct map in 2 MiB / 1 GiB leaves, the vmemmap "
                     "area in 2 MiB leaves."),
         ]),
    Page("translate", "Convert a pfn, a physical address, a direct-map address or a struct page address under one "
         "memory model, and list every kernel load the conversion made.", [
             Example("vmemmap translate --machine qemu-2g --era 2.6.21-seed --model vmemmap pfn 0x10000",
                     "The seed's vmemmap: no load at all, vmemmap is a constant."),
             Example("vmemmap translate --machine qemu-2g --era 2.6.21-seed --model flatmem pfn 0x10000",
                     "FLATMEM loads `mem_map` first."),
             Example("vmemmap translate --machine qemu-2g --era 6.1 page 0xffffea0000400000 --json",
                     "page_to_pfn as data."),
         ]),
    Page("compare", "Every memory model the era can build for a machine, side by side: memmap size and placement, "
         "loads per operation, dependent-load depth.", [
             Example("vmemmap compare", "The default: the seed's machine (opteron-2007) in the seed's era."),
             Example("vmemmap compare --machine sparse-holes --era 2.6.24", "A machine with large holes."),
         ]),
    Page("hotplug", "Run a memory hot-plug script (add / online / offline / remove / show ...) on a booted "
         "kernel: sections, memory blocks and vmemmap population change as the era's kernel does it.", [
             Example("printf 'add 0 4G 128M\\nonline memory32 movable\\nshow\\n' | vmemmap hotplug -m qemu-2g -",
                     "Add 128 MiB at 4 GiB on node 0, online it movable, show the state."),
         ]),
    Page("conform", "Boot the machine of a real-kernel capture (Debian's kernel under QEMU, `../shared/oracle/`) "
         "and compare every fact it shows with the model.", [
             Example("vmemmap conform ../shared/oracle/captures/base-2G.log",
                     "One capture: every fact agrees (exit status 0)."),
         ]),
    Page("capture", "Boot Debian's real kernel under QEMU and write a capture in the oracle's format.", [
             Example("vmemmap capture -o {tmp}/base-2G.log && vmemmap conform {tmp}/base-2G.log | tail -5",
                     "Capture a fresh boot and check the model against it.", needs="qemu-system-x86_64"),
         ]),
    Page("inspect", "Read a real kernel's memory from an ELF core (QEMU `dump-guest-memory`, `/proc/vmcore`): "
         "walk its page tables and run the models' conversions on its data.", [
             Example("vmemmap capture -o {tmp}/g.log --dump {tmp}/g.core >/dev/null && "
                     "vmemmap inspect {tmp}/g.core --kallsyms {tmp}/g.log --pfn 0x10000",
                     "A core of a real guest: vmemmap_base, the walk and the struct page.",
                     needs="qemu-system-x86_64"),
         ]),
    Page("cost", "Simulate a workload through TLBs, paging-structure caches, page walks and caches, on every legal "
         "model, from the loads the models execute.", [
             Example("vmemmap cost pfn_to_page-random --machine opteron-2007 --era 2.6.21-seed --cpu k8 --ops 20000",
                     "The seed's claim on the seed's machine and CPU."),
             Example("vmemmap cost buddy-order-4 --machine opteron-2007 --era 2.6.24 --cpu k8 --ops 2000 --json",
                     "The buddy allocator, one allocation and one free of order 4 per op, as data."),
         ]),
    Page("experiment", "The cost experiments of docs/cost-experiments.md: sweeps of `cost` with tables and plots.", [
             Example("vmemmap experiment --help | head -30", "What experiments there are."),
         ]),
    Page("report", "One self-contained HTML file: address map, physical map, vmemmap leaves, the compare table.", [
             Example("vmemmap report --machine qemu-numa2 --era 6.1 -o {tmp}/report.html && ls -l {tmp}/report.html "
                     "| awk '{print $5, $9}'", "Write the report; open it in any browser (no network needed)."),
         ]),
    Page("explain", "Walk a newcomer through one conversion step by step: the kernel macro, each load, each "
         "page-table level.", [
             Example("vmemmap explain pfn 0x10000 --machine qemu-2g --era 6.1", "pfn_to_page under 6.1's vmemmap."),
             Example("vmemmap explain pfn 0x10000 --machine qemu-2g --era 2.6.24 --model sparsemem",
                     "The same pfn under classic SPARSEMEM."),
         ]),
    Page("completion", "Print the shell completion script.", [
             Example("vmemmap completion bash | head -5", "For bash: `eval \"$(vmemmap completion bash)\"` in ~/.bashrc."),
         ]),
]


def _run(cmd: str, tmp: str, stdin: str | None) -> tuple[str, int]:
    env = dict(os.environ, COLUMNS="110", NO_COLOR="1", TERM="dumb", PYTHONWARNINGS="ignore")
    env.pop("FORCE_COLOR", None)
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd.replace("{tmp}", tmp)], cwd=ROOT, env=env, input=stdin,
                       capture_output=True, text=True, timeout=1800)
    out = p.stdout + (p.stderr if p.returncode else "")
    return out.replace(tmp, "/tmp/guide"), p.returncode


def _clip(text: str, n: int) -> str:
    lines = text.rstrip("\n").splitlines()
    if len(lines) <= n:
        return "\n".join(lines)
    return "\n".join(lines[:n] + [f"... ({len(lines) - n} more lines)"])


def _commands() -> dict[str, object]:
    from vmemmap.cli import main

    return dict(main.commands)


def write_page(page: Page, help_text: str, tmp: str) -> str:
    out = [f"# `vmemmap {page.name}`", "", page.intro, "", "Every output below was produced by running the command "
           "(`python3 scripts/make_user_guide.py " + page.name + "`).", ""]
    for ex in page.examples:
        shown = ex.cmd.replace("{tmp}", "/tmp/guide")
        out += [f"## `{shown}`", "", ex.why, ""]
        if ex.needs and not shutil.which(ex.needs):
            out += [f"(Not run when this page was made: `{ex.needs}` was not installed. "
                    f"`scripts/install-capture-deps.sh` installs it.)", ""]
            continue
        text, rc = _run(ex.cmd, tmp, ex.stdin)
        out += ["```", _clip(text, ex.max_lines), "```", ""]
        if rc:
            out += [f"(exit status {rc})", ""]
    out += ["## Help", "", "```", help_text.rstrip(), "```", ""]
    if page.after:
        out += [page.after, ""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    cmds = _commands()
    known = {p.name for p in PAGES}
    missing = sorted(set(cmds) - known)
    if missing:
        print(f"no guide page planned for: {', '.join(missing)} (add it to PAGES)", file=sys.stderr)
        return 1
    want = set(argv) or set(cmds)
    GUIDE.mkdir(parents=True, exist_ok=True)
    index = ["# User guide", "", "One page per command, each with real output made by "
             "`scripts/make_user_guide.py`. Start with the README's quick start, then:", ""]
    with tempfile.TemporaryDirectory() as tmp:
        for page in PAGES:
            if page.name not in cmds:
                continue
            index.append(f"- [`vmemmap {page.name}`]({page.name}.md) — {page.intro.split(': ')[0].rstrip('.')}.")
            if page.name not in want:
                continue
            help_text, _ = _run(f"vmemmap {shlex.quote(page.name)} --help", tmp, None)
            (GUIDE / f"{page.name}.md").write_text(write_page(page, help_text, tmp))
            print(f"docs/guide/{page.name}.md", file=sys.stderr)
    index += ["", "Also: [memory models](../memory-models.md), [accuracy](../accuracy.md), "
              "[cost experiments](../cost-experiments.md), [architecture](../architecture.md).", ""]
    (GUIDE / "README.md").write_text("\n".join(index))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
