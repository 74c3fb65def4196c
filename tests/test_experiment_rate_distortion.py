"""Experiments 1 and 2 in their quick configuration: the direction of each effect."""

import pytest

from betavae_science.experiments import common
from betavae_science.experiments.rate_distortion import decorrelation, rate_distortion


@pytest.fixture(scope="module")
def rd():
    return rate_distortion(quick=True)


@pytest.fixture(scope="module")
def decor():
    return decorrelation(quick=True)


def test_rate_falls_and_distortion_rises_with_beta(rd):
    assert all(rd.checks.values()), rd.checks
    for name, entry in rd.metrics.items():
        rows = entry["rows"]
        assert rows[0]["rate"] > 3 * rows[-1]["rate"], name
        assert rows[-1]["distortion"] > rows[0]["distortion"], name
        for row in rows:
            assert row["rate"] == pytest.approx(sum(row["kl_per_dim"]), rel=1e-9)


def test_aggregate_posterior_decorrelates_as_beta_rises(decor):
    assert all(decor.checks.values()), decor.checks
    for entry in decor.metrics.values():
        active = [r for r in entry["rows"] if r["active_units"] >= 2 and r["rate"] >= 1.0]
        assert len(active) >= 2


def test_results_are_written_as_json_and_png(rd, tmp_path):
    out = common.save(rd, tmp_path / "rd")
    assert (out / "result.json").read_text().startswith("{")
    assert (out / "rate_distortion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
