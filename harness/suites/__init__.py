"""Benchmark suites: a matrix of bundles, scenarios and run options measured cell by cell
(``deploybench suite``), and the history of a suite's runs (``deploybench history``).

The files they write are :mod:`reports.suiteschema`'s; the reports rendered from them are
:mod:`reports.suiteindex` and :mod:`reports.history`.
"""
