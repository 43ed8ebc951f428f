"""Self-contained HTML pages for the run report: tables and Markdown files (the dataset card,
the samples) rendered without a Markdown library, so the report shows them instead of
offering a download."""

from __future__ import annotations

import html
import math
import re

STYLE = ("body{font-family:sans-serif;font-size:14px;margin:1em;max-width:1200px}"
         "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
         "text-align:left;vertical-align:top}th{background:#f0f0f0}tr:nth-child(even){background:#fafafa}"
         "pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap}code{background:#f6f6f6}"
         ".higher{color:#2c7a2c;font-weight:bold}.lower{color:#b22;font-weight:bold}")


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def table(rows: list[dict], columns: list[str] | None = None, classes: dict[str, str] | None = None) -> str:
    """An HTML table of `rows`; a cell whose text is a key of `classes` gets that CSS class."""
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            text = _fmt(r.get(c))
            cls = (classes or {}).get(str(r.get(c)))
            cells.append(f"<td class='{cls}'>{text}</td>" if cls else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def _cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [p.strip().replace("\\|", "|") for p in parts]


def markdown(text: str) -> str:
    """The Markdown herd writes (YAML front matter, headings, pipe tables, lists, code fences,
    paragraphs) as HTML. Not a general Markdown renderer."""
    lines, out, i = text.splitlines(), [], 0
    if lines and lines[0].strip() == "---":  # front matter: shown as it is
        end = next((j for j in range(1, len(lines)) if lines[j].strip() == "---"), None)
        if end is not None:
            out.append("<p><b>Hub metadata (YAML front matter)</b></p><pre>"
                       + html.escape("\n".join(lines[1:end])) + "</pre>")
            i = end + 1
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("```")), len(lines))
            out.append("<pre>" + html.escape("\n".join(lines[i + 1:j])) + "</pre>")
            i = j + 1
        elif m := re.match(r"^(#{1,6})\s+(.*)", line):
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            rows = [_cells(b) for b in block if not re.match(r"^\|[\s|:-]+\|?$", b)]
            head, *body = rows
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
        elif re.match(r"^\s*[-*] ", line):
            items = []
            while i < len(lines) and re.match(r"^\s*[-*] ", lines[i]):
                items.append(f"<li>{_inline(lines[i].strip()[2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        elif line.strip():
            para = [line]  # taken whatever it starts with ("#include" is no heading): the loop always moves on
            i += 1
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\||```|\s*[-*] )", lines[i]):
                para.append(lines[i])
                i += 1
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
        else:
            i += 1
    return "\n".join(out)
