"""Helpers shared by the unit and integration tests (no tests of their own)."""
