"""Load scenarios (named YAML files in this folder) and the Locust users that drive targets.

Only :mod:`scenarios.users` (and :mod:`harness.driver`, which runs them) import Locust,
inside the load generator's own process: ``import locust`` monkey-patches the whole
process for gevent.
"""
