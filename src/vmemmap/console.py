"""The terminal: one console factory, ``--quiet``, colours, notes and progress for every command.

* :func:`make_console` is the only place a :class:`rich.console.Console` is made. Colours follow the
  terminal: none when the stream is not a TTY (a pipe or a file gets plain text, wide enough that tables
  do not wrap at 80 columns), none when ``NO_COLOR`` is set (https://no-color.org; rich reads it), and
  ``FORCE_COLOR`` forces them (rich reads it too).
* ``--quiet`` (the group option) sets :data:`STATE.quiet`: no progress, no spinners, no notes; the
  essential output (the table, the log, the JSON) is unchanged.
* :func:`progress` and :func:`status` draw on stderr only, only when stderr is a TTY and not quiet, and
  disappear when done (``transient``); otherwise they do nothing, so piped output never holds them.
* :func:`note` prints ``note: ...`` lines on stderr (unless quiet): what a command wants the user to
  know without changing its output (e.g. what ``--machine this`` could not read).
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from rich.console import Console
from rich.markup import escape

#: width used when the output is not a terminal (rich would otherwise wrap tables at 80 columns)
PIPE_WIDTH = 200


@dataclass
class ConsoleState:
    """Process-wide terminal settings, set once by the command group's options."""

    quiet: bool = False


STATE = ConsoleState()


def set_quiet(quiet: bool) -> None:
    STATE.quiet = bool(quiet)


def is_quiet() -> bool:
    return STATE.quiet


def _isatty(stream: IO[str] | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def make_console(stderr: bool = False, file: IO[str] | None = None) -> Console:
    """The console every command prints through (stdout, or stderr with ``stderr=True``).

    ``file=None`` follows ``sys.stdout``/``sys.stderr`` at print time (so test runners that swap them
    see the output). Not a TTY: no colour, width :data:`PIPE_WIDTH`, unless ``FORCE_COLOR`` is set.
    Under ``--quiet`` a stderr console discards what it is given (errors are not printed through it).
    """
    if stderr and file is None and STATE.quiet:
        file = io.StringIO()  # --quiet: what commands draw or print on stderr (progress, notes) goes nowhere
    stream = file if file is not None else (sys.stderr if stderr else sys.stdout)
    tty = _isatty(stream) or bool(os.environ.get("FORCE_COLOR"))
    return Console(file=file, stderr=stderr, highlight=False, soft_wrap=False,
                   width=None if tty else PIPE_WIDTH,
                   no_color=True if "NO_COLOR" in os.environ else None)


def stderr_is_interactive() -> bool:
    """Whether stderr may show live progress: a TTY and not ``--quiet``."""
    return not STATE.quiet and _isatty(sys.stderr)


def note(msg: str) -> None:
    """``note: msg`` on stderr unless ``--quiet`` (plain text, never markup)."""
    if STATE.quiet:
        return
    make_console(stderr=True).print(escape(f"note: {msg}"), soft_wrap=True)


@contextmanager
def status(msg: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr while the block runs (nothing if not interactive); yields ``update(msg)``."""
    if not stderr_is_interactive():
        yield lambda s: None
        return
    with make_console(stderr=True).status(escape(msg), spinner="dots") as st:
        yield lambda s: st.update(escape(s))


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A transient progress bar on stderr; yields ``advance(done, total=None, description=None)``.

    Not interactive (piped, ``--quiet``): the callback does nothing.
    """
    if not stderr_is_interactive():
        def nothing(*a: Any, **kw: Any) -> None:
            return None

        yield nothing
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=make_console(stderr=True), transient=True) as bar:
        task = bar.add_task(escape(description), total=total)

        def update(done: int, total: int | None = None, description: str | None = None) -> None:
            kw: dict[str, Any] = {"completed": done}
            if total is not None:
                kw["total"] = total
            if description is not None:
                kw["description"] = escape(description)
            bar.update(task, **kw)

        yield update
