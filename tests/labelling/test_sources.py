"""Reading pairs: webdataset tar, JSON Lines, Parquet; bad pairs and unreadable shards become errors."""

from __future__ import annotations

import json

import pytest

from glip.labelling.sources import Pair, PairError, ParquetColumns, Shard, list_shards, read_shard
from labelling_helpers import pair_members, picture, write_tar


def test_tar_pairs_are_grouped_by_key_with_caption_image_and_metadata(tmp_path):
    members = pair_members("000001", 1, "a red star") + pair_members("dir/000002", 2, "a blue ring", "jpg")
    items = list(read_shard(Shard(write_tar(tmp_path / "s.tar", members), "tar")))
    assert [(p.key, p.caption, p.image_extension) for p in items] == [
        ("000001", "a red star", "png"), ("dir/000002", "a blue ring", "jpg")]
    assert items[0].image == picture(1) and items[0].meta == {"url": "http://example.com/000001"}
    assert items[0].shard == "s"


def test_tar_pair_without_image_or_caption(tmp_path):
    members = [("000001.txt", b"a caption without picture")] + pair_members("000002", 2, None)
    items = list(read_shard(Shard(write_tar(tmp_path / "s.tar", members), "tar")))
    assert isinstance(items[0], PairError) and items[0].key == "000001" and "no image" in items[0].reason
    assert isinstance(items[1], Pair) and items[1].caption is None  # the teacher reports "missing caption"


def test_unreadable_tar_is_one_shard_error(tmp_path):
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"this is not a tar archive at all" * 40)
    items = list(read_shard(Shard(broken, "tar")))
    assert len(items) == 1 and items[0].key is None and "unreadable shard broken.tar" in items[0].reason


def test_truncated_tar_keeps_the_pairs_before_the_cut(tmp_path):
    path = write_tar(tmp_path / "t.tar", pair_members("000001", 1, "a star") + pair_members("000002", 2, "a ring"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 700])
    items = list(read_shard(Shard(path, "tar")))
    assert isinstance(items[0], Pair) and items[0].key == "000001"
    assert isinstance(items[-1], PairError) and items[-1].key is None


def test_jsonl_paths_are_relative_to_the_file_and_keys_are_line_numbers(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(picture(0))
    lines = [json.dumps({"image": "img/a.png", "caption": "a red star"}), "{not json", json.dumps({"caption": "x"}),
             "", json.dumps({"image": "img/a.png"})]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    items = list(read_shard(Shard(tmp_path / "pairs.jsonl", "jsonl")))
    assert isinstance(items[0], Pair) and items[0].image == (tmp_path / "img" / "a.png").resolve()
    assert (items[0].key, items[0].caption) == ("1", "a red star")
    assert isinstance(items[1], PairError) and items[1].key == "2" and "invalid JSON" in items[1].reason
    assert isinstance(items[2], PairError) and "no 'image'" in items[2].reason
    assert isinstance(items[3], Pair) and items[3].key == "5" and items[3].caption is None


def test_parquet_bytes_and_path_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"jpg": [picture(0, format="JPEG"), None], "caption": ["a red star", "a ring"],
                             "key": ["k0", "k1"]}), tmp_path / "bytes.parquet")
    items = list(read_shard(Shard(tmp_path / "bytes.parquet", "parquet")))
    assert isinstance(items[0], Pair) and items[0].key == "k0" and items[0].image == picture(0, format="JPEG")
    assert isinstance(items[1], PairError) and items[1].key == "k1"

    (tmp_path / "a.png").write_bytes(picture(1))
    pq.write_table(pa.table({"file": ["a.png"], "text": ["a blue ring"]}), tmp_path / "paths.parquet")
    columns = ParquetColumns(path="file", caption="text")
    (item,) = read_shard(Shard(tmp_path / "paths.parquet", "parquet"), columns)
    assert item.image == (tmp_path / "a.png").resolve() and item.caption == "a blue ring" and item.key == "0"

    (error,) = read_shard(Shard(tmp_path / "paths.parquet", "parquet"))  # default columns: jpg, caption
    assert error.key is None and "no column 'jpg', 'caption'" in error.reason and "--caption-column" in error.reason


def test_list_shards_folders_globs_and_collisions(tmp_path):
    for name in ("00000.tar", "00001.tar", "00000.parquet", "00000_stats.json"):
        (tmp_path / name).write_bytes(b"")
    assert [s.path.name for s in list_shards([tmp_path])] == ["00000.tar", "00001.tar"]  # tars before metadata
    assert [s.name for s in list_shards([str(tmp_path / "0000*.tar")])] == ["00000", "00001"]
    assert len(list_shards([tmp_path / "00000.tar", str(tmp_path / "*.tar")])) == 2  # each once
    with pytest.raises(ValueError, match="two shards are named '00000'"):
        list_shards([tmp_path / "00000.tar", tmp_path / "00000.parquet"])
    with pytest.raises(FileNotFoundError, match="missing.tar"):
        list_shards([tmp_path / "missing.tar"])
    with pytest.raises(ValueError, match="not a shard"):
        list_shards([tmp_path / "00000_stats.json"])
