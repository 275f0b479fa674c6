"""SPRC and LAVIS BLIP-2 checkpoints -> cirbench's SPRC / FashionBLIP-2 on transformers' BLIP-2.

- ``sprc``: SPRC's saved model (``{"Blip2QformerCirAlignPrompt": state_dict}``, e.g. its released
  ``sprc_fiq.pt``): every key maps (``keymaps.SPRC``), the Q-Former's masked-LM head is dropped.
- ``lavis-blip2``: LAVIS's first-stage BLIP-2 (``blip2_pretrained.pth``, ``{"model": state_dict}``)
  has no CIR head: it becomes the BLIP-2 backbone of a new ``sprc`` or ``fashionblip2`` model whose
  own parts (SPRC's learnable prompt; FashionBLIP-2's adapters, matcher and temperature) are drawn
  from ``seed``, exactly as a fresh ``cirbench train`` start would draw them. SPRC's code starts from
  that same file and keeps its ``temp``; so does the import. The file holds no ViT (LAVIS loads the
  frozen EVA ViT-g from ``eva_vit_g.pth``): give that file too, its keys are bare ViT names.

The architecture is the ViT-g one (``vitg_blip2_config``: EVA ViT-g, BERT-base Q-Former) unless a
``Blip2Config`` is given: attention head counts are not in a state dict, every shape is checked.
The Q-Former's vocabulary size comes from the checkpoint (LAVIS resizes it to its tokenizer, with
``[DEC]``), and the tokenizer must have exactly that many tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import Blip2Config, Blip2ForImageTextRetrieval

from cirbench.backbones.blip2 import BLIP2_HUB_NAME, Blip2Backbone
from cirbench.backbones.folders import offline_hub
from cirbench.backbones.blip2_configs import vitg_blip2_config
from cirbench.backbones.blip2_tokenizers import LAVIS_BOS_TOKEN, tokenizer_from_vocab_file
from cirbench.baselines.blip2_cir import Blip2CIRModel
from cirbench.errors import DataError
from cirbench.model_folder import read_options
from cirbench.importers import keymaps
from cirbench.importers.mapping import MappedState, map_state
from cirbench.importers.reading import UpstreamState, read_state_dict

WORD_EMBEDDINGS = "Qformer.bert.embeddings.word_embeddings.weight"
_BARE_VIT_KEY = re.compile(r"(cls_token|pos_embed|patch_embed\..*|blocks\.\d+\..*|head\..*|norm\..*|fc_norm\..*)")


def import_sprc(files: Sequence[str | Path], tokenizer, *, config: Blip2Config | None = None,
                variant: str = "vitg") -> tuple[Blip2CIRModel, MappedState]:
    """SPRC's saved model -> our ``Sprc`` (eval mode) and what the mapping did.

    Args:
        files: SPRC's checkpoint (a torch pickle read with weights_only=True, or safetensors).
        tokenizer: the BERT tokenizer with [DEC] (its length must match the word embeddings).
        config: the BLIP-2 architecture; default the ViT-g one.
        variant: the variant recorded in the model folder (``sprc:<variant>`` rebuilds it).
    """
    from cirbench.baselines.options import SprcOptions
    from cirbench.baselines.sprc.model import Sprc

    upstream = _read(files)
    model = _new_model(Sprc, SprcOptions(), upstream, tokenizer, config, variant)
    mapped = map_state(upstream, model.state_dict(), keymaps.SPRC, keymaps.SPRC_DROPPED, model="sprc")
    return _loaded(model, mapped), mapped


def import_lavis_blip2(files: Sequence[str | Path], tokenizer, *, model_name: str = "sprc", seed: int = 0,
                       options: dict | None = None, config: Blip2Config | None = None,
                       variant: str = "vitg") -> tuple[Blip2CIRModel, MappedState]:
    """LAVIS's BLIP-2 (+ the EVA ViT file) -> a new ``sprc`` or ``fashionblip2`` model on that backbone.

    Args:
        files: ``blip2_pretrained.pth`` and, when it holds no ``visual_encoder.*`` keys, ``eva_vit_g.pth``.
        tokenizer: the BERT tokenizer with [DEC].
        model_name: ``sprc`` or ``fashionblip2``: the CIR model built around the backbone.
        seed: draws the new model's own parts (its build option ``seed``).
        options: other build options of the new model (``SprcOptions`` / ``FashionBlip2Options`` fields).
        config: the BLIP-2 architecture; default the ViT-g one.
        variant: the variant recorded in the model folder.
    """
    if model_name not in keymaps.LAVIS_BLIP2_TO:
        raise DataError("--model", model_name, f"a LAVIS BLIP-2 becomes one of {', '.join(keymaps.LAVIS_BLIP2_TO)}")
    from cirbench.baselines.fashionblip2.model import FashionBlip2
    from cirbench.baselines.options import FashionBlip2Options, SprcOptions
    from cirbench.baselines.sprc.model import Sprc

    model_cls, options_cls = {"sprc": (Sprc, SprcOptions), "fashionblip2": (FashionBlip2, FashionBlip2Options)}[model_name]
    upstream = _read(files, bare_vit=True)
    target = config or vitg_blip2_config()
    depth = target.vision_config.num_hidden_layers
    beyond = [k for k in upstream.tensors if (m := re.match(r"visual_encoder\.blocks\.(\d+)\.", k)) and int(m.group(1)) >= depth]
    try:
        built_options = read_options(options_cls, {**(options or {}), "seed": seed})
    except DataError as exc:
        raise DataError("--option", model_name, str(exc)) from None
    model = _new_model(model_cls, built_options, upstream, tokenizer, config, variant)
    dropped = (*keymaps.LAVIS_BLIP2_DROPPED[model_name], *keymaps.EVA_VIT_DROPPED,
               *(keymaps.Dropped(re.escape(key), keymaps.EVA_VIT_BEYOND_DEPTH) for key in beyond))
    mapped = map_state(upstream, model.state_dict(), keymaps.LAVIS_BLIP2_TO[model_name], dropped,
                       is_new=lambda key: not key.startswith("backbone.blip."), model=model_name)
    return _loaded(model, mapped), mapped


def load_lavis_tokenizer(source: str | Path | None = None):
    """LAVIS's BLIP-2 tokenizer: from a WordPiece ``vocab.txt`` (``[DEC]`` appended), or a saved tokenizer
    folder / cached hub name that already holds ``[DEC]``; default ``Salesforce/blip2-itm-vit-g``'s.

    Args:
        source: a vocab.txt file, a folder, a hub name (read from the local cache only), or None.
    """
    from transformers import AutoTokenizer

    source = source or BLIP2_HUB_NAME
    if Path(source).is_file():
        return tokenizer_from_vocab_file(source)
    try:
        with offline_hub(source, "the BLIP-2 tokenizer") as hub:  # never the network
            tokenizer = AutoTokenizer.from_pretrained(str(source), **hub)
    except (OSError, ValueError) as exc:
        reason = str(exc) if not Path(source).is_dir() else f"no tokenizer there ({str(exc).splitlines()[0][:160]})"
        raise DataError(source, "--tokenizer", f"{reason}; or give bert-base-uncased's vocab.txt") from None
    if tokenizer.convert_tokens_to_ids(LAVIS_BOS_TOKEN) in (None, tokenizer.unk_token_id):
        raise DataError(source, "--tokenizer", f"has no {LAVIS_BOS_TOKEN} token, which LAVIS's BLIP-2 vocabulary ends with")
    return tokenizer


def read_blip2_config(path: str | Path) -> Blip2Config:
    """A transformers ``Blip2Config`` from a JSON file (an architecture other than ViT-g)."""
    import json

    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(path, "--config", f"not a readable JSON file ({exc})") from None
    qformer = values.setdefault("qformer_config", {})
    qformer["use_qformer_text_input"] = True  # the CIR models need the Q-Former's text layers
    return Blip2Config.from_dict(values)


def _read(files: Sequence[str | Path], bare_vit: bool = False) -> UpstreamState:
    """Merge the files' state dicts; with ``bare_vit``, a file of bare EVA ViT keys gets their LAVIS prefix."""
    upstream = UpstreamState()
    for file in files:
        state = read_state_dict(file)
        is_bare_vit = bare_vit and all(_BARE_VIT_KEY.fullmatch(key) for key in state)
        upstream.add(state, Path(file), keymaps.EVA_VIT_PREFIX if is_bare_vit else "")
    return upstream


def _new_model(model_cls, options, upstream: UpstreamState, tokenizer, config: Blip2Config | None,
               variant: str) -> Blip2CIRModel:
    """The model's structure at the checkpoint's vocabulary size; new parts drawn from ``options.seed``."""
    from cirbench.compat import no_init_weights

    config = Blip2Config.from_dict(config.to_dict()) if config is not None else vitg_blip2_config()
    words = upstream.tensors.get(WORD_EMBEDDINGS)
    if words is not None:
        config.qformer_config.vocab_size = int(words.shape[0])
        if len(tokenizer) != words.shape[0]:
            raise DataError(
                upstream.file_of(WORD_EMBEDDINGS), WORD_EMBEDDINGS,
                f"{words.shape[0]} word embeddings, but the tokenizer has {len(tokenizer)} tokens "
                "(LAVIS's is bert-base-uncased plus [DEC]: 30523)",
            )
    with no_init_weights():  # every backbone weight is overwritten from the checkpoint
        blip = Blip2ForImageTextRetrieval(config)
    backbone = Blip2Backbone(blip, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)  # as build_blip2_model draws a fresh model's own parts
        try:
            return model_cls(backbone, options, variant)
        except ValueError as exc:  # e.g. options that do not fit this backbone
            raise DataError("--option", model_cls.name, str(exc)) from None


def _loaded(model: Blip2CIRModel, mapped: MappedState) -> Blip2CIRModel:
    missing, unexpected = model.load_state_dict(mapped.tensors, strict=False)
    if set(missing) != set(mapped.new) or unexpected:  # map_state covered every key: a bug otherwise
        raise RuntimeError(f"import left keys unset {sorted(set(missing) - set(mapped.new))} or unused {unexpected}")
    return model.eval()
