"""Helpers that start real Herald processes for tests."""
