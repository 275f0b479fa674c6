"""build-enhfiq: one triplet per FashionIQ val image, in FashionIQ layout, read by the FashionIQ reader."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest

from cirbench.data.fashioniq import load_enhanced_eval_splits
from cirbench.facap.embedding import ThumbnailEmbedder, unit_rows
from cirbench.facap.enhfiq import EnhFiqBuildConfig, build_enhfiq
from cirbench.facap.pipeline import PipelineSettings


class IdHashEmbedder:
    """Deterministic vectors from the file names: pairing without decoding any image."""

    name = "id-hash-8"

    def __call__(self, paths):
        rows = [np.random.default_rng(zlib.crc32(Path(p).name.encode())).standard_normal(8) for p in paths]
        return unit_rows(np.stack(rows))


def _settings() -> PipelineSettings:
    return PipelineSettings(seed=0, embed_batch=512, progress=False)


def test_enhfiq_on_a_world_is_evaluated_by_the_fashioniq_reader(tmp_path):
    from cirbench.synth.presets import resolve_knobs
    from cirbench.synth.world import write_world

    world = tmp_path / "world"
    write_world(world, "tiny", 0, resolve_knobs("tiny"), workers=1)
    out = tmp_path / "enh"
    manifest = build_enhfiq(EnhFiqBuildConfig(fashioniq=world / "fashioniq", out=out, clip_model="thumbnail", settings=_settings()))
    splits = load_enhanced_eval_splits(out)
    for split in splits:
        gallery = json.loads((world / f"fashioniq/image_splits/split.{split.category}.val.json").read_text())
        assert split.gallery == gallery and [q.reference_id for q in split.queries] == sorted(gallery)
        assert all(len(q.captions) == 1 and q.target_id != q.reference_id for q in split.queries)
    assert manifest["complete"] and manifest["counts"]["triplets"] == sum(len(s.queries) for s in splits)
    assert (out / "images").is_symlink()


def test_real_val_split_gives_15536_triplets(real_fashioniq, tmp_path):
    root = tmp_path / "fashioniq"
    (root / "images").mkdir(parents=True)
    for folder in ("captions", "image_splits"):
        (root / folder).symlink_to(real_fashioniq / folder)  # the real files, read in place
    stand_in = tmp_path / "stand_in.png"
    stand_in.touch()  # the embedder never opens images; every val image is a link to one empty file
    ids = {i for c in ("dress", "shirt", "toptee") for i in json.loads((real_fashioniq / f"image_splits/split.{c}.val.json").read_text())}
    for image_id in ids:  # a few images are in two categories' galleries
        os.link(stand_in, root / "images" / f"{image_id}.png")
    out = tmp_path / "enh"
    manifest = build_enhfiq(EnhFiqBuildConfig(fashioniq=root, out=out, categories=("dress", "shirt", "toptee"), settings=_settings()),
                            embedder=IdHashEmbedder())
    assert manifest["counts"]["triplets_per_category"] == {"dress": 3817, "shirt": 6346, "toptee": 5373}
    assert manifest["counts"]["triplets"] == 15_536 and manifest["complete"]


def test_missing_val_images_are_named(tmp_path):
    root = tmp_path / "fiq"
    (root / "image_splits").mkdir(parents=True)
    (root / "captions").mkdir()
    (root / "images").mkdir()
    (root / "image_splits/split.dress.val.json").write_text('["a", "b"]')
    (root / "captions/cap.dress.val.json").write_text("[]")
    from cirbench.errors import DataError

    with pytest.raises(DataError, match=r"dress val: 2 of 2 gallery images missing \(first: a\)"):
        build_enhfiq(EnhFiqBuildConfig(fashioniq=root, out=tmp_path / "o", settings=_settings()), embedder=ThumbnailEmbedder())
