"""The upstream reference cases of ../shared/parity (README there): loading, configs, comparisons.

Each case folder holds the upstream model's weights under their upstream names, fixed inputs and
the outputs the upstream code computed, with a tolerance per output. The tests build OUR model at
the case's configuration, import the weights through ``cirbench.importers`` (the code path of
``cirbench import-weights``) and compare. Without ../shared/parity they skip, saying so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
PARITY_ROOT = REPO_ROOT.parent / "shared" / "parity"


@dataclass
class ParityCase:
    name: str
    folder: Path

    @cached_property
    def spec(self) -> dict:
        return json.loads((self.folder / "case.json").read_text())

    @cached_property
    def inputs(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(self.folder / "inputs.safetensors"))

    @cached_property
    def inputs_json(self) -> dict:
        return json.loads((self.folder / "inputs.json").read_text())

    @cached_property
    def outputs(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(self.folder / "outputs.safetensors"))

    @property
    def weights(self) -> Path:
        return self.folder / "weights.safetensors"

    @property
    def vocab(self) -> Path:
        return self.folder / "vocab.txt"

    def tokens(self) -> dict[str, torch.Tensor]:
        """The stored token ids and mask (as the upstream model received them)."""
        return {"input_ids": self.inputs["input_ids"].long(), "attention_mask": self.inputs["attention_mask"].long()}

    def check(self, output: str, actual: torch.Tensor) -> float:
        """Assert ``actual`` matches the stored upstream output within the case's tolerance."""
        expected = self.outputs[output]
        tolerance = self.spec["outputs"][output]["tolerance_abs"]
        assert tuple(actual.shape) == tuple(expected.shape), f"{self.name}/{output}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
        difference = (actual.detach().float() - expected.float()).abs().max().item()
        assert difference <= tolerance, (
            f"{self.name}/{output}: max |ours - upstream| = {difference:.3g} > {tolerance:.3g} "
            f"({self.spec['outputs'][output]['definition']})"
        )
        return difference


def parity_case(name: str) -> ParityCase:
    """The case folder ``name``, or skip the test with the reason."""
    folder = PARITY_ROOT / name
    if not (folder / "case.json").is_file():
        pytest.skip(f"parity case {name}: ../shared/parity not found (looked for {folder})")
    return ParityCase(name, folder)


def blip2_config(case: ParityCase):
    """A transformers ``Blip2Config`` with the case's BLIP-2 sizes (case.json ``model``)."""
    from transformers import Blip2Config

    model = case.spec["model"]
    vision, qformer = model["vision"], model["qformer"]
    assert vision["qkv_bias"].startswith("q_bias and v_bias") and not vision["final_norm_inside_vit"]
    return Blip2Config(
        vision_config={
            "hidden_size": vision["hidden_size"],
            "intermediate_size": vision["intermediate_size"],
            "num_hidden_layers": vision["num_hidden_layers"],
            "num_attention_heads": vision["num_attention_heads"],
            "image_size": vision["image_size"],
            "patch_size": vision["patch_size"],
            "layer_norm_eps": vision["block_layer_norm_eps"],
            "hidden_act": "gelu",
            "qkv_bias": True,
        },
        qformer_config={
            "vocab_size": qformer["vocab_size"],
            "hidden_size": qformer["hidden_size"],
            "num_hidden_layers": qformer["num_hidden_layers"],
            "num_attention_heads": qformer["num_attention_heads"],
            "intermediate_size": qformer["intermediate_size"],
            "max_position_embeddings": qformer["max_position_embeddings"],
            "cross_attention_frequency": qformer["cross_attention_frequency"],
            "encoder_hidden_size": qformer["encoder_hidden_size"],
            "layer_norm_eps": qformer["layer_norm_eps"],
            "hidden_act": qformer["hidden_act"],
            "use_qformer_text_input": True,
        },
        num_query_tokens=model["num_query_tokens"],
        image_text_hidden_size=model["embed_dim"],
    )


def lavis_tokenizer(case: ParityCase):
    """The case's tokenizer: its vocab.txt with [DEC] appended, as cirbench import-weights builds it."""
    from cirbench.importers.blip2 import load_lavis_tokenizer

    tokenizer = load_lavis_tokenizer(case.vocab)
    assert tokenizer.convert_tokens_to_ids("[DEC]") == case.spec["tokenizer"]["added_tokens"]["[DEC]"]
    return tokenizer
