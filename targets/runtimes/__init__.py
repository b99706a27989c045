"""Where a deployment's server runs and how it is started and stopped: a local process
(``process``), a Docker container (``container``, with its ``reaper``), or an endpoint
already running elsewhere (``external``); ``cpuset`` reads and writes CPU lists."""
