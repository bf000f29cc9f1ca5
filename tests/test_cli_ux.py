"""Terminal UX across every command: help with an example, --json, --quiet, colours, progress, completion.

The help/--json test walks the click group, so a command added later is checked without editing this file.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vmemmap import console as con
from vmemmap.cli import main
from vmemmap.completion import BY_NAME, attach_completers, completer_for, completion_script

HOST = Path(__file__).parent / "data" / "host-nonroot"

#: commands without --json, and why (every other command produces data and must have it)
NO_JSON = {
    "completion": "prints a shell script for the shell to source, not data",
}


def all_commands() -> list[tuple[str, click.Command]]:
    out, todo = [], [("", main)]
    while todo:
        path, cmd = todo.pop()
        if isinstance(cmd, click.Group):
            todo += [(f"{path} {n}".strip(), c) for n, c in cmd.commands.items()]
        else:
            out.append((path, cmd))
    return sorted(out, key=lambda x: x[0])


COMMANDS = all_commands()


def test_the_walk_sees_the_commands() -> None:
    names = {n for n, _ in COMMANDS}
    assert {"boot", "compare", "explain", "completion", "machines", "cost", "translate"} <= names
    assert set(NO_JSON) <= names  # no stale exception


@pytest.mark.parametrize("name", [n for n, _ in COMMANDS])
def test_every_command_has_an_example_and_json(name: str) -> None:
    r = CliRunner().invoke(main, [*name.split(), "--help"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    at = next((i for i, ln in enumerate(lines) if ln.strip() == "Example:"), None)
    assert at is not None, f"`vmemmap {name} --help` has no 'Example:' section"
    assert lines[at + 1].strip().startswith("vmemmap ") or "vmemmap " in lines[at + 1], lines[at + 1]
    has_json = "--json" in r.stdout
    if name in NO_JSON:
        assert not has_json, f"{name} has --json now: drop it from NO_JSON"
    else:
        assert has_json, f"`vmemmap {name}` produces data but has no --json"


def test_group_help_lists_quiet_and_an_example() -> None:
    r = CliRunner().invoke(main, ["--help"])
    assert "--quiet" in r.stdout and "-q" in r.stdout and "Example:" in r.stdout


# ---------------------------------------------------------------------- console: colours, width, quiet

def test_console_colours_follow_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    f = io.StringIO()
    c = con.make_console(file=f)
    c.print("[red]x[/red]")
    assert f.getvalue() == "x\n" and c.width == con.PIPE_WIDTH  # not a terminal: plain and wide
    monkeypatch.setenv("FORCE_COLOR", "1")
    f = io.StringIO()
    con.make_console(file=f).print("[red]x[/red]")
    assert "\x1b[31m" in f.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    f = io.StringIO()
    con.make_console(file=f).print("[red]x[/red]")
    assert "\x1b[31m" not in f.getvalue()  # https://no-color.org: colours off even when forced


@pytest.mark.parametrize("args", [
    ["machines"],
    ["layout", "--era", "6.1"],
    ["explain", "pfn", "0x10000", "-m", "qemu-2g"],
])
def test_piped_output_has_no_escape_codes(args: list[str]) -> None:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "\x1b[" not in r.stdout and "\x1b[" not in r.stderr


def test_quiet_drops_notes_not_output() -> None:
    loud = CliRunner().invoke(main, ["boot", "-m", f"this:{HOST}"])
    quiet = CliRunner().invoke(main, ["--quiet", "boot", "-m", f"this:{HOST}"])
    assert loud.exit_code == quiet.exit_code == 0
    assert "note: this:" in loud.stderr and quiet.stderr == ""
    assert loud.stdout == quiet.stdout
    con.set_quiet(False)


def test_progress_and_status_do_nothing_when_not_interactive(capsys: pytest.CaptureFixture[str]) -> None:
    with con.progress("booting", total=3) as step:
        for i in range(3):
            step(i + 1)
    with con.status("working") as update:
        update("still working")
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_progress_draws_on_a_terminal_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Tty()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setenv("TERM", "xterm")
    con.set_quiet(False)
    with con.progress("booting", total=2) as step:
        step(1)
        step(2)
    assert "booting" in err.getvalue()
    err2 = Tty()
    monkeypatch.setattr("sys.stderr", err2)
    con.set_quiet(True)
    try:
        with con.progress("booting", total=2) as step:
            step(2)
    finally:
        con.set_quiet(False)
    assert err2.getvalue() == ""


def test_note_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    con.note("[not markup] hello")
    out, err = capsys.readouterr()
    assert out == "" and err == "note: [not markup] hello\n"


# ---------------------------------------------------------------------- completion

@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(shell: str) -> None:
    r = CliRunner().invoke(main, ["completion", shell])
    assert r.exit_code == 0
    assert "_VMEMMAP_COMPLETE" in r.stdout and r.stdout == completion_script(main, shell) + "\n"


def complete(line: str) -> list[str]:
    """What bash would be offered for the last word of ``line`` (click's bash_complete protocol)."""
    words = line.split(" ")
    r = CliRunner().invoke(main, [], prog_name="vmemmap",
                           env={"_VMEMMAP_COMPLETE": "bash_complete", "COMP_WORDS": line,
                                "COMP_CWORD": str(len(words) - 1)})
    return [ln.split(",", 1)[1] for ln in r.stdout.splitlines() if ln.startswith("plain,")]


def test_completion_of_values() -> None:
    assert {"qemu-2g", "qemu-numa2"} <= set(complete("vmemmap boot --machine qemu"))
    assert "this" in complete("vmemmap compare -m th")
    assert complete("vmemmap translate --era 6.") == ["6.1", "6.12"]
    assert complete("vmemmap explain --model vmemmap") == ["vmemmap", "vmemmap-4k"]
    assert complete("vmemmap explain --cpu zen") == ["zen2", "zen4"]
    from vmemmap.cost.workloads import WORKLOADS

    got = complete("vmemmap cost pfn_to")
    assert "pfn_to_page-random" in got and got == sorted(w for w in WORKLOADS if w.startswith("pfn_to"))
    assert "explain" in complete("vmemmap ex")


def test_every_value_option_gets_a_completer() -> None:
    attach_completers(main)
    for name, cmd in COMMANDS:
        for p in cmd.params:
            want = completer_for(p)
            if p.name in BY_NAME:
                assert p._custom_shell_complete is not None, f"{name} {p.name}"
            if want is not None:
                assert p._custom_shell_complete is not None
    # capture's --cpu is a QEMU CPU model (metavar MODEL), not a preset: no preset completion
    cap = main.commands["capture"]
    assert completer_for(next(p for p in cap.params if p.name == "cpu")) is None


def test_json_from_every_builtin_command_is_json() -> None:
    for args in (["machines", "--json"], ["explain", "page", "0xffffea0000400000", "-m", "qemu-2g", "--json"],
                 ["machines", f"this:{HOST}", "--json"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        json.loads(r.stdout)


def test_a_closed_pipe_ends_quietly() -> None:
    """`vmemmap boot | head -1`: no error line, exit status 0 (as cat)."""
    import subprocess
    import sys

    p = subprocess.run(f"{sys.executable} -m vmemmap boot -m qemu-2g --era 6.1 | head -1", shell=True,
                       capture_output=True, text=True, executable="/bin/bash")
    assert p.stdout == "BIOS-provided physical RAM map:\n"
    assert p.stderr == ""
