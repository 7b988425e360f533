"""Shared fixtures of the moecheck Python tests (CPU; tests marked gpu need a CUDA device)."""

import importlib.metadata
import os
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")
SOURCE_DIR = os.environ.get("MOECHECK_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, EXAMPLES)

pytest_plugins = ["pytester"]


def plugin_args():
    """-p moecheck.pytest_plugin unless the installed distribution's entry point loads it."""
    eps = importlib.metadata.entry_points()
    group = eps.select(group="pytest11") if hasattr(eps, "select") else eps.get("pytest11", [])
    return [] if any(ep.value == "moecheck.pytest_plugin" for ep in group) else ["-p", "moecheck.pytest_plugin"]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def corpus(tmp_path):
    return str(tmp_path / "corpus")


@pytest.fixture(scope="session")
def cli():
    """The moecheck CLI of the same build (ctest sets MOECHECK_CLI)."""
    path = os.environ.get("MOECHECK_CLI", "")
    if not path or not os.path.exists(path):
        pytest.skip("the moecheck CLI is not built here (MOECHECK_CLI unset)")

    def run(*args):
        return subprocess.run([path, *map(str, args)], capture_output=True, text=True, timeout=300)

    return run


def quiet(_text):
    """A log sink for campaigns whose engine output is not under test."""
