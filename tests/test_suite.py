"""The test suite's own set-up: ``make test``'s two workers keep each group together."""

import pytest


def test_tests_run_in_their_xdist_group(request):
    """Under ``pytest -n 2 --dist loadgroup`` (``make test``) every test carries its group in
    its node id (tests/conftest.py): the module's name here. Without it the module fixtures
    (one autograde per chapter, the book build) would run once per worker."""
    if not hasattr(request.config, "workerinput"):
        pytest.skip("not run by pytest-xdist workers")
    assert request.config.getoption("dist") == "no"  # a worker runs what it is sent
    assert request.node.nodeid.endswith("@test_suite"), request.node.nodeid
