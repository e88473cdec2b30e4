"""Test-session set-up shared by tests/ and the doctests in skrobust/."""

import os

# scikit-learn's check_array_api_input (a check_estimator check) verifies that
# enabling array-API dispatch leaves results unchanged for numpy input; it is
# skipped unless scipy was imported with this switch. Set it before any test
# module imports scipy so that the check runs instead of being skipped.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

# Property tests draw the same examples on every run (and on CI), so that a
# red run is reproducible; set SKROBUST_HYPOTHESIS=random to explore new ones.
from hypothesis import settings  # noqa: E402

settings.register_profile("deterministic", derandomize=True)
settings.register_profile("random", derandomize=False)
settings.load_profile(os.environ.get("SKROBUST_HYPOTHESIS", "deterministic"))
