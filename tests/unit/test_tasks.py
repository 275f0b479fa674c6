"""The task graph runner (the demo, backbone pre-training): order, dependencies, several processes, failures."""

from __future__ import annotations

import math
import operator
import time

import pytest

from cirbench.tasks import Task, run_tasks


def _events(tasks, jobs):
    events = []
    results = run_tasks(tasks, jobs, on_start=lambda t: events.append(("start", t.key)),
                        on_done=lambda t, result, seconds: events.append(("done", t.key)))
    return results, events


def test_one_job_runs_in_order_in_this_process():
    tasks = [Task("a", operator.add, (1, 2)), Task("b", operator.mul, (3, 4), needs=("a",)), Task("c", lambda: "here")]
    results, events = _events(tasks, jobs=1)
    assert results == {"a": 3, "b": 12, "c": "here"}
    assert events == [("start", "a"), ("done", "a"), ("start", "b"), ("done", "b"), ("start", "c"), ("done", "c")]


def test_two_jobs_run_at_once_and_wait_for_what_a_task_needs():
    tasks = [Task("slow", time.sleep, (0.5,)), Task("after", math.sqrt, (16.0,), needs=("slow",)),
             Task("free", math.sqrt, (9.0,))]
    results, events = _events(tasks, jobs=2)
    assert results == {"slow": None, "after": 4.0, "free": 3.0}
    assert events.index(("start", "free")) < events.index(("done", "slow"))  # ran beside the slow one
    assert events.index(("done", "slow")) < events.index(("start", "after"))


def test_a_failing_task_stops_the_run_with_its_error():
    tasks = [Task("bad", math.sqrt, (-1.0,)), Task("later", math.sqrt, (4.0,), needs=("bad",))]
    for jobs in (1, 2):
        with pytest.raises(ValueError, match="math domain error"):
            run_tasks(tasks, jobs)


def test_bad_graphs_are_refused():
    with pytest.raises(ValueError, match="unknown needs"):
        run_tasks([Task("a", math.sqrt, (1.0,), needs=("nothing",))])
    with pytest.raises(ValueError, match="duplicate"):
        run_tasks([Task("a", math.sqrt, (1.0,)), Task("a", math.sqrt, (4.0,))])
    with pytest.raises(ValueError, match="come after it"):
        run_tasks([Task("b", math.sqrt, (1.0,), needs=("a",)), Task("a", math.sqrt, (4.0,))], jobs=1)
