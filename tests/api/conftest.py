"""Fixtures of the control-plane API tests."""

from tests.api.control_support import control_api

__all__ = ["control_api"]
