"""Where every upstream checkpoint key goes: the key maps of the importers, as data, in one place.

A rule ``KeyRule(ours, upstream, transform)`` says how one key of OUR model's state dict is made:
from the upstream key(s) named by ``upstream`` (same placeholders), through ``transform`` (a name
in ``cirbench.importers.mapping.TRANSFORMS``). Placeholders: ``{n}`` a layer number, ``{rest}``
any dotted tail, any other ``{name}`` one dotted segment. For each of our keys the first rule
that matches wins. ``Dropped(pattern, reason)`` lists upstream keys that are left out on purpose
(regular expressions over upstream keys); every other upstream key must be used by a rule, or the
import stops naming it. The LAVIS -> transformers correspondence is the one verified by
``../shared/parity`` (its README's table); ``tests/parity`` checks these maps on that data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyRule:
    ours: str
    upstream: tuple[str, ...]
    transform: str = "copy"


@dataclass(frozen=True)
class Dropped:
    pattern: str
    reason: str


def _in_blip(rules: tuple[KeyRule, ...]) -> tuple[KeyRule, ...]:
    """Our keys of the transformers BLIP-2 live under the CIR model's ``backbone.blip``."""
    return tuple(KeyRule(f"backbone.blip.{rule.ours}", rule.upstream, rule.transform) for rule in rules)


# LAVIS BLIP-2 (EVA ViT + ln_vision + Q-Former + heads) -> transformers' Blip2ForImageTextRetrieval.
BLIP2_BACKBONE: tuple[KeyRule, ...] = _in_blip((
    KeyRule("vision_model.embeddings.class_embedding", ("visual_encoder.cls_token",)),
    KeyRule("vision_model.embeddings.position_embedding", ("visual_encoder.pos_embed",)),
    KeyRule("vision_model.embeddings.patch_embedding.{p}", ("visual_encoder.patch_embed.proj.{p}",)),
    KeyRule("vision_model.encoder.layers.{n}.layer_norm1.{p}", ("visual_encoder.blocks.{n}.norm1.{p}",)),
    KeyRule("vision_model.encoder.layers.{n}.layer_norm2.{p}", ("visual_encoder.blocks.{n}.norm2.{p}",)),
    KeyRule("vision_model.encoder.layers.{n}.self_attn.qkv.weight", ("visual_encoder.blocks.{n}.attn.qkv.weight",)),
    # EVA stores the fused qkv bias as q_bias and v_bias (k has none): bias = [q_bias, 0, v_bias].
    KeyRule(
        "vision_model.encoder.layers.{n}.self_attn.qkv.bias",
        ("visual_encoder.blocks.{n}.attn.q_bias", "visual_encoder.blocks.{n}.attn.v_bias"),
        "q_zero_v",
    ),
    KeyRule("vision_model.encoder.layers.{n}.self_attn.projection.{p}", ("visual_encoder.blocks.{n}.attn.proj.{p}",)),
    KeyRule("vision_model.encoder.layers.{n}.mlp.{fc}.{p}", ("visual_encoder.blocks.{n}.mlp.{fc}.{p}",)),
    # LAVIS's ln_vision (eps 1e-5: Blip2Backbone sets it, no config field holds it).
    KeyRule("vision_model.post_layernorm.{p}", ("ln_vision.{p}",)),
    KeyRule("query_tokens", ("query_tokens",)),
    KeyRule("embeddings.word_embeddings.weight", ("Qformer.bert.embeddings.word_embeddings.weight",)),
    KeyRule("embeddings.position_embeddings.weight", ("Qformer.bert.embeddings.position_embeddings.weight",)),
    KeyRule("qformer.layernorm.{p}", ("Qformer.bert.embeddings.LayerNorm.{p}",)),
    KeyRule("qformer.encoder.layer.{n}.attention.attention.{rest}", ("Qformer.bert.encoder.layer.{n}.attention.self.{rest}",)),
    KeyRule(
        "qformer.encoder.layer.{n}.crossattention.attention.{rest}",
        ("Qformer.bert.encoder.layer.{n}.crossattention.self.{rest}",),
    ),
    # attention.output, crossattention.output, intermediate(_query), output(_query): same names.
    KeyRule("qformer.encoder.layer.{n}.{rest}", ("Qformer.bert.encoder.layer.{n}.{rest}",)),
    KeyRule("vision_projection.{p}", ("vision_proj.{p}",)),
    KeyRule("text_projection.{p}", ("text_proj.{p}",)),
    KeyRule("itm_head.{p}", ("itm_head.{p}",)),
))

BLIP2_DROPPED: tuple[Dropped, ...] = (
    Dropped(r"Qformer\.cls\..*", "the Q-Former's masked-LM head (BLIP-2's captioning loss); no CIR model here uses it"),
    Dropped(r"Qformer\.bert\.embeddings\.position_ids", "a constant arange buffer, rebuilt by transformers"),
)

# SPRC's Blip2QformerCirAlignPrompt: the BLIP-2 keys plus its learnable prompt and temperature.
SPRC: tuple[KeyRule, ...] = (
    *BLIP2_BACKBONE,
    KeyRule("learnable_prompt", ("prompt_tokens",)),
    KeyRule("temp", ("temp",)),
)
SPRC_DROPPED = BLIP2_DROPPED

# LAVIS's first-stage BLIP-2 (blip2_pretrained.pth) under a new CIR model. SPRC's code starts from
# that file with load_state_dict(strict=False), so its ``temp`` becomes SPRC's: kept for sprc.
LAVIS_BLIP2_TO = {"sprc": (*BLIP2_BACKBONE, KeyRule("temp", ("temp",))), "fashionblip2": BLIP2_BACKBONE}
LAVIS_BLIP2_DROPPED = {
    "sprc": BLIP2_DROPPED,
    "fashionblip2": (
        *BLIP2_DROPPED,
        Dropped(r"temp", "BLIP-2's contrastive temperature; FashionBLIP-2's own starts at its init_temperature"),
    ),
}

# eva_vit_g.pth (the frozen EVA ViT-g that LAVIS loads before blip2_pretrained.pth) holds the ViT
# with bare names: they get this prefix. LAVIS keeps the first ``depth`` blocks (BLIP-2 drops the
# last layer of EVA-CLIP-g) and builds no classifier head or final norm.
EVA_VIT_PREFIX = "visual_encoder."
EVA_VIT_DROPPED: tuple[Dropped, ...] = (
    Dropped(r"visual_encoder\.(head|norm|fc_norm)\..*", "EVA-CLIP's final norm and head, which LAVIS's ViT does not build"),
)
EVA_VIT_BEYOND_DEPTH = "a block past the ViT's depth: BLIP-2 uses the second-last layer of EVA-CLIP-g (LAVIS: depth=39)"

# CLIP4Cir: a fine-tuned OpenAI CLIP (state dict with OpenAI names, which open_clip's CLIP shares)
# and the Combiner. OpenAI's loader (clip.load on a GPU, as CLIP4Cir evaluates) builds the model in
# float16 and copies the fine-tuned weights into it: the convolution, linear and attention weights
# (clip.model.convert_weights) are rounded to float16, the rest (norms, embeddings) are not.
CLIP_FP16_ROUNDED = r"(.*\.)?(conv\d|downsample\.0|[qkvc]_proj|c_fc|out_proj|in_proj_weight|in_proj_bias|proj|text_projection)(\.(weight|bias))?"
CLIP: tuple[KeyRule, ...] = (
    KeyRule("backbone.clip.{rest}", ("{rest}",), "openai_fp16"),
)
CLIP_DROPPED: tuple[Dropped, ...] = (
    Dropped(r"input_resolution|context_length|vocab_size", "int scalars of OpenAI's released files; the loaders delete them"),
)

COMBINER: tuple[KeyRule, ...] = (
    KeyRule("combiner.text_projection.0.{p}", ("text_projection_layer.{p}",)),
    KeyRule("combiner.image_projection.0.{p}", ("image_projection_layer.{p}",)),
    KeyRule("combiner.mixer.0.{p}", ("combiner_layer.{p}",)),
    KeyRule("combiner.output.{p}", ("output_layer.{p}",)),
    KeyRule("combiner.gate.0.0.{p}", ("dynamic_scalar.0.{p}",)),
    KeyRule("combiner.gate.1.{p}", ("dynamic_scalar.3.{p}",)),
)

# Top-level entries of upstream files that wrap the state dict (the first one found is used); any
# other top-level entry (epoch, optimizer, config, ...) is metadata and ignored.
STATE_DICT_WRAPPERS = ("model", "state_dict", "Blip2QformerCirAlignPrompt", "CLIP", "Combiner", "module")
