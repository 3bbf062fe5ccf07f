"""The CI guard of tests/ci_skips.py: data skips fail in CI and stay skips elsewhere."""

import pytest

INNER = '''
import pytest

def test_needs_data():
    pytest.skip("../shared/data is not present")

@pytest.mark.skipif(True, reason="shared Statlog Landsat data not present")
def test_marked():
    pass

def test_needs_a_package():
    pytest.importorskip("a_package_that_does_not_exist")
'''


@pytest.mark.parametrize("env, failed, skipped", [
    ({}, 0, 3),
    ({"CI": "true"}, 2, 1),
    ({"ISTHMUS_REQUIRE_SHARED": "1"}, 2, 1),
    ({"CI": "false"}, 0, 3),
])
def test_data_skips_fail_only_in_ci(pytester, monkeypatch, env, failed, skipped):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("ISTHMUS_REQUIRE_SHARED", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # the inner run needs no third-party plugin
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest("-p", "ci_skips", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) + outcomes.get("errors", outcomes.get("error", 0)) == failed
    assert outcomes.get("skipped", 0) == skipped
    if failed:
        result.stdout.fnmatch_lines(["*skipped in CI although it needs ../shared data*"])
