"""The BLIP-2 backbone: tokenizer, the Q-Former passes as transformers runs them, pre-training, loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer, Blip2Config, Blip2ForImageTextRetrieval, PreTrainedTokenizerFast

from cirbench.backbones.blip2 import (
    SYNTH_BACKBONE_ENV,
    Blip2Backbone,
    blip2_backbone_skeleton,
    load_blip2_backbone,
    tiny_blip2_backbone,
)
from cirbench.backbones.blip2_configs import tiny_blip2_config
from cirbench.backbones.blip2_processing import BLIP2_MEAN, BLIP2_STD, preprocess_image
from cirbench.backbones.blip2_tokenizers import build_tiny_tokenizer
from cirbench.backbones.folders import SYNTH_BACKBONE_COMMAND
from cirbench.baselines.zoo import build_model
from cirbench.synth.pretrain import Blip2Pretraining, pretrain_blip2_backbone


@pytest.fixture(scope="module")
def backbone() -> Blip2Backbone:
    return tiny_blip2_backbone(seed=0).eval()


def test_tokenizer_gives_known_words_distinct_ids(tmp_path):
    tokenizer = build_tiny_tokenizer(["zigzag"])
    words = ["red", "blue", "dress", "shirt", "sleeves", "zigzag"]
    ids = [tokenizer(word, add_special_tokens=False)["input_ids"] for word in words]
    assert all(len(piece) == 1 for piece in ids), ids
    assert len({piece[0] for piece in ids}) == len(words)
    assert all(tokenizer.unk_token_id not in piece for piece in ids)
    # An unknown word splits into character pieces instead of collapsing to [UNK].
    unknown = tokenizer("qwxyz", add_special_tokens=False)["input_ids"]
    assert len(unknown) > 1 and tokenizer.unk_token_id not in unknown
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert reloaded("Red dress, ZIGZAG!")["input_ids"] == tokenizer("red dress, zigzag!")["input_ids"]


def test_a_tokenizer_that_maps_words_to_unk_is_refused(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials_only = Tokenizer(models.WordPiece({t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])}, unk_token="[UNK]"))
    specials_only.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    PreTrainedTokenizerFast(tokenizer_object=specials_only, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(tmp_path)
    tiny_blip2_config(vocab_size=5).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"\[UNK\]"):
        blip2_backbone_skeleton(tmp_path)


def test_preprocess_resizes_and_normalises():
    pixels = preprocess_image(Image.new("RGB", (100, 40), "white"), 64)
    assert pixels.shape == (3, 64, 64)
    expected = (1 - torch.tensor(BLIP2_MEAN)) / torch.tensor(BLIP2_STD)
    assert torch.allclose(pixels[:, 10, 10], expected, atol=1e-5)


def test_tiny_backbone_is_seeded_and_small():
    first, second, other = tiny_blip2_backbone(3), tiny_blip2_backbone(3), tiny_blip2_backbone(4)

    def weights(backbone):
        return torch.cat([p.flatten() for p in backbone.parameters()])

    assert torch.equal(weights(first), weights(second))
    assert not torch.equal(weights(first), weights(other))
    assert 2_000_000 < sum(p.numel() for p in first.parameters()) < 3_000_000
    # Non-zero, distinct query tokens: identical ones would stay identical under training.
    assert torch.unique(first.blip.query_tokens[0], dim=0).shape[0] == 32


def test_passes_have_the_expected_shapes(backbone):
    images = torch.randn(2, 3, 64, 64)
    tokens = backbone.tokenize(["a red dress", "longer sleeves and blue"], max_length=128)
    length = tokens["input_ids"].shape[1]
    with torch.no_grad():
        image_embeds = backbone.encode_image(images)
        assert image_embeds.shape == (2, 1 + (64 // 8) ** 2, 128)
        assert backbone.query_image(image_embeds).shape == (2, 32, 128)
        assert backbone.query_image_text(image_embeds, tokens).shape == (2, 32 + length, 128)
        assert backbone.text_with_prefix(None, tokens).shape == (2, length, 128)
        assert backbone.text_with_prefix(torch.randn(2, 5, 128), tokens).shape == (2, 5 + length, 128)


def test_passes_match_the_retrieval_model_forward(backbone):
    """Our fused and ITC passes are the ones Blip2ForImageTextRetrieval itself runs."""
    images = torch.randn(3, 3, 64, 64)
    tokens = backbone.tokenize(["a red dress", "blue", "has stripes and a v neck"], max_length=128)
    blip = backbone.blip
    with torch.no_grad():
        itm = blip(pixel_values=images, use_image_text_matching_head=True, **tokens)
        itc = blip(pixel_values=images, **tokens)
        image_embeds = backbone.encode_image(images)
        fused = backbone.query_image_text(image_embeds, tokens)
        image_feats = backbone.itc_query_features(image_embeds)
        text_feats = backbone.itc_text_features(tokens)
        matching = backbone.itm_logits(image_embeds, tokens)
    assert torch.allclose(fused, itm.text_model_output.last_hidden_state, atol=1e-5)
    assert torch.allclose(matching, itm.logits_per_image, atol=1e-5)
    assert torch.allclose(image_feats, itc.image_embeds, atol=1e-5)
    assert torch.allclose(text_feats, itc.text_embeds, atol=1e-5)


def _recorded_matching_pairs(backbone, captions, similarity, hard_share, seed=0):
    """Run the matching loss with a recording ITM head: (image index, caption index) of each scored pair."""
    objective = Blip2Pretraining(backbone, hard_share=hard_share)
    image_embeds = torch.arange(len(captions), dtype=torch.float32).view(-1, 1, 1)  # row i holds i
    tokens = {"input_ids": torch.arange(len(captions)).view(-1, 1), "attention_mask": torch.ones(len(captions), 1)}
    seen = []

    def itm_logits(images, texts):
        seen.extend(zip(images[:, 0, 0].long().tolist(), texts["input_ids"][:, 0].tolist()))
        return torch.zeros(len(images), 2, requires_grad=True)

    torch.manual_seed(seed)
    original, backbone.itm_logits = backbone.itm_logits, itm_logits
    try:
        loss = objective._matching_loss(image_embeds, tokens, similarity, captions)
    finally:
        backbone.itm_logits = original
    return seen, loss


def test_matching_scores_each_pair_against_negatives_with_other_captions(backbone):
    captions = ["a red dress", "a red dress", "a blue dress", "a green dress"]
    seen, loss = _recorded_matching_pairs(backbone, captions, torch.zeros(4, 4), hard_share=0.5)
    batch = len(captions)
    assert seen[:batch] == [(i, i) for i in range(batch)]  # the positives first
    assert [image for image, _ in seen[2 * batch:]] == list(range(batch))  # each image with a negative text
    assert [text for _, text in seen[batch:2 * batch]] == list(range(batch))  # each text with a negative image
    for image, text in seen[batch:]:
        assert captions[image] != captions[text]  # an identical caption is never a negative
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)  # uninformative logits: log 2


def test_matching_negatives_are_hard_or_uniform_by_share(backbone):
    captions = [f"caption {i}" for i in range(6)]
    similarity = torch.full((6, 6), -30.0)
    similarity[:, 5] = similarity[5, :] = 30.0  # everyone's hardest negative is item 5 (item 5's: item 0)
    similarity[5, 0] = similarity[0, 5] = 30.0
    hard, _ = _recorded_matching_pairs(backbone, captions, similarity, hard_share=1.0)
    assert {text for image, text in hard[12:] if image != 5} == {5}
    uniform = [pair for seed in range(5) for pair in _recorded_matching_pairs(backbone, captions, similarity, 0.0, seed)[0][12:]]
    assert len({text for image, text in uniform if image != 5}) >= 4  # spread over the others


def test_matching_is_skipped_when_every_caption_is_the_same(backbone):
    _, loss = _recorded_matching_pairs(backbone, ["a red dress"] * 3, torch.zeros(3, 3), hard_share=0.5)
    assert loss.item() == 0.0


def test_qformer_without_text_layers_is_rejected():
    config = Blip2Config(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 16,
            "patch_size": 8,
        },
        qformer_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
    )
    with pytest.raises(ValueError, match="use_qformer_text_input"):
        Blip2Backbone(Blip2ForImageTextRetrieval(config), build_tiny_tokenizer())


def _toy_pairs(folder, count=8):
    colours = ["red", "blue", "green", "yellow"]
    pairs = []
    for index in range(count):
        colour = colours[index % len(colours)]
        path = folder / f"{index}.png"
        Image.new("RGB", (64, 64), colour).save(path)
        pairs.append((path, f"a {colour} zigzag dress number {index}"))
    return pairs


def test_pretrain_writes_a_backbone_that_synth_tiny_models_load(tmp_path, monkeypatch):
    losses = []
    out = pretrain_blip2_backbone(
        _toy_pairs(tmp_path),
        tmp_path / "blip2",
        steps=3,
        batch_size=4,
        seed=0,
        on_step=lambda step, loss: losses.append(loss),
    )
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    assert {"config.json", "model.safetensors", "tokenizer.json", "pretraining.json"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "pretraining.json").read_text())["objectives"] == ["itc", "itm"]
    loaded = load_blip2_backbone(out)
    assert (
        len(loaded.tokenizer("zigzag", add_special_tokens=False)["input_ids"]) == 1
    )  # caption words join the vocabulary
    images = torch.randn(2, 3, 64, 64)
    monkeypatch.setenv(SYNTH_BACKBONE_ENV, str(out))
    from_env = build_model("sprc:synth_tiny")
    from_override = build_model("sprc:synth_tiny", backbone_dir=str(out))
    with torch.no_grad():
        assert torch.equal(from_env.encode_candidates(images), from_override.encode_candidates(images))
        assert torch.equal(from_env.backbone.encode_image(images), loaded.eval().encode_image(images))


def test_synth_tiny_without_a_backbone_names_the_command(monkeypatch, tmp_path):
    monkeypatch.delenv(SYNTH_BACKBONE_ENV, raising=False)
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cache"))  # nothing installed
    with pytest.raises(FileNotFoundError, match=SYNTH_BACKBONE_COMMAND.split()[1]):
        build_model("fashionblip2:synth_tiny")
    with pytest.raises(FileNotFoundError, match="not a tiny BLIP-2 backbone"):
        build_model("fashionblip2:synth_tiny", backbone_dir=str(tmp_path))


def test_ln_vision_has_laviss_eps_in_every_backbone_and_after_save_and_load(tmp_path):
    """LAVIS's ln_vision (eps 1e-5) is transformers' post_layernorm; the ViT blocks keep 1e-6."""
    from cirbench.baselines.params import vitg_backbone_on_meta

    def eps_of(backbone):
        vision = backbone.blip.vision_model
        return vision.post_layernorm.eps, {layer.layer_norm1.eps for layer in vision.encoder.layers}

    tiny = tiny_blip2_backbone(seed=0)
    shipped = load_blip2_backbone(Path(__file__).resolve().parents[2] / "cirbench" / "synth" / "pretrained" / "blip2")
    for backbone in (tiny, vitg_backbone_on_meta(), shipped):
        assert eps_of(backbone) == (1e-5, {1e-6})
    tiny.save_pretrained(tmp_path)
    for reloaded in (load_blip2_backbone(tmp_path), blip2_backbone_skeleton(tmp_path)):
        assert eps_of(reloaded) == (1e-5, {1e-6})
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        hidden = tiny.blip.vision_model.encoder(inputs_embeds=tiny.blip.vision_model.embeddings(images)).last_hidden_state
        expected = torch.nn.functional.layer_norm(hidden, (128,), tiny.blip.vision_model.post_layernorm.weight,
                                                  tiny.blip.vision_model.post_layernorm.bias, eps=1e-5)
        assert torch.allclose(tiny.encode_image(images), expected, atol=1e-6)


def test_hub_weights_not_on_this_machine_fail_at_once_naming_what_to_download(tmp_path):
    """local_files_only: no request is made (without it a miss is retried over the network for a minute)."""
    with pytest.raises(FileNotFoundError, match=r"the BLIP-2 backbone cirbench/never-downloaded is not on this "
                                                r"machine .*`hf download cirbench/never-downloaded`"):
        load_blip2_backbone("cirbench/never-downloaded")
    with pytest.raises(OSError) as folder_error:  # a local folder's own error is left as it is
        load_blip2_backbone(tmp_path)
    assert not isinstance(folder_error.value, FileNotFoundError) or "hf download" not in str(folder_error.value)
