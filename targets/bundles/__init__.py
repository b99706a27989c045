"""The built-in model bundles: ``digits`` (overhead-dominated) and ``vision`` (compute-heavy)."""
