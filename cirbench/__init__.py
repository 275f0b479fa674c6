"""cirbench: benchmark, evaluation toolkit and baseline zoo for fashion Composed Image Retrieval.

Importing the package is cheap on purpose: torch, transformers, open_clip and faiss are imported
only inside the functions that need them.
"""

__version__ = "0.1.0"
