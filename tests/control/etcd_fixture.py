"""The session's real three-member etcd cluster on loopback (``llmtools.etcd_cluster``): started
once, shared by every test that asks for it (each test works under its own key prefix), killed
at the end. No ``etcd`` binary: the test fails and says how to install it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from llmtools.etcd_cluster import EtcdCluster, etcd_binary


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    etcd_binary()  # raises EtcdMissing (the test errors, loudly) when not installed
    with EtcdCluster(tmp_path_factory.mktemp("etcd"), size=3) as cluster:
        yield cluster


@pytest.fixture
def etcd_prefix() -> str:
    """A key prefix of this test's own, so tests sharing the cluster never see each other."""
    return f"/test/{uuid.uuid4().hex}"
