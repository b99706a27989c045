"""HTML exporter: one self-contained file (charts inlined as base64 PNG, no scripts,
no external resources), so it opens offline and can be mailed as is."""

from __future__ import annotations

import base64
import html
import re

from reports.blocks import Block, Bullets, Chart, Heading, Paragraph, Table

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #e5e5e5; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { caption-side: bottom; font-size: 0.85em; color: #666; text-align: left; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; }
code { background: #f3f3f3; padding: 0 0.2em; border-radius: 3px; }
"""


#: A Markdown link to a file beside the report (``[report](cells/X/report.html)``); links
#: with a scheme or to an absolute path are left as text: the file stays self-contained.
_LINK = re.compile(r"\[([^\]]+)\]\(((?![a-zA-Z][a-zA-Z0-9+.-]*:|/)[^)\s]+)\)")


def _links(escaped: str) -> str:
    return _LINK.sub(r'<a href="\2">\1</a>', escaped)


def _inline(text: str) -> str:
    """Escape, then render the Markdown the blocks use: **bold**, `code` and relative
    links."""
    out = _links(html.escape(text))
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def table(block: Table) -> str:
    def cls(i: int) -> str:
        return ' class="num"' if i in block.numeric else ""

    head = "".join(f"<th{cls(i)}>{html.escape(h)}</th>" for i, h in enumerate(block.headers))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{_links(html.escape(c))}</td>"
                         for i, c in enumerate(row))
        + "</tr>"
        for row in block.rows
    )
    caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(blocks: list[Block], charts: dict[str, bytes], title: str) -> str:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items)
                         + "</ul>")
        elif isinstance(block, Table):
            parts.append(table(block))
        elif isinstance(block, Chart):
            data = base64.b64encode(charts[block.name]).decode()
            parts.append(f'<figure><img src="data:image/png;base64,{data}" '
                         f'alt="{html.escape(block.alt)}"><figcaption>'
                         f"{html.escape(block.title)}</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")
