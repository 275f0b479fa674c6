"""Local transformers backends. Captioner: an image-text-to-text model (the paper uses InternVL,
128 new tokens), e.g. ``OpenGVLab/InternVL3-2B-hf``. Modifier: a chat language model, e.g.
``Qwen/Qwen2.5-7B-Instruct``. Greedy decoding, batched, left padding.

Errors here are not transient (a missing model, out of memory): they stop the build, whose stores
keep everything done so far.
"""

from __future__ import annotations

from typing import Sequence

from cirbench.backbones.folders import offline_hub
from cirbench.compat import chat_template_processor_kwargs, dtype_kwargs
from cirbench.data.images import open_rgb
from cirbench.facap.backends import (
    BackendOptions, CaptionRequest, ModificationRequest, Result, caption_prompt, modification_prompt, stage_prompt,
)


def _require_model(options: BackendOptions, flag: str) -> str:
    if not options.model:
        raise ValueError(f"the transformers backend needs a model id or folder ({flag})")
    return options.model


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]


class _GenerationBackend:
    stage = ""

    def __init__(self, options: BackendOptions, processor, model):
        self.options, self.processor, self.model = options, processor, model
        self.prompt = stage_prompt(self.stage, options)
        self.description = {
            "backend": "transformers", "model": options.model, "max_new_tokens": options.max_new_tokens,
            "prompt": self.prompt.record(),
        }

    def _run(self, requests: Sequence) -> list[Result]:
        """Every request's text, ``options.batch_size`` conversations per generate call."""
        results: list[Result] = []
        for batch in _batches(requests, self.options.batch_size):
            results += self._generate([self._conversation(r) for r in batch])
        return results

    def _generate(self, conversations: list[list[dict]]) -> list[str]:
        import torch

        inputs = self._tokenize(conversations).to(self.model.device)
        inputs.pop("token_type_ids", None)  # transformers 4's tokenizers return them; generate() refuses them
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.options.max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return [text.strip() for text in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]


class TransformersCaptioner(_GenerationBackend):
    stage = "captioner"

    def _tokenize(self, conversations: list[list[dict]]):
        return self.processor.apply_chat_template(
            conversations, add_generation_prompt=True, tokenize=True, return_dict=True,
            return_tensors="pt", **chat_template_processor_kwargs(self.processor, padding=True),
        )

    def caption(self, requests: Sequence[CaptionRequest]) -> list[Result]:
        return self._run(requests)

    def _conversation(self, request: CaptionRequest) -> list[dict]:
        image = open_rgb(request.image_path)
        text = caption_prompt(self.prompt, request)
        return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]


class TransformersModifier(_GenerationBackend):
    stage = "modifier"

    def _tokenize(self, conversations: list[list[dict]]):
        return self.processor.apply_chat_template(
            conversations, add_generation_prompt=True, tokenize=True, return_dict=True,
            return_tensors="pt", padding=True,
        )

    def modify(self, requests: Sequence[ModificationRequest]) -> list[Result]:
        return self._run(requests)

    def _conversation(self, request: ModificationRequest) -> list[dict]:
        return [{"role": "user", "content": modification_prompt(self.prompt, request)}]


def build_captioner(options: BackendOptions) -> TransformersCaptioner:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model_id = _require_model(options, "--captioner-model")
    with offline_hub(model_id, "the captioner model") as local_only:
        processor = AutoProcessor.from_pretrained(model_id, padding_side="left", **local_only)
        model = AutoModelForImageTextToText.from_pretrained(model_id, **dtype_kwargs("auto"), **local_only)
    model = model.to(options.device).eval()
    return TransformersCaptioner(options, processor, model)


def build_modifier(options: BackendOptions) -> TransformersModifier:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_id = _require_model(options, "--modifier-model")
    with offline_hub(model_id, "the modifier model") as local_only:
        tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left", **local_only)
        model = AutoModelForCausalLM.from_pretrained(model_id, **dtype_kwargs("auto"), **local_only)
    model = model.to(options.device).eval()
    return TransformersModifier(options, tokenizer, model)
