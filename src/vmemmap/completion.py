"""Shell completion: ``vmemmap completion bash|zsh|fish`` and the value completers.

Click's own machinery does the work (``click.shell_completion``; the shell script calls ``vmemmap`` back
with ``_VMEMMAP_COMPLETE`` set). :func:`attach_completers` walks every command of the group, those other
modules add later included, and gives each parameter that takes a machine, era, memory model, CPU preset
or workload a completer chosen by the parameter's name (or metavar), unless it declares its own.
"""

from __future__ import annotations

from collections.abc import Callable

import click
from click.shell_completion import CompletionItem, get_completion_class

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_VMEMMAP_COMPLETE"

Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]


def _items(names: list[str], incomplete: str, help_of: Callable[[str], str | None] = lambda n: None) -> list[CompletionItem]:
    return [CompletionItem(n, help=help_of(n)) for n in names if n.startswith(incomplete)]


def complete_machine(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Built-in machine names and ``this``; anything else completes as a file path (machine files)."""
    from vmemmap.machine import builtin_machines

    descs = {m.name: m.description for m in builtin_machines()}
    descs["this"] = "this host (/proc/iomem, /sys/firmware/memmap, /sys/devices/system/...)"
    got = _items(list(descs), incomplete, descs.get)
    return got or [CompletionItem(incomplete, type="file")]


def complete_era(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from vmemmap.eras import era_names

    return _items(era_names(), incomplete)


def complete_model(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from vmemmap.eras import MODEL_NAMES

    return _items(list(MODEL_NAMES), incomplete)


def complete_cpu(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from vmemmap.cost.cpu import cpu_names

    return _items(cpu_names(), incomplete)


def complete_workload(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from vmemmap.cost.workloads import WORKLOADS

    return _items(sorted(WORKLOADS), incomplete, WORKLOADS.get)


#: parameter name -> completer (click's parameter names: ``--cpu`` stored as ``cpu_name`` ...)
BY_NAME: dict[str, Completer] = {
    "machine": complete_machine,
    "era": complete_era,
    "model": complete_model,
    "models": complete_model,
    "cpu_name": complete_cpu,
    "workload": complete_workload,
}
#: metavar -> completer, for parameters named otherwise (``--cpu`` of capture is a QEMU model: metavar MODEL)
BY_METAVAR: dict[str, Completer] = {"CPU": complete_cpu, "WORKLOAD": complete_workload, "ERA": complete_era}


def completer_for(param: click.Parameter) -> Completer | None:
    """The completer a parameter gets (None: click's default for its type)."""
    if param.name in BY_NAME:
        return BY_NAME[param.name]
    return BY_METAVAR.get(param.metavar or "")


def attach_completers(group: click.Group) -> None:
    """Give every parameter of every command (recursively) its completer, unless it has one."""
    cmds: list[click.Command] = [group]
    while cmds:
        cmd = cmds.pop()
        for p in cmd.params:
            if getattr(p, "_custom_shell_complete", None) is None:
                fn = completer_for(p)
                if fn is not None:
                    p._custom_shell_complete = fn  # click's slot for shell_complete=
        if isinstance(cmd, click.Group):
            cmds.extend(cmd.commands.values())


def completion_script(group: click.Group, shell: str, prog_name: str = "vmemmap") -> str:
    """The script that makes ``shell`` complete ``prog_name`` (click's, for ``_VMEMMAP_COMPLETE``)."""
    cls = get_completion_class(shell)
    if cls is None:
        from vmemmap.errors import InputError

        raise InputError(f"no completion for shell {shell!r}; choose one of {', '.join(SHELLS)}")
    return cls(group, {}, prog_name, COMPLETE_VAR).source()
