"""Where the synthetic world's pre-trained tiny backbones are: one rule for CLIP and BLIP-2."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

SYNTH_BACKBONE_COMMAND = "cirbench synth-backbones --world WORLD_DIR"


def synth_backbone_dir(override: str | Path | None, env_var: str, files: Sequence[str], what: str) -> Path:
    """``override``, else ``$env_var``: a folder holding every one of ``files``; else one clear error."""
    location = override or os.environ.get(env_var)
    if not location:
        raise FileNotFoundError(
            f"no {what} for the synthetic world: set {env_var} or pass backbone_dir=...; "
            f"build one with `{SYNTH_BACKBONE_COMMAND}`"
        )
    directory = Path(location)
    if not all((directory / name).is_file() for name in files):
        raise FileNotFoundError(
            f"{directory}: not a {what} folder ({' + '.join(files)}); build one with `{SYNTH_BACKBONE_COMMAND}`"
        )
    return directory
