"""The shared scorers: the identities the scorers module documents (multihead with one head is
cosine, maxsim with one token is cosine, multihead is an inner product of flat unit vectors) and
their shape checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cirbench.registry import RegistryError
from cirbench.scorers import SCORERS, get_scorer


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_multihead_with_one_head_equals_cosine(gen):
    q, c = torch.randn(5, 16, generator=gen), torch.randn(7, 16, generator=gen)
    multihead = get_scorer("multihead")(q.unsqueeze(1), c.unsqueeze(1))
    torch.testing.assert_close(multihead, get_scorer("cosine")(q, c))
    torch.testing.assert_close(multihead, F.cosine_similarity(q[:, None], c[None], dim=-1))


def test_maxsim_with_one_token_equals_cosine_on_normalised_inputs(gen):
    q = F.normalize(torch.randn(5, 16, generator=gen), dim=-1)
    c = F.normalize(torch.randn(7, 16, generator=gen), dim=-1)
    torch.testing.assert_close(get_scorer("maxsim")(q, c.unsqueeze(1)), get_scorer("cosine")(q, c))


def test_multihead_is_the_sum_of_per_head_cosines(gen):
    q, c = torch.randn(4, 12, 8, generator=gen), torch.randn(6, 12, 8, generator=gen)
    explicit = sum(F.cosine_similarity(q[:, None, h], c[None, :, h], dim=-1) for h in range(12))
    torch.testing.assert_close(get_scorer("multihead")(q, c), explicit)


def test_maxsim_is_the_best_token(gen):
    q, c = torch.randn(3, 8, generator=gen), torch.randn(5, 4, 8, generator=gen)
    per_token = torch.stack([get_scorer("cosine")(q, c[:, t]) for t in range(4)], dim=-1)
    torch.testing.assert_close(get_scorer("maxsim")(q, c), per_token.amax(-1))


def test_prepared_multihead_scores_are_inner_products_of_flat_vectors(gen):
    scorer = get_scorer("multihead")
    q, c = torch.randn(3, 12, 8, generator=gen), torch.randn(5, 12, 8, generator=gen)
    pq, pc = scorer.prepare_query(q), scorer.prepare_candidates(c)
    assert pq.shape == (3, 96) and pc.shape == (5, 96)
    torch.testing.assert_close(pq @ pc.T, scorer(q, c))


@pytest.mark.parametrize(
    "name, q_shape, c_shape, message",
    [
        ("cosine", (2, 4, 3), (5, 4), "cosine query"),
        ("cosine", (2, 4), (5, 4, 1), "cosine candidates"),
        ("multihead", (2, 12), (5, 12, 8), "multihead query"),
        ("multihead", (2, 12, 8), (5, 96), "multihead candidates"),
        ("maxsim", (2, 4, 8), (5, 4, 8), "maxsim query"),
        ("maxsim", (2, 8), (5, 8), "maxsim candidates"),
    ],
)
def test_wrong_ranks_are_refused_with_the_expected_shape(name, q_shape, c_shape, message):
    with pytest.raises(ValueError, match=message):
        get_scorer(name)(torch.zeros(q_shape), torch.zeros(c_shape))


def test_maxsim_on_an_empty_gallery_gives_an_empty_score_matrix():
    assert get_scorer("maxsim")(torch.ones(2, 8), torch.ones(0, 4, 8)).shape == (2, 0)


def test_unknown_scorer_names_the_close_match():
    assert set(SCORERS.names()) == {"cosine", "multihead", "maxsim"}
    with pytest.raises(RegistryError, match="Did you mean: multihead"):
        get_scorer("multihaed")
