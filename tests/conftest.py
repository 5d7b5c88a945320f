"""Shared fixtures: small real sequences and a freshly initialised paper model."""

from __future__ import annotations

import gc
import os

# No persistent compilation cache in the test session (inherited by the commands the tests start):
# a cache another process wrote to, or a damaged one, must not decide a test, and serialising an
# executable to disk once aborted the whole CI session inside XLA.
os.environ["OPTODSL_CACHE"] = "off"

import optodsl  # noqa: E402

optodsl.configure_xla()  # as the `opto` command does: one CPU device per core, before JAX starts

import jax  # noqa: E402
import pytest

from optodsl.config import DataConfig, ExperimentConfig, ModelConfig
from optodsl.tasks.fewshot import make_task
from optodsl.model.transformer import init_model


@pytest.fixture(scope="session")
def small_data() -> DataConfig:
    return DataConfig(total_classes=200, classes=50, test_classes=100)


@pytest.fixture(scope="session")
def task(small_data):
    return make_task(small_data)


@pytest.fixture(scope="session")
def model(small_data):
    return init_model(ModelConfig(), small_data, jax.random.PRNGKey(0))


@pytest.fixture(scope="session")
def batch(task):
    """Eight real training sequences `e1 l1 e2 l2 q`."""
    return task.sample(jax.random.PRNGKey(3), "train", 8)


@pytest.fixture(scope="session")
def base_config(small_data) -> ExperimentConfig:
    return ExperimentConfig(data=small_data)


@pytest.fixture(scope="module", autouse=True)
def _free_compiled_programs():
    """Drop JAX's compiled programs after each test module. A session that keeps every executable it
    compiled grows without bound (about 7 GB by the end of the suite), and twice a CI session crashed
    inside XLA's compiler near its end; each module compiles its own programs anyway."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="module")
def reuse_programs():
    """Within one test module, `train` reuses the compiled program of an earlier call with the same
    configs and equal interventions (`eqx.tree_equal`) instead of compiling it again (about 5 s of
    CPU each time).

    A program (`build_program`) is a pure function of its configs and interventions: its jitted
    pieces hold no run's state, and everything a test of resuming checks (run directories,
    checkpoints, signals, rows) happens in `train_sweep` around it, every call as before. Modules
    that train the same small configs many times (interrupt and resume batteries) opt in; the
    programs go with the module."""
    import equinox as eqx

    from optodsl.train import trainer

    real, built = trainer.build_program, {}

    def build(configs, forwards=None, **kwargs):
        if any(v is not None for v in kwargs.values()):  # a model, features or measures of one's own
            return real(configs, forwards, **kwargs)
        key = tuple(c.model_dump_json() for c in (configs if isinstance(configs, (list, tuple)) else [configs]))
        for earlier, program in built.get(key, []):
            if bool(eqx.tree_equal(earlier, forwards)):
                return program
        program = real(configs, forwards, **kwargs)
        built.setdefault(key, []).append((forwards, program))
        return program

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "build_program", build)
        yield built
