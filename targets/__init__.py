"""Deployment targets: one folder per way of serving a model bundle, each registered once
in :mod:`targets.registry` with its protocol client, options and server entry point.

Targets know nothing of the orchestrator in :mod:`harness`; they are started,
health-checked, asked to predict, described and stopped through the small
:class:`targets.base.Target` protocol.
"""
