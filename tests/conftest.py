"""Fixtures shared by the cross-service tests in this folder."""

from tests.faultkit import fault_case
from tests.test_e2e_matching import platform

__all__ = ["fault_case", "platform"]
