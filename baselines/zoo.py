"""Every model of the zoo, registered by name with its variants. Only strings here: no torch.

Variants: the real-size ones load the published weights through the real loading code (they need
the weights downloaded beforehand); ``synth_tiny`` builds on the synthetic world's pretrained tiny
backbones; ``test_tiny`` builds instantly with random weights (contract tests, CI).
"""

from cirbench.interface import register_model

_OPTIONS = "cirbench.baselines.options"  # every model's build options (torch-free)
_TINY = {
    "test_tiny": "tiny config, random weights (tests)",
    "synth_tiny": "tiny backbone pre-trained on the synthetic world (demo)",
}

for _mode, _what in [
    ("image_only", "reference image alone (ignores the text)"),
    ("text_only", "modification text alone (ignores the image)"),
    ("sum", "normalised image + text embedding sum"),
]:
    register_model(
        f"clip_{_mode}",
        f"cirbench.baselines.zero_shot.clip_baselines:build_{_mode}",
        options=f"{_OPTIONS}:ClipOptions",
        variants={
            "vit_l14_openai": "open_clip ViT-L-14, OpenAI weights",
            "vit_b32_openai": "open_clip ViT-B-32, OpenAI weights",
            "rn50x4_openai": "open_clip RN50x4, OpenAI weights",
            **_TINY,
        },
        default_variant="vit_l14_openai",
        description=f"zero-shot CLIP baseline: {_what}",
    )

register_model(
    "clip4cir",
    "cirbench.baselines.clip4cir.model:build",
    options=f"{_OPTIONS}:Clip4CirOptions",
    variants={
        "rn50x4": "open_clip RN50x4 (OpenAI) + Combiner, as in the CLIP4Cir paper",
        "vit_l14": "open_clip ViT-L-14 (OpenAI) + Combiner",
        **_TINY,
    },
    default_variant="rn50x4",
    description="CLIP4CIR: fine-tuned CLIP + gated Combiner, cosine scoring",
)

register_model(
    "fashionblip2",
    "cirbench.baselines.fashionblip2.model:build",
    options=f"{_OPTIONS}:FashionBlip2Options",
    variants={
        "vitg": "BLIP-2 ViT-g retrieval (Salesforce/blip2-itm-vit-g) + adapters + multi-head matcher",
        **_TINY,
    },
    default_variant="vitg",
    description="FashionBLIP-2 (FACap paper): adapters in the frozen ViT, Q-Former fusion, multi-head matching",
)

register_model(
    "sprc",
    "cirbench.baselines.sprc.model:build",
    options=f"{_OPTIONS}:SprcOptions",
    variants={
        "vitg": "BLIP-2 ViT-g retrieval (Salesforce/blip2-itm-vit-g) Q-Former, SPRC prompts",
        **_TINY,
    },
    default_variant="vitg",
    description="SPRC: sentence-level prompts from the Q-Former, max-over-tokens scoring",
)
