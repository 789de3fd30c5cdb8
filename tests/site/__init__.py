"""The test site's own tests and its pytest fixtures (fixtures.py)."""
