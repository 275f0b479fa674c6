"""The one progress display for long work: a rich bar on a terminal, one plain line per stage
everywhere else, so that long work is never silent.

``progress_bar`` yields an object with rich's ``Progress`` interface (``add_task``, ``advance``,
``update``, ``console``): on a terminal with bars enabled it is a rich ``Progress``; with bars
turned off (``--no-progress``) or when the output is not a terminal (a log file, CI, a pipe) it
prints one line on stderr when each stage (task) starts, and nothing per step, so stdout stays
what the command prints (tables, ``--json``). ``stage_progress`` is the one-stage shorthand.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from rich.console import Console


class StageLines:
    """rich ``Progress``'s interface without a bar: one line per stage on stderr.

    ``quiet``: no lines at all (e.g. the other processes of a distributed run)."""

    def __init__(self, console: "Console", stderr: "Console", quiet: bool = False):
        self.console = console  # where callers print their own lines (e.g. one per epoch), as with rich
        self._stderr = stderr
        self._quiet = quiet
        self._tasks = 0

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        if not self._quiet:
            self._stderr.print(_stage_line(description, total, completed), markup=False, highlight=False)
        self._tasks += 1
        return self._tasks - 1

    def advance(self, task: int, advance: float = 1) -> None:
        pass

    def update(self, task: int, **changes: Any) -> None:
        pass


def _stage_line(description: str, total: float | None, completed: float) -> str:
    if total is None:
        return f"{description} ..."
    done = f", {int(completed):,} already done" if completed else ""
    return f"{description}: {int(total):,}{done} ..."


@contextmanager
def progress_bar(
    enabled: bool = True, *, transient: bool = False, quiet: bool = False, console: "Console | None" = None
) -> Iterator[Any]:
    """A rich progress bar (description, bar, n/N, elapsed, remaining, a ``status`` field), or
    ``StageLines`` when ``enabled`` is False or stdout is not a terminal.

    ``transient``: the bar disappears when done. ``quiet``: no bar and no lines (only the
    ``console`` for the caller's own lines). ``console``: where the bar and those lines go
    (default: stdout)."""
    from rich.console import Console

    console = console or Console()
    if quiet or not enabled or not console.is_terminal:
        yield StageLines(console, Console(stderr=True), quiet=quiet)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), _StatusColumn())
    with Progress(*columns, console=console, transient=transient) as progress:
        yield progress


def _StatusColumn():  # noqa: N802 (a class made on first use: rich is imported lazily)
    from rich.progress import ProgressColumn
    from rich.text import Text

    class StatusColumn(ProgressColumn):
        """A task's optional ``status`` field (e.g. the last losses); empty when it has none."""

        def render(self, task) -> Text:
            return Text(str(task.fields.get("status", "")))

    return StatusColumn()


@contextmanager
def stage_progress(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """One stage of ``total`` items: yields ``advance(n=1)``."""
    with progress_bar(enabled) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
