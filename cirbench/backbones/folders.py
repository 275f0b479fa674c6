"""Where backbones come from: the synthetic world's pre-trained tiny ones (one rule for CLIP and
BLIP-2), and published weights, which are only ever read from this machine (``offline_hub``).

A ``synth_tiny`` model takes its backbone folder from, in order: the ``backbone_dir`` option, the
environment variable (``$CIRBENCH_SYNTH_CLIP`` / ``$CIRBENCH_SYNTH_BLIP2``), and the backbones last
installed by ``cirbench synth-backbones --world W`` (or the demo), which records their folders in
``<cache>/synth_backbones.json``. So after one ``synth-backbones`` every later command finds them
without any variable; a variable still overrides.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from cirbench.files import cache_root, write_json_atomic

SYNTH_BACKBONE_COMMAND = "cirbench synth-backbones --world WORLD_DIR"
INSTALLED_RECORD = "synth_backbones.json"


def installed_record() -> Path:
    """The file naming the backbone folders the last ``synth-backbones`` installed."""
    return cache_root() / INSTALLED_RECORD


def record_installed(world: Path, folders: Mapping[str, Path]) -> Path:
    """Record ``folders`` (kind -> folder, e.g. "clip", "blip2") as the installed tiny backbones of ``world``."""
    data = {"world": str(Path(world).resolve()), **{kind: str(Path(f).resolve()) for kind, f in folders.items()}}
    return write_json_atomic(installed_record(), data)


def synth_backbone_dir(override: str | Path | None, env_var: str, files: Sequence[str], what: str,
                       kind: str | None = None) -> Path:
    """``override``, else ``$env_var``, else the installed backbone of ``kind``: a folder holding
    every one of ``files``; else one error that says what to run."""
    fix = (f"run `{SYNTH_BACKBONE_COMMAND}` once (WORLD_DIR: a folder `cirbench synth` wrote; for the default "
           f"preset it installs the shipped pair in seconds, for another world it pre-trains them), or set {env_var} "
           f"to a folder holding {' + '.join(files)}")
    location, source = override, "backbone_dir"
    if not location and os.environ.get(env_var):
        location, source = os.environ[env_var], f"${env_var}"
    if not location and kind:
        location, source = _installed(kind), f"the record of the last synth-backbones ({installed_record()})"
    if not location:
        raise FileNotFoundError(f"no {what} for the synthetic world is installed: {fix}")
    directory = Path(location)
    if not all((directory / name).is_file() for name in files):
        raise FileNotFoundError(f"{directory} (from {source}): not a {what} folder (no {' + '.join(files)}): {fix}")
    return directory


def _installed(kind: str) -> str | None:
    record = installed_record()
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None  # a damaged record is the same as none: the error says to run synth-backbones again
    value = data.get(kind) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def not_on_this_machine(what: str, repo: str) -> FileNotFoundError:
    """The one error for published weights that were never downloaded: what to fetch, and where it goes."""
    return FileNotFoundError(
        f"{what} {repo} is not on this machine and cirbench downloads nothing: download the Hugging Face "
        f"repository {repo} once where there is network (`hf download {repo}`; it lands in the hub cache, "
        "$HF_HOME, where it is found), or give a local folder"
    )


@contextmanager
def offline_hub(source: str | Path, what: str) -> Iterator[dict]:
    """Keyword arguments that make transformers' ``from_pretrained`` read ``source`` from this machine
    only (a folder, or a hub name already in the hub cache), never from the network: without them
    a missing file is retried over the network for a minute. A hub name that is not there becomes
    ``not_on_this_machine``; a folder's own errors pass unchanged; a local path that does not
    exist is "not found" (it is no hub name to download)."""
    if Path(source).is_dir():
        yield {}
        return
    if str(source).startswith(("/", ".", "~")) and not Path(source).expanduser().exists():
        raise FileNotFoundError(f"not found: {what} is not at this local path")
    try:
        yield {"local_files_only": True}
    except OSError as exc:  # transformers: "couldn't connect" / "does not appear to have a file" (cache miss)
        raise not_on_this_machine(what, str(source)) from exc
