"""The README's tour, read from README.md, run top to bottom in an empty folder, one process per
command as a user runs it, offline: every command exits 0 without a traceback.

Only documented size flags are appended (the last value of an option wins), so the same commands
run the same code at toy size in CI: a tiny world whose backbones pre-train in seconds, 2-step
trainings, small benchmarks. Nothing else is changed; a tour command that needs a size flag and
has none here fails the test.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"

# command words -> documented flags appended at toy size
TOY_SIZES = {
    ("synth",): ["--preset", "tiny"],
    ("synth-backbones",): ["--steps", "20", "--batch-size", "16"],
    ("train",): ["--set", "train.batch_size=16"],
    ("ablate", "data-size"): ["--steps", "2", "--batch-size", "16", "--fractions", "0.5,1.0", "--no-progress"],
    ("ablate", "components"): ["--steps", "2", "--batch-size", "16", "--no-progress"],
    ("ablate", "pretraining"): ["--steps", "2", "--batch-size", "16", "--no-progress"],
    ("bench", "eval"): ["--repeats", "1"],
    ("bench", "pairing"): ["--n", "2000", "--dim", "64"],
    ("bench", "train"): ["--steps", "1", "--batch-size", "8"],
}


def tour_commands(readme: str) -> list[list[str]]:
    """The commands of the first bash block under "## A tour", comments dropped."""
    section = readme.split("\n## A tour\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README: no bash block under '## A tour'"
    commands = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    return [words for words in commands if words]


def toy_size(words: list[str]) -> list[str]:
    for key, extra in TOY_SIZES.items():
        if tuple(words[1:1 + len(key)]) == key:
            return words + extra
    return words


def test_the_tour_is_real_commands_with_sizes_known_here():
    commands = tour_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 15 and all(words[0] == "cirbench" for words in commands)
    assert not any(re.fullmatch(r"[A-Z_]+", word) for words in commands for word in words), "placeholders in the tour"
    named = {tuple(words[1:1 + len(key)]) for words in commands for key in TOY_SIZES}
    assert set(TOY_SIZES) <= named, "TOY_SIZES names a command the tour no longer has"


def test_the_readme_tour_runs_top_to_bottom_offline_in_an_empty_folder(tmp_path):
    folder = tmp_path / "tour"
    folder.mkdir()
    env = {**os.environ, "CIRBENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "CIRBENCH_DEVICE": "cpu",
           "PYTHONSAFEPATH": "1", "COLUMNS": "200"}
    for name in ("CIRBENCH_SYNTH_CLIP", "CIRBENCH_SYNTH_BLIP2"):  # found without them, as a new user has none
        env.pop(name, None)
    for words in tour_commands(README.read_text(encoding="utf-8")):
        command = toy_size(words)
        done = subprocess.run([sys.executable, "-m", "cirbench", *command[1:]], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=900)
        output = done.stdout + done.stderr
        assert done.returncode == 0 and "Traceback" not in output, f"{shlex.join(command)}\n{output[-3000:]}"
    assert (folder / "runs" / "eval-all" / "errors.jsonl").read_text() == ""
    assert list(folder.glob("tables/*.md"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "tour"]  # nothing written beside the folder
