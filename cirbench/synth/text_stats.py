"""How the FashionIQ-like vague texts of a world differ from detailed texts of the same pairs.

For each kind of text: average length in words, vocabulary size, the share of ground-truth
attribute changes the pair's texts state correctly (recall), the share of attribute claims that
are false (wrong colour names, backwards comparisons), and an attribute-oracle Recall@10 on the
val galleries: a ranker that sees every image's true attributes and the claims read from the
text. The oracle is the ceiling a perfect image model could reach with those texts; the same
oracle without text (image similarity alone) shows how much of that a text-blind model gets.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from cirbench.errors import DataError
from cirbench.synth.attributes import ATTRIBUTES, Garment
from cirbench.synth.mentions import Mention, mention_holds, parse_mentions
from cirbench.synth.world import FASHIONIQ_CATEGORIES, garment_of, load_ground_truth, pair_detailed_text, read_manifest

ORACLE_KS = (1, 10)


@dataclass
class Pair:
    category: str
    split: str
    reference: Garment
    target: Garment
    vague: list[str]
    detailed: list[str]
    gallery: list[Garment]


@dataclass
class TextStats:
    texts: int
    mean_words: float
    vocabulary: int
    change_recall: float  # changed attributes stated correctly / changed attributes
    wrong_claims: float  # false attribute claims / attribute claims
    claims_per_text: float
    oracle_recall_at_1: float  # val pairs only, percent
    oracle_recall_at_10: float


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def load_pairs(world_dir: Path, splits: tuple[str, ...] = ("train", "val")) -> list[Pair]:
    world_dir = Path(world_dir)
    seed = read_manifest(world_dir)["settings"]["seed"]
    garments = {r["image_id"]: garment_of(r) for r in load_ground_truth(world_dir) if r["source"] == "fashioniq"}
    pairs = []
    for category in FASHIONIQ_CATEGORIES:
        for split in splits:
            root = world_dir / "fashioniq"
            captions_path = root / "captions" / f"cap.{category}.{split}.json"
            try:
                entries = json.loads(captions_path.read_text())
                gallery = [
                    garments[i]
                    for i in json.loads((root / "image_splits" / f"split.{category}.{split}.json").read_text())
                ]
            except (OSError, json.JSONDecodeError, KeyError) as exc:
                raise DataError(captions_path, f"{category}/{split}", f"cannot read the split: {exc}") from None
            for index, entry in enumerate(entries):
                reference, target = garments[entry["candidate"]], garments[entry["target"]]
                detailed = pair_detailed_text(seed, category, split, index, reference, target)
                pairs.append(Pair(category, split, reference, target, list(entry["captions"]), [detailed], gallery))
    return pairs


def _claims(texts: list[str], category: str) -> list[Mention]:
    return [m for text in texts for m in parse_mentions(text, category)]


def _oracle_score(claims: list[Mention], reference: Garment, candidate: Garment) -> int:
    """Two points per true claim, one per unclaimed attribute left as in the reference."""
    claimed = {m.attribute for m in claims}
    kept = sum(getattr(candidate, a) == getattr(reference, a) for a in ATTRIBUTES if a not in claimed)
    return 2 * sum(mention_holds(m, reference, candidate) for m in claims) + kept


def oracle_hit_rates(claims: list[Mention], pair: Pair) -> list[float]:
    """For each k in ORACLE_KS, the chance that the target ranks in the top k, ties broken at
    random (the target itself is in the gallery)."""
    target_score = _oracle_score(claims, pair.reference, pair.target)
    scores = [_oracle_score(claims, pair.reference, g) for g in pair.gallery]
    higher = sum(s > target_score for s in scores)
    tied = sum(s == target_score for s in scores)
    return [min(1.0, max(0.0, (k - higher) / tied)) for k in ORACLE_KS]


def text_stats(pairs: list[Pair], kind: str) -> TextStats:
    """Statistics of one kind of text ("vague" or "detailed") over the pairs."""
    texts = [t for p in pairs for t in getattr(p, kind)]
    changes = hits = claims_total = wrong = 0
    oracle = []
    for pair in pairs:
        claims = _claims(getattr(pair, kind), pair.category)
        changed = pair.reference.differing(pair.target)
        true_claims = [m for m in claims if mention_holds(m, pair.reference, pair.target)]
        changes += len(changed)
        hits += len({m.attribute for m in true_claims} & set(changed))
        claims_total += len(claims)
        wrong += len(claims) - len(true_claims)
        if pair.split == "val":
            oracle.append(oracle_hit_rates(claims, pair))
    return TextStats(
        texts=len(texts),
        mean_words=sum(len(_words(t)) for t in texts) / max(1, len(texts)),
        vocabulary=len({w for t in texts for w in _words(t)}),
        change_recall=hits / max(1, changes),
        wrong_claims=wrong / max(1, claims_total),
        claims_per_text=claims_total / max(1, len(texts)),
        oracle_recall_at_1=100.0 * sum(o[0] for o in oracle) / max(1, len(oracle)),
        oracle_recall_at_10=100.0 * sum(o[1] for o in oracle) / max(1, len(oracle)),
    )


def image_only_oracle(pairs: list[Pair]) -> dict[str, float]:
    """The attribute oracle without any text (val pairs): candidates ranked by how many attributes
    they share with the reference. The share of the headroom image similarity alone takes."""
    rates = [oracle_hit_rates([], pair) for pair in pairs if pair.split == "val"]
    return {f"oracle_recall_at_{k}": 100.0 * sum(r[i] for r in rates) / max(1, len(rates))
            for i, k in enumerate(ORACLE_KS)}


def world_text_stats(world_dir: Path) -> dict:
    pairs = load_pairs(world_dir)
    return {
        "pairs": len(pairs),
        "vague": asdict(text_stats(pairs, "vague")),
        "detailed": asdict(text_stats(pairs, "detailed")),
        "image_only": image_only_oracle(pairs),
    }
