"""Applying a key map (``keymaps.py``) to an upstream state dict: every key accounted for.

Our model's state dict drives the mapping: each of our keys is made by the first rule matching it
from the upstream key(s) that rule names. The import stops with one line naming the key when an
upstream key a rule needs is missing, when an upstream key is neither used nor dropped on purpose,
when a tensor's shape does not fit, or when one of our keys has no rule and is not a new part of
the model (a head the upstream model does not have, drawn from the seed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from cirbench.errors import DataError
from cirbench.importers.keymaps import CLIP_FP16_ROUNDED, Dropped, KeyRule
from cirbench.importers.reading import UpstreamState


def _copy(tensors: Sequence[torch.Tensor], keys: Sequence[str]) -> torch.Tensor:
    return tensors[0]


def _q_zero_v(tensors: Sequence[torch.Tensor], keys: Sequence[str]) -> torch.Tensor:
    q_bias, v_bias = tensors
    return torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])


def _openai_fp16(tensors: Sequence[torch.Tensor], keys: Sequence[str]) -> torch.Tensor:
    """The value OpenAI's clip.load gives a weight on a GPU: float16 for convolutions, linear and
    attention weights (clip.model.convert_weights), unchanged for the rest."""
    tensor = tensors[0]
    if tensor.is_floating_point() and re.fullmatch(CLIP_FP16_ROUNDED, keys[0]):
        return tensor.half()
    return tensor


TRANSFORMS: dict[str, Callable[[Sequence[torch.Tensor], Sequence[str]], torch.Tensor]] = {
    "copy": _copy,
    "q_zero_v": _q_zero_v,
    "openai_fp16": _openai_fp16,
}


@dataclass
class MappedState:
    """Our tensors by key, what was dropped on purpose (upstream key -> reason) and our new keys."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)


@lru_cache(maxsize=None)
def _pattern(template: str) -> re.Pattern:
    """``a.{n}.{rest}`` -> a regex with named groups ({n} digits, {rest} any tail, others one segment)."""
    regex, position = "", 0
    for match in re.finditer(r"\{(\w+)\}", template):
        regex += re.escape(template[position:match.start()])
        name = match.group(1)
        regex += {"n": r"(?P<n>\d+)", "rest": r"(?P<rest>.+)"}.get(name, rf"(?P<{name}>[^.]+)")
        position = match.end()
    return re.compile(regex + re.escape(template[position:]))


def map_state(
    upstream: UpstreamState,
    expected: dict[str, torch.Tensor],
    rules: Sequence[KeyRule],
    dropped: Sequence[Dropped] = (),
    *,
    is_new: Callable[[str], bool] = lambda key: False,
    model: str = "the model",
) -> MappedState:
    """Our state dict made from ``upstream`` by ``rules``; every key checked.

    Args:
        upstream: the upstream tensors (and the file of each key, for the messages).
        expected: our model's state dict (names, shapes and dtypes to produce).
        rules: the key map (first matching rule wins for each of our keys).
        dropped: upstream keys left out on purpose, with the reason.
        is_new: our keys that no upstream key is expected to fill (new heads).
        model: our model's name, for the messages.
    """
    result = MappedState()
    used: set[str] = set()
    for ours, target in expected.items():
        rule, groups = _rule_for(ours, rules)
        if rule is None:
            if is_new(ours):
                result.new.append(ours)
                continue
            raise DataError("key map", ours, f"no upstream key maps to this key of {model} (cirbench/importers/keymaps.py)")
        sources = [template.format(**groups) for template in rule.upstream]
        for source in sources:
            if source not in upstream.tensors:
                raise DataError(_files(upstream), source, f"missing: {model} needs it for {ours}")
        tensor = TRANSFORMS[rule.transform]([upstream.tensors[s] for s in sources], sources)
        if tuple(tensor.shape) != tuple(target.shape):
            shapes = " + ".join(str(tuple(upstream.tensors[s].shape)) for s in sources)
            raise DataError(
                upstream.file_of(sources[0]), sources[0],
                f"shape {shapes} does not fit {model}'s {ours} {tuple(target.shape)} (another architecture?)",
            )
        result.tensors[ours] = tensor.to(target.dtype)
        used.update(sources)
    for key in upstream.tensors:
        if key in used:
            continue
        reason = next((d.reason for d in dropped if re.fullmatch(d.pattern, key)), None)
        if reason is None:
            raise DataError(upstream.file_of(key), key, f"unexpected: {model} has no counterpart for this key")
        result.dropped[key] = reason
    return result


def _rule_for(key: str, rules: Sequence[KeyRule]) -> tuple[KeyRule | None, dict[str, str]]:
    for rule in rules:
        match = _pattern(rule.ours).fullmatch(key)
        if match:
            return rule, match.groupdict()
    return None, {}


def _files(upstream: UpstreamState) -> str:
    return ", ".join(sorted({str(path) for path in upstream.origin.values()})) or "upstream checkpoint"
