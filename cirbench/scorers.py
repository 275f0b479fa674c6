"""The shared scorers: how a query embedding and a candidate embedding become one score, and what
the zoo's models implement their ``similarity`` with (``ScorerSimilarity``).

Each scorer splits into ``prepare_query`` / ``prepare_candidates`` (done once per embedding) and
``score_prepared`` (done per chunk), so the evaluator never re-normalises a gallery per chunk.
``cosine`` and ``multihead`` prepare to flat unit vectors whose inner product is the score: a flat
inner-product index (FAISS ``IndexFlatIP``) serves them. ``maxsim`` needs the token axis.

The evaluator ranks with the model's ``similarity``. When that is ``ScorerSimilarity``'s (the
scorer named in ``meta.scorer``), it prepares each gallery once with the scorer (the same scores,
``scorer_of``); a model that defines its own ``similarity`` is scored with it, chunk by chunk.

| scorer    | query     | candidate  | score                              |
|-----------|-----------|------------|------------------------------------|
| cosine    | [B, D]    | [N, D]     | cos(q, c)                          |
| multihead | [B, H, d] | [N, H, d]  | sum over heads of cos(q_h, c_h)    |
| maxsim    | [B, D]    | [N, T, D]  | max over T of q . c_t (normalised) |
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cirbench.registry import Registry

if TYPE_CHECKING:
    import torch

EPS = 1e-12


class Scorer:
    name: str = ""

    def prepare_query(self, q: "torch.Tensor") -> "torch.Tensor":
        raise NotImplementedError

    def prepare_candidates(self, c: "torch.Tensor") -> "torch.Tensor":
        raise NotImplementedError

    def score_prepared(self, q: "torch.Tensor", c: "torch.Tensor") -> "torch.Tensor":
        raise NotImplementedError

    def __call__(self, q: "torch.Tensor", c: "torch.Tensor") -> "torch.Tensor":
        """Scores [B, N], higher is better."""
        return self.score_prepared(self.prepare_query(q), self.prepare_candidates(c))


def _unit(x: "torch.Tensor") -> "torch.Tensor":
    import torch.nn.functional as F

    return F.normalize(x.float(), dim=-1, eps=EPS)


class CosineScorer(Scorer):
    name = "cosine"

    def prepare_query(self, q):
        _expect_rank(q, 2, "cosine query [B, D]")
        return _unit(q)

    def prepare_candidates(self, c):
        _expect_rank(c, 2, "cosine candidates [N, D]")
        return _unit(c)

    def score_prepared(self, q, c):
        return q @ c.T


class MultiHeadScorer(Scorer):
    """Sum of per-head cosines = inner product of the concatenated per-head unit vectors."""

    name = "multihead"

    def prepare_query(self, q):
        _expect_rank(q, 3, "multihead query [B, H, d]")
        return _unit(q).flatten(1)

    def prepare_candidates(self, c):
        _expect_rank(c, 3, "multihead candidates [N, H, d]")
        return _unit(c).flatten(1)

    def score_prepared(self, q, c):
        return q @ c.T


class MaxSimScorer(Scorer):
    """SPRC's score: the best of the candidate's T tokens for the (normalised) query vector."""

    name = "maxsim"

    def prepare_query(self, q):
        _expect_rank(q, 2, "maxsim query [B, D]")
        return _unit(q)

    def prepare_candidates(self, c):
        _expect_rank(c, 3, "maxsim candidates [N, T, D]")
        return _unit(c)

    def score_prepared(self, q, c):
        import torch

        n, t, d = c.shape
        return (q @ c.reshape(n * t, d).T).reshape(q.shape[0], n, t).amax(dim=-1) if n else torch.zeros(q.shape[0], 0)


def _expect_rank(x: "torch.Tensor", rank: int, what: str) -> None:
    if x.dim() != rank:
        raise ValueError(f"{what}: expected a rank-{rank} tensor, got shape {tuple(x.shape)}")


SCORERS: Registry[Scorer] = Registry("scorer")
SCORERS.register("cosine", CosineScorer(), description="cos(q, c)")
SCORERS.register("multihead", MultiHeadScorer(), description="sum over heads of cos(q_h, c_h)")
SCORERS.register("maxsim", MaxSimScorer(), description="max over candidate tokens of cos(q, c_t)")


def get_scorer(name: str) -> Scorer:
    return SCORERS.get(name)


class ScorerSimilarity:
    """A model's ``similarity`` as its scorer (``meta.scorer``) computes it: how the zoo's models
    implement it. The evaluator then prepares each gallery once (``scorer_of``)."""

    def similarity(self, q: "torch.Tensor", c: "torch.Tensor") -> "torch.Tensor":
        """[B, *q] x [N, *c] -> [B, N] scores of the scorer named in ``self.meta.scorer``."""
        return get_scorer(self.meta.scorer)(q, c)  # type: ignore[attr-defined]


def scorer_of(model: object) -> Scorer | None:
    """The scorer that computes ``model.similarity``, when it is ``ScorerSimilarity``'s; None when
    the model defines its own similarity (then only ``model.similarity`` knows the scores)."""
    method = getattr(model, "similarity", None)
    if getattr(method, "__func__", None) is ScorerSimilarity.similarity:
        return get_scorer(model.meta.scorer)  # type: ignore[attr-defined]
    return None
