"""GPU tests run only where CUDA is visible and vLLM imports; elsewhere every test here is skipped."""

from __future__ import annotations

import importlib.util

import pytest
import torch


def _why_not() -> str | None:
    if not torch.cuda.is_available():
        return "needs a CUDA GPU"
    if importlib.util.find_spec("vllm") is None:
        return "needs vllm (pip install 'swarmrl[gpu]')"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _why_not()
    for item in items:
        if "tests/gpu/" not in str(item.fspath).replace("\\", "/"):
            continue
        item.add_marker(pytest.mark.gpu)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
