"""Load the test-site plugin (tests/site/fixtures.py) by path, under a unique module
name, so it works whatever pytest's import mode and whether or not `tests` is a package."""

import importlib.util
import sys
from pathlib import Path

_name = "rbsite_test_fixtures"
if _name in sys.modules:
    _mod = sys.modules[_name]
else:
    _spec = importlib.util.spec_from_file_location(_name, Path(__file__).with_name("fixtures.py"))
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules[_name] = _mod
    _spec.loader.exec_module(_mod)

test_site = _mod.test_site
site_alone = _mod.site_alone
RemoteSite = _mod.RemoteSite
