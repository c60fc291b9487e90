"""Fixtures shared by the runtime's tests."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from runtime.logging import JsonFormatter


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Everything logged during the test, as the services write it (JSON lines), to search for leaks."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)
