"""The one progress display: a bar on a terminal; without one (or with bars off) one line per
stage on stderr and nothing on stdout, so long work is never silent and --json output stays clean."""

from __future__ import annotations

import io

from rich.console import Console

from cirbench.progress import StageLines, progress_bar, stage_progress


def test_without_a_terminal_each_stage_prints_one_line_on_stderr(capsys):
    with stage_progress("embedding images", 1200) as advance:
        for _ in range(1200):
            advance()
    with progress_bar(enabled=True) as bar:  # pytest's stdout is no terminal: lines, not a bar
        task = bar.add_task("training", total=400, completed=100, status="")
        bar.update(task, advance=1, status="loss 0.1")
        bar.add_task("gallery dress")
        bar.console.print("epoch 1  step 400/400")  # the caller's own lines go to stdout, as with rich
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["embedding images: 1,200 ...", "training: 400, 100 already done ...",
                                         "gallery dress ..."]
    assert captured.out == "epoch 1  step 400/400\n"


def test_bars_turned_off_still_say_what_runs_and_quiet_says_nothing(capsys):
    with progress_bar(enabled=False) as bar:
        bar.add_task("pairing (top-k search)", total=10)
    with progress_bar(quiet=True) as bar:  # e.g. the other processes of a distributed run
        bar.add_task("training", total=10)
    assert capsys.readouterr().err == "pairing (top-k search): 10 ...\n"


def test_on_a_terminal_it_is_a_rich_bar_with_an_optional_status():
    from rich.progress import Progress

    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    with progress_bar(console=terminal) as bar:
        assert isinstance(bar, Progress) and not isinstance(bar, StageLines)
        with_status = bar.add_task("training", total=2, status="loss 0.5")
        bar.add_task("gallery", total=3)  # no status field: the column stays empty
        bar.advance(with_status)
        bar.refresh()
    assert "loss 0.5" in terminal.file.getvalue() and "gallery" in terminal.file.getvalue()
