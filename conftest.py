"""Test-session set-up shared by tests/ and the doctests in skrobust/."""

import os

# scikit-learn's check_array_api_input (a check_estimator check) verifies that
# enabling array-API dispatch leaves results unchanged for numpy input; it is
# skipped unless scipy was imported with this switch. Set it before any test
# module imports scipy so that the check runs instead of being skipped.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
