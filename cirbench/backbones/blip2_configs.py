"""BLIP-2 architectures as transformers ``Blip2Config``: the ViT-g image-text-retrieval model and
the tiny one trained from scratch on the synthetic world."""

from __future__ import annotations

from transformers import Blip2Config

_TINY_INIT = 0.1


def vitg_blip2_config() -> Blip2Config:
    """The ViT-g image-text-retrieval BLIP-2 (transformers' default sizes) with the Q-Former's text layers."""
    return Blip2Config(qformer_config={"use_qformer_text_input": True})


def tiny_blip2_config(vocab_size: int, image_size: int = 64) -> Blip2Config:
    """A ~2.4 M-parameter BLIP-2 with the paper's token counts (32 queries, 256-d ITC space).

    Trained from scratch, unlike the real one: no dropout, and initial weights 5x BERT's 0.02, so
    the image reaches the query tokens through cross-attention from the first step. With BERT's
    settings the contrastive loss sat at log(batch) for hundreds of steps (measured: dropout alone
    kept it there at every learning rate tried; see cirbench/synth/tiny_backbones.py).
    """
    return Blip2Config(
        vision_config={
            "hidden_size": 128,
            "intermediate_size": 512,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "image_size": image_size,
            "patch_size": 8,
            "attention_dropout": 0.0,
            "initializer_range": _TINY_INIT,  # the default 1e-10 assumes pretrained weights get loaded
        },
        qformer_config={
            "vocab_size": vocab_size,
            "hidden_size": 128,
            "intermediate_size": 512,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "max_position_embeddings": 128,
            "cross_attention_frequency": 2,
            "use_qformer_text_input": True,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "initializer_range": _TINY_INIT,
        },
        num_query_tokens=32,
        image_text_hidden_size=256,
    )
