"""Fixtures shared by the dask test modules (tests/test_dask*.py).

dask is imported inside the fixtures, so that collecting the other test
modules does not import it.
"""

import pytest


@pytest.fixture
def synchronous():
    """dask's synchronous scheduler: fast, and its errors have plain tracebacks."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture(scope="session")
def cluster_client():
    """A two-process LocalCluster, started once for all the dask tests."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def small_dask_sample(monkeypatch):
    """A client sample of ~300 rows, so that the fit on all rows has work to do."""
    from skrobust import _dask_statistics

    monkeypatch.setattr(_dask_statistics, "SAMPLE_ROWS", 300)
    monkeypatch.setattr(_dask_statistics, "MIN_SAMPLE_ROWS", 300)
