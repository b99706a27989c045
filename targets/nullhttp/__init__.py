"""The null HTTP target: a tiny asyncio HTTP/1.1 server answering the null bundle's fixed
prediction, for measuring the load generator's own ceiling over HTTP (calibration)."""
