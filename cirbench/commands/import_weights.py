"""``import-weights``: released upstream checkpoints (LAVIS BLIP-2, SPRC, CLIP4Cir) -> a cirbench model folder.

Thin: options -> ``cirbench.importers.import_checkpoint``; torch loads inside the command.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from cirbench.commands.core import user_errors


class Source(str, Enum):
    lavis_blip2 = "lavis-blip2"
    sprc = "sprc"
    clip4cir = "clip4cir"


class NewModel(str, Enum):
    sprc = "sprc"
    fashionblip2 = "fashionblip2"


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("import-weights")(import_weights)


def import_weights(
    files: List[Path] = typer.Argument(..., help="Upstream checkpoint file(s): torch pickles (read with weights_only=True) or .safetensors."),
    source: Source = typer.Option(..., "--from", help="sprc: SPRC's saved model; clip4cir: fine-tuned CLIP file [+ Combiner file]; lavis-blip2: blip2_pretrained.pth + eva_vit_g.pth."),
    out: Path = typer.Option(..., "--out", help="The model folder to write (must not exist or be empty)."),
    model: Optional[NewModel] = typer.Option(None, "--model", show_default="sprc", help="lavis-blip2 only: the CIR model built on the imported BLIP-2 (its own parts drawn from --seed)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", show_default="Salesforce/blip2-itm-vit-g from the local cache", help="BLIP-2 family: bert-base-uncased's vocab.txt ([DEC] is added), or a tokenizer folder / cached hub name."),
    option: Optional[List[str]] = typer.Option(None, "--option", help="lavis-blip2 only: a build option of the new model, KEY=VALUE (YAML value), e.g. adapter_reduction=8; repeatable."),
    seed: int = typer.Option(0, "--seed", help="Draws the parts the upstream file does not hold."),
    variant: Optional[str] = typer.Option(None, "--variant", show_default="vitg, or the CLIP architecture's (rn50x4, vit_l14)", help="Variant recorded in the folder: evaluate with --model NAME:VARIANT."),
    config: Optional[Path] = typer.Option(None, "--config", help="BLIP-2 family: a transformers Blip2Config JSON when the checkpoint is not ViT-g (head counts are not in a state dict)."),
    trained_on: str = typer.Option("", "--trained-on", help="Comma-separated datasets the upstream model was trained on, e.g. fashioniq."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Import a released upstream checkpoint as a cirbench model folder (eval --checkpoint, train model.init_from).

    Every upstream key is used, or dropped on purpose for a documented reason; a missing, unexpected
    or mis-shaped key stops the import naming it. DIR/import.json records the files (sha256), the
    dropped keys and the parts drawn from the seed.

    Example: cirbench import-weights --from sprc sprc_fiq.pt --tokenizer bert-base-uncased/vocab.txt --trained-on fashioniq --out models/sprc_fiq

    Example: cirbench import-weights --from clip4cir tuned_clip_best.pt combiner.pt --trained-on fashioniq --out models/clip4cir_fiq
    """
    from cirbench.progress import stage_progress
    from cirbench.importers import IMPORT_STAGES, import_checkpoint

    with user_errors(), stage_progress(f"import {source.value}", len(IMPORT_STAGES), progress) as advance:
        folder = import_checkpoint(
            source.value, files, out, tokenizer=tokenizer, model=model.value if model else None,
            options=_options(option or []),
            seed=seed, variant=variant,
            config=config, trained_on=[name.strip() for name in trained_on.split(",") if name.strip()],
            on_stage=lambda stage: advance(1),
        )
    spec = _spec_of(folder)
    typer.echo(f"imported: {folder} ({spec})")
    typer.echo(f"evaluate it: cirbench eval --model {spec} --checkpoint {folder} --dataset fashioniq --data-root ...")


def _options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings -> {key: YAML-parsed value}."""
    import yaml

    from cirbench.errors import DataError

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DataError("--option", pair, "expected KEY=VALUE")
        options[key.strip()] = yaml.safe_load(value)
    return options


def _spec_of(folder: Path) -> str:
    import json

    from cirbench.importers import IMPORT_RECORD

    return json.loads((folder / IMPORT_RECORD).read_text())["model"]
