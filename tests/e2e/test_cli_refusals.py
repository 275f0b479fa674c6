"""What cirbench refuses (README table "What cirbench refuses"), each case of issue 15 driven
through the CLI: one error line naming the file and the entry (or what to run or download), a
non-zero exit, no traceback, and nothing written where it should not be."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import typer.main
from bad_inputs import png_header_only
from PIL import Image
from typer.testing import CliRunner

from cirbench.cli import app

runner = CliRunner()
SECRET = "sk-issue15-never-written"


def run(*args, **env):
    return runner.invoke(app, [str(a) for a in args], env=env or None)


def refused(result, *expected: str, code: int = 1) -> str:
    """The one error line of a refused command; a traceback or an unexpected exception fails."""
    output = result.output
    assert result.exit_code == code, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error")]
    assert len(errors) == 1, output
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def image(path: Path, shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (shade, 255 - shade, 90)).save(path)
    return path


@pytest.fixture
def shop(tmp_path) -> Path:
    """A folder source: six images, metadata at shop/meta.jsonl."""
    root = tmp_path / "shop"
    lines = [json.dumps({"path": f"img/{i}.png", "category": "dress" if i % 2 else "coat"}) for i in range(6)]
    for i in range(6):
        image(root / "img" / f"{i}.png", 40 * i)
    (root / "meta.jsonl").write_text("\n".join(lines) + "\n")
    return root


def write_fashioniq(root: Path, queries: list | None = None) -> Path:
    """A FashionIQ-layout folder, one category (dress), six images, three val queries."""
    ids = [f"d{i}" for i in range(6)]
    for i, image_id in enumerate(ids):
        image(root / "images" / f"{image_id}.png", 40 * i)
    queries = [{"candidate": a, "target": b, "captions": ["is red", "has long sleeves"]}
               for a, b in zip(ids, ids[1:4])] if queries is None else queries
    (root / "captions").mkdir(parents=True, exist_ok=True)
    (root / "image_splits").mkdir(parents=True, exist_ok=True)
    (root / "captions" / "cap.dress.val.json").write_text(json.dumps(queries))
    (root / "image_splits" / "split.dress.val.json").write_text(json.dumps(ids))
    return root


@pytest.fixture
def fiq(tmp_path) -> Path:
    return write_fashioniq(tmp_path / "fiq")


def evaluate(fiq: Path, out: Path, *extra):
    return run("eval", "--model", "clip_sum:test_tiny", "--dataset", "fashioniq", "--data-root", fiq, "--out", out,
               "--no-cache", *extra)


# ---- sources: every path they name stays under their root -----------------------------------


@pytest.mark.parametrize("entry, expected", [
    ({"path": "../outside_secret.jpeg", "category": "dress"}, "escapes the data root"),
    ({"path": "ABSOLUTE", "category": "dress"}, "escapes the data root"),
    ({"path": "img/0.png", "category": "../../../sec/evil"}, "category '../../../sec/evil' is not a plain file name"),
    ({"path": "img/0.png", "category": "a/b"}, "is not a plain file name"),
    ({"path": "img/0.png", "category": ""}, "category must be a non-empty string"),
])
def test_metadata_paths_and_categories_that_leave_the_root_are_refused_before_anything_is_written(
        shop, tmp_path, entry, expected):
    (tmp_path / "outside_secret.jpeg").write_bytes(b"not yours")
    entry = {**entry, "path": str(tmp_path / "outside_secret.jpeg")} if entry["path"] == "ABSOLUTE" else entry
    with (shop / "meta.jsonl").open("a") as handle:
        handle.write(json.dumps(entry) + "\n")
    result = run("build-facap", "--folder", shop, "--metadata", shop / "meta.jsonl", "--out", tmp_path / "out",
                 "--clip-model", "thumbnail", "--quiet")
    refused(result, "meta.jsonl: line 7:", expected)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.rglob("*evil*")) and not (tmp_path.parent / "sec").exists()


def test_a_symlink_pointing_out_of_the_source_is_refused(shop, tmp_path):
    (shop / "img" / "6.png").symlink_to(tmp_path / "outside_secret.jpeg")
    (tmp_path / "outside_secret.jpeg").write_bytes(b"not yours")
    with (shop / "meta.jsonl").open("a") as handle:
        handle.write(json.dumps({"path": "img/6.png", "category": "dress"}) + "\n")
    result = run("build-facap", "--folder", shop, "--metadata", shop / "meta.jsonl", "--out", tmp_path / "out",
                 "--clip-model", "thumbnail", "--quiet")
    refused(result, "meta.jsonl: line 7:", "resolves outside the source root")
    assert not (tmp_path / "out").exists()


def test_a_fashion200k_label_line_leaving_the_root_is_refused(tmp_path):
    root = tmp_path / "f200k"
    image(root / "women" / "dresses" / "1" / "1_0.jpeg", 10)
    (root / "labels").mkdir()
    (root / "labels" / "dress_train_detect_all.txt").write_text(
        "women/dresses/1/1_0.jpeg\t0.9\ta dress\n../outside_secret.jpeg\t0.9\tstolen\n")
    result = run("build-facap", "--fashion200k", root, "--out", tmp_path / "out", "--clip-model", "thumbnail", "--quiet")
    refused(result, "dress_train_detect_all.txt: line 2:", "escapes the data root")
    assert not (tmp_path / "out").exists()


def test_fashioniq_ids_leaving_the_images_folder_are_refused(tmp_path):
    fiq = write_fashioniq(tmp_path / "fiq", [{"candidate": "../../etc/passwd", "target": "d1", "captions": ["x"]}])
    refused(evaluate(fiq, tmp_path / "run"), "cap.dress.val.json: entry 0:", "not a plain file name")
    assert not (tmp_path / "run").exists()


# ---- the OpenAI-compatible backend: no secret written, a refused key stops at once ------------


class RefusingServer(ThreadingHTTPServer):
    """Answers every request 401 and remembers the paths it was asked for."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), RefusingHandler)
        self.paths: list[str] = []


class RefusingHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.paths.append(self.path)
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "unauthorised"}')


def test_a_refused_key_stops_the_build_at_once_and_no_secret_is_written(shop, tmp_path):
    server = RefusingServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/v1?api-key={SECRET}"
        result = run("build-facap", "--folder", shop, "--metadata", shop / "meta.jsonl", "--out", tmp_path / "out",
                     "--clip-model", "thumbnail", "--captioner", "openai", "--captioner-model", "m", "--api-base", base,
                     "--concurrency", "1", "--quiet", CIRBENCH_OPENAI_API_KEY="wrong")
    finally:
        server.shutdown()
    refused(result, "HTTP 401", "the endpoint refused the key")
    assert server.paths[0] == f"/v1/chat/completions?api-key={SECRET}"  # the query string after the path
    assert len(server.paths) == 1  # nothing else was sent
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "shop" not in p.parts]
    assert not [p for p in written if SECRET.encode() in p.read_bytes()]


# ---- the tour: what is missing says what fixes it ---------------------------------------------


def test_weights_not_on_this_machine_fail_at_once_naming_what_to_download(fiq, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    result = run("build-enhfiq", "--fashioniq", fiq, "--out", tmp_path / "enh", "--quiet")  # ViT-L-14 by default
    refused(result, "ViT-L-14/openai", "not on this machine", "hf download timm/vit_large_patch14_clip_224.openai")
    assert not (tmp_path / "enh" / "manifest.json").exists()


def test_synth_tiny_with_nothing_installed_says_what_to_run(fiq, tmp_path, monkeypatch, tiny_world):
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cache"))
    for name in ("CIRBENCH_SYNTH_CLIP", "CIRBENCH_SYNTH_BLIP2"):
        monkeypatch.delenv(name, raising=False)
    result = run("eval", "--model", "clip_sum:synth_tiny", "--dataset", "fashioniq", "--data-root", fiq,
                 "--out", tmp_path / "run")
    refused(result, "run `cirbench synth-backbones --world WORLD_DIR` once")
    refused(run("synth-probe", "--world", tiny_world), "run `cirbench synth-backbones --world")


def test_eval_all_fails_on_an_error_row_and_compare_lists_the_choices(fiq, tmp_path, monkeypatch):
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cache"))
    for name in ("CIRBENCH_SYNTH_CLIP", "CIRBENCH_SYNTH_BLIP2"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fashioniq").symlink_to(fiq, target_is_directory=True)
    result = run("eval", "--all", "--data-root", tmp_path / "data", "--runs", tmp_path / "none", "--no-cache",
                 "--zero-shot", "clip_sum:test_tiny,clip_image_only:test_tiny,clip_sum:synth_tiny", "--out", tmp_path / "all")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "error row: clip_sum:synth_tiny (zero-shot) on fashioniq" in result.output
    assert "error: 1 of 3 evaluations failed" in result.output
    refused(run("compare", tmp_path / "all", tmp_path / "all"), "2 evaluations match",
            "'clip_image_only:test_tiny (zero-shot)' on fashioniq/val", "'clip_sum:test_tiny (zero-shot)' on fashioniq/val")


# ---- eval input ---------------------------------------------------------------------------------


def test_an_empty_caption_file_is_refused(tmp_path):
    fiq = write_fashioniq(tmp_path / "fiq", [])
    refused(evaluate(fiq, tmp_path / "run"), "cap.dress.val.json: top level: an empty list")


def test_a_repeated_caption_entry_is_refused_naming_both_entries(tmp_path):
    entry = {"candidate": "d0", "target": "d1", "captions": ["is red", "has long sleeves"]}
    fiq = write_fashioniq(tmp_path / "fiq", [entry, {**entry, "target": "d2"}, entry])
    refused(evaluate(fiq, tmp_path / "run"), "cap.dress.val.json: entry 2 (candidate d0):", "repeats entry 0 exactly")


def test_an_oversized_image_is_refused_naming_its_file(fiq, tmp_path):
    png_header_only(fiq / "images" / "d4.png", 12_000, 12_000)
    refused(evaluate(fiq, tmp_path / "run"), "d4.png", "too large to decode safely")
    assert not (tmp_path / "run" / "results.jsonl").exists()


def _device_commands(fiq: Path, shop: Path, out: Path) -> dict[str, list]:
    """Every command with --device, with the arguments it needs to get as far as the device."""
    return {
        "eval": ["eval", "--model", "clip_sum:test_tiny", "--dataset", "fashioniq", "--data-root", fiq, "--out", out],
        "bench eval": ["bench", "eval"],
        "train": ["train", "fashionblip2", "--recipe", "fashionblip2/stage1_facap_tiny.yaml", "--out", out],
        "demo": ["demo", "--quick", "--out", out],
        "ablate data-size": ["ablate", "data-size", "--out", out],
        "ablate components": ["ablate", "components", "--out", out],
        "ablate pretraining": ["ablate", "pretraining", "--out", out],
        "build-facap": ["build-facap", "--folder", shop, "--metadata", shop / "meta.jsonl", "--out", out],
        "build-enhfiq": ["build-enhfiq", "--fashioniq", fiq, "--out", out],
    }


def test_every_command_with_a_device_option_is_checked_here(tmp_path):
    def walk(command, path):
        children = getattr(command, "commands", None)
        if children:
            return [leaf for name, child in children.items() for leaf in walk(child, [*path, name])]
        return [" ".join(path)] if any("--device" in p.opts for p in command.params) else []

    with_device = set(walk(typer.main.get_command(app), []))
    assert with_device == set(_device_commands(tmp_path, tmp_path, tmp_path))


MPS = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


@pytest.mark.parametrize("device", ["tpu", pytest.param("mps", marks=pytest.mark.skipif(MPS, reason="a Mac has it")),
                                    "cuda:9"])
@pytest.mark.parametrize("command", list(_device_commands(Path("f"), Path("s"), Path("o"))))
def test_unknown_devices_are_refused_in_one_line_by_every_command(fiq, shop, tmp_path, command, device):
    args = _device_commands(fiq, shop, tmp_path / "out")[command]
    refused(run(*args, "--device", device), "--device", device)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("blocker", ["file", "file/below"])
def test_an_out_that_cannot_be_written_is_refused_before_anything_is_encoded(fiq, tmp_path, blocker):
    (tmp_path / "file").write_text("keep me")
    result = evaluate(fiq, tmp_path / blocker)
    refused(result, "--out:", "not a folder")
    assert "encod" not in result.output.lower() and (tmp_path / "file").read_text() == "keep me"


RESULTS_DEMO = Path(__file__).resolve().parents[2] / "results" / "demo"


@pytest.mark.parametrize("command, option", [
    (["demo", "--quick", "--world", "no-world-needed"], "--out"),
    (["ablate", "components", "--steps", "2", "--world", "no-world-needed"], "--out"),
    (["train", "clip4cir", "--recipe", "clip4cir/stage1_tiny", "--set", "train.epochs=null", "--set", "train.steps=1"], "--out"),
    (["synth", "--preset", "tiny"], "--out"),
    (["table", RESULTS_DEMO], "--out"),
    (["make-standins"], "--root"),
    (["fetch", "fashioniq", "--no-images"], "--root"),
    (["bench", "train", "--model", "clip4cir", "--steps", "1"], "--profile"),
], ids=lambda value: value if isinstance(value, str) else " ".join(map(str, value[:2])))
def test_an_output_folder_that_is_a_file_is_refused_by_every_command_before_any_work(tmp_path, command, option):
    (tmp_path / "file").write_text("keep me")
    for out in (tmp_path / "file", tmp_path / "file" / "below"):
        refused(run(*command, option, out), f"{option}:", "not a folder")
    assert (tmp_path / "file").read_text() == "keep me"


def test_results_that_are_not_utf8_are_named_and_a_torn_last_line_does_not_block_a_rerun(fiq, tmp_path):
    run_dir = tmp_path / "run"
    assert evaluate(fiq, run_dir).exit_code == 0
    results, ranks = run_dir / "results.jsonl", run_dir / "ranks.jsonl"
    n_records = len(results.read_text().splitlines())
    for path in (results, ranks):  # what a kill in the middle of an append leaves
        with path.open("ab") as handle:
            handle.write(b'{"run_id": "torn", "mod')
    assert run("table", run_dir).exit_code == 0  # read without the torn line
    rerun = evaluate(fiq, run_dir)
    assert rerun.exit_code == 0, rerun.output
    assert len(results.read_text().splitlines()) == 2 * n_records and b'"torn"' not in results.read_bytes() + ranks.read_bytes()

    for path in (results, ranks):
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join([lines[0], lines[1].replace(b"fashioniq", b"fashion\xffq"), *lines[2:]]))
    refused(run("table", run_dir), "results.jsonl: line 2: not UTF-8 text")
    refused(run("compare", run_dir, run_dir), "ranks.jsonl: line 2: not UTF-8 text")


@pytest.mark.parametrize("categories, message", [(",", "names no category"), ("dress,dress", "dress named more than once")])
def test_an_empty_or_repeated_category_list_is_refused_not_read_as_all_or_counted_twice(fiq, tmp_path, categories, message):
    refused(evaluate(fiq, tmp_path / "run", "--categories", categories), "--categories", message)
    assert not (tmp_path / "run").exists()


def test_compare_without_per_query_ranks_says_what_is_missing(tmp_path):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "results.jsonl").write_bytes((RESULTS_DEMO / "results.jsonl").read_bytes())
    refused(run("compare", tmp_path / "only", tmp_path / "only", "--model-a", "SPRC", "--model-b", "CLIP4CIR",
                "--dataset", "fashioniq"), "no per-query ranks here (ranks.jsonl")


def test_results_without_a_single_record_are_refused_not_shown_as_nothing(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "torn.jsonl").write_bytes(b'{"run_id": "torn", "mod')
    for name in ("empty.jsonl", "torn.jsonl"):
        refused(run("table", tmp_path / name), f"{name}: results: no result records to tabulate")


def test_a_facap_work_file_that_is_not_utf8_is_named(shop, tmp_path):
    out = tmp_path / "out"
    build = ["build-facap", "--folder", shop, "--metadata", shop / "meta.jsonl", "--out", out, "--clip-model",
             "thumbnail", "--quiet"]
    assert run(*build).exit_code == 0
    store = sorted((out / "work").glob("*.jsonl"))[0]
    store.write_bytes(store.read_bytes().replace(b"{", b"{\xff", 1))
    refused(run(*build), f"{store.name}: line 1: not UTF-8 text")
