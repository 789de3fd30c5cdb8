"""The test-site fixtures for tests/site, also when it runs alone (``--confcutdir=tests/site``,
which keeps tests/conftest.py out)."""

from tests.site.fixtures import RemoteSite, site_alone, test_site  # noqa: F401
