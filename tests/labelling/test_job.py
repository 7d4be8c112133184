"""The labelling job: every input format into ODVG shards the trainer reads, the manifest's counts,
errors.jsonl, resuming, refusing another run's folder, and 1 vs 2 workers giving the same files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from glip.data.grounding import GroundingJsonlDataset, read_odvg_line
from glip.labelling.cli import main
from glip.labelling.job import LabelSettings, image_file_name, run_job
from labelling_helpers import CAPTIONS, clean_tar, pair_members, picture, read_outputs, write_tar


@pytest.fixture
def single_thread(monkeypatch):
    """Same float arithmetic in this process and in spawned workers."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mixed_inputs(root: Path) -> list[Path]:
    """A tar with good and bad pairs, a JSON Lines file, a Parquet file and an unreadable tar."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    members = pair_members("000000", 0, CAPTIONS[0]) + pair_members("000001", 1, CAPTIONS[1], "jpg")
    members += [("000002.png", b"not a picture"), ("000002.txt", b"a red star")]
    members += pair_members("000003", 3, None)  # missing caption
    members += pair_members("000004", 4, "running quickly")  # no noun phrase
    members += [("000005.txt", b"a caption without its picture")]
    tar = write_tar(root / "mixed.tar", members)
    (root / "img").mkdir()
    (root / "img" / "a.png").write_bytes(picture(7))
    (root / "pairs.jsonl").write_text(json.dumps({"image": "img/a.png", "caption": CAPTIONS[2]}) + "\n{oops\n")
    pq.write_table(pa.table({"jpg": [picture(8, format="JPEG")], "caption": [CAPTIONS[0]], "key": ["p0"]}),
                   root / "table.parquet")
    (root / "broken.tar").write_bytes(b"garbage" * 100)
    return [tar, root / "pairs.jsonl", root / "table.parquet", root / "broken.tar"]


def test_every_format_becomes_odvg_shards_with_counts_and_errors(tiny_checkpoint, tmp_path):
    inputs = _mixed_inputs(tmp_path)
    out = tmp_path / "out"
    manifest = run_job(inputs, out, LabelSettings(weights=str(tiny_checkpoint), min_score=0.5, batch_size=2))
    shards = manifest["shards"]
    assert list(shards) == ["mixed", "pairs", "table", "broken"]
    assert {k: shards["mixed"][k] for k in ("pairs", "kept", "dropped", "errors", "phrases")} == \
        {"pairs": 6, "kept": 2, "dropped": 0, "errors": 4, "phrases": 4}
    assert {k: shards["pairs"][k] for k in ("pairs", "kept", "errors")} == {"pairs": 2, "kept": 1, "errors": 1}
    assert {k: shards["table"][k] for k in ("pairs", "kept", "errors")} == {"pairs": 1, "kept": 1, "errors": 0}
    assert {k: shards["broken"][k] for k in ("pairs", "kept", "errors")} == {"pairs": 0, "kept": 0, "errors": 1}
    assert manifest["totals"]["pairs"] == 9 and manifest["totals"]["errors"] == 6
    assert manifest["settings"]["min_score"] == 0.5 and len(manifest["teacher"]["fingerprint"]) == 16
    assert json.loads((out / "manifest.json").read_text()) == manifest

    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["shard"], e["key"]) for e in errors] == [
        ("mixed", "000002"), ("mixed", "000003"), ("mixed", "000004"), ("mixed", "000005"), ("pairs", "2"),
        ("broken", None)]
    reasons = [e["reason"] for e in errors]
    assert "not an image" in reasons[0] and reasons[1] == "missing caption" and "no noun phrase" in reasons[2]
    assert "no image member" in reasons[3] and "invalid JSON" in reasons[4] and "unreadable shard" in reasons[5]

    boxes = 0
    for name in ("mixed", "pairs", "table"):
        lines = (out / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) == shards[name]["kept"]
        for line in lines:
            record = read_odvg_line(line)
            assert record.record["shard"] == name and record.width and record.height
            assert all(region["score"] > 0.5 for region in record.record["grounding"]["regions"])
            boxes += len(record.record["grounding"]["regions"])
        dataset = GroundingJsonlDataset(out / f"{name}.jsonl", out, on_error="raise")
        assert len(dataset) == len(lines) and len(dataset[0].sample.boxes) > 0
    assert boxes == manifest["totals"]["boxes"]
    first = json.loads((out / "mixed.jsonl").read_text().splitlines()[0])
    assert (first["filename"], first["key"]) == ("images/mixed/000000.png", "000000")
    assert (out / first["filename"]).read_bytes() == picture(0)  # the member's own bytes
    assert json.loads((out / "table.jsonl").read_text())["filename"] == "images/table/p0.jpg"
    assert json.loads((out / "pairs.jsonl").read_text())["filename"] == str((tmp_path / "img" / "a.png").resolve())


def test_image_file_names_are_safe_and_distinct():
    assert image_file_name("s", "000012", "jpg") == "images/s/000012.jpg"
    odd = [image_file_name("s", key, "jpg") for key in ("dir/000012", "dir_000012", "../x", ".hidden")]
    assert len(set(odd)) == 4 and all("/" not in name[len("images/s/"):] for name in odd)
    assert not any(name[len("images/s/"):].startswith(".") for name in odd)


def test_min_boxes_drops_are_counted(tiny_checkpoint, tmp_path):
    manifest = run_job([clean_tar(tmp_path / "a.tar", 3)], tmp_path / "out",
                       LabelSettings(weights=str(tiny_checkpoint), min_score=0.5, min_boxes=100_000))
    assert {k: manifest["totals"][k] for k in ("pairs", "kept", "dropped", "boxes")} == \
        {"pairs": 3, "kept": 0, "dropped": 3, "boxes": 0}
    assert (tmp_path / "out" / "a.jsonl").read_text() == "" and not (tmp_path / "out" / "images").exists()


def test_a_rerun_resumes_another_run_is_refused_and_overwrite_replaces(tiny_checkpoint, tmp_path, monkeypatch):
    inputs = [clean_tar(tmp_path / "a.tar", 2), clean_tar(tmp_path / "b.tar", 2, start=2)]
    out = tmp_path / "out"
    settings = LabelSettings(weights=str(tiny_checkpoint), min_score=0.5)
    run_job(inputs, out, settings)
    done = out / ".shards" / "a.json"
    stamp = done.stat().st_mtime_ns
    (out / ".shards" / "b.json").unlink()  # as if b had not finished
    before = (out / "b.jsonl").read_bytes()
    run_job(inputs, out, settings)
    assert done.stat().st_mtime_ns == stamp and (out / ".shards" / "b.json").is_file()
    assert (out / "b.jsonl").read_bytes() == before
    monkeypatch.chdir(tiny_checkpoint.parent)  # the same teacher spelled another way is the same job
    run_job(inputs, out, LabelSettings(weights=tiny_checkpoint.name, min_score=0.5))
    assert done.stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="another labelling run.*--overwrite"):
        run_job(inputs, out, LabelSettings(weights=str(tiny_checkpoint), min_score=0.6))
    with pytest.raises(FileExistsError, match="another labelling run"):
        run_job(inputs[:1], out, settings)
    manifest = run_job(inputs[:1], out, LabelSettings(weights=str(tiny_checkpoint), min_score=0.6), overwrite=True)
    assert manifest["settings"]["min_score"] == 0.6 and list(manifest["shards"]) == ["a"]
    assert not (out / "b.jsonl").exists() and not (out / "images" / "b").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        run_job(inputs, other, settings)


def test_one_and_two_workers_write_the_same_files(tiny_checkpoint, tmp_path, single_thread):
    inputs = [clean_tar(tmp_path / f"{i}.tar", 3, start=3 * i) for i in range(3)]
    settings = LabelSettings(weights=str(tiny_checkpoint), min_score=0.5, batch_size=2)
    updates = []
    run_job(inputs, tmp_path / "one", settings, workers=1)
    run_job(inputs, tmp_path / "two", settings, workers=2, progress=lambda pairs, boxes: updates.append(pairs))
    assert read_outputs(tmp_path / "one") == read_outputs(tmp_path / "two")
    assert sum(updates) == 9  # the workers' progress reached the driver


def test_cli_errors_before_any_work(tmp_path, capsys):
    tar = clean_tar(tmp_path / "a.tar", 1)
    out = tmp_path / "out"
    assert main([str(tar), "--out", str(out), "--weights", str(tmp_path / "no-such.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no-such.safetensors" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert main([str(tmp_path / "missing.tar"), "--out", str(out)]) == 2
    assert "missing.tar" in capsys.readouterr().err
