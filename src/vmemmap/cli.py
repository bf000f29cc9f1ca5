"""The ``vmemmap`` command line: thin, parses and renders; the library does the work.

Errors are one line on stderr, ``vmemmap: error: ...``, exit 2 for bad input and 1 otherwise
(DESIGN.md contract 7); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console  # noqa: F401 - make a console with vmemmap.console.make_console
from rich.markup import escape
from rich.table import Table

from vmemmap import __version__
from vmemmap.console import make_console, note, set_quiet
from vmemmap.console import status as _status
from vmemmap.console import stderr_is_interactive as _interactive  # live progress: a terminal's stderr, not --quiet
from vmemmap.eras import MODEL_NAMES, era_names, load_era
from vmemmap.errors import InputError, VmemmapError

DEFAULT_ERA = "6.1"
COMPARE_DEFAULT_ERA = "2.6.21-seed"
DEFAULT_MACHINE = "opteron-2007"

# one console factory (vmemmap.console): a pipe gets a wide, colourless table; NO_COLOR is honoured
console = make_console()


def _emit_json(obj: Any) -> None:
    from vmemmap.jsonout import dump

    dump(obj, sys.stdout)


class _Group(click.Group):
    """Turns library errors into one-line messages (contract 7); gives every option that takes a machine,
    era, model, CPU or workload its shell completion (vmemmap.completion), commands added later included."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        from vmemmap.completion import attach_completers

        attach_completers(self)
        return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        debug = "--debug" in sys.argv[1:]
        try:
            return super().invoke(ctx)
        except VmemmapError as e:
            if debug:
                raise
            click.echo(f"vmemmap: error: {e}", err=True)
            ctx.exit(e.exit_status)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("vmemmap: error: interrupted", err=True)
            ctx.exit(1)
        except BrokenPipeError:
            # the reader went away (`vmemmap boot | head`): stop quietly, as cat does; point stdout at
            # /dev/null so the interpreter's final flush does not complain again
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)
        except Exception as e:  # noqa: BLE001 - never a traceback without --debug
            if debug:
                raise
            click.echo(f"vmemmap: error: internal error: {type(e).__name__}: {e} (rerun with --debug)", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmemmap")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("--quiet", "-q", is_flag=True, help="Only the essential output: no progress, spinners or notes.")
def main(debug: bool, quiet: bool) -> None:
    """Linux x86-64 physical memory models, executable.

    Builds the kernel address map, real x86-64 page tables, mem_section and the memmap for a
    machine and a kernel era, and runs pfn_to_page & friends under FLATMEM, DISCONTIGMEM,
    SPARSEMEM and SPARSEMEM_VMEMMAP, recording every kernel load.

    \b
    Example:
      vmemmap compare                      # the seed's claim on a 2007 4-socket Opteron
      vmemmap translate --machine qemu-2g pfn 0x100000
      vmemmap explain pfn 0x10000 --machine qemu-2g --cpu zen4
    """
    from vmemmap.machine.this import set_note_sink

    set_quiet(quiet)
    _said.clear()
    set_note_sink(_note_once)


_said: set[str] = set()


def _note_once(msg: str) -> None:
    """A note on stderr (unless --quiet), each text once per run (the host may be read twice)."""
    if msg not in _said:
        _said.add(msg)
        note(msg)


def _resolve_era(machine: str, era: str) -> str:
    """``--machine this`` without an explicit ``--era``: the era nearest the running kernel (uname -r)."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    spec = machine.strip()
    if not (spec == "this" or spec.startswith("this:")) or ctx is None \
            or ctx.get_parameter_source("era") not in (ParameterSource.DEFAULT, None):
        return era
    from vmemmap.machine.this import host_era

    name, release, why = host_era(spec[5:] or "/")
    kernel = f"kernel {release}" if release else "an unknown kernel"
    _note_once(f"this: modelled with era {name}, {'the era of' if why is None else 'the era nearest'} the "
               f"running {kernel} (give --era to choose another)")
    return name


# ---------------------------------------------------------------------- shared options

def _era_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--era", default=default, show_default=True, metavar="ERA",
        help=f"Kernel era: {', '.join(era_names())}.",
    )


_machine_option = click.option(
    "--machine", "-m", default=DEFAULT_MACHINE, show_default=True, metavar="M",
    help="Built-in machine name (see `vmemmap machines`), a TOML machine file, a dmesg log, a /proc/iomem "
         "copy, an oracle capture, or `this`.",
)
_model_option = click.option(
    "--model", default=None, metavar="MODEL",
    help=f"Memory model: {', '.join(MODEL_NAMES)} (default: the era's default for the machine).",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
_la57_option = click.option(
    "--la57/--no-la57", default=None,
    help="Force 5-level paging on/off (default: on when the CPU has LA57 and the era supports it).",
)
_kaslr_option = click.option(
    "--kaslr-seed", type=int, default=None, metavar="N",
    help="Randomise page_offset_base/vmalloc_base/vmemmap_base with this seed (4.20+ eras).",
)


def _kernel_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--machine, --era, --model, --la57, --kaslr-seed: what every booting command takes."""
    for opt in reversed((_machine_option, _era_option(DEFAULT_ERA), _model_option, _la57_option, _kaslr_option)):
        fn = opt(fn)
    return fn


def _boot(machine: str, era: str, model: str | None, la57: bool | None, kaslr_seed: int | None,
          quiet: bool = False):  # noqa: ANN202
    from vmemmap.kernel import BootOptions, boot
    from vmemmap.machine import load_machine

    from vmemmap.console import progress
    from vmemmap.kernel import boot_progress

    m = load_machine(machine)
    e = load_era(_resolve_era(machine, era))
    if quiet:
        return boot(m, e, model, BootOptions(la57=la57, kaslr_seed=kaslr_seed))
    # a bar over the boot's phases (kernel.BOOT_PHASES) on a terminal's stderr; nothing when piped
    with progress(f"booting {m.name} with {e.name}") as advance, \
            boot_progress(lambda phase, done, total: advance(done, total, f"booting {m.name} with {e.name}: {phase}")):
        return boot(m, e, model, BootOptions(la57=la57, kaslr_seed=kaslr_seed))


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def _hx(v: int) -> str:
    return f"{v:#x}"


def _size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.1f} {unit}" if v != int(v) else f"{int(v)} {unit}"
    return f"{n} B"


# ---------------------------------------------------------------------- layout

@main.command()
@_era_option(DEFAULT_ERA)
@click.option("--la57", is_flag=True, help="The 5-level paging layout (4.20+ eras).")
@_kaslr_option
@click.option("--max-pfn", default=None, metavar="PFN", help="RAM end for KASLR region sizing (default 1 TiB).")
@_json_option
def layout(era: str, la57: bool, kaslr_seed: int | None, max_pfn: str | None, as_json: bool) -> None:
    """The kernel virtual address map of an era (mm.txt rows, KASLR placement).

    \b
    Example:
      vmemmap layout --era 2.6.21-seed --json
      vmemmap layout --era 6.1 --la57 --kaslr-seed 7
    """
    from vmemmap.facts import parse_int
    from vmemmap.layout import build_layout

    mp = parse_int(max_pfn, "--max-pfn") if max_pfn else None
    lay = build_layout(load_era(era), la57=la57, kaslr_seed=kaslr_seed, max_pfn=mp)
    if as_json:
        _emit_json(lay.to_json())
        return
    t = Table(title=f"{era} kernel address map ({5 if la57 else 4}-level"
                    f"{', KASLR seed %d' % kaslr_seed if kaslr_seed is not None else ''})")
    for col in ("start", "end", "size", "region"):
        t.add_column(col, justify="right" if col == "size" else "left", no_wrap=True)
    for r in lay.regions:
        style = "bold green" if r.name == "vmemmap" else ("dim" if r.hole else "")
        t.add_row(f"{r.start:016x}", f"{r.end:016x}", _size(r.size), r.description, style=style)
    console.print(t)
    console.print(f"vmemmap {'is the constant' if lay.vmemmap_is_constant else 'is read from vmemmap_base ='} "
                  f"{lay.vmemmap_base:#x}")


# ---------------------------------------------------------------------- machines

@main.command()
@_json_option
@click.argument("name", required=False, metavar="[NAME]")
def machines(as_json: bool, name: str | None) -> None:
    """List the built-in machines, or show one machine (NAME: built-in, file, `this` or `this:ROOT`).

    `this` is the host: its memory map, memory blocks, NUMA nodes, zones, which sources could be read
    and why not (e.g. /proc/iomem zeroed when not root), and the era nearest its kernel. `this:ROOT`
    reads a copy of another host's /proc and /sys below ROOT.

    \b
    Example:
      vmemmap machines --json
      vmemmap machines this
      vmemmap machines qemu-numa2 --json
    """
    from vmemmap.machine import builtin_machines

    if name is not None:
        _show_machine(name, as_json)
        return
    ms = builtin_machines()
    if as_json:
        _emit_json([{"name": m.name, "description": m.description, "ram": _hx(m.ram_bytes),
                     "nodes": max(1, len(m.nodes))} for m in ms])
        return
    t = Table(title="built-in machines")
    for col in ("name", "RAM", "nodes", "CPU", "description"):
        t.add_column(col, no_wrap=col != "description")
    for m in ms:
        feats = [f for f in ("pse", "gbpages", "la57") if getattr(m.cpu, f)]
        t.add_row(m.name, _size(m.ram_bytes), str(max(1, len(m.nodes))), " ".join(feats), m.description)
    try:
        from vmemmap.machine.this import inspect_host

        host = inspect_host().machine
        feats = [f for f in ("pse", "gbpages", "la57") if getattr(host.cpu, f)]
        t.add_row("this", _size(host.ram_bytes), str(max(1, len(host.nodes))), " ".join(feats),
                  escape(host.description), style="dim")
    except Exception as e:  # noqa: BLE001 - an optional row: an odd host must not break the list
        t.add_row("this", "", "", "", escape(f"this host: not readable ({e})"), style="dim")
    console.print(t)


def _show_machine(name: str, as_json: bool) -> None:
    """``vmemmap machines NAME``: one machine's e820 and nodes; for ``this`` the whole host report."""
    from vmemmap.machine import format_e820_table, load_machine

    spec = name.strip()
    rep = None
    if spec == "this" or spec.startswith("this:"):
        from vmemmap.machine.this import inspect_host

        rep = inspect_host(spec[5:] or "/")
        m = rep.machine
    else:
        m = load_machine(spec)
    if as_json:
        if rep is not None:
            _emit_json(rep.to_json())
        else:
            _emit_json({**m.summary(), "e820": [{"start": _hx(e.start), "end": _hx(e.end), "type": e.type}
                                                for e in m.e820],
                        "numa_nodes": [{"nid": n.nid, "ranges": [[_hx(s), _hx(e)] for s, e in n.ranges],
                                        "cpus": list(n.cpus)} for n in m.nodes]})
        return
    console.print(f"[bold]{escape(m.name)}[/bold]: {escape(m.description)}")
    for line in format_e820_table(m.e820):
        console.print(escape(line))
    for n in m.nodes:
        console.print(escape(f"node {n.nid}: " + ", ".join(f"[mem {s:#x}-{e - 1:#x}]" for s, e in n.ranges)
                             + (f" cpus {','.join(map(str, n.cpus))}" if n.cpus else "")))
    if rep is None:
        return
    if rep.blocks is not None:
        b = rep.blocks
        console.print(f"memory blocks: {b.count} of {_size(b.block_size)}, {len(b.online)} online, "
                      f"{len(b.offline)} offline")
    if rep.zones:
        t = Table(title="zones (/proc/zoneinfo)")
        for col in ("node", "zone", "start_pfn", "spanned", "present", "managed"):
            t.add_column(col, justify="left" if col in ("node", "zone") else "right", no_wrap=True)
        for z in rep.zones:
            t.add_row(str(z.nid), z.zone, _hx(z.start_pfn), str(z.spanned), str(z.present), str(z.managed))
        console.print(t)
    t = Table(title="sources")
    for col in ("source", "status", "why"):
        t.add_column(col, no_wrap=col != "why")
    for src in rep.sources:
        style = "green" if src.status == "read" else ("dim" if src.status == "unused" else "yellow")
        t.add_row(src.path, src.status, escape(src.detail), style=style)
    console.print(t)
    for n in rep.notes():
        console.print(escape(f"note: {n}"))


# ---------------------------------------------------------------------- boot

@main.command(name="boot")
@_kernel_options
@_json_option
def boot_cmd(machine: str, era: str, model: str | None, la57: bool | None, kaslr_seed: int | None,
             as_json: bool) -> None:
    """Boot a machine and print what the era's kernel prints (or the boot facts as JSON).

    \b
    Example:
      vmemmap boot --machine qemu-2g --era 6.1
      vmemmap boot --machine opteron-2007 --era 2.6.26 --json
    """
    from vmemmap.bootlog import render_boot_log
    from vmemmap.facts import boot_facts, boot_json

    k = _boot(machine, era, model, la57, kaslr_seed)
    if as_json:
        out = boot_json(k)
        if machine.strip() == "this" or machine.strip().startswith("this:"):
            from vmemmap.machine.this import inspect_host

            out = {**out, "notes": inspect_host(machine.strip()[5:] or "/").notes()}
        _emit_json(out)
        return
    for line in render_boot_log(boot_facts(k)):
        click.echo(line)


# ---------------------------------------------------------------------- sections

@main.command()
@_kernel_options
@_json_option
def sections(machine: str, era: str, model: str | None, la57: bool | None, kaslr_seed: int | None,
             as_json: bool) -> None:
    """The mem_section table, like crash's `kmem -n` section listing.

    \b
    Example:
      vmemmap sections --machine qemu-2g --era 6.1
    """
    from vmemmap.facts import section_rows
    from vmemmap.kmem import kmem_n

    k = _boot(machine, era, model, la57, kaslr_seed)
    if not hasattr(k.model, "sections"):
        raise InputError(f"{k.model_name} has no mem_section table (only SPARSEMEM models do)")
    if as_json:
        _emit_json({"machine": k.machine.name, "era": k.era.name, "model": k.model_name,
                    "sections": section_rows(k)})
        return
    click.echo(kmem_n(k), nl=False)


# ---------------------------------------------------------------------- ptdump

@main.command()
@_kernel_options
@_json_option
def ptdump(machine: str, era: str, model: str | None, la57: bool | None, kaslr_seed: int | None,
           as_json: bool) -> None:
    """The kernel page tables in /sys/kernel/debug/page_tables/kernel format (--json: the leaf runs).

    \b
    Example:
      vmemmap ptdump --machine qemu-2g --era 6.1
      vmemmap ptdump --machine qemu-2g --json
    """
    from vmemmap.paging.ptdump import kernel_walk_ranges
    from vmemmap.paging.ptdump import ptdump as dump

    k = _boot(machine, era, model, la57, kaslr_seed, quiet=as_json)
    if as_json:
        import bisect

        marks = sorted((mk[0], mk[1]) for mk in k.layout.markers)
        runs = []
        for lo, hi in kernel_walk_ranges(k.tables.levels):
            for r in k.tables.runs(lo, hi):
                i = bisect.bisect_right([m[0] for m in marks], r.vaddr) - 1
                runs.append({"start": _hx(r.vaddr), "end": _hx(r.end), "size": r.size, "level": r.level,
                             "phys": _hx(r.phys), "phys_end": _hx(r.phys_end), "flags": r.flag_names,
                             "region": marks[i][1] if i >= 0 else None})
        _emit_json({"machine": k.machine.name, "era": k.era.name, "model": k.model_name,
                    "levels": k.tables.levels, "runs": runs})
        return
    click.echo(dump(k.tables, list(k.layout.markers)), nl=False)


# ---------------------------------------------------------------------- translate

@main.command()
@_kernel_options
@_json_option
@click.argument("kind", type=click.Choice(["pfn", "phys", "virt", "page"]))
@click.argument("value")
def translate(machine: str, era: str, model: str | None, la57: bool | None, kaslr_seed: int | None,
              as_json: bool, kind: str, value: str) -> None:
    """Convert a pfn, physical address, direct-map address or struct page address, showing the kernel
    loads the conversion made and the page-table walk of the struct page.

    \b
    Example:
      vmemmap translate --machine qemu-2g --era 2.6.21-seed --model vmemmap pfn 0x10000
      vmemmap translate --machine qemu-2g --era 6.1 page 0xffffea0000400000 --json
    """
    from vmemmap.facts import parse_int
    from vmemmap.facts import translate as do

    v = parse_int(value, kind)
    k = _boot(machine, era, model, la57, kaslr_seed)
    r = do(k, kind, v)
    if as_json:
        _emit_json(r)
        return
    console.print(f"[bold]{r['op']}[/bold] on {r['machine']} / {r['era']} / {r['model']}")
    t = Table(show_header=False, box=None)
    t.add_column("k", style="cyan")
    t.add_column("v")
    for key in ("pfn", "phys", "virt", "page", "section", "nid", "zone", "valid"):
        t.add_row(key, str(r[key]))
    console.print(t)
    console.print(f"kernel loads ({len(r['loads'])}):")
    for ld in r["loads"] or []:
        console.print(escape(f"  {ld['what']:<28} {ld['size']} bytes at {ld['vaddr']}"))
    if not r["loads"]:
        console.print("  none: the conversion is address arithmetic on constants")
    console.print("page-table walk of the struct page:")
    for s in r["walk"]:
        console.print(f"  {s['level']:<4} [{s['index']:3}] {s['entry']}")


# ---------------------------------------------------------------------- explain

@main.command(name="explain")
@_kernel_options
@click.option("--cpu", "cpu_name", default=None, metavar="CPU",
              help="Also narrate the accesses through this CPU preset's TLBs, page walk and caches, cold "
                   "(k8, core2, nehalem, skylake, icelake, zen2, zen4).")
@_json_option
@click.argument("kind", type=click.Choice(["pfn", "page", "virt"]))
@click.argument("value")
def explain_cmd(machine: str, era: str, model: str | None, la57: bool | None, kaslr_seed: int | None,
                cpu_name: str | None, as_json: bool, kind: str, value: str) -> None:
    """Walk through one conversion step by step: pfn (pfn_to_page), page (page_to_pfn) or virt
    (virt_to_page of a direct-map address).

    Numbered steps: the kernel macro and where it is defined for the model and era, every load it
    executed (address, what, value) with the page-table walk that translated it, the arithmetic, the
    result; with --cpu, the simulator's account of TLBs, page walks and caches. See docs/explain.md.

    \b
    Example:
      vmemmap explain pfn 0x10000 --machine qemu-2g --era 6.1
      vmemmap explain page 0xffffea0000400000 -m qemu-2g --cpu zen4
      vmemmap explain virt 0xffff810012345000 -m opteron-2007 --era 2.6.21-seed --model discontigmem --json
    """
    from vmemmap.explain import explain as run
    from vmemmap.facts import parse_int

    v = parse_int(value, kind)
    cpu = None
    if cpu_name is not None:
        from vmemmap.cost.cpu import load_cpu

        cpu = load_cpu(cpu_name)
    k = _boot(machine, era, model, la57, kaslr_seed, quiet=as_json)
    res = run(k, kind, v, cpu)
    if as_json:
        _emit_json(res)
        return
    console.print(f"[bold]{res['op']}({res['input']})[/bold] on {escape(res['machine'])}, Linux {res['era']}, "
                  f"{res['config']} (--model {res['model']})")
    for st in res["steps"]:
        console.print(f"\n[bold cyan]{st['n']}. {escape(st['title'])}[/bold cyan]")
        for line in st["text"]:
            console.print("   " + escape(line), style="dim" if line.startswith("  ") else "")
    console.print(f"\n[bold]= {res['value']}[/bold]")


# ---------------------------------------------------------------------- completion

@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script (machines, eras, models, CPU presets and workloads complete too).

    \b
    Example:
      eval "$(vmemmap completion bash)"          # in ~/.bashrc
      vmemmap completion zsh > ~/.zfunc/_vmemmap
      vmemmap completion fish > ~/.config/fish/completions/vmemmap.fish
    """
    from vmemmap.completion import completion_script

    click.echo(completion_script(main, shell))


# ---------------------------------------------------------------------- compare

@main.command()
@_machine_option
@_era_option(COMPARE_DEFAULT_ERA)
@_la57_option
@_json_option
def compare(machine: str, era: str, la57: bool | None, as_json: bool) -> None:
    """Every memory model the era can build for a machine, side by side (the main job).

    \b
    Example:
      vmemmap compare
      vmemmap compare --machine sparse-holes --era 2.6.24 --json
    """
    from vmemmap.compare import compare as run
    from vmemmap.compare import render

    from vmemmap.machine import load_machine

    from vmemmap.console import stderr_is_interactive

    m = load_machine(machine)
    e = load_era(_resolve_era(machine, era))
    show = not as_json and stderr_is_interactive()
    res = run(m, e, la57=la57, progress=show)
    if as_json:
        _emit_json(res)
        return
    render(res, console)


# ---------------------------------------------------------------------- hotplug

@main.command()
@_machine_option
@_era_option(DEFAULT_ERA)
@_model_option
@_la57_option
@_kaslr_option
@_json_option
@click.argument("script", metavar="SCRIPT")
def hotplug(machine: str, era: str, model: str | None, la57: bool | None, kaslr_seed: int | None,
            script: str, as_json: bool) -> None:
    """Run a memory hot-plug SCRIPT on a booted kernel (6.x SPARSEMEM_VMEMMAP), or `ls` the blocks.

    One step per line (`#` starts a comment): `probe 0xADDR`, `add NID START SIZE`,
    `online memoryN [movable|kernel]`, `offline memoryN`, `remove START SIZE`, `show`, and
    `inject MEM_GOING_ONLINE|MEM_GOING_OFFLINE ERRNO` (memory-notifier-error-inject; 0 clears), and
    for device memory (ZONE_DEVICE, 2 MiB sub-sections) `addpages NID START SIZE`, `removepages START SIZE`.
    Numbers take 0x and K/M/G suffixes. Each step prints the kernel's messages; a refused step prints
    `errno -22 (EINVAL): reason`, leaves the state as it was, and makes the run exit 1 at the end.
    SCRIPT `-` reads standard input; `ls` prints /sys/devices/system/memory.

    \b
    Example:
      printf 'add 0 4G 128M\\nonline memory32 movable\\nshow\\n' | vmemmap hotplug -m qemu-2g -
      vmemmap hotplug -m qemu-2g ls
    """
    from pathlib import Path

    from vmemmap.hotplug import parse_script, run_script

    if script == "ls" and not Path("ls").exists():
        text = "show\n"
    elif script == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(script).read_text()
        except OSError as e:
            raise InputError(f"cannot read script {script}: {e.strerror}") from None
    steps = parse_script(text, script)
    k = _boot(machine, era, model, la57, kaslr_seed, quiet=as_json)
    if script == "ls" and not as_json:
        for line in k.hotplug.sysfs_lines():
            click.echo(line)
        return
    out = run_script(k, steps)
    if as_json:
        _emit_json(out)
    else:
        for msg in out["boot_messages"]:
            click.echo(msg)
        for st in out["steps"]:
            if script != "ls":
                click.echo(f"$ {st['line']}")
            for msg in st["messages"]:
                click.echo(msg)
            if st["error"]:
                click.echo(st["error"])
            for line in st.get("show", []):
                click.echo(line)
    if out["failed"]:
        click.get_current_context().exit(1)


# ---------------------------------------------------------------------- conform

@main.command()
@click.argument("capture", metavar="CAPTURE")
@_json_option
def conform(capture: str, as_json: bool) -> None:
    """Boot the machine of a real-kernel capture and compare every fact it shows (exit 0: all agree).

    The capture is an oracle log (shared/oracle/captures/*.log): its e820, SRAT, command line and QEMU
    CPU rebuild the machine, booted in the era of the captured kernel (its Linux version line or the
    # kernel:/# package: header; a release without its own era uses the nearest one, named in a note)
    as the capture was (nokaslr or KASLR bases, flavour,
    LA57). Facts: base, max_pfn, node, zone, block, root, section, subsection, vmemmap, directmap
    (docs/conformance.md), placement, and for hot-plug captures every later snapshot, replayed step by
    step (device_add, online, device_del, virtio-mem resizes) with the hotplug engine.

    \b
    Example:
      vmemmap conform ../shared/oracle/captures/base-2G.log
      vmemmap conform ../shared/oracle/captures/numa2-2G.log --json
    """
    from vmemmap.conform import by_category
    from vmemmap.conform import conform as run

    with _status(f"booting {capture}...") if not as_json else _null():
        res = run(capture)
    if as_json:
        _emit_json(res)
    else:
        console.print(escape(f"{res['capture']}: Linux {res['kernel']} vs the {res['era']} model "
                             f"of machine {res['machine']}"))
        t = Table()
        for col in ("category", "agree", "total", ""):
            t.add_column(col, justify="right" if col in ("agree", "total") else "left", no_wrap=True)
        for cat, (a, n) in by_category(res).items():
            t.add_row(cat, str(a), str(n), "[green]ok[/green]" if a == n else "[red]differs[/red]")
        t.add_row("[bold]all[/bold]", f"[bold]{res['agree']}[/bold]", f"[bold]{res['total']}[/bold]", "")
        console.print(t)
        snaps = res.get("snapshots") or []
        if len(snaps) > 1:
            st = Table(title="per snapshot")
            for col in ("snapshot", "agree", "total", ""):
                st.add_column(col, justify="right" if col != "" else "left", no_wrap=True)
            for sn in snaps:
                st.add_row(str(sn["snapshot"]), str(sn["agree"]), str(sn["total"]),
                           "[green]ok[/green]" if sn["agree"] == sn["total"] else "[red]differs[/red]")
            console.print(st)
        for note in res["notes"]:
            console.print(escape(f"note: {note}"))
        bad = [f for f in res["facts"] if not f["ok"]]
        for f in bad:
            console.print(escape(f"{f['name']}: expected {_brief(f['expected'])}, got {_brief(f['got'])}"))
        if not bad:
            console.print(f"all {res['total']} facts agree")
    if res["agree"] != res["total"]:
        click.get_current_context().exit(1)


def _brief(v: Any) -> str:
    import json as _json

    return v if isinstance(v, str) else _json.dumps(v)




# ---------------------------------------------------------------------- inspect (real kernel memory)

def _parse_addr(text: str, what: str) -> int:
    try:
        v = int(text, 0) if text.lower().startswith(("0x", "0o", "0b")) or text.isdigit() else int(text, 16)
    except ValueError:
        raise InputError(f"{what} {text!r} is not a number (hex with or without 0x, or decimal)") from None
    if v < 0 or v >> 64:
        raise InputError(f"{what} {text!r} does not fit 64 bits")
    return v


@main.command()
@click.argument("dump", metavar="DUMP", type=click.Path(dir_okay=False))
@click.option("--kallsyms", "kallsyms", default=None, metavar="FILE",
              help="Symbol addresses: /proc/kallsyms or System.map lines, or an oracle capture (its KALLSYMS block).")
@click.option("--vtop", "vtops", multiple=True, metavar="ADDR",
              help="Walk the page tables for a kernel virtual address (hex), like crash's `vtop`. Repeatable.")
@click.option("--pfn", "pfns", multiple=True, metavar="PFN",
              help="pfn_to_page and back with the dump's vmemmap_base (0x.. hex, or decimal). Repeatable.")
@_era_option(DEFAULT_ERA)
@_json_option
def inspect(dump: str, kallsyms: str | None, vtops: tuple[str, ...], pfns: tuple[str, ...], era: str,
            as_json: bool) -> None:
    """Read a real kernel's memory from an ELF core (QEMU dump-guest-memory, kdump /proc/vmcore).

    Prints the kernel release, paging levels, page_offset_base and vmemmap_base, then mem_section
    like crash's `kmem -n`, a crash-style `vtop` walk per --vtop, and pfn <-> page per --pfn.
    Everything is read with vmemmap's own page-table walker and section code (see docs/inspect.md).

    \b
    Example:
      vmemmap inspect guest.core --vtop 0xffffea0000400000 --pfn 0x10000
      vmemmap inspect vmcore --kallsyms /proc/kallsyms --json
    """
    from vmemmap.inspect.kernel import open_dump
    from vmemmap.inspect.render import inspect_data, inspect_text

    vaddrs = [_parse_addr(a, "--vtop address") if a.lower().startswith("0x") else _parse_addr("0x" + a, "--vtop address")
              for a in vtops]
    pfn_values = [_parse_addr(p, "--pfn") for p in pfns]
    dk = open_dump(dump, kallsyms, era)
    try:
        if as_json:
            _emit_json(inspect_data(dk, vaddrs, pfn_values))
        else:
            click.echo(inspect_text(dk, vaddrs, pfn_values), nl=False)
    finally:
        dk.close()


# ---------------------------------------------------------------------- capture

@main.command()
@click.option("--kernel", "series", type=click.Choice(["6.1", "6.12"]), default="6.1", show_default=True,
              help="Debian cloud kernel: 6.1 (linux-image-cloud-amd64) or 6.12 (linux-image-6.12-cloud-amd64).")
@click.option("--mem", default="2G", show_default=True, metavar="SIZE", help="Boot memory (-m).")
@click.option("--numa", default=1, show_default=True, metavar="N", help="NUMA nodes, memory split evenly, one CPU each.")
@click.option("--dimm", "dimms", multiple=True, metavar="SIZE", help="A pc-dimm present at boot (repeatable).")
@click.option("--hotplug-dimm", "hotplug", multiple=True, metavar="SIZE",
              help="Hot-add a pc-dimm over QMP, online it movable, snapshot, hot-remove it, snapshot.")
@click.option("--maxmem", default=None, metavar="SIZE", help="-m ...,maxmem= with DIMMs (default 4 x --mem).")
@click.option("--cpu", default=None, metavar="MODEL", help="QEMU -cpu; 'max' gives LA57 and 1 GiB pages.")
@click.option("--kaslr/--no-kaslr", default=False, show_default=True, help="Boot with KASLR (default: nokaslr).")
@click.option("--append", default="", metavar="ARGS", help="Extra kernel command line.")
@click.option("-o", "--output", default=None, metavar="FILE", help="Capture file (default capture-<timestamp>.log).")
@click.option("--timeout", default=300.0, show_default=True, metavar="SECONDS", help="Give up on the guest after this.")
@click.option("--dump", "dump_path", default=None, metavar="FILE",
              help="After the blocks, stop the guest and write its memory as an ELF core (QMP dump-guest-memory) "
                   "for `vmemmap inspect`.")
@_json_option
def capture(series: str, mem: str, numa: int, dimms: tuple[str, ...], hotplug: tuple[str, ...], maxmem: str | None,
            cpu: str | None, kaslr: bool, append: str, output: str | None, timeout: float,
            dump_path: str | None, as_json: bool) -> None:
    """Boot Debian's real kernel under QEMU and write a capture in the shared oracle format.

    The kernel package is resolved with apt-cache and fetched with apt-get download into
    ~/.cache/vmemmap/kernels (never installed); a busybox initramfs prints the blocks that
    `vmemmap conform` checks. Needs qemu-system-x86, busybox-static and gcc with static libc
    (scripts/install-capture-deps.sh). See docs/capture.md.

    \b
    Example:
      vmemmap capture -o base-2G.log && vmemmap conform base-2G.log
      vmemmap capture --mem 6G --cpu max -o la57-6G.log
      vmemmap capture --numa 2 --dimm 1G --kernel 6.12
      vmemmap capture --hotplug-dimm 1G -o dimm-hot.log
      vmemmap capture -o g.log --dump g.core && vmemmap inspect g.core --kallsyms g.log
    """
    from pathlib import Path

    from vmemmap.capture import MachineSpec, run_capture

    spec = MachineSpec(mem=mem, numa=numa, dimms=dimms, hotplug=hotplug, cpu=cpu, kaslr=kaslr, append=append,
                       maxmem=maxmem)
    err = make_console(stderr=True)
    out = Path(output) if output else None
    dump = Path(dump_path) if dump_path else None
    from vmemmap.console import is_quiet, stderr_is_interactive

    if stderr_is_interactive():
        with err.status("vmemmap capture: starting", spinner="dots") as status:
            res = run_capture(spec, series, out, timeout,
                              progress=lambda s: status.update(escape(f"vmemmap capture: {s}")), dump=dump)
    elif is_quiet():
        res = run_capture(spec, series, out, timeout, progress=lambda s: None, dump=dump)
    else:
        last = [""]

        def plain(s: str) -> None:  # one line per phase, not per poll
            phase = s.split(" (")[0].split(", block")[0]
            if phase != last[0]:
                last[0] = phase
                err.print(escape(f"vmemmap capture: {phase}"))

        res = run_capture(spec, series, out, timeout, progress=plain, dump=dump)
    t = res.timings
    boot = (t.get("run_init") or 0) - (t.get("linux_version") or 0)
    if as_json:
        _emit_json({"path": str(res.path), "package": res.kernel.package, "version": res.kernel.version,
                    "dump": str(dump) if dump else None, "timings": res.timings})
        return
    if not is_quiet():
        err.print(escape(f"{res.path}: {res.kernel.package} {res.kernel.version}; QEMU {t.get('qemu', 0):.1f} s "
                         f"(kernel boot to /init {boot:.1f} s), total {t.get('total', 0):.1f} s"))
    click.echo(str(res.path))


# ---------------------------------------------------------------------- experiment

@main.command(name="experiment")
@click.argument("name", metavar="NAME")
@click.option("--out", "out_dir", default="experiments-out", show_default=True, metavar="DIR",
              help="Where NAME.json, NAME.md and the SVG figures go.")
@click.option("--ops", default=20_000, show_default=True, type=click.IntRange(1), help="Operations per model run.")
@click.option("--seed", default=1, show_default=True, type=int, help="Workload seed (same seed, same numbers).")
@click.option("--quick", is_flag=True, help="A small sweep (for tests and a first look).")
@_json_option
def experiment_cmd(name: str, out_dir: str, ops: int, seed: int, quick: bool, as_json: bool) -> None:
    """Run an experiment (a sweep of `vmemmap cost`) and write its numbers, tables and plots.

    NAME: seed-claim, tlb-pressure, kaslr, vmemmap-4k, struct-page or all. See docs/cost-experiments.md.

    \b
    Example:
      vmemmap experiment seed-claim --out docs/figures
      vmemmap experiment all --quick --ops 2000 --json
    """
    from pathlib import Path

    from vmemmap.experiments import EXPERIMENTS, NAMES, run_experiment, summary

    if name not in NAMES:
        raise InputError(f"unknown experiment {name!r}; choose one of {', '.join(NAMES)}")
    names = list(EXPERIMENTS) if name == "all" else [name]
    import time

    err = make_console(stderr=True)
    results = []
    took = {}
    for n in names:
        t0 = time.monotonic()
        if _interactive():
            with err.status(f"{n}") as st:
                results.append(run_experiment(n, Path(out_dir), ops, seed, quick,
                                              lambda msg, n=n: st.update(f"{n}: {escape(msg)}")))
        else:
            results.append(run_experiment(n, Path(out_dir), ops, seed, quick,
                                          lambda msg, n=n: err.print(escape(f"{n}: {msg}"), style="dim")))
        took[n] = time.monotonic() - t0
    if as_json:
        _emit_json(results[0] if len(results) == 1 else {"experiments": results})
        return
    for obj in results:
        for line in summary(obj):
            console.print(escape(line))
        console.print(escape(f"  ({took[obj['experiment']]:.0f} s)"), style="dim")
    console.print(escape(f"written to {out_dir}/"))


if __name__ == "__main__":  # pragma: no cover
    main()


# ---------------------------------------------------------------------- cost

@main.command(name="cost")
@click.argument("workload", metavar="WORKLOAD")
@_machine_option
@_era_option(COMPARE_DEFAULT_ERA)
@click.option("--cpu", "cpu_name", default="k8", show_default=True, metavar="CPU",
              help="CPU preset (src/vmemmap/cost/cpus/*.toml): k8, core2, nehalem, skylake, icelake, zen2, zen4.")
@click.option("--model", "models", multiple=True, metavar="MODEL",
              help="Only this memory model (repeatable; default: every model the era can build).")
@click.option("--ops", default=100_000, show_default=True, type=click.IntRange(1), help="Operations per model.")
@click.option("--seed", default=1, show_default=True, type=int, help="Workload seed (same seed, same numbers).")
@_la57_option
@_json_option
def cost_cmd(workload: str, machine: str, era: str, cpu_name: str, models: tuple[str, ...], ops: int, seed: int,
             la57: bool | None, as_json: bool) -> None:
    """Simulate a WORKLOAD through TLBs, page walks and caches on every legal model, side by side.

    WORKLOAD: pfn_to_page-random, pfn_to_page-numa-local, for_each_page, virt_to_page-slab,
    page_address-random, buddy-order-0 .. buddy-order-10 (the era's buddy allocator: one allocation
    and one free of order K; eras 2.6.21-seed, 2.6.24, 6.1 and 6.12). Each operation's accesses are the kernel
    loads the model's code makes plus the struct pages (and pages) it touches; they go through the CPU
    preset's TLBs, paging-structure caches and data caches, and misses walk the booted kernel's page
    tables. The first run with a CPU preset compiles the simulator for it (10-20 s, kept in
    ~/.cache/vmemmap/sim or $VMEMMAP_CACHE_DIR); later runs start at once.

    \b
    Example:
      vmemmap cost pfn_to_page-random --machine opteron-2007 --era 2.6.21-seed --cpu k8
      vmemmap cost buddy-order-4 --machine opteron-2007 --era 2.6.24 --ops 2000 --json
      vmemmap cost for_each_page -m desktop-32g --era 6.1 --cpu zen4 --json
    """
    from vmemmap.cost.cpu import load_cpu
    from vmemmap.cost.run import contract_json, cost, render
    from vmemmap.machine import load_machine

    m = load_machine(machine)
    e = load_era(_resolve_era(machine, era))
    cpu = load_cpu(cpu_name)
    if _interactive() and not as_json:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(),
                      console=make_console(stderr=True), transient=True) as bar:
            task = bar.add_task("simulating", total=1)

            def step(model: str, done: int, total: int) -> None:
                bar.update(task, description=f"simulating {model}", completed=done, total=total)

            res = cost(m, e, cpu, workload, ops, seed, list(models) or None, la57, step)
    else:
        res = cost(m, e, cpu, workload, ops, seed, list(models) or None, la57)
    if as_json:
        _emit_json(contract_json(res))
        return
    render(res, cpu, console)


# ---------------------------------------------------------------------- report

@main.command(name="report")
@_kernel_options
@click.option("-o", "--output", default="report.html", show_default=True, metavar="FILE",
              help="The HTML file to write; '-' writes it to stdout.")
@click.option("--compare/--no-compare", "with_compare", default=True, show_default=True,
              help="Include the `vmemmap compare` table (boots every legal model: slow on huge machines).")
@click.option("--cost", "with_cost", is_flag=True, help="Add a small `vmemmap cost` run drawn as bar charts.")
@click.option("--cpu", "cpu_name", default="k8", show_default=True, metavar="CPU", help="CPU preset for --cost.")
@click.option("--workload", default="pfn_to_page-random", show_default=True, metavar="WORKLOAD",
              help="Workload for --cost.")
@click.option("--ops", default=20_000, show_default=True, type=click.IntRange(1),
              help="Operations per model for --cost.")
@click.option("--svg-dir", default=None, metavar="DIR",
              help="Also write each drawing as a standalone SVG file into DIR (address-map.svg, ...).")
@click.option("--figures", default=None, metavar="DIR",
              help="Also inline the SVG figures in DIR (e.g. from `vmemmap experiment --out DIR`).")
@_json_option
def report_cmd(machine: str, era: str, model: str | None, la57: bool | None, kaslr_seed: int | None, output: str,
               with_compare: bool, with_cost: bool, cpu_name: str, workload: str, ops: int, svg_dir: str | None,
               figures: str | None, as_json: bool) -> None:
    """Write one self-contained HTML page (no network needed): the era's kernel address map, the
    machine's physical map, the vmemmap leaves and their backing per node, the compare table and,
    with --cost, simulated costs. Open the file in any browser; it prints too.

    \b
    Example:
      vmemmap report -o report.html && xdg-open report.html
      vmemmap report --machine numa-2s-256g --era 6.1 --kaslr-seed 7 --cost -o numa.html
      vmemmap report --machine server-64t --json
      vmemmap report --figures docs/figures -o with-experiments.html
      vmemmap report -m qemu-numa2 --era 6.1 --svg-dir pictures -o numa2.html
    """
    from pathlib import Path

    from vmemmap.machine import load_machine
    from vmemmap.report import CostSpec, build_report

    if as_json and output == "-":
        raise InputError("--json prints a summary on stdout: give the HTML a file (-o FILE), not '-'")
    m = load_machine(machine)
    e = load_era(_resolve_era(machine, era))
    spec = CostSpec(workload=workload, cpu=cpu_name, ops=ops) if with_cost else None
    with _status("vmemmap report...") as update:  # a spinner naming the phase, on a terminal's stderr only
        rep = build_report(m, e, model, la57, kaslr_seed, spec, progress=lambda s: update(f"vmemmap report: {s}..."),
                           with_compare=with_compare, figures=figures)
    if svg_dir is not None:
        d = Path(svg_dir)
        try:
            d.mkdir(parents=True, exist_ok=True)
            for name, svg in rep.drawings.items():
                (d / f"{name}.svg").write_text(svg, encoding="utf-8")
        except OSError as ex:
            raise InputError(f"cannot write the drawings into {svg_dir}: {ex.strerror or ex}") from None
    if output == "-":
        sys.stdout.write(rep.html)
        return
    path = Path(output)
    try:
        path.write_text(rep.html, encoding="utf-8")
    except OSError as ex:
        raise InputError(f"cannot write {output}: {ex.strerror or ex}") from None
    if as_json:
        _emit_json(rep.summary(str(path)))
        return
    click.echo(f"wrote {path} ({len(rep.html.encode()):,} bytes): open {path.resolve().as_uri()} in a browser")
