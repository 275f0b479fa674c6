"""The importers' engine on small hand-made state dicts: reading upstream files safely, and key maps
that account for every key (missing, unexpected and mis-shaped keys named; drops with a reason)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from cirbench.errors import DataError
from cirbench.importers.keymaps import BLIP2_BACKBONE, CLIP_FP16_ROUNDED, Dropped, KeyRule
from cirbench.importers.mapping import map_state
from cirbench.importers.reading import UpstreamState, read_state_dict


class NotATensor:
    """A custom class: unpickling it would run code of the file's choosing."""


RULES = (
    KeyRule("encoder.layers.{n}.qkv.bias", ("blocks.{n}.q_bias", "blocks.{n}.v_bias"), "q_zero_v"),
    KeyRule("encoder.layers.{n}.{rest}", ("blocks.{n}.{rest}",)),
    KeyRule("head.{p}", ("proj.{p}",)),
)


def _upstream(**tensors) -> UpstreamState:
    state = UpstreamState()
    state.add({key.replace("__", "."): value for key, value in tensors.items()}, "up.pt")
    return state


def _expected() -> dict[str, torch.Tensor]:
    return {"encoder.layers.0.qkv.bias": torch.zeros(6), "encoder.layers.0.fc.weight": torch.zeros(2, 2),
            "head.weight": torch.zeros(3, 2)}


def _complete() -> dict[str, torch.Tensor]:
    return {"blocks__0__q_bias": torch.ones(2), "blocks__0__v_bias": 2 * torch.ones(2),
            "blocks__0__fc__weight": torch.eye(2), "proj__weight": torch.ones(3, 2)}


def test_every_key_is_mapped_with_its_transform():
    mapped = map_state(_upstream(**_complete(), cls__bias=torch.ones(1)), _expected(), RULES,
                       [Dropped(r"cls\..*", "not used")])
    assert torch.equal(mapped.tensors["encoder.layers.0.qkv.bias"], torch.tensor([1.0, 1, 0, 0, 2, 2]))  # [q, 0, v]
    assert torch.equal(mapped.tensors["encoder.layers.0.fc.weight"], torch.eye(2))
    assert mapped.dropped == {"cls.bias": "not used"} and mapped.new == []


def test_a_missing_key_is_named():
    upstream = _complete()
    del upstream["blocks__0__v_bias"]
    with pytest.raises(DataError, match=r"up\.pt: blocks\.0\.v_bias: missing: .* encoder\.layers\.0\.qkv\.bias"):
        map_state(_upstream(**upstream), _expected(), RULES)


def test_an_unexpected_key_is_named():
    with pytest.raises(DataError, match=r"up\.pt: blocks\.7\.extra: unexpected"):
        map_state(_upstream(**_complete(), blocks__7__extra=torch.ones(1)), _expected(), RULES)


def test_a_mis_shaped_key_is_named_with_both_shapes():
    upstream = {**_complete(), "proj__weight": torch.ones(4, 2)}
    with pytest.raises(DataError, match=r"up\.pt: proj\.weight: shape \(4, 2\) does not fit .*head\.weight \(3, 2\)"):
        map_state(_upstream(**upstream), _expected(), RULES)


def test_our_keys_without_a_rule_must_be_new_parts():
    expected = {**_expected(), "prompt": torch.zeros(4)}
    with pytest.raises(DataError, match=r"prompt: no upstream key maps"):
        map_state(_upstream(**_complete()), expected, RULES)
    mapped = map_state(_upstream(**_complete()), expected, RULES, is_new=lambda key: key == "prompt")
    assert mapped.new == ["prompt"]


def test_upstream_tensors_take_our_dtype():
    mapped = map_state(_upstream(**{**_complete(), "proj__weight": torch.ones(3, 2, dtype=torch.float16)}), _expected(), RULES)
    assert mapped.tensors["head.weight"].dtype == torch.float32


def test_a_pickle_that_needs_more_than_weights_only_is_refused(tmp_path):
    path = tmp_path / "sprc_fiq.pt"
    torch.save({"epoch": 3, "Blip2QformerCirAlignPrompt": {"w": torch.ones(1)}, "extra": NotATensor()}, path)
    with pytest.raises(DataError, match=r"sprc_fiq\.pt: torch pickle: refused: .*weights_only=True"):
        read_state_dict(path)


def test_wrapped_state_dicts_are_unwrapped_and_metadata_ignored(tmp_path):
    torch.save({"epoch": 3, "Combiner": {"output_layer.weight": torch.ones(2, 2)}}, tmp_path / "combiner.pt")
    assert list(read_state_dict(tmp_path / "combiner.pt")) == ["output_layer.weight"]
    torch.save({"model": {"query_tokens": torch.ones(1)}, "config": {"arch": "pretrain"}}, tmp_path / "blip2.pth")
    assert list(read_state_dict(tmp_path / "blip2.pth")) == ["query_tokens"]
    save_file({"a": torch.ones(1)}, str(tmp_path / "weights.safetensors"))
    assert list(read_state_dict(tmp_path / "weights.safetensors")) == ["a"]


def test_files_that_are_not_state_dicts_are_refused_naming_the_entry(tmp_path):
    torch.save({"weights": torch.ones(1), "note": "hello"}, tmp_path / "odd.pt")
    with pytest.raises(DataError, match=r"odd\.pt: note: a str, not a tensor"):
        read_state_dict(tmp_path / "odd.pt")
    torch.save([torch.ones(1)], tmp_path / "list.pt")
    with pytest.raises(DataError, match=r"list\.pt: content: a list"):
        read_state_dict(tmp_path / "list.pt")
    with pytest.raises(DataError, match="not found"):
        read_state_dict(tmp_path / "absent.pt")
    (tmp_path / "broken.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match=r"broken\.safetensors: safetensors: cannot be read"):
        read_state_dict(tmp_path / "broken.safetensors")


def test_a_key_given_by_two_files_is_refused():
    state = UpstreamState()
    state.add({"a": torch.ones(1)}, "one.pt")
    with pytest.raises(DataError, match=r"two\.pt: a: also in one\.pt"):
        state.add({"a": torch.ones(1)}, "two.pt")


def test_the_openai_fp16_rounding_covers_exactly_convert_weights_modules():
    import re

    rounded = ["visual.conv1.weight", "visual.layer1.0.conv3.weight", "visual.layer2.0.downsample.0.weight",
               "visual.attnpool.q_proj.weight", "visual.attnpool.c_proj.bias", "visual.proj", "text_projection",
               "transformer.resblocks.3.attn.in_proj_weight", "transformer.resblocks.3.attn.in_proj_bias",
               "transformer.resblocks.3.attn.out_proj.weight", "transformer.resblocks.3.mlp.c_fc.bias",
               "visual.transformer.resblocks.0.mlp.c_proj.weight"]
    kept = ["visual.bn1.weight", "visual.layer2.0.downsample.1.running_var", "visual.attnpool.positional_embedding",
            "visual.class_embedding", "visual.ln_pre.weight", "positional_embedding", "token_embedding.weight",
            "ln_final.bias", "logit_scale", "transformer.resblocks.3.ln_1.weight"]
    assert all(re.fullmatch(CLIP_FP16_ROUNDED, key) for key in rounded)
    assert not any(re.fullmatch(CLIP_FP16_ROUNDED, key) for key in kept)


def test_the_lavis_map_covers_every_key_of_a_transformers_blip2():
    """Every key of our BLIP-2 backbone has a rule (the tiny config has all module kinds)."""
    from cirbench.backbones.blip2 import tiny_blip2_backbone
    from cirbench.importers.mapping import _rule_for

    keys = [f"backbone.blip.{key}" for key in tiny_blip2_backbone().blip.state_dict()]
    assert all(_rule_for(key, BLIP2_BACKBONE)[0] is not None for key in keys)
