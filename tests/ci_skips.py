"""pytest plugin: in CI, a test skipped for missing ../shared data fails instead.

On users' machines those skips are right (the data is not shipped); in CI the data sits beside the
clone, so a skip there means a broken path and tests silently not run. CI is recognised by
``CI=true`` (or ``1``) or ``ISTHMUS_REQUIRE_SHARED=1``; ``.ci/run`` sets the latter.
"""

from __future__ import annotations

import os
import re

import pytest

# the reasons the data-dependent tests give when they skip ("../shared/data is not present", "shared
# Statlog Landsat data not present", "ODDS data not available", ...)
DATA_SKIP = re.compile(r"shared|not present|not available", re.IGNORECASE)


def require_shared_data() -> bool:
    return (os.environ.get("CI", "").lower() in ("true", "1")
            or os.environ.get("ISTHMUS_REQUIRE_SHARED", "") == "1")


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and require_shared_data():
        reason = _reason(report)
        if DATA_SKIP.search(reason):
            report.outcome = "failed"
            report.longrepr = (f"{item.nodeid} was skipped in CI although it needs ../shared data ({reason}); "
                               "put the shared folder beside the clone or set ISTHMUS_DATA")
