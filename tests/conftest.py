"""Hypothesis profiles: "ci" (the default) fixes the examples every run draws."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# derandomize seeds each test's examples from a hash of the test function, so
# every run draws the same examples until Hypothesis, Python or the test
# changes, and a failure reproduces without the example database.
# HYPOTHESIS_PROFILE=explore draws new examples instead.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", max_examples=2000, deadline=None)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def pytest_report_header() -> str:
    current = settings()
    return (
        f"hypothesis profile {PROFILE!r}: derandomize={current.derandomize}, "
        f"max_examples={current.max_examples}, database={current.database}"
    )
