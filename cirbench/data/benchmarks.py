"""Datasets by name, as strings (no reader is imported until used).

``DATASETS``: benchmarks; each entry loads evaluation splits from a folder in FashionIQ layout,
``load(root, split="val", categories=None, missing="error") -> list[EvalSplit]``; ``subdir`` is
where ``cirbench eval --all --data-root DIR`` looks for the benchmark under DIR.

``TRAIN_READERS``: a recipe's ``data.kind``; each entry reads training triplets,
``read(root, categories, missing=..., [image_root=...]) -> list[TrainTriplet]``.
"""

from cirbench.registry import Registry

DATASETS: Registry = Registry("dataset")
DATASETS.register(
    "fashioniq", "cirbench.data.fashioniq:load_eval_splits", subdir="fashioniq",
    description="FashionIQ (dress, shirt, toptee); protocol fashioniq/v1",
)
DATASETS.register(
    "enhfashioniq", "cirbench.data.fashioniq:load_enhanced_eval_splits", subdir="enhfashioniq",
    description="enhFashionIQ: FashionIQ val images re-annotated by the FACap pipeline (FashionIQ layout)",
)

TRAIN_READERS: Registry = Registry("training data kind")
TRAIN_READERS.register(
    "fashioniq", "cirbench.data.fashioniq:read_fashioniq_train",
    description="FashionIQ layout: two annotator texts per triplet (randomised in training)",
)
TRAIN_READERS.register(
    "facap", "cirbench.data.facap:load_facap",
    description="FACap layout: one detailed modification text per triplet, target captions for CTR",
)
