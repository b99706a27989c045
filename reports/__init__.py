"""Reports rendered from result files alone: console table, Markdown, HTML, charts.

Nothing here imports the orchestrator: a report is a function of ``run.json`` (and the
samples beside it), so any old run can be re-rendered.
"""
