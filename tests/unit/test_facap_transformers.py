"""The transformers backends on tiny random models saved to disk (the real loading, chat template,
batched generation and decoding path; the texts are noise), and their construction errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from facap_fixtures import write_image

from cirbench.facap.backends import BackendOptions, CaptionRequest, ModificationRequest, build_captioner, build_modifier

WORDS = ["a", "<pad>", "<unk>", "<s>", "</s>", "<image>", "user", "assistant", ":", "red", "dress", "top"]
TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {% if m['content'] is string %}{{ m['content'] }} {% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}assistant : {% endif %}"
)


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens(["<image>", "<pad>", "<s>", "</s>"])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<s>", eos_token="</s>", chat_template=TEMPLATE)


def _text_config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, pad_token_id=1, bos_token_id=3, eos_token_id=4)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny Llava (image-text-to-text) and a tiny Llama (text), each saved with its processor.
    Their output layers are zeroed: every logit ties and greedy decoding writes token 0, "a"."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaForCausalLM, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    root = tmp_path_factory.mktemp("tiny_models")
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=8)
    config = LlavaConfig(vision_config=vision, text_config=_text_config(), image_token_index=5, vision_feature_select_strategy="default")
    vlm, llm = LlavaForConditionalGeneration(config), LlamaForCausalLM(_text_config())
    for model in (vlm, llm):
        model.get_output_embeddings().weight.data.zero_()  # lm_head (transformers 4: language_model.lm_head)
    vlm.save_pretrained(root / "vlm")
    images = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    LlavaProcessor(image_processor=images, tokenizer=_tokenizer(), patch_size=8, vision_feature_select_strategy="default",
                   chat_template=TEMPLATE, image_token="<image>", num_additional_image_tokens=1).save_pretrained(root / "vlm")
    llm.save_pretrained(root / "llm")
    _tokenizer().save_pretrained(root / "llm")
    return root / "vlm", root / "llm"


def test_captioner_generates_one_text_per_image_in_batches(tiny_models, tmp_path):
    write_image(tmp_path / "x.png", "red")
    captioner = build_captioner("transformers", BackendOptions(model=str(tiny_models[0]), max_new_tokens=4, batch_size=2))
    requests = [CaptionRequest(str(i), tmp_path / "x.png", "dress", "red dress" if i else "") for i in range(3)]
    assert captioner.caption(requests) == ["a a a a"] * 3  # only the new tokens, prompt lengths differ
    assert captioner.description["prompt"]["name"] == "caption_v1" and captioner.description["max_new_tokens"] == 4


def test_modifier_generates_from_two_captions(tiny_models):
    modifier = build_modifier("transformers", BackendOptions(model=str(tiny_models[1]), max_new_tokens=3, batch_size=4))
    texts = modifier.modify([ModificationRequest(str(i), "top", "A red top.", "A blue top." * i) for i in range(3)])
    assert texts == ["a a a"] * 3


def test_a_model_id_is_required():
    with pytest.raises(ValueError, match=r"needs a model id or folder \(--captioner-model\)"):
        build_captioner("transformers", BackendOptions())
    with pytest.raises(ValueError, match=r"--modifier-model"):
        build_modifier("transformers", BackendOptions())


@pytest.mark.weights
def test_real_captioner_describes_a_garment(tmp_path):
    """With CIRBENCH_CAPTIONER_MODEL (e.g. OpenGVLab/InternVL3-1B-hf) downloaded beforehand."""
    model = os.environ.get("CIRBENCH_CAPTIONER_MODEL", "OpenGVLab/InternVL3-1B-hf")
    write_image(tmp_path / "x.png", "red", size=224)
    [caption] = build_captioner("transformers", BackendOptions(model=model)).caption([CaptionRequest("x", tmp_path / "x.png", "dress")])
    assert "red" in caption.lower()
