"""The strict registry: duplicates and unknown names are errors; lazy entries import on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cirbench.baselines.zoo import build_model, list_model_specs, resolve_spec
from cirbench.registry import Registry, RegistryError, import_string


def test_duplicate_name_is_an_error():
    registry = Registry("widget")
    registry.register("a", 1)
    with pytest.raises(RegistryError, match="widget 'a' is already registered"):
        registry.register("a", 2)
    assert registry.get("a") == 1


def test_unknown_name_lists_close_matches_and_known_names():
    registry = Registry("widget")
    for name in ("fashionblip2", "sprc", "clip4cir"):
        registry.register(name, name)
    with pytest.raises(RegistryError) as error:
        registry.get("fashionblip")
    message = str(error.value)
    assert "unknown widget 'fashionblip'" in message
    assert "Did you mean: fashionblip2" in message
    assert "Known: clip4cir, fashionblip2, sprc" in message
    with pytest.raises(RegistryError) as far:
        registry.get("zzz")
    assert "Did you mean" not in str(far.value)


def test_lazy_entry_imports_its_module_only_when_loaded(tmp_path, monkeypatch):
    (tmp_path / "lazy_target_module.py").write_text("VALUE = {'built': True}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("widget")
    registry.register("lazy", "lazy_target_module:VALUE", description="imported on first use")
    assert "lazy_target_module" not in sys.modules
    assert registry.names() == ["lazy"] and "lazy" in registry and len(registry) == 1
    assert "lazy_target_module" not in sys.modules
    assert registry.get("lazy") == {"built": True}
    assert "lazy_target_module" in sys.modules
    monkeypatch.delitem(sys.modules, "lazy_target_module")


def test_register_works_as_a_decorator():
    registry = Registry("widget")

    @registry.register("double", description="x2")
    def double(x):
        return 2 * x

    assert registry.get("double")(3) == 6
    assert registry.entry("double").description == "x2"


def test_import_string_follows_dotted_attributes():
    assert import_string("os.path:join") is __import__("os").path.join
    assert import_string("cirbench.registry:Registry.get") is Registry.get


def test_model_specs_resolve_default_variant_and_refuse_unknown_variants():
    specs = list_model_specs()
    assert ("fashionblip2", "test_tiny", "tiny config, random weights (tests)") in specs
    assert all(any(n == name and v == "test_tiny" for n, v, _ in specs) for name, _, _ in specs)
    assert str(resolve_spec("fashionblip2")) == "fashionblip2:vitg"
    with pytest.raises(RegistryError, match="Did you mean: test_tiny"):
        resolve_spec("sprc:test_tiyn")
    with pytest.raises(RegistryError, match="Did you mean: sprc"):
        build_model("sprcc:test_tiny")


def test_listing_models_imports_no_model_code_and_no_torch():
    code = (
        "import sys; from cirbench.baselines.zoo import list_model_specs; list_model_specs(); "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.endswith('.model')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
