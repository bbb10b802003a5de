"""Property-based fuzzing (hypothesis) of every parser that reads untrusted input.

The budget is `MARKET_FUZZ_EXAMPLES` examples per property (default 50, quick enough for every `pytest` run;
`make fuzz` raises it). No property asserts a duration: a hang shows as the per-example deadline
(`MARKET_FUZZ_DEADLINE_S`, default 10 s, far above any real example) being exceeded twice in a row.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

settings.register_profile(
    "market",
    max_examples=int(os.environ.get("MARKET_FUZZ_EXAMPLES", "50")),
    deadline=timedelta(seconds=float(os.environ.get("MARKET_FUZZ_DEADLINE_S", "10"))),
    # One database or app serves every example of a property: that is the point, not an accident.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("market")
