"""Topics from a MediaWiki `category` table dump (`*-category.sql.gz` or plain .sql).

The dump is mysqldump output: `INSERT INTO \\`category\\` VALUES (1,'Title',12,3,0),(...);`
statements, very long lines, MySQL string escapes, plus other statements
(CREATE TABLE, SET, LOCK TABLES, comments) that are skipped. It is read as a
byte stream in chunks, so a file of any size streams in constant memory and a
row may straddle two chunks.

Rows are (cat_id, cat_title, cat_pages, cat_subcats, cat_files). In MediaWiki
`cat_pages` counts ALL members of the category: articles, subcategories and
files. The LaMini-LM rule ("fewer than 3 words, more than 10 subcategories and
more than 50 pages") is applied with

- words: the title with underscores read as spaces, split on whitespace;
- subcategories: cat_subcats;
- pages: with `pages="articles"` (default) the members that are neither
  subcategories nor files, cat_pages - cat_subcats - cat_files; with
  `pages="members"` cat_pages itself.

The paper's comparisons are strict: words < 3, subcats > 10, pages > 50, i.e. a
category is kept when words <= max_words (2), subcats > min_subcats (10) and
pages > min_pages (50).
"""

from __future__ import annotations

import gzip
import re
from collections import Counter

from herd import sources

CHUNK_SIZE = 1 << 20  # bytes read at a time
LOOKAHEAD = 1 << 16  # bytes kept ahead of the parser; no token (row, string, comment) is longer
MAX_EXAMPLES = 5  # malformed rows reported with their position
GZIP_MAGIC = b"\x1f\x8b"
COLUMNS = ("cat_id", "cat_title", "cat_pages", "cat_subcats", "cat_files")
RULES = ("too_many_words", "few_subcats", "few_pages")  # checked in this order

# MySQL string escapes; \% and \_ keep their backslash, any other escaped byte stands for itself.
_ESCAPES = {b"0": b"\0", b"b": b"\b", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"Z": b"\x1a",
            b"%": b"\\%", b"_": b"\\_"}
_STRING = rb"'(?:[^'\\]|\\.|'')*'"
_DQ_STRING = rb'"(?:[^"\\]|\\.|"")*"'
_INT = rb"\s*(-?\d+)\s*"
_ROW = re.compile(rb"\(%s,\s*(%s)\s*,%s,%s,%s\)" % (_INT, _STRING, _INT, _INT, _INT), re.DOTALL)
_ANY_ROW = re.compile(rb"\(((?:%s|%s|[^'\"()])*)\)" % (_STRING, _DQ_STRING), re.DOTALL)
_STRINGS = re.compile(rb"%s|%s" % (_STRING, _DQ_STRING), re.DOTALL)
_SPACE = re.compile(rb"(?:\s+|--[^\n]*\n|#[^\n]*\n|/\*.*?\*/)*", re.DOTALL)
_SEPARATOR = re.compile(rb"[,;]")
_INSERT = re.compile(
    rb"INSERT\s+(?:IGNORE\s+)?INTO\s+`?category`?\s*(?:\(([^)]*)\)\s*)?VALUES\s*", re.IGNORECASE)
# one piece of any other statement: a quoted string or name, a comment, plain text, or ';'
_SKIP = re.compile(rb"%s|%s|`[^`]*`|--[^\n]*\n|#[^\n]*\n|/\*.*?\*/|[^;'\"`#/-]+|[#/-]|;"
                   % (_STRING, _DQ_STRING), re.DOTALL)
_UNESCAPE = re.compile(rb"\\(.)|''", re.DOTALL)


def unescape(quoted: bytes) -> bytes:
    """A single-quoted MySQL string literal (quotes included) -> its bytes."""
    return _UNESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)) if m.group(1) else b"'",
                         quoted[1:-1])


class _Stream:
    """A byte buffer over a file read in chunks, kept `lookahead` bytes ahead of `pos`.

    A token shorter than the lookahead is therefore always whole in the buffer,
    whatever chunk boundary it straddles. `offset` is the stream position of buf[0].
    """

    def __init__(self, fh, chunk_size: int, lookahead: int):
        self.fh, self.chunk_size, self.lookahead = fh, chunk_size, lookahead
        self.buf, self.pos, self.offset, self.eof = b"", 0, 0, False

    def fill(self) -> None:
        while not self.eof and len(self.buf) - self.pos < self.lookahead:
            chunk = self.fh.read(self.chunk_size)
            self.offset += self.pos
            self.buf, self.pos, self.eof = self.buf[self.pos:] + chunk, 0, not chunk

    def match(self, pattern: re.Pattern):
        self.fill()
        return pattern.match(self.buf, self.pos)

    def skip_space(self) -> None:
        """Skip whitespace and comments (a long run is read a lookahead at a time)."""
        while (end := self.match(_SPACE).end()) > self.pos:
            self.pos = end

    def at_end(self) -> bool:
        self.fill()
        return self.pos >= len(self.buf)

    def skip_line(self) -> None:
        """Resynchronise after a syntax error: go past the next newline."""
        while (newline := self.buf.find(b"\n", self.pos)) < 0 and not self.eof:
            self.pos = len(self.buf)
            self.fill()
        self.pos = len(self.buf) if newline < 0 else newline + 1


class _Malformed:
    """Counts malformed rows by reason (in the caller's Counter) and describes the first
    MAX_EXAMPLES (in the caller's list) with their row number and byte offset."""

    def __init__(self, counts: Counter, examples: list):
        self.counts, self.examples, self.row_number = counts, examples, 0

    def __call__(self, reason: str, offset: int) -> None:
        self.counts[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"row {self.row_number} at byte {offset}: {reason}")


def _skip_statement(s: _Stream, bad: _Malformed) -> None:
    """Go past a statement other than an INSERT into `category`, strings and comments included."""
    while (piece := s.match(_SKIP)) is not None:
        s.pos = piece.end()
        if piece.group() == b";":
            return
    if not s.at_end():  # an unterminated string or name
        bad("syntax", s.offset + s.pos)
        s.skip_line()


def _insert_rows(s: _Stream, bad: _Malformed):
    """Yield the well-formed rows of one INSERT (`s` at its first row), separated by ',' and
    ended by ';'; a syntax error ends the INSERT (the scan goes on from the next line)."""
    while True:
        s.skip_space()
        bad.row_number += 1
        start = s.offset + s.pos
        if (m := s.match(_ROW)) is not None:
            s.pos = m.end()
            try:
                title = unescape(m.group(2)).decode("utf-8")
            except UnicodeDecodeError:
                bad("invalid_utf8", start)
            else:
                if title:
                    yield int(m.group(1)), title, *map(int, m.group(3, 4, 5))
                else:
                    bad("empty_title", start)
        elif (m := s.match(_ANY_ROW)) is not None:  # a tuple, not of the 5 expected values
            s.pos = m.end()
            n_fields = len(_STRINGS.sub(b"''", m.group(1)).split(b","))
            bad("field_count" if n_fields != len(COLUMNS) else "field_type", start)
        else:
            bad("syntax", start)
            s.skip_line()
            return
        s.skip_space()
        if (sep := s.match(_SEPARATOR)) is None:
            bad("syntax", s.offset + s.pos)
            s.skip_line()
            return
        s.pos = sep.end()
        if sep.group() == b";":
            return


def iter_rows(path, chunk_size: int = CHUNK_SIZE, malformed: Counter | None = None,
              examples: list | None = None, lookahead: int = LOOKAHEAD):
    """Yield (cat_id, title, pages, subcats, files) rows of a category dump, title decoded.

    Malformed rows are counted in `malformed` by reason (field_count, field_type,
    invalid_utf8, empty_title, syntax) and the first MAX_EXAMPLES described in
    `examples` with their row number and byte offset in the uncompressed stream;
    they never stop the scan. After a syntax error the scan resumes on the next line.
    """
    bad = _Malformed(Counter() if malformed is None else malformed, [] if examples is None else examples)
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
    with (gzip.open if gzipped else open)(path, "rb") as fh:
        s = _Stream(fh, chunk_size, lookahead)
        while True:
            s.skip_space()
            if s.at_end():
                return
            insert = s.match(_INSERT)
            if insert is None:  # another statement: skip it
                _skip_statement(s, bad)
                continue
            columns = insert.group(1)
            if columns and tuple(c.strip(b" `").decode() for c in columns.split(b",")) != COLUMNS:
                raise ValueError(f"unsupported column list {columns!r} at byte {s.offset + s.pos}")
            s.pos = insert.end()
            yield from _insert_rows(s, bad)


def filter_categories(path, max_words: int = 2, min_subcats: int = 10, min_pages: int = 50,
                      pages: str = "articles", chunk_size: int = CHUNK_SIZE,
                      lookahead: int = LOOKAHEAD):
    """Apply the LaMini-LM topic rule to a category dump; return (titles, stats).

    Kept: words <= max_words, subcats > min_subcats, pages > min_pages (see the
    module docstring for `pages`). Titles come back with underscores as spaces,
    deduplicated, sorted by code point. stats counts rows read, kept, removed by
    the first failing rule in RULES order (and in total), and malformed rows by
    reason with the first few positions.
    """
    if pages not in ("articles", "members"):
        raise ValueError(f"pages must be 'articles' or 'members', got {pages!r}")
    malformed: Counter = Counter()
    examples: list[str] = []
    removed = Counter({rule: 0 for rule in RULES})
    kept: set[str] = set()
    rows = duplicates = 0
    for _, title, n_pages, n_subcats, n_files in iter_rows(path, chunk_size, malformed, examples, lookahead):
        rows += 1
        title = title.replace("_", " ")
        n = n_pages - n_subcats - n_files if pages == "articles" else n_pages
        if len(title.split()) > max_words:
            removed["too_many_words"] += 1
        elif n_subcats <= min_subcats:
            removed["few_subcats"] += 1
        elif n <= min_pages:
            removed["few_pages"] += 1
        elif title in kept:
            duplicates += 1
        else:
            kept.add(title)
    stats = {
        "rows": rows,
        "kept": len(kept),
        "duplicates": duplicates,
        "removed": dict(removed),
        "removed_total": sum(removed.values()),
        "malformed": sum(malformed.values()),
        "malformed_by_reason": dict(sorted(malformed.items())),
        "malformed_examples": examples,
        "pages": pages,
    }
    return sorted(kept), stats


def filter_topic_source(path, cfg: dict) -> tuple[list[str], dict]:
    """The topics of the configured source `path` (`cfg`: the topics config): a category dump
    (format mediawiki_sql) through filter_categories, a title list (text, json_map) through
    sources.filter_topics; return (titles, stats). Raises ValueError when no topic is left.

    Here rather than in herd.sources: only the topics stage needs the dump parser, and the
    stages that read seeds through herd.sources should not rerun when it changes."""
    if cfg["format"] == "mediawiki_sql":
        kept, stats = filter_categories(path, max_words=cfg["max_words"], min_subcats=cfg["min_subcats"],
                                        min_pages=cfg["min_pages"], pages=cfg["pages"])
    else:
        titles = sources.load_topics(path, cfg["format"], cfg["max_chars"])
        kept, dropped = sources.filter_topics(titles, cfg["max_words"])
        stats = {"input": len(titles), "kept": len(kept), "dropped": dropped}
    if not kept:
        raise ValueError(f"{path}: no topic left after filtering (see the topics settings in config/schema.yaml)")
    return kept, stats
