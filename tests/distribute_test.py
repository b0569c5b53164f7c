"""`training_scope` argument checks and the single-device scope (every backend)."""

import keras
import pytest

from matpac_keras.distribute import training_scope

OTHER_BACKEND_KIND = {"tensorflow": "data_parallel", "jax": "mirrored", "torch": "multi_worker"}


def test_single_device_scope_yields_nothing():
    with training_scope("single") as distribution:
        assert distribution is None


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="'ddp'"):
        with training_scope("ddp"):
            pass


def test_kind_of_another_backend_is_refused():
    kind = OTHER_BACKEND_KIND[keras.backend.backend()]
    with pytest.raises(ValueError, match=f"kind='{kind}' needs KERAS_BACKEND="):
        with training_scope(kind):
            pass


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="keras.distribution: JAX backend")
def test_data_parallel_joins_the_hosts_named_in_the_environment(monkeypatch):
    calls = []
    monkeypatch.setattr(keras.distribution, "initialize", lambda: calls.append("initialize"))
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")
    with training_scope("data_parallel") as distribution:
        assert isinstance(distribution, keras.distribution.DataParallel)
    assert calls == []  # one process: nothing to join
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    with training_scope("data_parallel"):
        pass
    assert calls == ["initialize"]
