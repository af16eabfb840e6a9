"""Fixtures shared by the 38-Cloud tests."""

import fake_cloud38
import pytest


@pytest.fixture(scope="session")
def fake(tmp_path_factory):
    return fake_cloud38.write_dataset(tmp_path_factory.mktemp("fake38"))
