"""The demo's and the ablations' experiment plans as data: which recipe trains what, from what,
and which trained models answer which of the paper's questions.

A ``Training`` is a recipe plus a small delta (``--set`` overrides); a stage-2 training names the
training it starts from. Step counts are scaled per plan so the demo fits its time budget.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Training:
    key: str  # folder under <out>/train and the row label's stem
    model: str  # "name:variant"
    recipe: str  # under recipes/
    data: str  # "facap" | "fashioniq": which built dataset data.root points at
    steps: int | None  # optimizer steps at this plan's scale; None: the recipe's own epochs/steps
    init_from: str | None = None  # key of the training whose final model this one starts from
    overrides: tuple[str, ...] = ()
    label: str = ""  # table row
    evaluate: bool = True  # False: an intermediate stage that only feeds another training


@dataclass(frozen=True)
class Question:
    """One of the paper's findings: compare two trained models on the same queries."""

    title: str  # one of cirbench.report.findings.PAPER_QUESTIONS, or a question of the demo's own
    a: str  # training key (or zero-shot label) of side A (the paper's proposal)
    b: str  # side B (the alternative)


@dataclass(frozen=True)
class Plan:
    name: str
    trainings: tuple[Training, ...]
    zero_shot: tuple[tuple[str, str], ...]  # (label, spec)
    questions: tuple[Question, ...]
    data_size: tuple[tuple[float, str], ...]  # (fraction, training key): the data-size curve
    batch_size: int


def _fashionblip2(steps: dict[str, int], evaluate_stage1: bool = True) -> list[Training]:
    s1 = "fashionblip2/stage1_facap_tiny.yaml"
    return [
        Training("fblip2_s1", "fashionblip2:synth_tiny", s1, "facap", steps["s1"], label="FashionBLIP-2 (FACap only)",
                 evaluate=evaluate_stage1),
        Training("fblip2_s2", "fashionblip2:synth_tiny", "fashionblip2/stage2_fashioniq_tiny.yaml", "fashioniq",
                 steps["s2"], init_from="fblip2_s1", label="FashionBLIP-2 (FACap -> FIQ)"),
    ]


def _baselines(steps: dict[str, int], evaluate_stage1: bool = True) -> list[Training]:
    return [
        Training("clip4cir_s1", "clip4cir:synth_tiny", "clip4cir/stage1_tiny.yaml", "fashioniq", steps["clip"],
                 label="CLIP4CIR (stage 1)", evaluate=evaluate_stage1),
        Training("clip4cir_s2", "clip4cir:synth_tiny", "clip4cir/stage2_tiny.yaml", "fashioniq", steps["combiner"],
                 init_from="clip4cir_s1", label="CLIP4CIR"),
        Training("sprc", "sprc:synth_tiny", "sprc/fashioniq_tiny.yaml", "fashioniq", steps["sprc"], label="SPRC"),
    ]


def _ablations(steps: dict[str, int]) -> list[Training]:
    return [
        Training("fblip2_s2_nopre", "fashionblip2:synth_tiny", "fashionblip2/stage2_fashioniq_tiny.yaml", "fashioniq",
                 steps["s2"], overrides=("model.init_from=null",), label="FashionBLIP-2 (FIQ only, no FACap)"),
        Training("fblip2_s1_global", "fashionblip2:synth_tiny", "fashionblip2/ablations/global_matching_tiny.yaml",
                 "facap", steps["s1"], label="FashionBLIP-2 (FACap only, global matching)"),
        Training("fblip2_s1_noadapt", "fashionblip2:synth_tiny", "fashionblip2/ablations/no_adapters_tiny.yaml",
                 "facap", steps["s1"], label="FashionBLIP-2 (FACap only, no adapters)"),
        *(fraction_training(fraction, steps["s1"]) for fraction in DEMO_FRACTIONS),
    ]


def fraction_steps(fraction: float, steps: int | None) -> int | None:
    """Steps on ``fraction`` of FACap: the same number of epochs as on all of it, as the paper's
    data-size curve trains (at a fixed step count below one epoch, a bigger fraction would only
    mean fewer repeats). None: the recipe's epochs, which scale by themselves."""
    return None if steps is None else max(1, round(fraction * steps))


def fraction_training(fraction: float, steps: int | None, variant: str = "synth_tiny",
                      recipe: str = "fashionblip2/stage1_facap_tiny.yaml", extra: tuple[str, ...] = ()) -> Training:
    """FashionBLIP-2 stage 1 on a nested ``fraction`` of FACap (same seed: a smaller subset is
    inside every bigger one); ``fraction=1`` is the full stage-1 model."""
    if fraction == 1:
        return Training("fblip2_s1", f"fashionblip2:{variant}", recipe, "facap", steps, overrides=extra,
                        label="FashionBLIP-2 (FACap only)")
    return Training(f"fblip2_s1_f{100 * fraction:g}", f"fashionblip2:{variant}", recipe, "facap",
                    fraction_steps(fraction, steps), overrides=(f"data.fraction={fraction}", *extra),
                    label=f"FashionBLIP-2 ({100 * fraction:g}% of FACap)")


ZERO_SHOT = (("CLIP image only (zero-shot)", "clip_image_only:synth_tiny"),
             ("CLIP text only (zero-shot)", "clip_text_only:synth_tiny"),
             ("CLIP image + text (zero-shot)", "clip_sum:synth_tiny"))
TEXT_BLIND = ZERO_SHOT[0][0]  # the baseline that ignores the text: every trained model should beat it
MAIN_MODELS = (("fblip2_s2", "FashionBLIP-2 (FACap -> FIQ)"), ("sprc", "SPRC"), ("clip4cir_s2", "CLIP4CIR"))
# Does each trained model read the text? Paired against the baseline that cannot.
TEXT_QUESTIONS = tuple(Question(f"{label} vs the text-blind baseline", key, TEXT_BLIND) for key, label in MAIN_MODELS)


# Sized on two CPU cores, two processes of one torch thread (samples/s, batch 16): FashionBLIP-2
# stage 1 (CIR + CTR, adapters) ~44, stage 2 ~150 (frozen ViT tokens cached), SPRC ~80, CLIP4CIR
# ~110 / 250 (Combiner on the frozen CLIP). On the default world a FashionIQ-like stage needs a
# few thousand samples before it reads the texts, and learns more from them in batches of 16 than
# of 32 (FashionBLIP-2 FIQ-only, 3,200 samples: val R@10 10.8 against 5.8; the text-blind baseline
# 1.3, measured), so those stages get 200-300 steps of 16; the FACap stage and its ablations stay
# short (a longer one did not help the FashionIQ stage after it, measured).
FULL_STEPS = {"s1": 40, "s2": 300, "sprc": 300, "clip": 200, "combiner": 200}
QUICK_STEPS = {"s1": 20, "s2": 200, "sprc": 100, "clip": 100, "combiner": 50}
DEMO_FRACTIONS = (0.25, 0.5)  # with 1.0 (fblip2_s1): the data-size curve at small scale

FULL = Plan(
    name="full",
    trainings=tuple(_fashionblip2(FULL_STEPS) + _baselines(FULL_STEPS) + _ablations(FULL_STEPS)),
    zero_shot=ZERO_SHOT,
    questions=(
        Question("FACap pre-training vs none", "fblip2_s2", "fblip2_s2_nopre"),
        Question("multi-head vs global matching", "fblip2_s1", "fblip2_s1_global"),
        Question("adapters vs none", "fblip2_s1", "fblip2_s1_noadapt"),
        Question("data-size curve (largest vs smallest fraction)", "fblip2_s1", "fblip2_s1_f25"),
        *TEXT_QUESTIONS,
    ),
    data_size=((0.25, "fblip2_s1_f25"), (0.5, "fblip2_s1_f50"), (1.0, "fblip2_s1")),
    batch_size=16,
)

# The three models against the text-blind baseline; the intermediate stages are not evaluated.
QUICK = Plan(
    name="quick",
    trainings=tuple(_fashionblip2(QUICK_STEPS, evaluate_stage1=False) + _baselines(QUICK_STEPS, evaluate_stage1=False)),
    zero_shot=(ZERO_SHOT[0], ZERO_SHOT[2]),
    questions=TEXT_QUESTIONS,
    data_size=(),
    batch_size=16,
)
