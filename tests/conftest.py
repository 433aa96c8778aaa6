import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "real_cache: use the user's cache folder, not a fresh one")
    config.addinivalue_line("markers", "papermill: a whole notebook run through papermill (make test-all)")
    config.addinivalue_line("markers", "slow: a multi-second variant of a case make test already covers (make test-all)")


@pytest.fixture(autouse=True)
def isolated_cache(request, tmp_path, monkeypatch):
    """Each test gets its own empty cache folder, unless marked real_cache (the notebook runs)."""
    if request.node.get_closest_marker("real_cache") is None:
        monkeypatch.setenv("SKIPVIZ_CACHE", str(tmp_path / "cache"))
