"""What crosses the wire between a client and a served target: the request and answer
codec (``codec``) and the keep-alive HTTP client the orchestrator speaks with
(``httpclient``)."""
