"""A tiny tag data directory (written by the test, in the real file formats) and its index.

Unit tests run against it so they stay fast and do not read ../shared/data; the dev-set test
(test_devset.py) uses the full reference data.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# name, category, post_count, aliases: the tagcomplete format (0 general, 1 artist, 3 copyright,
# 4 character, 5 meta).
TINY_TAGS = [
    ("1girl", 0, 6008644, "1girls,sole_female"), ("solo", 0, 5000954, "female_solo,solo_female"),
    ("2girls", 0, 707000, ""), ("multiple_girls", 0, 1300000, ""), ("1boy", 0, 1500000, ""),
    ("multiple_boys", 0, 400000, ""), ("highres", 5, 5256195, "high_res,high_resolution,hires"),
    ("long_hair", 0, 4350743, "/lh,longhair"), ("short_hair", 0, 2000000, ""),
    ("grey_hair", 0, 680558, "gray_hair"), ("white_hair", 0, 700000, ""), ("blonde_hair", 0, 1537942, "blond_hair"),
    ("smile", 0, 2873890, ":),smiling"), ("night", 0, 116617, ""), ("night_sky", 0, 90000, ""),
    ("cherry_blossoms", 0, 55244, "cherry_blossom"), ("tree", 0, 300000, ""), ("hat", 0, 1206396, ""),
    ("no_hat", 0, 30000, ""), ("red_ribbon", 0, 200000, ""), ("ribbon", 0, 900000, ""),
    ("sitting", 0, 939842, "sit"), ("standing", 0, 800000, ""), ("glasses", 0, 400000, ""),
    ("blue_eyes", 0, 1800000, ""), ("red_eyes", 0, 1200000, ""), ("umbrella", 0, 150000, ""),
    ("rain", 0, 60000, ""), ("school_uniform", 0, 900000, ""), ("classroom", 0, 40000, ""),
    ("beach", 0, 80000, ""), ("ocean", 0, 150000, ""), ("cat", 0, 100000, ""), ("maid", 0, 200000, ""),
    ("hatsune_miku", 4, 150000, "初音ミク"), ("vocaloid", 3, 200000, ""), ("sakura_kyoko", 4, 20000, ""),
    ("sakugo", 1, 30, ""), ("wlop", 1, 2000, ""), ("commentary_request", 5, 3000000, ""),
]
TINY_JA_HAND = [("long_hair", "ロングヘア"), ("1girl", "一人の女の子"), ("hat", "帽子"), ("smile", "笑顔")]
TINY_JA_MACHINE = TINY_JA_HAND + [("cherry_blossoms", "桜"), ("sakugo", "桜"), ("sakura_kyoko", "桜"),
                                  ("night", "夜"), ("wlop", "ウロップ"), ("umbrella", "傘")]


def write_tiny_data(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "danbooru_tags.csv", "w", encoding="utf-8") as fh:
        for name, cat, count, aliases in TINY_TAGS:
            fh.write(f'{name},{cat},{count},"{aliases}"\n' if aliases else f"{name},{cat},{count},\n")
    (directory / "danbooru_ja_hand.csv").write_text("".join(f"{t},{j}\n" for t, j in TINY_JA_HAND), encoding="utf-8")
    (directory / "danbooru_ja_machine.csv").write_text("".join(f"{t},{j}\n" for t, j in TINY_JA_MACHINE),
                                                       encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return write_tiny_data(tmp_path_factory.mktemp("tagdata"))


@pytest.fixture(scope="session")
def tiny_index(tiny_data, tmp_path_factory) -> Path:
    from sotai.rag import build_index

    return build_index(tiny_data, tmp_path_factory.mktemp("index") / "tiny", progress=False)


@pytest.fixture(scope="session")
def tiny_retriever(tiny_index):
    from sotai.rag import TagRetriever

    return TagRetriever.load(tiny_index)
