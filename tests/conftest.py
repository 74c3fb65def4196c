"""Shared fixtures: a clean plugin host, a small shapes dataset and one tiny fitted run."""

from __future__ import annotations

import os

os.environ["MPLBACKEND"] = "Agg"  # before anything imports matplotlib

import sys  # noqa: E402
import textwrap  # noqa: E402
import uuid  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

import betavae_core  # noqa: E402
from betavae_core import plugins as plugins_mod  # noqa: E402

SMALL_SHAPES = {"n": 400, "size": 16, "seed": 0}
TINY_LATENT = 4
TINY_HIDDEN = [64]
TINY_EPOCHS = 3


@pytest.fixture
def one_thread():
    """Small fits run faster on one thread on a shared machine; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_plugins(monkeypatch):
    """A plugin host loaded from scratch for this test, and forgotten afterwards.

    The environment switches are cleared so a developer's shell cannot change what loads;
    a test sets them with `monkeypatch.setenv` before the host is first used.
    """
    for var in ("BETAVAE_LOAD_PLUGINS", "BETAVAE_STRICT_PLUGINS", "BETAVAE_TRACE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    betavae_core.reset_plugins()
    yield
    betavae_core.reset_plugins()


@pytest.fixture
def shapes_data():
    """400 binary 16x16 shapes with their five ground-truth factors."""
    return betavae_core.registry("datasets").get("shapes").load(**SMALL_SHAPES)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture
def snapshot():
    """`snapshot(dir)`: every file under dir (relative path -> bytes), to show that a
    command changed nothing."""
    return _snapshot


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run directory fit for a few epochs on small shapes; treat it as read-only.

    Tests that write into a run (evaluate) copy it first.
    """
    from betavae_core import ModelConfig, TrainConfig, fit, load_data

    data, source = load_data("shapes", options=SMALL_SHAPES)
    out = tmp_path_factory.mktemp("tiny") / "run"
    fit(
        data,
        ModelConfig.for_data(data, latent_dim=TINY_LATENT,
                             architecture_options={"hidden": TINY_HIDDEN}),
        TrainConfig(epochs=TINY_EPOCHS, lr=1e-2, progress=False),
        out_dir=out,
        source=source,
    )
    return out


@pytest.fixture
def make_module(tmp_path, monkeypatch):
    """`make_module(source) -> module name`: a plugin module importable from tmp_path."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def make(source: str) -> str:
        name = f"betavae_testplugin_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        created.append(name)
        return name

    yield make
    for name in created:
        sys.modules.pop(name, None)


@pytest.fixture
def entry_points(monkeypatch):
    """`entry_points({ep_name: module})`: what `importlib.metadata` reports as installed
    in the `betavae` group (nothing else is visible while the test runs)."""
    real = metadata.entry_points

    def install(mapping: dict[str, str]) -> None:
        eps = [metadata.EntryPoint(name=n, value=v, group=plugins_mod.ENTRY_POINT_GROUP)
               for n, v in mapping.items()]

        def fake(**params):
            if params.get("group") == plugins_mod.ENTRY_POINT_GROUP:
                return list(eps)
            return real(**params)

        monkeypatch.setattr(plugins_mod.metadata, "entry_points", fake)

    install({})
    return install
