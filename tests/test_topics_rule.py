"""The topics rule on a MediaWiki category dump, through Snakemake (no models)."""
import gzip
import json

from conftest import copy_project, snakemake

DUMP = (
    "-- MySQL dump\nCREATE TABLE `category` (`cat_id` int);\n"
    "INSERT INTO `category` VALUES (1,'Physics',900,40,0),(2,'Jazz_musicians',300,5,2),"
    "(3,'History_of_science_in_Europe',500,30,0),(4,'Rock\\'n\\'roll',80,12,1);\n"
    "INSERT INTO `category` VALUES (5,'Volcanoes',55,11,0),(6,'Chess',120,20,3);\n"
)


def test_topics_from_a_category_dump(tmp_path):
    project = copy_project(tmp_path)
    dump = tmp_path / "enwiki-category.sql.gz"
    with gzip.open(dump, "wt") as fh:
        fh.write(DUMP)
    cfg = tmp_path / "topics.yaml"
    cfg.write_text(f"topics:\n  path: {dump}\n  format: mediawiki_sql\n")
    proc = snakemake(project, "results/topics/topics.txt", "--configfile", str(cfg))
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Volcanoes: 55 members but 44 articles once its 11 subcategories are counted out
    assert (project / "results/topics/topics.txt").read_text().splitlines() == ["Chess", "Physics", "Rock'n'roll"]
    stats = json.loads((project / "results/topics/stats.json").read_text())
    assert stats["kept"] == 3


# --- the rule's core, herd.wikipedia.filter_topic_source, without Snakemake ---

TOPIC_CFG = {"max_words": 2, "max_chars": 255, "min_subcats": 10, "min_pages": 50, "pages": "articles"}


def test_topic_source_dispatches_on_the_format(tmp_path):
    from herd.wikipedia import filter_topic_source

    dump = tmp_path / "category.sql"
    dump.write_text(DUMP)
    kept, stats = filter_topic_source(dump, {**TOPIC_CFG, "format": "mediawiki_sql"})
    assert kept == ["Chess", "Physics", "Rock'n'roll"] and stats["rows"] == 6 and stats["pages"] == "articles"
    titles = tmp_path / "topics.txt"
    titles.write_text("Jazz\nAncient_Egypt\nHistory of the world\njazz\n")
    kept, stats = filter_topic_source(titles, {**TOPIC_CFG, "format": "text"})
    assert kept == ["Jazz", "Ancient Egypt"]
    assert stats == {"input": 4, "kept": 2, "dropped": {"too_many_words": 1, "duplicate": 1}}


def test_no_topic_left_names_the_file(tmp_path):
    import pytest

    from herd.wikipedia import filter_topic_source

    titles = tmp_path / "topics.json"
    titles.write_text(json.dumps({"History of the world": 1}))
    with pytest.raises(ValueError, match=r"topics.json: no topic left after filtering \(see the topics settings"):
        filter_topic_source(titles, {**TOPIC_CFG, "format": "json_map"})
