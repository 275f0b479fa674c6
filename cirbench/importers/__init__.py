"""Importers for released upstream checkpoints: LAVIS BLIP-2, SPRC and CLIP4Cir -> cirbench model folders.

``import_checkpoint`` reads the upstream files (torch pickles with ``weights_only=True`` only, or
safetensors), maps every key through the tables of ``keymaps.py`` (``mapping.py`` applies them and
names any missing, unexpected or mis-shaped key), loads the result into OUR model and writes it
with the model's own ``save_pretrained``: the folder is an ordinary model folder, so
``cirbench eval --model sprc:vitg --checkpoint DIR`` evaluates it and ``cirbench train ...
--set model.init_from=DIR`` starts training from it. ``import.json`` in the folder records the
source files (sha256), the keys dropped on purpose and the parts drawn from the seed.

This package imports torch: CLI code imports it inside its functions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from cirbench.errors import DataError

SOURCES = ("lavis-blip2", "sprc", "clip4cir")
IMPORT_RECORD = "import.json"
IMPORT_STAGES = ("read and map", "write the model folder", "record the sources")


def import_checkpoint(
    source: str,
    files: Sequence[str | Path],
    out: str | Path,
    *,
    tokenizer: str | None = None,
    model: str | None = None,
    options: dict | None = None,
    seed: int = 0,
    variant: str | None = None,
    config: str | Path | None = None,
    trained_on: Sequence[str] = (),
    on_stage: Callable[[str], None] | None = None,
) -> Path:
    """Import upstream checkpoint ``files`` of ``source`` into a new model folder ``out``.

    Args:
        source: ``lavis-blip2``, ``sprc`` or ``clip4cir``.
        files: the upstream files (clip4cir: the CLIP file and optionally the Combiner file;
            lavis-blip2: blip2_pretrained.pth and eva_vit_g.pth).
        out: the model folder to create; it must not exist yet or be empty.
        tokenizer: BLIP-2 family: a WordPiece vocab.txt (+ [DEC] is added) or a tokenizer folder
            or cached hub name; default the ViT-g retrieval model's (``Salesforce/blip2-itm-vit-g``).
        model: lavis-blip2 only: the CIR model built on the backbone (``sprc``, the default, or ``fashionblip2``).
        options: lavis-blip2 only: that model's build options (e.g. ``{"adapter_reduction": 8}``).
        seed: draws the parts the upstream file does not have.
        variant: recorded variant; default ``vitg`` (BLIP-2 family) or the CLIP architecture's one.
        config: BLIP-2 family: a transformers ``Blip2Config`` JSON for another architecture than ViT-g.
        trained_on: datasets the upstream model was trained on (``fashioniq``), for the records.
        on_stage: called with each finished stage's name (``IMPORT_STAGES``), for a progress bar.
    """
    done = on_stage or (lambda stage: None)
    if source not in SOURCES:
        raise DataError("--from", source, f"unknown source; one of {', '.join(SOURCES)}")
    if not files:
        raise DataError("command line", "FILE", "give the upstream checkpoint file(s)")
    if source != "lavis-blip2" and (model or options):
        raise DataError("--model/--option", source, "only with --from lavis-blip2 (the other sources hold a whole model)")
    if source == "clip4cir" and (tokenizer or config):
        raise DataError("--tokenizer/--config", source, "only for BLIP-2 checkpoints (sprc, lavis-blip2)")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(out, "--out", "already exists and is not empty: nothing is overwritten, choose a new folder")
    for file in files:  # before the tokenizer and the model skeleton are built
        if not Path(file).is_file():
            raise DataError(file, "file", "not found")
    built, mapped = _build(source, files, tokenizer, model, options or {}, seed, variant, config)
    done(IMPORT_STAGES[0])
    if trained_on:
        built.meta = dataclasses.replace(built.meta, trained_on=tuple(trained_on))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        built.save_pretrained(staging)
        done(IMPORT_STAGES[1])
        record = {
            "source": source,
            "model": built.meta.spec,
            "files": [{"name": Path(f).name, "sha256": _sha256(Path(f))} for f in files],
            "dropped_on_purpose": mapped.dropped,
            "drawn_from_seed": {"seed": seed, "keys": mapped.new},
        }
        (staging / IMPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(staging, out)
        done(IMPORT_STAGES[2])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _build(source, files, tokenizer, model, options, seed, variant, config):
    if source == "clip4cir":
        from cirbench.importers.clip4cir import import_clip4cir

        return import_clip4cir(files, seed=seed, variant=variant)
    from cirbench.importers.blip2 import import_lavis_blip2, import_sprc, load_lavis_tokenizer, read_blip2_config

    words = load_lavis_tokenizer(tokenizer)
    blip2_config = read_blip2_config(config) if config else None
    if source == "sprc":
        return import_sprc(files, words, config=blip2_config, variant=variant or "vitg")
    return import_lavis_blip2(files, words, model_name=model or "sprc", seed=seed, options=options, config=blip2_config,
                              variant=variant or "vitg")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()
