"""build-facap end to end on tiny real-format sources: output layout and manifest, the FACap reader
on ours and on the official layout, resuming after a crash mid-stage, failures retried."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from facap_fixtures import write_deepfashion_mm, write_fashion200k, write_folder

from cirbench.data.facap import load_facap
from cirbench.errors import DataError
from cirbench.facap.backends import Failure
from cirbench.facap.backends.offline import OfflineCaptioner
from cirbench.facap.build import FacapBuildConfig, SourceSpec, build_facap
from cirbench.facap.pipeline import PipelineSettings


@pytest.fixture
def sources(tmp_path) -> tuple[SourceSpec, ...]:
    folder = write_folder(tmp_path / "shop")
    return (SourceSpec("fashion200k", write_fashion200k(tmp_path / "f200k")),
            SourceSpec("deepfashion_mm", write_deepfashion_mm(tmp_path / "dfmm")),
            SourceSpec("folder", folder, folder / "meta.jsonl"))


def _config(out: Path, sources, **overrides) -> FacapBuildConfig:
    return FacapBuildConfig(out=out, sources=sources, clip_model="thumbnail",
                            settings=PipelineSettings(seed=1, embed_batch=4, progress=False), **overrides)


def _final_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.json")) if "work" not in p.parts}


def test_build_writes_the_release_layout_and_the_reader_loads_it(tmp_path, sources):
    out = tmp_path / "facap"
    manifest = build_facap(_config(out, sources))
    assert manifest["complete"] and manifest["counts"]["images"] == 24
    assert manifest["counts"]["triplets_per_category"] == {"coat": 3, "dress": 14, "skirt": 2, "top": 5}
    for relative, digest in manifest["files"].items():
        assert hashlib.sha256((out / relative).read_bytes()).hexdigest() == digest
    assert manifest["captioner"] == {"backend": "offline", "version": "offline_v1"}
    triplets = json.loads((out / "cir_triplets/top_train_triplets.json").read_text())
    assert set(triplets[0]) == {"candidate", "target", "captions"} and len(triplets[0]["captions"]) == 1
    loaded = load_facap(out)
    assert len(loaded) == 24 and all(t.reference_path.is_file() and t.target_path.is_file() for t in loaded)
    dress = next(t for t in loaded if t.reference_id == "fashion200k/women/dresses/casual/1001/1001_0.jpeg")
    assert dress.target_caption and dress.target_caption.startswith("A ")
    assert Path(dress.target_id).parent.name != "1001"  # never another view of the same product


def test_reader_loads_the_official_release_layout(tmp_path):
    release, images = tmp_path / "release", tmp_path / "images"
    for name in ("a.jpg", "b.jpg"):
        (images / "women").mkdir(parents=True, exist_ok=True)
        (images / "women" / name).write_bytes(b"x")
    (release / "cir_triplets").mkdir(parents=True)
    (release / "image_captions").mkdir()
    (release / "cir_triplets/dress_train_triplets.json").write_text(json.dumps(
        [{"candidate": "women/a.jpg", "target": "women/b.jpg", "captions": ["make it red"]}]))
    (release / "image_captions/dress_train_captions.json").write_text(json.dumps({"women/b.jpg": "A red dress."}))
    [triplet] = load_facap(release, image_root=images)
    assert (triplet.reference_path, triplet.texts, triplet.target_caption) == (images / "women/a.jpg", ("make it red",), "A red dress.")
    with pytest.raises(DataError, match="images not found"):
        load_facap(release)  # the paths are not relative to the release folder itself
    (release / "cir_triplets/dress_train_triplets.json").write_text(json.dumps([{"candidate": "../x.jpg", "target": "b", "captions": ["t"]}]))
    with pytest.raises(DataError, match="escapes the data root"):
        load_facap(release, image_root=images)


class CrashAfter(OfflineCaptioner):
    """The offline captioner, killed (KeyboardInterrupt) once it has answered ``limit`` requests."""

    def __init__(self, limit: int):
        super().__init__()
        self.left = limit

    def caption(self, requests):
        if self.left < len(requests):
            raise KeyboardInterrupt
        self.left -= len(requests)
        return super().caption(requests)


def test_a_build_killed_mid_stage_resumes_to_identical_files(tmp_path, sources, monkeypatch):
    monkeypatch.setattr("cirbench.facap.pipeline.STORE_CHUNK", 5)
    reference = tmp_path / "uninterrupted"
    build_facap(_config(reference, sources))
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        build_facap(_config(resumed, sources), captioner=CrashAfter(10))
    stored = (resumed / "work/captions.jsonl").read_text().splitlines()
    assert len(stored) == 10 and not (resumed / "manifest.json").exists()
    build_facap(_config(resumed, sources))
    assert _final_files(resumed) == _final_files(reference)
    assert len((resumed / "work/captions.jsonl").read_text().splitlines()) == 24  # nothing captioned twice


class FailsOnce(OfflineCaptioner):
    def caption(self, requests):
        return [Failure("HTTP 503") if "dfmm" in str(r.image_path) else text
                for r, text in zip(requests, super().caption(requests))]


def test_failed_captions_are_recorded_then_retried_by_the_next_run(tmp_path, sources):
    out = tmp_path / "facap"
    first = build_facap(_config(out, sources), captioner=FailsOnce())
    assert not first["complete"] and first["counts"]["unfinished"] == {"captions": 5, "modifications": 5}
    assert "skirt" not in first["counts"]["triplets_per_category"]
    second = build_facap(_config(out, sources))
    assert second["complete"] and second["counts"]["triplets"] == 24


def test_resuming_with_other_settings_is_refused(tmp_path, sources):
    out = tmp_path / "facap"
    build_facap(_config(out, sources[:1]))
    with pytest.raises(DataError, match=r"build.json: .*seed.*resume with the same command"):
        build_facap(FacapBuildConfig(out=out, sources=sources[:1], clip_model="thumbnail",
                                     settings=PipelineSettings(seed=2, embed_batch=4, progress=False)))
