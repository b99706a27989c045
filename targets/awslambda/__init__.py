"""The Lambda target: a local emulation of AWS Lambda driving the real ``awslambdaric``.

(The folder is ``awslambda``, not ``lambda``: ``lambda`` is a Python keyword, so a package
of that name could not be imported. The target's name is ``lambda``.)

* :mod:`.handler` -- the function: serves the bundle the Lambda way.
* :mod:`.httpserver` -- a minimal HTTP/1.1 server on asyncio (keep-alive, TCP_NODELAY).
* :mod:`.environment` -- one execution environment: an ``awslambdaric`` process and the
  Runtime API it polls.
* :mod:`.function` -- Lambda's execution model: environments on demand up to a
  concurrency limit, reuse, reaping, timeouts, REPORT records.
* :mod:`.frontdoor` -- the Invoke API (boto3-compatible) and a Function URL front door.
* :mod:`.server` -- ``deploybench serve lambda``.
* :mod:`.target` -- the target as the orchestrator sees it.
"""
