"""Every option either acts or is refused: an option that a command would ignore in the mode it
runs in ends the command with one line naming the option and why, before anything is done."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cirbench.cli import app

runner = CliRunner()


@pytest.mark.parametrize("argv, option, why", [
    (["eval", "--all", "--data-root", "d", "--checkpoint", "c"], "--checkpoint", "--all evaluates every trained model"),
    (["eval", "--model", "clip_sum:test_tiny", "--dataset", "fashioniq", "--data-root", "d", "--zero-shot", "x"],
     "--zero-shot", "choose the models of --all"),
    (["doctor", "--out", "somewhere"], "--out", "only the GPU acceptance run (--gpu) uses it"),
    (["doctor", "--steps", "tests"], "--steps", "only the GPU acceptance run"),
    (["fetch", "fashioniq", "--root", "r", "--no-images", "--workers", "3"], "--workers", "--no-images downloads none"),
    (["train", "clip4cir:test_tiny", "--recipe", "r.yaml", "--dist-backend", "gloo"], "--dist-backend", "only under torchrun"),
    (["bench", "train", "--model", "clip4cir", "--backbone-dir", "b"], "--backbone-dir", "only with --size full"),
    (["synth-probe", "--world", "w", "--checkpoint", "c"], "--checkpoint", "a CIR model (--model)"),
    (["synth-probe", "--world", "w", "--model", "clip_sum:test_tiny", "--backbone", "clip"], "--backbone", "not the backbones"),
    (["build-facap", "--api-base", "http://localhost:8000/v1", "--out", "f"], "--api-base", "for the openai backend"),
    (["build-facap", "--captioner-model", "m", "--out", "f"], "--captioner-model", "the offline captioner has no model"),
    (["build-facap", "--generation-batch", "4", "--captioner", "openai", "--out", "f"], "--generation-batch", "transformers"),
    (["build-facap", "--fashion200k", "f200k", "--world", "w", "--out", "f"], "--world", "only when no source is given"),
    (["build-enhfiq", "--fashioniq", "fiq", "--world", "w", "--out", "e"], "--world", "only without --fashioniq"),
    (["build-enhfiq", "--max-new-tokens", "64", "--out", "e"], "--max-new-tokens", "generate no tokens"),
])
def test_an_option_that_would_be_ignored_is_refused(tmp_path, monkeypatch, argv, option, why):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, argv)
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert f"error: command line: {option}: not used here:" in text and why in text, text
    assert "Traceback" not in result.output and not list(tmp_path.iterdir())  # nothing made
