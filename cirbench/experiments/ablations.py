"""The paper's ablations as plans: FACap data size (Figure 5), FashionBLIP-2 components (Table 5)
and FACap pre-training (Table 4).

Each ablation is a list of ``Training`` (a recipe plus a small delta), the rows of its paper
table (which trained model fills which cell) and the paired comparisons it answers. They run
through the same code as the demo (``runner.run_trainings``: train from recipes, evaluate every
model on FashionIQ and enhFashionIQ); trainings that are the same experiment keep the same key and
label in every plan, the demo's included, so one run folder serves them all and nothing is
trained twice.

Which recipe plays which part at which size is the one table ``RECIPE_SETS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cirbench.errors import DataError
from cirbench.experiments.plan import FULL, FULL_STEPS, Question, Training, fraction_training
from cirbench.experiments.runner import BENCHMARKS, Log, run_trainings
from cirbench.report.findings import PAPER_QUESTIONS
from cirbench.report.paper_tables import DATA_SIZE, TABLE4, TABLE5, Layout, MeasuredRow

PRETRAINING_QUESTION, MATCHING_QUESTION, ADAPTERS_QUESTION, DATA_SIZE_QUESTION = PAPER_QUESTIONS
TASKS_QUESTION = "CIR+CTR vs CIR only"


@dataclass(frozen=True)
class RecipeSet:
    """The recipes (under recipes/) and model variant of one size."""

    variant: str
    fblip2_stage1: str  # FACap, L_CIR + L_CTR, adapters, multi-head matching
    fblip2_cir_only: str  # the same with L_CIR only (Table 5's first three rows start here)
    fblip2_stage2: str  # FashionIQ fine-tuning, from a stage-1 model
    sprc_facap: str  # SPRC pre-trained on FACap
    sprc_fashioniq: str


RECIPE_SETS = {
    "tiny": RecipeSet("synth_tiny", "fashionblip2/stage1_facap_tiny.yaml", "fashionblip2/ablations/cir_only_tiny.yaml",
                      "fashionblip2/stage2_fashioniq_tiny.yaml", "sprc/facap_pretrain_tiny.yaml", "sprc/fashioniq_tiny.yaml"),
    "vitg": RecipeSet("vitg", "fashionblip2/stage1_facap_vitg.yaml", "fashionblip2/ablations/cir_only_vitg.yaml",
                      "fashionblip2/stage2_fashioniq_vitg.yaml", "sprc/facap_pretrain_vitg.yaml", "sprc/fashioniq_vitg.yaml"),
}
# Tiny: the demo's full-plan lengths and batch, so a demo run folder's trainings are reused as they
# are; paper size: the recipes' own epochs and batch.
DEFAULT_STEPS = {"tiny": (FULL_STEPS["s1"], FULL_STEPS["s2"]), "vitg": (None, None)}
DEFAULT_BATCH_SIZE = {"tiny": FULL.batch_size, "vitg": None}
PRETRAINING_MODELS = ("fashionblip2", "sprc")


@dataclass(frozen=True)
class Scale:
    """The size an ablation runs at: its recipes, each stage's optimizer steps (None: the
    recipe's epochs) and the seed of every training (so also of the nested data subsets)."""

    size: str  # a key of RECIPE_SETS
    s1_steps: int | None
    s2_steps: int | None
    seed: int = 0

    @property
    def recipes(self) -> RecipeSet:
        return RECIPE_SETS[self.size]


@dataclass(frozen=True)
class Ablation:
    layout: Layout
    trainings: tuple[Training, ...]
    rows: tuple[MeasuredRow, ...]
    questions: tuple[Question, ...]  # training keys, A the paper's proposal
    curve: tuple[tuple[float, str], ...] = ()  # (fraction, training key): the data-size curve

    def label(self, key: str) -> str:
        training = next(t for t in self.trainings if t.key == key)
        return training.label or training.key


def _training(scale: Scale, key: str, recipe: str, stage: int, label: str, *, model: str = "fashionblip2",
              init_from: str | None = None, overrides: Sequence[str] = ()) -> Training:
    """Stage 1 trains on FACap, stage 2 on FashionIQ."""
    data, steps = ("facap", scale.s1_steps) if stage == 1 else ("fashioniq", scale.s2_steps)
    return Training(key, f"{model}:{scale.recipes.variant}", recipe, data, steps, init_from,
                    (*overrides, f"train.seed={scale.seed}"), label)


# ---- data size (Figure 5) --------------------------------------------------------------------


def data_size(fractions: Sequence[float], scale: Scale) -> Ablation:
    """FashionBLIP-2 stage 1 on nested fractions of FACap (one seed: each subset holds the smaller
    ones), each for the same number of epochs (``plan.fraction_steps``)."""
    fractions = sorted(fractions)
    trainings = tuple(_fraction_training(f, scale) for f in fractions)
    rows = tuple(MeasuredRow((f"{100 * f:g}%",), {c.key: t.label for c in DATA_SIZE.columns})
                 for f, t in zip(fractions, trainings))
    questions = (Question(DATA_SIZE_QUESTION, trainings[-1].key, trainings[0].key),) if len(trainings) > 1 else ()
    curve = tuple((f, t.key) for f, t in zip(fractions, trainings))
    return Ablation(DATA_SIZE, trainings, rows, questions, curve)


def _fraction_training(fraction: float, scale: Scale) -> Training:
    """The demo's fraction trainings (same keys, same epochs per fraction), at this scale."""
    return fraction_training(fraction, scale.s1_steps, scale.recipes.variant, scale.recipes.fblip2_stage1,
                             (f"train.seed={scale.seed}",))


# ---- components (Table 5) --------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    settings: tuple[str, str, str]  # as Table 5 prints them: training tasks, adapter, matching
    key_suffix: str  # "" for the full stage-1 recipe
    overrides: tuple[str, ...]  # the delta on the CIR-only recipe (FashionBlip2Options)


COMPONENTS = (
    Component(("CIR", "no", "global"), "_cir_noadapt_global",
              ("model.overrides.use_adapters=false", "model.overrides.matching=global")),
    Component(("CIR", "yes", "global"), "_cir_global", ("model.overrides.matching=global",)),
    Component(("CIR", "yes", "multihead"), "_cir", ()),
    Component(("CIR+CTR", "yes", "multihead"), "", ()),
)
# (question, A, B) as indices into COMPONENTS: each pair differs in the one component asked about
COMPONENT_QUESTIONS = ((MATCHING_QUESTION, 2, 1), (ADAPTERS_QUESTION, 1, 0), (TASKS_QUESTION, 3, 2))


def components(scale: Scale, *, fine_tune: bool = True) -> Ablation:
    """Table 5's four settings, each after stage 1 (no FT) and, with ``fine_tune``, after stage 2 (FT)."""
    trainings, rows = [], []
    for component in COMPONENTS:
        stage1 = _component_training(component, scale, fine_tuned=False)
        stage2 = _component_training(component, scale, fine_tuned=True, init_from=stage1.key)
        trainings += [stage1, stage2] if fine_tune else [stage1]
        labels = {"no_ft_fiq": stage1.label, "no_ft_enhfiq": stage1.label}
        if fine_tune:
            labels |= {"ft_fiq": stage2.label, "ft_enhfiq": stage2.label}
        rows.append(MeasuredRow(component.settings, labels))
    stages = ("s1", "s2") if fine_tune else ("s1",)
    questions = tuple(Question(title, f"fblip2_{s}{COMPONENTS[a].key_suffix}", f"fblip2_{s}{COMPONENTS[b].key_suffix}")
                      for s in stages for title, a, b in COMPONENT_QUESTIONS)
    return Ablation(TABLE5, tuple(trainings), tuple(rows), questions)


def _component_training(component: Component, scale: Scale, *, fine_tuned: bool, init_from: str | None = None) -> Training:
    stage = "s2" if fine_tuned else "s1"
    key = f"fblip2_{stage}{component.key_suffix}"
    trained_on = "FACap -> FIQ" if fine_tuned else "FACap only"
    if not component.key_suffix:  # the full recipe: the demo's and Table 4's model, under their labels
        label = f"FashionBLIP-2 ({trained_on})"
    else:
        tasks, adapter, matching = component.settings
        adapters = "adapters" if adapter == "yes" else "no adapters"
        label = f"FashionBLIP-2 ({tasks}, {adapters}, {matching} matching; {trained_on})"
    if fine_tuned:
        return _training(scale, key, scale.recipes.fblip2_stage2, 2, label, init_from=init_from)
    recipe = scale.recipes.fblip2_cir_only if component.settings[0] == "CIR" else scale.recipes.fblip2_stage1
    return _training(scale, key, recipe, 1, label, overrides=component.overrides)


# ---- pre-training (Table 4) ------------------------------------------------------------------


@dataclass(frozen=True)
class WithAndWithout:
    """One model of Table 4: FashionIQ fine-tuning after FACap pre-training, and without it."""

    name: str  # as Table 4 prints the model
    with_facap: tuple[Training, ...]  # FACap pre-training, then the fine-tuning (last)
    without: Training  # the same fine-tuning from the model's usual start


def pretraining(scale: Scale, models: Sequence[str] = PRETRAINING_MODELS) -> Ablation:
    """Each model fine-tuned on FashionIQ with and without FACap pre-training first."""
    unknown = sorted(set(models) - set(PRETRAINING_MODELS))
    if unknown or not models:
        raise DataError("--models", ",".join(models), f"choose among {', '.join(PRETRAINING_MODELS)}")
    builders = {"fashionblip2": _fashionblip2_pretraining, "sprc": _sprc_pretraining}
    trainings, rows, questions = [], [], []
    for model in (m for m in PRETRAINING_MODELS if m in models):
        pair = builders[model](scale)
        finetuned = pair.with_facap[-1]
        trainings += [*pair.with_facap, pair.without]
        rows += [MeasuredRow((pair.name, "no", "yes"), _every_column(TABLE4, pair.without.label)),
                 MeasuredRow((pair.name, "yes", "yes"), _every_column(TABLE4, finetuned.label))]
        questions.append(Question(PRETRAINING_QUESTION, finetuned.key, pair.without.key))
    return Ablation(TABLE4, tuple(trainings), tuple(rows), tuple(questions))


def _every_column(layout: Layout, label: str) -> dict[str, str]:
    return {column.key: label for column in layout.columns}


def _fashionblip2_pretraining(scale: Scale) -> WithAndWithout:
    recipes = scale.recipes
    stage1 = _training(scale, "fblip2_s1", recipes.fblip2_stage1, 1, "FashionBLIP-2 (FACap only)")
    stage2 = _training(scale, "fblip2_s2", recipes.fblip2_stage2, 2, "FashionBLIP-2 (FACap -> FIQ)", init_from="fblip2_s1")
    without = _training(scale, "fblip2_s2_nopre", recipes.fblip2_stage2, 2, "FashionBLIP-2 (FIQ only, no FACap)",
                        overrides=("model.init_from=null",))
    return WithAndWithout("FashionBLIP-2", (stage1, stage2), without)


def _sprc_pretraining(scale: Scale) -> WithAndWithout:
    recipes = scale.recipes
    pretrain = _training(scale, "sprc_facap", recipes.sprc_facap, 1, "SPRC (FACap only)", model="sprc")
    finetune = _training(scale, "sprc_facap_fiq", recipes.sprc_fashioniq, 2, "SPRC (FACap -> FIQ)", model="sprc",
                         init_from="sprc_facap")
    without = _training(scale, "sprc", recipes.sprc_fashioniq, 2, "SPRC", model="sprc")
    return WithAndWithout("SPRC", (pretrain, finetune), without)


# ---- running and reporting -------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """What the ablation trains and evaluates on: a synthetic world (default: the cached default
    world) or a real data folder (``runner.real_data``)."""

    world: Path | None = None
    data_root: Path | None = None


def run_ablation(
    ablation: Ablation, out: Path, scale: Scale, where: Where = Where(), *, batch_size: int | None = None,
    threads: int = 1, device: str = "cpu", progress: bool = True, log: Log = print, precision: str = "fp32",
) -> dict:
    """Train and evaluate ``ablation`` into ``out`` (reusing what is done; evaluation at ``precision``),
    then write its reports."""
    run = run_trainings(ablation.trainings, out, world=where.world, data_root=where.data_root, batch_size=batch_size,
                        seed=scale.seed, threads=threads, device=device, progress=progress, log=log,
                        precision=precision)
    notes = [_scale_note(scale, where, batch_size)]
    written = write_ablation_reports(ablation, run.results, notes=notes, log=log)
    return {**written, "errors": run.errors}


def _scale_note(scale: Scale, where: Where, batch_size: int | None) -> str:
    steps = ("the recipes' epochs" if scale.s1_steps is None and scale.s2_steps is None
             else f"{scale.s1_steps or 'recipe'} stage-1 / {scale.s2_steps or 'recipe'} stage-2 steps")
    batch = f"batch {batch_size}" if batch_size else "the recipes' batch size"
    source = f"data from {where.data_root}" if where.data_root else "the synthetic world's FACap-style and FashionIQ-like sets"
    note = f"measured: {scale.recipes.variant} models on {source}, {steps}, {batch}, seed {scale.seed}"
    if where.data_root is None:
        note += "; reported: the paper's (ViT-g, real FACap and FashionIQ), so compare directions, not values"
    return note


def write_ablation_reports(ablation: Ablation, results: Path, *, notes: Sequence[str] = (), log: Log = print) -> dict:
    """The paper table (printed, and as .txt/.md/.csv/.tex), the Table-3 tables of the run folder,
    the paired findings, and for the data-size ablation the curve (PNG and PDF); what the HTML
    report shows is recorded in the folder's report plan."""
    from rich.console import Console

    from cirbench.files import write_atomic
    from cirbench.report.findings import format_findings
    from cirbench.report.html import write_html_report
    from cirbench.report.report_plan import (
        FindingsSpec,
        PaperTableSpec,
        build_findings,
        build_paper_tables,
        record_plan,
    )
    from cirbench.report.table_formats import print_wide, to_rich, write_table, write_tables
    from cirbench.report.tables import build_tables
    from cirbench.results import read_results_folder

    records, ranks, errors = read_results_folder(results)
    tables = build_tables(records, ranks, ci=True, errors=errors)
    write_tables(tables, results / "tables", ci=True)
    paper_spec = PaperTableSpec(ablation.layout.name, tuple(ablation.rows), tuple(notes))
    [paper] = build_paper_tables([paper_spec], tables)
    console = Console()
    print_wide(to_rich(paper, ci=True), console)
    written = {"table": write_table(paper, results / "tables", ci=True)}
    written["plots"] = _curve(ablation, tables, results / "plots")
    titles = tuple(dict.fromkeys(q.title for q in ablation.questions))
    questions = tuple((q.title, ablation.label(q.a), ablation.label(q.b)) for q in ablation.questions)
    findings_spec = FindingsSpec(f"findings_{ablation.layout.name}", questions, titles, BENCHMARKS)
    findings = build_findings(findings_spec, ranks)
    if titles:
        text = format_findings(findings, titles)
        written["findings"] = write_atomic(results / f"{findings_spec.name}.txt", text)
        console.print(text, markup=False, highlight=False)
    record_plan(results, paper_tables=[paper_spec], findings=[findings_spec] if titles else [])
    written["report"] = write_html_report(results, results / "report.html", title=f"cirbench ablations ({results})")
    log(f"results: {results}/results.jsonl\ntables: {results / 'tables'}/{ablation.layout.name}.*\n"
        f"report: {written['report']}")
    return written


def _curve(ablation: Ablation, tables, out_dir: Path) -> list[Path]:
    from cirbench.report.plots import curve_points, plot_data_size_curve

    benchmarks = sorted((t for t in tables if t.dataset in BENCHMARKS), key=lambda t: BENCHMARKS.index(t.dataset))
    points = []
    for fraction, key in ablation.curve:
        label = ablation.label(key)
        for table in benchmarks:
            if any(row.label == label for row in table.rows):  # a failed evaluation leaves a gap, not a crash
                points += curve_points(fraction, [table], model=label)
    return plot_data_size_curve(points, out_dir / "data_size") if points else []
