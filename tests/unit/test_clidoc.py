"""docs/cli.md is generated from the CLI's parser (harness/clidoc.py): it must be what the
generator renders now, or an option changed without its documentation."""

from __future__ import annotations

import difflib

import pytest

from harness import clidoc


def test_cli_reference_is_up_to_date() -> None:
    expected = clidoc.render()
    if not clidoc.CLI_MD.exists():
        pytest.fail(f"{clidoc.CLI_MD} is missing; write it with: {clidoc.REGENERATE}")
    actual = clidoc.CLI_MD.read_text(encoding="utf-8")
    # argparse wraps some usage lines differently across Python versions (3.13 joins the
    # top-level one): a page that differs only in line breaks says the same.
    if actual.split() != expected.split():
        diff = difflib.unified_diff(actual.splitlines(), expected.splitlines(),
                                    "docs/cli.md", "harness.clidoc.render()", lineterm="", n=1)
        shown = "\n".join(list(diff)[:40])
        pytest.fail(f"docs/cli.md differs from the parser's --help; regenerate it with: "
                    f"{clidoc.REGENERATE}\n{shown}")


def test_cli_reference_ignores_the_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    wide = clidoc.render()
    monkeypatch.setenv("COLUMNS", "40")
    assert clidoc.render() == wide


def test_cli_reference_has_every_command() -> None:
    text = clidoc.render()
    for command in ("run", "calibrate", "report", "upgrade", "compare", "serve flask",
                    "serve fastapi", "serve grpc", "serve lambda", "loadgen-worker", "scenarios",
                    "init-bundle", "bundles"):
        assert f"\n## deploybench {command}\n" in text
        assert f"usage: deploybench {command}" in text
