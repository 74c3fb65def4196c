"""Sparse and on-demand rows (`RowSource`): the fit sees exactly what a dense tensor gives."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from betavae_core import DataError, DomainData, ModelConfig, SparseRows, TrainConfig, fit
from betavae_core.posterior import encode


def _counts(n=60, genes=12, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.poisson(0.4, size=(n, genes)).astype(np.float32)
    return dense, sp.csr_matrix(dense)


def test_indexing_matches_dense():
    dense, matrix = _counts()
    rows = SparseRows(matrix)
    assert rows.shape == dense.shape and len(rows) == 60
    idx = torch.tensor([5, 2, 5, 59])
    np.testing.assert_array_equal(rows[idx].numpy(), dense[[5, 2, 5, 59]])
    np.testing.assert_array_equal(rows[3:9].numpy(), dense[3:9])
    sub = rows.subset(np.array([10, 20, 30]))
    np.testing.assert_array_equal(sub[1:].numpy(), dense[[20, 30]])
    np.testing.assert_array_equal(sub.subset(np.array([2]))[:].numpy(), dense[[30]])
    with pytest.raises(TypeError, match="slices or index arrays"):
        rows[3]


def test_sparse_fit_equals_dense_fit():
    dense, matrix = _counts()
    results = []
    for x in (torch.from_numpy(dense), SparseRows(matrix)):
        data = DomainData(x=x, domain="test", likelihood="gaussian")
        train = TrainConfig(epochs=3, batch_size=16, progress=False, seed=1)
        result = fit(data, ModelConfig.for_data(data, latent_dim=2), train)
        results.append((result.history[-1]["val_elbo"], encode(result.model, data)[0]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)


def test_bad_value_in_a_later_block_names_its_rows():
    dense = np.zeros((5000, 3), dtype=np.float32)
    dense[::7, 0] = 1.0
    dense[4500, 1] = 0.5
    data = DomainData(x=SparseRows(sp.csr_matrix(dense)), domain="test", likelihood="bernoulli")
    message = r"rows 4096-4999 \(item i below is row 4096 \+ i.*item 404 holds 0.5"
    with pytest.raises(DataError, match=message):
        fit(data, ModelConfig.for_data(data, latent_dim=2), TrainConfig(epochs=1, progress=False))
