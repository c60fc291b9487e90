"""Fixtures shared by the cross-service tests in this folder."""

from tests.test_e2e_matching import platform

__all__ = ["platform"]
