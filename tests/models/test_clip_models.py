"""The CLIP family: open_clip backbones (real names, tiny config, local folders, pre-training),
targetpad, the zero-shot baselines and CLIP4CIR's two stages."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cirbench.backbones.clip import SYNTH_CLIP_ENV, load_clip, local_dir, tiny_clip
from cirbench.backbones.folders import SYNTH_BACKBONE_COMMAND
from cirbench.backbones.targetpad import TargetPad
from cirbench.synth.pretrain import pretrain_clip_backbone
from cirbench.baselines.clip4cir import model as clip4cir
from cirbench.baselines.zero_shot import clip_baselines
from cirbench.baselines.zoo import build_model, list_model_specs
from cirbench.interface import CIRBatch

TEXTS = ["is red with long sleeves", "is blue and shorter", "has stripes", "has a round neckline"]


def _images(model, n=4):
    pictures = [Image.new("RGB", (30 + 9 * i, 70), (60 * i, 90, 200 - 40 * i)) for i in range(n)]
    return torch.stack([model.preprocess(picture) for picture in pictures])


# ---- backbones ---------------------------------------------------------------------------------


def test_tiny_clip_saved_as_open_clip_folder_reloads_with_identical_embeddings(tmp_path):
    backbone = tiny_clip(seed=3).eval()
    images = torch.randn(2, 3, backbone.image_size, backbone.image_size)
    backbone.save_open_clip(tmp_path)
    reloaded = load_clip(local_dir(tmp_path)).eval()  # open_clip's own local-dir loading code
    with torch.no_grad():
        assert torch.equal(backbone.encode_image(images), reloaded.encode_image(images))
        assert torch.equal(backbone.encode_text(TEXTS), reloaded.encode_text(TEXTS))
    assert reloaded.model_cfg == backbone.model_cfg
    tokens = backbone.tokenizer(["red dress", "blue shirt"])
    assert not torch.equal(tokens[0], tokens[1])  # the offline tokenizer really tokenizes


@pytest.mark.parametrize("module", [clip_baselines, clip4cir])
def test_real_variants_name_real_open_clip_weights(module):
    pretrained = set(open_clip.list_pretrained())
    for name, tag in module.REAL_VARIANTS.values():
        assert (name, tag) in pretrained
    registered = {variant for model, variant, _ in list_model_specs()
                  if model in ("clip4cir" if module is clip4cir else "clip_sum",)}
    assert registered == {*module.REAL_VARIANTS, "test_tiny", "synth_tiny"}


def test_a_real_variant_without_its_weights_on_this_machine_fails_at_once(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(FileNotFoundError, match="ViT-B-32/openai: timm/vit_base_patch32_clip_224.openai is not on this machine.*`hf download"):
        build_model("clip_sum:vit_b32_openai")


def test_targetpad_pads_long_images_to_the_target_ratio_only():
    tall = TargetPad(1.25)(Image.new("RGB", (40, 100), (255, 0, 0)))
    assert tall.size == (80, 100)  # 100 / 1.25 = 80 wide, padded 20 px each side in black
    assert tall.getpixel((0, 50)) == (0, 0, 0) and tall.getpixel((40, 50)) == (255, 0, 0)
    wide = TargetPad(1.25)(Image.new("RGB", (100, 40)))
    assert wide.size == (100, 80)
    almost_square = Image.new("RGB", (50, 60))
    assert TargetPad(1.25)(almost_square) is almost_square


def test_clip4cir_preprocessing_is_targetpad_and_zero_shot_is_open_clips():
    image = Image.new("RGB", (20, 100), (255, 255, 255))
    padded = build_model("clip4cir:test_tiny").preprocess(image)
    cropped = build_model("clip_sum:test_tiny").preprocess(image)
    assert padded.shape == cropped.shape == (3, 64, 64)
    assert padded[:, 32, 0].abs().sum() > 1  # black padding at the left border
    assert torch.allclose(cropped[:, 32, 0], cropped[:, 32, 32])  # centre crop of white


def test_synth_tiny_needs_a_pretrained_backbone_and_names_the_command(tmp_path, monkeypatch):
    monkeypatch.delenv(SYNTH_CLIP_ENV, raising=False)
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cache"))  # nothing installed
    with pytest.raises(FileNotFoundError, match=SYNTH_BACKBONE_COMMAND.split(" WORLD")[0]):
        build_model("clip4cir:synth_tiny")
    with pytest.raises(FileNotFoundError, match="not a pre-trained CLIP folder"):
        build_model("clip4cir:synth_tiny", backbone_dir=str(tmp_path))


def test_published_weights_load_from_the_local_hub_cache_and_missing_ones_fail_at_once(tmp_path, monkeypatch):
    """A real name + tag is looked up in the hub cache and loaded as a file (nothing fetched, no
    request at all); weights not there are one error naming the repository to download."""
    import huggingface_hub.constants
    import open_clip
    from safetensors.torch import save_file

    from cirbench.backbones.clip import TINY_CLIP, load_clip, tiny_clip

    source = tiny_clip(seed=3)
    snapshot = tmp_path / "hub" / "models--cirbench--tiny-test" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in source.clip.state_dict().items()}, str(snapshot / "open_clip_model.safetensors"))
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    tags = {"cached": {"hf_hub": "cirbench/tiny-test/", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)},
            "absent": {"hf_hub": "cirbench/absent/"}}
    real_cfg = open_clip.get_pretrained_cfg
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda name, tag: tags.get(tag) or real_cfg(name, tag))
    monkeypatch.setattr("open_clip.pretrained.download_pretrained",
                        lambda *a, **k: pytest.fail("open_clip was asked to download"))
    loaded = load_clip(TINY_CLIP, "cached")
    assert all(torch.equal(a, b) for a, b in zip(loaded.clip.state_dict().values(), source.clip.state_dict().values()))
    assert tuple(loaded.preprocess_cfg["mean"]) == (0.5, 0.5, 0.5)  # the tag's preprocessing, as by its tag
    with pytest.raises(FileNotFoundError, match=r"cirbench downloads nothing: download the Hugging Face repository "
                                                r"cirbench/absent once .*`hf download cirbench/absent`"):
        load_clip(TINY_CLIP, "absent")


def test_pretraining_lowers_the_contrastive_loss_and_feeds_synth_tiny(tmp_path, monkeypatch):
    colours = ["red", "green", "blue", "yellow", "black", "white"]
    rgb = [(220, 20, 20), (20, 200, 20), (20, 20, 220), (230, 230, 20), (10, 10, 10), (245, 245, 245)]
    pairs = []
    for name, value in zip(colours, rgb):
        path = tmp_path / f"{name}.png"
        Image.new("RGB", (64, 64), value).save(path)
        pairs.append((path, f"a {name} dress"))
    losses = []
    folder = pretrain_clip_backbone(pairs, tmp_path / "clip", steps=10, batch_size=6, seed=0, lr=2e-3,
                                    on_step=lambda step, loss: losses.append(loss))
    assert losses[-1] < 0.5 * losses[0]
    monkeypatch.setenv(SYNTH_CLIP_ENV, str(folder))
    model = build_model("clip_image_only:synth_tiny")
    with torch.no_grad():
        assert model.encode_candidates(_images(model)).shape == (4, 128)


# ---- zero-shot baselines -----------------------------------------------------------------------


def test_zero_shot_queries_use_image_text_or_their_normalised_sum():
    image_only, text_only, summed = (build_model(f"clip_{m}:test_tiny") for m in ("image_only", "text_only", "sum"))
    images = _images(image_only)
    with torch.no_grad():
        assert torch.equal(image_only.encode_query(images, TEXTS), image_only.encode_query(images, TEXTS[::-1]))
        assert torch.equal(text_only.encode_query(images, TEXTS), text_only.encode_query(images.flip(0), TEXTS))
        expected = F.normalize(F.normalize(summed.backbone.encode_image(images), dim=-1)
                               + F.normalize(summed.backbone.encode_text(TEXTS), dim=-1), dim=-1)
        assert torch.allclose(summed.encode_query(images, TEXTS), expected)
    assert image_only.stages == () and image_only.meta.scorer == "cosine"


# ---- CLIP4CIR ----------------------------------------------------------------------------------


def test_combiner_layers_follow_clip4cir():
    model = build_model("clip4cir:test_tiny")
    dim = model.backbone.embed_dim
    combiner = model.combiner
    assert combiner.text_projection[0].weight.shape == (4 * dim, dim)
    assert combiner.image_projection[0].weight.shape == (4 * dim, dim)
    assert combiner.mixer[0].weight.shape == (8 * dim, 8 * dim)
    assert combiner.output.weight.shape == (dim, 8 * dim)
    assert combiner.gate[1].weight.shape == (1, 8 * dim) and isinstance(combiner.gate[2], torch.nn.Sigmoid)
    assert all(layer.p == 0.5 for layer in combiner.modules() if isinstance(layer, torch.nn.Dropout))


def test_combiner_gate_mixes_text_and_image_residuals():
    combiner = clip4cir.Combiner(4, 16, 32).eval()
    image, text = torch.randn(3, 4), torch.randn(3, 4)
    with torch.no_grad():
        combiner.output.weight.zero_()
        combiner.output.bias.zero_()
        combiner.gate[1].bias.fill_(50.0)  # gate -> 1: pure text
        assert torch.allclose(combiner(image, text), F.normalize(text, dim=-1), atol=1e-5)
        combiner.gate[1].bias.fill_(-50.0)  # gate -> 0: pure image
        assert torch.allclose(combiner(image, text), F.normalize(image, dim=-1), atol=1e-5)


def _step(model, stage):
    model.set_trainable(stage)
    model.train()
    images = _images(model)
    batch = CIRBatch(images, TEXTS, images.flip(0), target_ids=["a", "b", "c", "d"])
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.training_losses(batch)["cir"].backward()
    optimizer.step()


def test_clip4cir_stages_train_their_own_parameters_and_switch_the_query():
    model = build_model("clip4cir:test_tiny")
    images = _images(model)
    with torch.no_grad():
        summed = F.normalize(model.backbone.encode_image(images) + model.backbone.encode_text(TEXTS), dim=-1)
        assert torch.allclose(model.encode_query(images, TEXTS), summed)  # before stage 2: the sum
    combiner_before = {k: v.clone() for k, v in model.combiner.state_dict().items()}
    clip_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}

    _step(model, "clip_finetune")
    assert all(torch.equal(v, model.combiner.state_dict()[k]) for k, v in combiner_before.items())
    assert not torch.equal(clip_before["clip.visual.proj"], model.backbone.clip.visual.proj)
    assert not model.backbone.training  # CLIP stays in eval mode, as in the public code

    clip_after_stage1 = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    _step(model, "combiner")
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in clip_after_stage1.items())
    assert not torch.equal(combiner_before["output.weight"], model.combiner.output.weight)
    model.eval()
    with torch.no_grad():
        fused = model.combiner(model.backbone.encode_image(images), model.backbone.encode_text(TEXTS))
        assert torch.allclose(model.encode_query(images, TEXTS), fused)


def test_clip4cir_checkpoint_keeps_the_stage_and_options(tmp_path):
    model = build_model("clip4cir:test_tiny", pad_ratio=1.5, dropout=0.2)
    model.set_trainable("combiner")
    model.eval().save_pretrained(tmp_path)
    reloaded = build_model("clip4cir:test_tiny", checkpoint=tmp_path)
    assert bool(reloaded.combiner_active) and reloaded.options.pad_ratio == 1.5 and reloaded.options.dropout == 0.2
    assert reloaded.checkpoint_hash() == model.checkpoint_hash()
    with pytest.raises(ValueError, match="unknown key"):
        build_model("clip4cir:test_tiny", projection=3)
    with pytest.raises(ValueError, match="does not train"):
        reloaded.training_losses(CIRBatch(_images(model), TEXTS, _images(model)), tasks=("ctr",))


def test_full_size_structures_build_offline_without_weights(monkeypatch):
    """`load_weights=False` with a pretrained tag resolves nothing: no hub, no file, no socket."""
    import socket

    import open_clip.factory
    import open_clip.pretrained

    def no_network(*args, **kwargs):
        raise AssertionError("load_clip(load_weights=False) tried to fetch something")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    for module in (open_clip.factory, open_clip.pretrained):
        for name in ("download_pretrained", "download_pretrained_from_hf", "download_pretrained_from_url"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, no_network)
    for name, size in (("RN50x4", 288), ("ViT-L-14", 224)):
        with torch.device("meta"):
            backbone = load_clip(name, "openai", load_weights=False, device="meta")
        assert backbone.image_size == size and backbone.model_cfg["quick_gelu"] is True
        assert type(backbone.clip.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"  # OpenAI's activation
        assert backbone.preprocess_cfg["mean"] == tuple(open_clip.get_pretrained_cfg(name, "openai")["mean"])
        assert {p.device.type for p in backbone.clip.parameters()} == {"meta"}
        assert sum(p.numel() for p in backbone.clip.parameters()) > 100_000_000
