"""Run a small graph of tasks (trainings, evaluations) on one or several CPU cores.

The tiny models train fastest with one torch thread, so a two-core machine runs two tasks at once
in two processes instead of one task with two threads (which collapses when anything else
competes for a core, measured). A task runs when the tasks it needs are done; among the ready ones
the earliest in the given order goes first. With ``jobs=1`` everything runs in this process, in
the given order, exactly as a plain loop would.

Task functions and their arguments must be picklable (module-level functions): with ``jobs > 1``
they run in ``spawn``-started worker processes, set up once by ``initializer(*initargs)``.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Task:
    key: str
    function: Callable[..., Any]
    args: tuple = ()
    needs: tuple[str, ...] = ()  # keys of tasks that must finish first (their results are not passed)


def run_tasks(
    tasks: Sequence[Task],
    jobs: int = 1,
    *,
    on_start: Callable[[Task], None] = lambda task: None,
    on_done: Callable[[Task, Any, float], None] = lambda task, result, seconds: None,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> dict[str, Any]:
    """Run ``tasks``; returns key -> result. ``on_done(task, result, seconds)`` runs in this process
    as each task ends. A task that raises stops the run (the running ones finish, no new one
    starts) and its exception is raised here."""
    keys = [task.key for task in tasks]
    unknown = {need for task in tasks for need in task.needs} - set(keys)
    if len(set(keys)) != len(keys) or unknown:
        raise ValueError(f"tasks: duplicate keys or unknown needs {sorted(unknown)}")
    if jobs <= 1:
        return _run_here(tasks, on_start, on_done)
    results: dict[str, Any] = {}
    pending = list(tasks)
    running: dict[Future, tuple[Task, float]] = {}
    context = multiprocessing.get_context("spawn")  # the caller may hold threads that fork would copy mid-state
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=initializer, initargs=initargs) as pool:
        while pending or running:
            while len(running) < jobs and (task := _next_ready(pending, results)):
                pending.remove(task)
                on_start(task)
                running[pool.submit(task.function, *task.args)] = (task, time.time())
            if not running:
                raise ValueError(f"tasks: {[t.key for t in pending]} wait for each other")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task, started = running.pop(future)
                if future.exception() is not None:
                    pending.clear()  # let the running ones end, start nothing new
                    for other in running:
                        other.cancel()
                    raise future.exception()
                results[task.key] = future.result()
                on_done(task, results[task.key], time.time() - started)
    return results


def _run_here(tasks: Sequence[Task], on_start, on_done) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for task in tasks:
        missing = [need for need in task.needs if need not in results]
        if missing:
            raise ValueError(f"tasks: {task.key} needs {missing}, which come after it")
        on_start(task)
        started = time.time()
        results[task.key] = task.function(*task.args)
        on_done(task, results[task.key], time.time() - started)
    return results


def _next_ready(pending: list[Task], results: dict[str, Any]) -> Task | None:
    return next((task for task in pending if all(need in results for need in task.needs)), None)
