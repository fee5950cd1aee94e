"""Shared test setup: hypothesis profiles.

Choose one with HYPOTHESIS_PROFILE=ci (the default: the full example counts, sized so the whole
suite runs in about ten minutes on two cores, Numba compilation included) or HYPOTHESIS_PROFILE=dev
(a quick pass while editing).
"""

import os

from hypothesis import HealthCheck, settings

# No example database: test runs leave nothing behind in the work tree.
settings.register_profile("ci", max_examples=250, deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=20, deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
