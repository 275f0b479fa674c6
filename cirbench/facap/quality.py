"""Human quality study (paper Table 2) and automatic faithfulness on the synthetic world.

``quality-sheet``: N triplets sampled stratified by category into a CSV that raters fill (1-5 for
faithfulness, details, saliency) and a self-contained HTML page showing both images and the text.
``quality-report``: mean ± std per criterion over every rating of every filled sheet, one row per
dataset. With ground-truth attributes (synthetic world only), faithfulness is also scored
automatically: of the attribute values a text claims for the target, the share that are true
changes (precision), and of the true attribute changes, the share the text names (recall).
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from html import escape
from pathlib import Path
from typing import Iterable, Sequence

from cirbench.errors import DataError
from cirbench.facap.attribute_phrases import DIMENSIONS, canonical_value, find_mentions
from cirbench.files import data_url

CRITERIA = ("faithfulness", "details", "saliency")
SHEET_COLUMNS = ("item", "dataset", "category", "candidate", "target", "text", *CRITERIA, "candidate_path", "target_path")
THUMBNAIL_PX = 224


@dataclass(frozen=True)
class QualityItem:
    item: str
    dataset: str
    category: str
    candidate: str
    target: str
    text: str
    candidate_path: str
    target_path: str


def load_items(root: Path, split: str = "val", image_root: Path | None = None) -> list[QualityItem]:
    """Triplets of a FACap-layout folder, or of one split of a FashionIQ-layout folder."""
    root = Path(root)
    if (root / "cir_triplets").is_dir():
        from cirbench.data.facap import load_facap

        return [
            QualityItem(f"{t.category}/{i}", root.name, t.category, t.reference_id, t.target_id, " ".join(t.texts),
                        str(t.reference_path), str(t.target_path))
            for i, t in enumerate(load_facap(root, image_root=image_root))
        ]
    return _fashioniq_items(root, split)


def _fashioniq_items(root: Path, split: str) -> list[QualityItem]:
    from cirbench.data.fashioniq import find_categories, read_category
    from cirbench.data.images import index_image_folder
    from cirbench.eval.protocols import join_c1_and_c2

    index = index_image_folder(root / "images")
    items = []
    for category in find_categories(root, split):
        for a in read_category(root, category, split, require_target=True).annotations:
            if a.reference_id in index and a.target_id in index:
                items.append(QualityItem(f"{category}/{a.index}", root.name, category, a.reference_id, a.target_id,
                                         join_c1_and_c2(a.captions), str(index[a.reference_id]), str(index[a.target_id])))
    if not items:
        raise DataError(root, f"split {split}", "no triplet with both images on disk")
    return items


def stratified_sample(items: Sequence[QualityItem], n: int, seed: int = 0) -> list[QualityItem]:
    """``n`` items, each category's share proportional to its size (largest remainders)."""
    by_category: dict[str, list[QualityItem]] = defaultdict(list)
    for item in items:
        by_category[item.category].append(item)
    n = min(n, len(items))
    quotas = {c: n * len(group) / len(items) for c, group in sorted(by_category.items())}
    counts = {c: math.floor(q) for c, q in quotas.items()}
    for c in sorted(quotas, key=lambda c: (counts[c] - quotas[c], c))[: n - sum(counts.values())]:
        counts[c] += 1
    rng = random.Random(seed)
    return [item for c in sorted(by_category) for item in rng.sample(by_category[c], counts[c])]


def write_sheet(items: Sequence[QualityItem], out: Path) -> tuple[Path, Path]:
    """``out``.csv for the ratings and ``out``.html to look at; returns both paths."""
    out = Path(out)
    csv_path, html_path = out.with_suffix(".csv"), out.with_suffix(".html")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SHEET_COLUMNS)
        writer.writeheader()
        for item in items:
            writer.writerow({**asdict(item), **{c: "" for c in CRITERIA}})
    html_path.write_text(sheet_html(items), encoding="utf-8")
    return csv_path, html_path


def _data_url(path: str) -> str:
    from cirbench.data.images import open_rgb

    thumbnail = open_rgb(Path(path))
    thumbnail.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    thumbnail.save(buffer, format="JPEG", quality=85)
    return data_url(buffer.getvalue(), "image/jpeg")


def sheet_html(items: Sequence[QualityItem]) -> str:
    rows = "\n".join(
        f"<tr><td>{escape(i.item)}</td><td><img src='{_data_url(i.candidate_path)}' alt='reference'></td>"
        f"<td><img src='{_data_url(i.target_path)}' alt='target'></td><td class='text'>{escape(i.text)}</td>"
        + "<td></td>" * len(CRITERIA) + "</tr>"
        for i in items
    )
    header = "".join(f"<th>{c} (1-5)</th>" for c in CRITERIA)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>cirbench quality sheet</title>
<style>body{{font-family:sans-serif}} td{{vertical-align:top;padding:4px;border-bottom:1px solid #ccc}}
img{{max-width:{THUMBNAIL_PX}px}} td.text{{max-width:420px}}</style></head><body>
<h1>Quality sheet: {len(items)} triplets</h1>
<p>Rate each modification text from 1 (bad) to 5 (excellent) in the CSV file with the same item ids.
<b>Faithfulness</b>: what the text says is true of the target relative to the reference.
<b>Details</b>: the text is specific and fine-grained. <b>Saliency</b>: it names the most visible differences.</p>
<table><tr><th>item</th><th>reference</th><th>target</th><th>modification text</th>{header}</tr>
{rows}
</table></body></html>
"""


def read_ratings(sheet: Path) -> list[dict]:
    """Rows of a filled sheet; each rating a whole number 1-5 or blank."""
    with open(sheet, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for line_no, row in enumerate(rows, 2):
        for criterion in CRITERIA:
            value = (row.get(criterion) or "").strip()
            if value and value not in {"1", "2", "3", "4", "5"}:
                raise DataError(sheet, f"line {line_no} ({criterion})", f"rating must be 1-5 or blank, got {value!r}")
    return rows


@dataclass(frozen=True)
class CriterionSummary:
    mean: float | None
    std: float | None
    ratings: int

    def __str__(self) -> str:
        if self.mean is None:
            return "-"
        return f"{self.mean:.2f} ± {self.std:.2f}" if self.std is not None else f"{self.mean:.2f}"


def summarise_ratings(sheets: Sequence[Path]) -> dict[str, dict[str, CriterionSummary]]:
    """dataset -> criterion -> mean ± sample std over all ratings of all raters."""
    values: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for sheet in sheets:
        for row in read_ratings(sheet):
            for criterion in CRITERIA:
                if (row.get(criterion) or "").strip():
                    values[row["dataset"]][criterion].append(int(row[criterion]))
    return {dataset: {c: _summary(per[c]) for c in CRITERIA} for dataset, per in sorted(values.items())}


def _summary(ratings: list[int]) -> CriterionSummary:
    if not ratings:
        return CriterionSummary(None, None, 0)
    std = statistics.stdev(ratings) if len(ratings) > 1 else None
    return CriterionSummary(statistics.fmean(ratings), std, len(ratings))


# --- automatic faithfulness ---------------------------------------------------------------------

_REPLACED = re.compile(r"\b(?:instead of|rather than)\b(?:(?!\b(?:and|but|with)\b)[^,;.])*")


def target_claims(text: str) -> set[tuple[str, str]]:
    """(dimension, value) pairs the text states for the target; what follows "instead of" /
    "rather than" up to the next clause names the reference's value and is left out."""
    return set(find_mentions(_REPLACED.sub(" ", text.lower())))


@dataclass
class Faithfulness:
    claims: int = 0  # attribute values claimed for the target that differ from the reference's
    true_claims: int = 0  # ... of which the target really has
    changes: int = 0  # attributes whose ground-truth value differs between reference and target
    changes_named: int = 0  # ... named with the target's value

    def add(self, text: str, reference: dict[str, str], target: dict[str, str]) -> None:
        claims = {(d, v) for d, v in target_claims(text) if reference.get(d) != v}
        changed = {d for d, v in target.items() if reference.get(d) != v}
        self.claims += len(claims)
        self.true_claims += sum(target.get(d) == v for d, v in claims)
        self.changes += len(changed)
        self.changes_named += sum((d, target[d]) in claims for d in changed)

    @property
    def precision(self) -> float | None:
        return self.true_claims / self.claims if self.claims else None

    @property
    def recall(self) -> float | None:
        return self.changes_named / self.changes if self.changes else None


def ground_truth_file(path: Path) -> Path:
    """A world folder or its ``ground_truth/attributes.jsonl``."""
    path = Path(path)
    return path / "ground_truth" / "attributes.jsonl" if path.is_dir() else path


def read_ground_truth(path: Path) -> dict[Path, dict[str, str]]:
    """Resolved image file -> canonical attribute values (paths in the file are relative to the world)."""
    path = ground_truth_file(path)
    world = path.parent.parent
    truth = {}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if line.strip():
                entry = json.loads(line)
                if not isinstance(entry.get("path"), str) or not isinstance(entry.get("attributes"), dict):
                    raise DataError(path, f"line {line_no}", 'expected "path" and "attributes"')
                truth[(world / entry["path"]).resolve()] = {
                    d: canonical_value(d, v) for d, v in entry["attributes"].items() if d in DIMENSIONS and v is not None
                }
    return truth


def auto_faithfulness(rows: Iterable[dict], truth: dict[Path, dict[str, str]]) -> dict[str, Faithfulness]:
    """dataset -> faithfulness counts over the rows whose two images have ground truth (each
    triplet once, however many raters' sheets list it)."""
    scores: dict[str, Faithfulness] = defaultdict(Faithfulness)
    seen = set()
    for row in rows:
        reference, target = Path(row["candidate_path"]).resolve(), Path(row["target_path"]).resolve()
        key = (row["dataset"], row["item"])
        if key not in seen and reference in truth and target in truth:
            seen.add(key)
            scores[row["dataset"]].add(row["text"], truth[reference], truth[target])
    return dict(scores)
