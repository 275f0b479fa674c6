"""Benchmarks by name. Each entry loads evaluation splits from a folder in FashionIQ layout:
``load(root, split="val", categories=None, missing="error") -> list[EvalSplit]``.

``subdir`` is where ``cirbench eval --all --data-root DIR`` looks for the benchmark under DIR.
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
