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
