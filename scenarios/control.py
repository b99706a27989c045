"""Shared state between the driver and its users: in-flight count and the drain flag."""

from __future__ import annotations


class LoadControl:
    """Users check ``draining`` before each request and keep ``inflight`` exact.

    At the end of a stage the driver sets ``draining``; users stop sending, the driver
    waits until ``inflight`` reaches 0 and only then stops them, so no request is cut off
    mid-flight (Locust kills users immediately, dropping exactly the slowest requests).
    """

    def __init__(self) -> None:
        self.draining = False
        self.inflight = 0

    def reset(self) -> None:
        self.draining = False
        self.inflight = 0
