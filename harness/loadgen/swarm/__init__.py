"""Locust as the load generator's engine: the only package that imports Locust and gevent.

Imported only inside the load generator's process (``python -m harness.loadgen.driver``,
and the distributed workers), after it has pinned itself to its CPUs: Locust
monkey-patches gevent into the whole process on import.
"""
