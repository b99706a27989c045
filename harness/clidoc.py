"""The command-line reference, ``docs/cli.md``, rendered from the parser that
:func:`harness.cli.build_parser` builds: every command's ``--help``, at a fixed width so the
page does not depend on the terminal that wrote it.

``python -m harness.clidoc --write`` (``make docs``) rewrites the page; without ``--write``
it prints it. ``tests/unit/test_clidoc.py`` fails when the page says anything other than
what this renders (line breaks aside, which argparse places differently in some Python
versions), so an option added to the parser cannot be left out of the documentation.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from harness.cli import build_parser

#: The terminal width the help is formatted for.
WIDTH = 100
#: The page this module writes.
CLI_MD = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
#: The command that regenerates :data:`CLI_MD`, for messages.
REGENERATE = "make docs (or: python -m harness.clidoc --write)"
#: Colour codes, which argparse adds to help on a terminal from Python 3.14.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

_INTRO = """\
# Command-line reference

Every `deploybench` command's `--help`, generated from the parser in `harness/cli.py` by
`python -m harness.clidoc --write` (`make docs`). Do not edit this page by hand:
`tests/unit/test_clidoc.py` fails when it differs from what the parser produces. What the
options mean in practice (CPUs, bundles, encodings, scenario keys) is in
[options.md](options.md).
"""


class _FixedWidthFormatter(argparse.HelpFormatter):
    """argparse's default formatter at :data:`WIDTH` columns, whatever the terminal."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=WIDTH)


def _commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subcommand's parser below it, in the order they were added."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            # An alias maps to the same parser as its command: each parser once.
            for sub in dict.fromkeys(action.choices.values()):
                yield from _commands(sub)


def _anchor(title: str) -> str:
    """GitHub's anchor for a heading made of ``title`` (letters, digits, '-' and spaces)."""
    return title.lower().replace(" ", "-")


def render() -> str:
    """The whole of ``docs/cli.md``."""
    parsers = list(_commands(build_parser()))
    contents = [f"- [`{p.prog}`](#{_anchor(p.prog)})" for p in parsers]
    sections = []
    for parser in parsers:
        parser.formatter_class = _FixedWidthFormatter
        text = _ANSI.sub("", parser.format_help()).strip()
        text = "\n".join(line.rstrip() for line in text.splitlines())
        sections.append(f"## {parser.prog}\n\n```text\n{text}\n```\n")
    return "\n".join([_INTRO, *contents, "", *sections])


def main(argv: Sequence[str] | None = None) -> int:
    args = argparse.ArgumentParser(
        prog="python -m harness.clidoc",
        description="Render the deploybench command-line reference (docs/cli.md).",
    )
    args.add_argument("--write", action="store_true", help=f"write it to {CLI_MD}")
    if args.parse_args(argv).write:
        CLI_MD.write_text(render(), encoding="utf-8")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
