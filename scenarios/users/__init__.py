"""Locust user classes, one module per protocol. Import only inside the load generator."""
