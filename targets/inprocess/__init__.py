"""The in-process deployment: the application calls the bundle directly (``target``), and
``python -m targets.inprocess BUNDLE`` is its cold start (``__main__``)."""
