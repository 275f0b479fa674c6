"""The FACap data-size curve (the paper's Figure 5): average recall against the fraction of the
FACap-style set a model was pre-trained on, one panel per benchmark, with bootstrap bands.

The input is a flat list of ``CurvePoint`` (fraction, dataset, metric, value, interval), so any
runner can feed it; ``curve_points`` makes them from the Table-3 tables of one run (the averages
and their intervals come from ``cirbench.report.tables``, never recomputed here). Metrics are the
table's column keys: ``avg_r10``, ``avg_r50`` (means over categories) and ``avg`` (the headline).

Output is deterministic: the figure is drawn without pyplot's global state, and the PNG and PDF
carry no software version or creation date, so the same points give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from cirbench.report.table_model import Row
    from cirbench.report.tables import BenchmarkTable

# Fixed metadata: no creation date or software version, so reruns write identical files.
PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}
# metric -> (marker, line style, colour): the same in every panel, so one legend serves all
METRIC_STYLES = {"avg_r10": ("o", "-", "C0"), "avg_r50": ("s", "--", "C1"), "avg": ("D", "-.", "C2")}
OTHER_STYLE = ("^", ":", "C3")


@dataclass(frozen=True)
class CurvePoint:
    fraction: float  # of the FACap-style training set, in (0, 1]
    dataset: str  # benchmark, one panel each
    metric: str  # "avg_r10", "avg_r50" or "avg" (headline)
    value: float  # percent
    ci_low: float | None = None
    ci_high: float | None = None


def metric_label(metric: str) -> str:
    if metric == "avg":
        return "headline (mean of R@10, R@50)"
    return f"mean R@{metric.removeprefix('avg_r')}"


def curve_points(fraction: float, tables: Sequence["BenchmarkTable"], *, model: str | None = None) -> list[CurvePoint]:
    """The average-recall cells of one run's tables as points at ``fraction``.

    ``model`` is the table row label to take; without it each table must hold exactly one
    measured row (a data-size run evaluates one model).
    """
    points = []
    for table in tables:
        row = _measured_row(table, model)
        for key in [f"avg_r{k}" for k in table.ks] + ["avg"]:
            cell = row.cells.get(key)
            if cell is not None and cell.value is not None:
                points.append(CurvePoint(fraction, table.dataset, key, cell.value, cell.ci_low, cell.ci_high))
    return points


def _measured_row(table: "BenchmarkTable", model: str | None) -> "Row":
    measured = [row for row in table.rows if row.source == "measured"]
    chosen = [row for row in measured if model is None or row.label == model]
    if len(chosen) != 1:
        labels = ", ".join(row.label for row in measured) or "none"
        wanted = f"model {model!r}" if model else "exactly one measured row"
        raise ValueError(f"table {table.title}: expected {wanted}; measured rows: {labels}")
    return chosen[0]


def plot_data_size_curve(points: Sequence[CurvePoint], out_stem: str | Path) -> list[Path]:
    """Draw the curve and write ``<out_stem>.png`` and ``<out_stem>.pdf``; returns both paths."""
    from matplotlib.figure import Figure

    by_dataset = _group(points)
    # one panel is still wide enough for the legend's single row
    figure = Figure(figsize=(max(6.4, 4.2 * len(by_dataset)), 3.6), layout="constrained")
    axes = figure.subplots(1, len(by_dataset), squeeze=False)[0]
    for ax, (dataset, by_metric) in zip(axes, by_dataset.items()):
        _draw_panel(ax, dataset, by_metric)
    axes[0].set_ylabel("recall (%)")
    handles, labels = _unique_legend(axes)
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize="small")
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = (out_stem.with_name(f"{out_stem.name}{suffix}") for suffix in (".png", ".pdf"))
    figure.savefig(png, dpi=150, metadata=PNG_METADATA)
    figure.savefig(pdf, metadata=PDF_METADATA)
    return [png, pdf]


def _group(points: Sequence[CurvePoint]) -> dict[str, dict[str, list[CurvePoint]]]:
    """{dataset: {metric: points sorted by fraction}}, datasets in order of first appearance;
    refuses an empty or ambiguous input."""
    if not points:
        raise ValueError("no points to plot")
    grouped: dict[str, dict[str, list[CurvePoint]]] = {}
    for point in points:
        if not 0 < point.fraction <= 1:
            raise ValueError(f"{point.dataset} {point.metric}: fraction {point.fraction} is not in (0, 1]")
        series = grouped.setdefault(point.dataset, {}).setdefault(point.metric, [])
        if any(p.fraction == point.fraction for p in series):
            raise ValueError(f"{point.dataset} {point.metric}: two points at fraction {point.fraction}")
        series.append(point)
    return {
        dataset: {metric: sorted(metrics[metric], key=lambda p: p.fraction) for metric in sorted(metrics, key=_metric_order)}
        for dataset, metrics in grouped.items()
    }


def _metric_order(metric: str) -> tuple[int, str]:
    known = list(METRIC_STYLES)
    return (known.index(metric) if metric in known else len(known), metric)


def _unique_legend(axes) -> tuple[list, list[str]]:
    """One legend entry per metric across panels (panels may lack a metric)."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    return list(entries.values()), list(entries)


def _draw_panel(ax: "Axes", dataset: str, by_metric: dict[str, list[CurvePoint]]) -> None:
    fractions = sorted({p.fraction for series in by_metric.values() for p in series})
    for metric, series in by_metric.items():
        marker, line, colour = METRIC_STYLES.get(metric, OTHER_STYLE)
        x = [100 * p.fraction for p in series]
        ax.plot(x, [p.value for p in series], marker=marker, linestyle=line, color=colour, label=metric_label(metric))
        banded = [p for p in series if p.ci_low is not None and p.ci_high is not None]
        if banded:
            band_x = [100 * p.fraction for p in banded]
            lows, highs = [p.ci_low for p in banded], [p.ci_high for p in banded]
            ax.fill_between(band_x, lows, highs, color=colour, alpha=0.18, linewidth=0)
    ax.set_title(dataset)
    ax.set_xlabel("FACap-style data used (%)")
    ax.set_xticks([100 * f for f in fractions], [f"{100 * f:g}%" for f in fractions])
    ax.grid(alpha=0.3)
