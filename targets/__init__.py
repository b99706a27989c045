"""Deployment targets: one module (or folder) per way of serving a model bundle.

Targets know nothing of the orchestrator in :mod:`harness`; they are started,
health-checked, asked to predict, described and stopped through the small
:class:`targets.base.Target` protocol.
"""
