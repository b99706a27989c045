"""The FastAPI REST target: a FastAPI app served by uvicorn (uvloop, httptools), one
forked worker process per CPU, the model run off the event loop in a small thread pool."""
