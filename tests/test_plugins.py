"""The plugin contract: documented hooks, isolation of broken plugins, clear errors.

Third-party plugins are simulated with real entry points (`importlib.metadata.EntryPoint`)
whose modules are written to tmp_path, so loading goes through the same path as an
installed package: discovery, BETAVAE_LOAD_PLUGINS filtering, import, hook calls.
"""

from __future__ import annotations

import inspect
import json
import types
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import betavae_core
from betavae_core import (
    DataError,
    DomainData,
    PluginError,
    get_host,
    hookspecs,
    load_data,
    plugin_infos,
    registry,
)
from betavae_core import plugins as plugins_mod
from betavae_core.cli import main
from betavae_core.registry import KINDS

pytestmark = pytest.mark.usefixtures("fresh_plugins")

SMALL = {"n": 400, "size": 16}
MISSING_DEP = "betavae_test_dependency_that_is_not_installed"

# Plugin module sources. `{tag}` is replaced to make record names unique per module.
TOY_DATASET = """
import numpy as np
from betavae_core import Dataset, DomainData, hookimpl


def load(n=8):
    return DomainData(x=np.zeros((int(n), 3), dtype="float32"), domain="toy")


@hookimpl
def register_datasets(register):
    for name in {names!r}:
        register(Dataset(name=name, domain="toy", help="toy data", load=load,
                         options={{"n": 8}}))
"""

NEEDS_MISSING_DEPENDENCY = f"""
import {MISSING_DEP}  # the plugin's own dependency, not installed here
from betavae_core import hookimpl


@hookimpl
def register_datasets(register):
    raise AssertionError("never reached")
"""

RAISES_IN_HOOK = """
import numpy as np
from betavae_core import Dataset, DomainData, hookimpl


@hookimpl
def register_datasets(register):
    register(Dataset(name="half_registered", domain="toy", help="", load=lambda: None))


@hookimpl
def register_loaders(register):
    raise RuntimeError("registration exploded")
"""

RAISES_WHEN_CALLED = """
from pathlib import Path

from betavae_core import DataError, Dataset, Loader, hookimpl


def explode(**options):
    raise RuntimeError("kaboom in load")


def refuse(**options):
    raise DataError("row 3 of the toy data is malformed")


def claims_boom(path):
    return Path(path).suffix == ".boom"


def load_boom(path, **options):
    raise KeyError("missing column 'energy'")


def claims_raises(path):
    raise OSError("claims must not break the CLI")


@hookimpl
def register_datasets(register):
    register(Dataset(name="exploding", domain="toy", help="", load=explode))
    register(Dataset(name="refusing", domain="toy", help="", load=refuse))


@hookimpl
def register_loaders(register):
    register(Loader(name="boom", domain="toy", help="", claims=claims_boom, load=load_boom))
    register(Loader(name="flaky", domain="toy", help="", claims=claims_raises,
                    load=load_boom))
"""


def toy(*names: str) -> str:
    return TOY_DATASET.format(names=list(names))


def infos() -> dict[str, plugins_mod.PluginInfo]:
    return {i.name: i for i in plugin_infos()}


def load_host_expecting_warning(*names: str) -> plugins_mod.PluginHost:
    """Load the host; each named plugin must be reported unavailable through a warning."""
    with pytest.warns(UserWarning) as record:
        host = get_host()
    messages = " ".join(str(w.message) for w in record)
    for name in names:
        assert f"plugin {name!r} is unavailable" in messages
    return host


def assert_core_works() -> None:
    data, source = load_data("shapes", options=SMALL)
    assert isinstance(data, DomainData) and len(data) == 400
    assert source["name"] == "shapes"
    assert "numpy" in registry("loaders")
    assert {"gaussian", "bernoulli"} <= set(registry("likelihoods").names())


# --- the contract is documented ---------------------------------------------------------
def hookspec_functions(module: types.ModuleType) -> dict[str, types.FunctionType]:
    return {name: fn for name, fn in inspect.getmembers(module, inspect.isfunction)
            if hasattr(fn, f"{plugins_mod.ENTRY_POINT_GROUP}_spec")}


def undocumented_hooks(module: types.ModuleType, min_length: int = 200) -> list[str]:
    """Hooks whose docstring does not say, at some length, what they are passed (the
    `register` function and the record it takes, or the `cli` group) and what the
    record's callable returns (or when the hook is called)."""
    bad = []
    for name, fn in hookspec_functions(module).items():
        doc = inspect.getdoc(fn) or ""
        says_passed = "register(" in doc or "`cli`" in doc
        says_returned = "return" in doc.lower() or "called" in doc.lower()
        if len(doc) < min_length or not says_passed or not says_returned:
            bad.append(name)
    return sorted(bad)


def test_there_is_one_register_hook_per_registry_kind_plus_commands() -> None:
    assert set(hookspec_functions(hookspecs)) == (
        {f"register_{kind}" for kind in KINDS} | {"register_commands"})
    for name in hookspec_functions(hookspecs):
        expected = ["cli"] if name == "register_commands" else ["register"]
        assert list(inspect.signature(getattr(hookspecs, name)).parameters) == expected


def test_every_hook_is_documented() -> None:
    assert undocumented_hooks(hookspecs) == []
    record_types = {"datasets": "Dataset", "loaders": "Loader",
                    "likelihoods": "LikelihoodSpec", "evaluations": "Evaluation",
                    "architectures": "Architecture", "generators": "Generator"}
    for kind, record in record_types.items():
        doc = inspect.getdoc(getattr(hookspecs, f"register_{kind}"))
        assert f"register({record}(" in doc, f"register_{kind} does not name {record}"


def test_the_documentation_check_catches_an_undocumented_hook() -> None:
    fake = types.ModuleType("fake_hookspecs")

    @hookspecs.hookspec
    def register_widgets(register):
        pass

    @hookspecs.hookspec
    def register_gadgets(register):
        """Register gadgets."""

    fake.register_widgets, fake.register_gadgets = register_widgets, register_gadgets
    fake.register_datasets = hookspecs.register_datasets
    assert undocumented_hooks(fake) == ["register_gadgets", "register_widgets"]


# --- the core's own plugin --------------------------------------------------------------
def test_core_plugin_is_listed_ok_with_its_registrations(entry_points) -> None:
    entry_points({})
    core = infos()[plugins_mod.CORE_PLUGIN]
    assert core.status == "ok" and core.reason is None
    assert core.module == "betavae_core.default_plugins"
    assert core.version == metadata.version("betavae")
    assert core.hooks == sorted(f"register_{kind}" for kind in KINDS)
    expected = {
        "datasets": {"shapes"},
        "loaders": {"numpy"},
        "likelihoods": {"gaussian", "bernoulli"},
        "evaluations": {"rate_distortion", "posterior", "images"},
        "architectures": {"mlp"},
        "generators": {"arrays"},
    }
    for kind, names in expected.items():
        assert names <= set(core.registers[kind]), kind
        for name in core.registers[kind]:
            assert registry(kind).get(name).plugin == plugins_mod.CORE_PLUGIN
    assert list(infos()) == [plugins_mod.CORE_PLUGIN]  # no entry points, nothing else


# --- broken plugins are isolated --------------------------------------------------------
def test_plugin_with_missing_dependency_is_unavailable_and_others_keep_working(
    make_module, entry_points
) -> None:
    entry_points({"needs_dep": make_module(NEEDS_MISSING_DEPENDENCY),
                  "good": make_module(toy("toy_good"))})
    host = load_host_expecting_warning("needs_dep")
    broken, good = infos()["needs_dep"], infos()["good"]
    assert broken.status == "unavailable"
    assert "failed to load" in broken.reason
    assert "ModuleNotFoundError" in broken.reason and MISSING_DEP in broken.reason
    assert broken.registers == {}
    assert not host.pm.has_plugin("needs_dep")
    assert good.status == "ok" and good.registers == {"datasets": ["toy_good"]}
    data, _ = load_data("toy_good")
    assert len(data) == 8 and data.domain == "toy"
    assert_core_works()


def test_plugin_raising_inside_a_hook_is_unavailable_and_registers_nothing(
    make_module, entry_points
) -> None:
    entry_points({"raiser": make_module(RAISES_IN_HOOK)})
    host = load_host_expecting_warning("raiser")
    info = infos()["raiser"]
    assert info.status == "unavailable"
    assert "RuntimeError" in info.reason and "registration exploded" in info.reason
    # all or nothing: what its first hook registered was not committed
    assert "half_registered" not in registry("datasets")
    assert info.registers == {}
    assert not host.pm.has_plugin("raiser")
    assert_core_works()


def test_register_object_isolates_a_raising_plugin_object() -> None:
    class Broken:
        @betavae_core.hookimpl
        def register_evaluations(self, register):
            raise ValueError("bad evaluation table")

    host = get_host()
    with pytest.warns(UserWarning, match="objplug"):
        info = host.register_object(Broken(), name="objplug", version="0.0.1")
    assert info.status == "unavailable"
    assert "ValueError" in info.reason and "bad evaluation table" in info.reason
    assert infos()["objplug"].status == "unavailable"
    assert not host.pm.has_plugin("objplug")
    assert_core_works()


def test_two_plugins_registering_one_dataset_name(make_module, entry_points) -> None:
    entry_points({
        "plug_a": make_module(toy("dup", "only_a")),
        "plug_b": make_module(toy("only_b", "dup")),
        "plug_c": make_module(toy("shapes")),
        "plug_d": make_module(toy("twice", "twice")),
    })
    load_host_expecting_warning("plug_b", "plug_c", "plug_d")
    listed = infos()
    assert listed["plug_a"].status == "ok"
    assert listed["plug_a"].registers == {"datasets": ["dup", "only_a"]}
    second = listed["plug_b"]
    assert second.status == "unavailable"
    assert "'dup'" in second.reason
    assert "'plug_a'" in second.reason and "'plug_b'" in second.reason
    # the first registration stands; nothing of the second plugin was committed
    assert registry("datasets").get("dup").plugin == "plug_a"
    assert "only_b" not in registry("datasets")
    # a clash with the core names the core
    clash = listed["plug_c"]
    assert clash.status == "unavailable"
    assert "'betavae_core'" in clash.reason and "'plug_c'" in clash.reason
    assert registry("datasets").get("shapes").plugin == "betavae_core"
    # a plugin registering one name twice clashes with itself
    assert listed["plug_d"].status == "unavailable"
    assert "'twice'" in listed["plug_d"].reason
    assert "twice" not in registry("datasets")
    assert_core_works()


@pytest.mark.parametrize("source, cause", [
    (NEEDS_MISSING_DEPENDENCY, ImportError),
    (RAISES_IN_HOOK, RuntimeError),
], ids=["import", "hook"])
def test_strict_mode_reraises_as_plugin_error(
    make_module, entry_points, monkeypatch, source, cause
) -> None:
    monkeypatch.setenv("BETAVAE_STRICT_PLUGINS", "1")
    entry_points({"good": make_module(toy("toy_good")), "strictly_broken": make_module(source)})
    with pytest.raises(PluginError, match="strictly_broken") as excinfo:
        get_host()
    assert excinfo.value.plugin == "strictly_broken"
    assert isinstance(excinfo.value.__cause__, cause)
    # the half-loaded host is not kept: the next call fails the same way
    with pytest.raises(PluginError, match="strictly_broken"):
        get_host()
    # and the CLI reports it as one line, not a traceback
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "strictly_broken" in result.output and "Traceback" not in result.output


def test_strict_mode_loads_good_plugins(make_module, entry_points, monkeypatch) -> None:
    monkeypatch.setenv("BETAVAE_STRICT_PLUGINS", "1")
    entry_points({"good": make_module(toy("toy_good"))})
    assert infos()["good"].status == "ok"
    assert "toy_good" in registry("datasets")


@pytest.mark.parametrize("wanted, loaded", [
    (None, {"plug_a", "plug_b"}),
    ("", set()),
    ("plug_b", {"plug_b"}),
    (" plug_a , not_installed ", {"plug_a"}),
])
def test_load_plugins_selects_entry_points(
    make_module, entry_points, monkeypatch, wanted, loaded
) -> None:
    if wanted is not None:
        monkeypatch.setenv("BETAVAE_LOAD_PLUGINS", wanted)
    entry_points({"plug_a": make_module(toy("toy_a")), "plug_b": make_module(toy("toy_b"))})
    assert set(infos()) == {plugins_mod.CORE_PLUGIN} | loaded
    datasets = set(registry("datasets").names())
    assert "shapes" in datasets
    assert {"toy_a", "toy_b"} & datasets == {f"toy_{p[-1]}" for p in loaded}


# --- errors inside registered callables -------------------------------------------------
def test_exception_in_a_dataset_load_is_a_plugin_error_naming_the_plugin(
    make_module, entry_points
) -> None:
    entry_points({"exploder": make_module(RAISES_WHEN_CALLED)})
    assert infos()["exploder"].status == "ok"
    with pytest.raises(PluginError) as excinfo:
        load_data("exploding")
    err = excinfo.value
    assert err.plugin == "exploder"
    assert "'exploder'" in str(err) and "'exploding'" in str(err)
    assert "RuntimeError" in str(err) and "kaboom in load" in str(err)
    assert isinstance(err.__cause__, RuntimeError)
    # the core's own errors pass through unchanged: they already say what is wrong
    with pytest.raises(DataError, match="row 3 of the toy data"):
        load_data("refusing")


def test_exception_in_a_loader_is_a_plugin_error_and_raising_claims_mean_no(
    make_module, entry_points, tmp_path: Path
) -> None:
    entry_points({"exploder": make_module(RAISES_WHEN_CALLED)})
    path = tmp_path / "items.boom"
    path.write_text("energy missing")
    with pytest.raises(PluginError, match="'exploder'.*'boom'.*KeyError") as excinfo:
        load_data(path)
    assert excinfo.value.plugin == "exploder"
    # the 'flaky' loader's claims() raises for every path; numpy files still load
    arr = tmp_path / "x.npy"
    np.save(arr, np.ones((5, 3), dtype=np.float32))
    data, source = load_data(arr)
    assert source["loader"] == "numpy" and len(data) == 5


def test_exception_in_an_evaluation_is_a_plugin_error(tiny_run, shapes_data) -> None:
    from betavae_core import Evaluation, evaluate, load_model

    class Evaluator:
        @betavae_core.hookimpl
        def register_evaluations(self, register):
            def broken(run):
                raise ZeroDivisionError("no items in the bin")

            register(Evaluation(name="broken_metric", domain="*", help="", evaluate=broken))

    info = get_host().register_object(Evaluator(), name="evalplug")
    assert info.status == "ok" and info.registers == {"evaluations": ["broken_metric"]}
    model = load_model(tiny_run)
    with pytest.raises(PluginError, match="'evalplug'.*'broken_metric'.*ZeroDivisionError"):
        evaluate(model, shapes_data, names=["broken_metric"])
    report = evaluate(model, shapes_data, names=["rate_distortion"])
    assert list(report) == ["rate_distortion"]


def test_cli_reports_a_failing_dataset_as_one_line(make_module, entry_points, tmp_path) -> None:
    entry_points({"exploder": make_module(RAISES_WHEN_CALLED)})
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "exploding", "--out", str(out), "--quiet"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "'exploder'" in lines[0] and "kaboom in load" in lines[0]
    assert not out.exists()


# --- `betavae plugins` ------------------------------------------------------------------
def test_plugins_json_lists_the_broken_plugin(make_module, entry_points) -> None:
    entry_points({"needs_dep": make_module(NEEDS_MISSING_DEPENDENCY),
                  "good": make_module(toy("toy_good"))})
    with pytest.warns(UserWarning, match="needs_dep"):
        result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    listed = {p["name"]: p for p in json.loads(result.stdout)}
    assert set(listed) == {"betavae_core", "needs_dep", "good"}
    broken = listed["needs_dep"]
    assert broken["status"] == "unavailable"
    assert MISSING_DEP in broken["reason"]
    assert broken["module"] == infos()["needs_dep"].module
    assert listed["good"]["status"] == "ok"
    assert listed["good"]["registers"] == {"datasets": ["toy_good"]}
    assert listed["betavae_core"]["status"] == "ok"
    assert "shapes" in listed["betavae_core"]["registers"]["datasets"]

    text = CliRunner().invoke(main, ["plugins"])
    assert text.exit_code == 0
    lines = text.output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("needs_dep"))
    assert "[unavailable]" in lines[at]
    assert lines[at + 1].strip().startswith("reason:") and MISSING_DEP in lines[at + 1]


def test_a_misspelt_hook_disables_only_its_plugin(fresh_plugins):
    """pluggy's check_pending finds a hook name that matches no spec; only that plugin fails."""
    from betavae_core import hookimpl
    from betavae_core.plugins import get_host, registry

    class Typo:
        @hookimpl
        def register_dataset(self, register):  # missing "s": no such hook
            raise AssertionError("never called")

    with pytest.warns(UserWarning, match="'typo' is unavailable"):
        info = get_host().register_object(Typo(), name="typo")
    assert info.status == "unavailable"
    assert "register_dataset" in info.reason
    assert "shapes" in registry("datasets")
