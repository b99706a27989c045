"""Load scenarios: the named YAML files in this folder, how they are read and checked
(:mod:`.catalogue`), and an open-loop stage's arrival schedule (:mod:`.schedule`). The
Locust users that drive targets are in :mod:`harness.loadgen.swarm.users`.
"""
