"""Markdown exporter: the report's blocks as GitHub-flavoured Markdown, charts as PNG links."""

from __future__ import annotations

from reports.blocks import Block, Bullets, Chart, Heading, Paragraph, Table


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(block: Table) -> str:
    align = ["---:" if i in block.numeric else "---" for i in range(len(block.headers))]
    lines = ["| " + " | ".join(_cell(h) for h in block.headers) + " |",
             "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
    if block.caption:
        lines.append(f"\n*{block.caption}*")
    return "\n".join(lines)


def render(blocks: list[Block], chart_paths: dict[str, str]) -> str:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(table(block))
        elif isinstance(block, Chart):
            parts.append(f"![{block.alt}]({chart_paths[block.name]})")
    return "\n\n".join(parts) + "\n"
