"""The built-in model bundles: ``digits`` (overhead-dominated), ``vision`` (compute-heavy)
and ``null`` (no model: a fixed answer, for calibrating the harness)."""
