"""The load generator: the process that drives a target, and its contract with the orchestrator.

* :mod:`.protocol` is the contract (a leaf both sides import): the plan's typed parts, the
  stage report, file names, exit codes, time budgets.
* :mod:`.launch` is the load generator as the orchestrator sees it: it writes the plan,
  starts ``python -m harness.loadgen.driver``, follows its events, reads its results;
  :mod:`.simulated` is the fake target's load generator for unit tests.
* The load generator's process: :mod:`.driver` (its entry point), the stage loop every
  engine shares (:mod:`.stages`, :mod:`.timeline`, built of :mod:`.stagekit`), the
  harness's own request recorder and resource meter, and two engines: the in-process one
  (:mod:`.embedded`, :mod:`.handlers`) and Locust's (:mod:`.swarm`, the only place Locust
  and gevent are imported).
* :mod:`.analysis` is pure numpy: a stage's figures and verdict from its raw samples, the
  sweep's stopping rule, the timeline's figures, Lambda's records.
"""
