"""The ``vmemmap`` command line: thin, parses and renders; the library does the work.

Errors are one line on stderr, ``vmemmap: error: ...``, exit 2 for bad input and 1 otherwise
(DESIGN.md contract 7); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vmemmap import __version__
from vmemmap.eras import MODEL_NAMES, era_names, load_era
from vmemmap.errors import InputError, VmemmapError

DEFAULT_ERA = "6.1"
COMPARE_DEFAULT_ERA = "2.6.21-seed"
DEFAULT_MACHINE = "opteron-2007"

# a pipe gets a wide, colourless table rather than rich's 80-column default
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _emit_json(obj: Any) -> None:
    from vmemmap.jsonout import dump

    dump(obj, sys.stdout)


class _Group(click.Group):
    """Turns library errors into one-line messages (contract 7)."""

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
        except Exception as e:  # noqa: BLE001 - never a traceback without --debug
            if debug:
                raise
            click.echo(f"vmemmap: error: internal error: {type(e).__name__}: {e} (rerun with --debug)", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmemmap")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """Linux x86-64 physical memory models, executable.

    Builds the kernel address map, real x86-64 page tables, mem_section and the memmap for a
    machine and a kernel era, and runs pfn_to_page & friends under FLATMEM, DISCONTIGMEM,
    SPARSEMEM and SPARSEMEM_VMEMMAP, recording every kernel load.

    \b
    Example:
      vmemmap compare                      # the seed's claim on a 2007 4-socket Opteron
      vmemmap translate --machine qemu-2g pfn 0x100000
    """


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

    m = load_machine(machine)
    e = load_era(era)
    with console.status(f"booting {m.name} with {e.name}...", spinner="dots") if not quiet and sys.stderr.isatty() \
            else _null():
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
def machines(as_json: bool) -> None:
    """List the built-in machines.

    \b
    Example:
      vmemmap machines --json
    """
    from vmemmap.machine import builtin_machines

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
    console.print(t)


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
        _emit_json(boot_json(k))
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
def ptdump(machine: str, era: str, model: str | None, la57: bool | None, kaslr_seed: int | None) -> None:
    """The kernel page tables in /sys/kernel/debug/page_tables/kernel format.

    \b
    Example:
      vmemmap ptdump --machine qemu-2g --era 6.1
    """
    from vmemmap.paging.ptdump import ptdump as dump

    k = _boot(machine, era, model, la57, kaslr_seed)
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

    m = load_machine(machine)
    e = load_era(era)
    show = not as_json and sys.stderr.isatty()
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

    with console.status(f"booting {capture}...", spinner="dots") if not as_json and sys.stderr.isatty() \
            else _null():
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
def capture(series: str, mem: str, numa: int, dimms: tuple[str, ...], hotplug: tuple[str, ...], maxmem: str | None,
            cpu: str | None, kaslr: bool, append: str, output: str | None, timeout: float,
            dump_path: str | None) -> None:
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
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    out = Path(output) if output else None
    dump = Path(dump_path) if dump_path else None
    if err.is_terminal:
        with err.status("vmemmap capture: starting", spinner="dots") as status:
            res = run_capture(spec, series, out, timeout,
                              progress=lambda s: status.update(escape(f"vmemmap capture: {s}")), dump=dump)
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
    err.print(escape(f"{res.path}: {res.kernel.package} {res.kernel.version}; QEMU {t.get('qemu', 0):.1f} s "
                     f"(kernel boot to /init {boot:.1f} s), total {t.get('total', 0):.1f} s"))
    click.echo(str(res.path))


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

    WORKLOAD: pfn_to_page-random, for_each_page, virt_to_page-slab. Each operation's accesses are the
    kernel loads the model's code makes plus the struct page it returns; they go through the CPU
    preset's TLBs, paging-structure caches and data caches, and misses walk the booted kernel's page
    tables.

    \b
    Example:
      vmemmap cost pfn_to_page-random --machine opteron-2007 --era 2.6.21-seed --cpu k8
      vmemmap cost for_each_page -m desktop-32g --era 6.1 --cpu zen4 --json
    """
    from vmemmap.cost.cpu import load_cpu
    from vmemmap.cost.run import contract_json, cost, render
    from vmemmap.machine import load_machine

    m = load_machine(machine)
    e = load_era(era)
    cpu = load_cpu(cpu_name)
    if sys.stderr.isatty() and not as_json:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True), transient=True) as bar:
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
