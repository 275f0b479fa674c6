"""Final files of a build, written from the stage stores in sorted order (byte-identical however
the build was interrupted), each atomically, and a manifest with their hashes.

FACap release layout (as the official release):
    cir_triplets/{cat}_train_triplets.json    [{"candidate": id, "target": id, "captions": [text]}]
    image_captions/{cat}_train_captions.json  {image id: caption}
    manifest.json                              sources, image roots, models, prompts, seed, counts, hashes

Image ids are ``<source>/<path under the source root>``; ``manifest["image_roots"]`` maps each
source to its folder, which is how ``cirbench.data.facap`` finds the files.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

from cirbench.facap.pipeline import PipelineResult
from cirbench.files import write_atomic

RELEASE_FORMAT = "facap-release/1"


def json_bytes(data) -> bytes:
    return (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def write_files(out: Path, files: dict[str, bytes]) -> dict[str, str]:
    """Write each file atomically; returns relative path -> sha256."""
    for relative, data in files.items():
        write_atomic(out / relative, data)
    return {relative: hashlib.sha256(data).hexdigest() for relative, data in sorted(files.items())}


def write_facap_release(out: Path, result: PipelineResult, manifest: dict) -> dict:
    triplets: dict[str, list[dict]] = defaultdict(list)
    captions: dict[str, dict[str, str]] = defaultdict(dict)
    for reference, target, text in result.triplets():
        triplets[reference.category].append({"candidate": reference.image_id, "target": target.image_id, "captions": [text]})
        for image in (reference, target):
            captions[reference.category][image.image_id] = result.captions[image.image_id]
    files = {}
    for category in sorted(triplets):
        files[f"cir_triplets/{category}_train_triplets.json"] = json_bytes(triplets[category])
        files[f"image_captions/{category}_train_captions.json"] = json_bytes(dict(sorted(captions[category].items())))
    counts = {
        "images": len(result.records),
        "paired": len(result.pairs),
        "triplets": sum(len(t) for t in triplets.values()),
        "triplets_per_category": {c: len(t) for c, t in sorted(triplets.items())},
        "image_caption_pairs": sum(len(c) for c in captions.values()),
        "unfinished": result.failures,
    }
    manifest = {"format": RELEASE_FORMAT, **manifest, "counts": counts, "complete": not any(result.failures.values()),
                "files": write_files(out, files)}
    write_atomic(out / "manifest.json", json_bytes(manifest))
    return manifest
