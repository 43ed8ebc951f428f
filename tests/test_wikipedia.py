import gzip

import pytest

from herd.wikipedia import filter_categories, iter_rows, unescape

# A category dump in mysqldump's format, written by hand. Row comments:
# kept under pages="articles" (cat_pages - cat_subcats - cat_files > 50) unless noted.
DUMP = (
    "-- MySQL dump 10.19  Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)\n"
    "--\n"
    "-- Host: db1234    Database: testwiki\n"
    "/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n"
    "DROP TABLE IF EXISTS `category`;\n"
    "CREATE TABLE `category` (\n"
    "  `cat_id` int(10) unsigned NOT NULL AUTO_INCREMENT,\n"
    "  `cat_title` varbinary(255) NOT NULL DEFAULT '',\n"
    "  `cat_pages` int(11) NOT NULL DEFAULT 0,\n"
    "  `cat_subcats` int(11) NOT NULL DEFAULT 0,\n"
    "  `cat_files` int(11) NOT NULL DEFAULT 0,\n"
    "  PRIMARY KEY (`cat_id`)\n"
    ") ENGINE=InnoDB DEFAULT CHARSET=binary COMMENT='not; a (row)';\n"
    "/* a comment; with ('x',1,2,3,4) inside */\n"
    "LOCK TABLES `category` WRITE;\n"
    "INSERT INTO `categorylinks` VALUES (99,'Ignored_table;\\'',500,50,0);\n"
    "INSERT INTO `category` VALUES "
    "(1,'Physics',300,40,5),"                           # kept
    "(2,'Ancient_Greek_philosophers',500,30,0),"        # 3 words
    "(3,'Rock_music',200,10,0),"                        # subcats not > 10
    "(4,'Jazz',61,11,0),"                               # 50 articles; kept as 61 members
    "(5,'Women\\'s_history',100,20,0),"                 # Women's history, kept
    "(6,'Back\\\\slash_music',90,12,3);\n"              # Back\slash music, 75 articles, kept
    "INSERT INTO `category` VALUES (7,'Say_\\\"hi\\\"',80,12,0),"  # Say "hi", kept
    "(8,'Line\\nbreak_here',90,5,0),"                   # 3 words (\n is whitespace)
    "(9,'Caf\u00e9',90,15,0),"                          # UTF-8 title, kept
    "(10,'Stubs',-1,12,0),\n"                           # negative count; rows over two lines
    "(11,'Bad',NULL,12,0),"                             # malformed: NULL
    "(12,'Short',5),"                                   # malformed: 3 fields
    "(13,'It''s',99,20,0);\n"                           # doubled quote: It's, kept
    "INSERT INTO `category` VALUES (14,'Ok_row',100,20,0) garbage;\n"  # kept, then a syntax error
    "/*!40000 ALTER TABLE `category` ENABLE KEYS */;\n"
    "UNLOCK TABLES;\n"
)
KEPT = ["Back\\slash music", "Café", "It's", "Ok row", "Physics", 'Say "hi"', "Women's history"]


@pytest.fixture(params=["plain", "gzip"])
def dump(tmp_path, request):
    data = DUMP.encode("utf-8")
    if request.param == "gzip":
        path = tmp_path / "testwiki-latest-category.sql.gz"
        path.write_bytes(gzip.compress(data))
    else:
        path = tmp_path / "testwiki-latest-category.sql"
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 20])
def test_filter_exact_titles_and_counts(dump, chunk_size):
    # a 128-byte lookahead over 1- and 7-byte chunks splits rows across every kind of boundary
    titles, stats = filter_categories(dump, chunk_size=chunk_size, lookahead=128)
    assert titles == KEPT
    offset = DUMP.encode().index(b"(11,")
    syntax_at = DUMP.encode().index(b"garbage")
    assert stats == {
        "rows": 12, "kept": 7, "duplicates": 0,
        "removed": {"too_many_words": 2, "few_subcats": 1, "few_pages": 2},
        "removed_total": 5,
        "malformed": 3,
        "malformed_by_reason": {"field_count": 1, "field_type": 1, "syntax": 1},
        "malformed_examples": [f"row 11 at byte {offset}: field_type",
                               f"row 12 at byte {DUMP.encode().index(b'(12,')}: field_count",
                               f"row 14 at byte {syntax_at}: syntax"],
        "pages": "articles",
    }


def test_pages_as_all_members_and_thresholds_are_arguments(dump):
    titles, stats = filter_categories(dump, pages="members")
    assert titles == sorted(KEPT + ["Jazz"])
    assert stats["removed"] == {"too_many_words": 2, "few_subcats": 1, "few_pages": 1}
    titles, stats = filter_categories(dump, max_words=3, min_subcats=9, min_pages=100)
    # 3 words now allowed; Rock music has 10 > 9 subcats; pages must exceed 100 articles
    assert titles == ["Ancient Greek philosophers", "Physics", "Rock music"]
    assert stats["removed"] == {"too_many_words": 0, "few_subcats": 1, "few_pages": 8}
    with pytest.raises(ValueError):
        filter_categories(dump, pages="pages")


def test_rows_are_parsed_with_mysql_escapes(dump):
    rows = list(iter_rows(dump, chunk_size=5, lookahead=100))
    assert rows[0] == (1, "Physics", 300, 40, 5)
    assert [r[1] for r in rows[4:8]] == ["Women's_history", "Back\\slash_music", 'Say_"hi"',
                                        "Line\nbreak_here"]
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14]


def test_unescape():
    assert unescape(rb"'a\'b\"c\\d\0e\nf\tg\Zh\%i\_j\qk''l'") == b"a'b\"c\\d\0e\nf\tg\x1ah\\%i\\_jqk'l"


def test_column_list_in_the_standard_order_is_accepted(tmp_path):
    path = tmp_path / "c.sql"
    path.write_text("INSERT INTO `category` (`cat_id`, `cat_title`, `cat_pages`, `cat_subcats`,"
                    " `cat_files`) VALUES (1,'Physics',300,40,5);\n")
    assert filter_categories(path)[0] == ["Physics"]
    path.write_text("INSERT INTO `category` (cat_title, cat_id) VALUES ('Physics',1);\n")
    with pytest.raises(ValueError, match="column list"):
        filter_categories(path)
