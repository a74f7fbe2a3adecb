"""The examples of the model loaders (`vadapters.models` is not a doctest path of its own: it builds models)."""

from __future__ import annotations

import doctest

import pytest

import vadapters.models.defaults
import vadapters.models.loading


@pytest.mark.parametrize("module", [vadapters.models.loading, vadapters.models.defaults], ids=lambda m: m.__name__)
def test_loader_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
