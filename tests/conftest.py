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
