"""Load scenarios (named YAML files in this folder) and the Locust users that drive targets.

Only :mod:`scenarios.driver` and :mod:`scenarios.users` import Locust, and only inside the
load generator's own process: ``import locust`` monkey-patches the whole process for gevent.
"""
