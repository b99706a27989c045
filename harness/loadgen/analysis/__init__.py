"""A stage's figures from its raw samples, in pure numpy: latency percentiles, the
stability windows and the verdict, the sweep's stopping rule, the timeline's figures and
Lambda's REPORT records. Used by the load generator (its quick figures during a sweep)
and by the orchestrator (every figure the results report)."""
