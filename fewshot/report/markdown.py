"""Markdown: the few constructs the report uses (headings, paragraphs, lists, tables, images,
bold, code), rendered to one self-contained HTML file with every image embedded."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

__all__ = ["to_html"]

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
          "line-height:1.45;color:#222}table{border-collapse:collapse;margin:1em 0;font-size:.9em}"
          "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}td:first-child,"
          "th:first-child{text-align:left}img{max-width:100%}code{background:#f3f3f3;padding:0 .2em}")


def _inline(text: str, folder: Path) -> str:
    text = html.escape(text, quote=False)

    def image(m):
        path = folder / m.group(2)
        data = base64.b64encode(path.read_bytes()).decode() if path.exists() else ""
        return f'<img alt="{m.group(1)}" src="data:image/png;base64,{data}">'

    text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", image, text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)


def to_html(markdown: str, folder: Path, title: str = "report", lang: str = "en") -> str:
    """One HTML document for ``markdown`` in language ``lang``; images are read from ``folder``
    and embedded."""
    out, lines, i = [], markdown.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip(), folder)}</h{level}>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                if not re.fullmatch(r"\|[-| :]+\|", lines[i].strip()):
                    rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            head, *body = rows
            out.append("<table><tr>" + "".join(f"<th>{_inline(c, folder)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c, folder)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
            continue
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:], folder)}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.strip():
            para = [line]
            while i + 1 < len(lines) and lines[i + 1].strip() and not lines[i + 1].startswith(("#", "|", "- ")):
                i += 1
                para.append(lines[i])
            out.append(f"<p>{_inline(' '.join(para), folder)}</p>")
        i += 1
    return (f"<!DOCTYPE html><html lang='{html.escape(lang)}'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>" + "\n".join(out) + "</body></html>\n")
