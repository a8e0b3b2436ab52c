from __future__ import annotations

import numpy as np
import pytest

from negate.data.records import load_folder, load_manifest, parse_label
from negate.protocol.split import split_indices


@pytest.mark.parametrize(("text", "label"), [("real", 0), ("Human", 0), ("0", 0), ("fake", 1), ("SYNTHETIC", 1),
                                             ("ai", 1), ("1", 1)])
def test_parse_label(text, label):
    assert parse_label(text) == label


def test_parse_label_rejects_unknown():
    with pytest.raises(ValueError, match="unknown label"):
        parse_label("maybe")


def test_manifest_paths_are_relative_to_the_manifest(manifest, image_folder):
    records = load_manifest(manifest)
    assert len(records) == 24
    assert all(r.path.startswith(str(image_folder)) for r in records)
    assert {r.label for r in records} == {0, 1}
    assert {r.source for r in records} == {f"{c}_src{i}" for c in ("real", "fake") for i in range(3)}


def test_csv_manifest_with_per_file_source_falls_back_to_first_dir(tmp_path):
    (tmp_path / "a").mkdir()
    rows = ["path,label,source"] + [f"a/{i}.png,{'fake' if i % 2 else 'real'},url-{i}" for i in range(6)]
    (tmp_path / "m.csv").write_text("\n".join(rows))
    records = load_manifest(tmp_path / "m.csv")
    assert {r.source for r in records} == {"a"}  # the column is per-file provenance, not a group
    assert {r.source for r in load_manifest(tmp_path / "m.csv", source_from="column")} == {f"url-{i}" for i in range(6)}


def test_manifest_errors_name_the_line(tmp_path):
    (tmp_path / "m.tsv").write_text("path\tlabel\nx.png\treal\ny.png\tpuppy\n")
    with pytest.raises(ValueError, match=r"m.tsv:3: unknown label"):
        load_manifest(tmp_path / "m.tsv")
    (tmp_path / "n.tsv").write_text("file\tlabel\n")
    with pytest.raises(ValueError, match="'path' column"):
        load_manifest(tmp_path / "n.tsv")


def test_folder_layout(image_folder):
    records, skipped = load_folder(image_folder)
    assert len(records) == 24 and not skipped
    assert sum(r.label for r in records) == 12
    assert {r.source for r in records if r.label == 0} == {"real_src0", "real_src1", "real_src2"}


def test_split_is_deterministic_stratified_and_disjoint():
    y = np.array([0] * 60 + [1] * 40)
    a = split_indices(y, seed=3)
    b = split_indices(y, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    together = np.concatenate(list(a.values()))
    assert sorted(together.tolist()) == list(range(100))
    for part in a.values():
        assert 0.3 < y[part].mean() < 0.5  # stratified
    assert not np.array_equal(split_indices(y, seed=4)["test"], a["test"])


def test_grouped_split_keeps_each_source_in_one_split():
    rng = np.random.default_rng(0)
    groups = np.array([f"s{i % 12}" for i in range(240)])
    y = np.array([int(g[1:]) % 2 for g in groups])  # single-class sources, as in practice
    y[rng.choice(240, 20, replace=False)] ^= 1
    split = split_indices(y, groups, seed=0)
    seen = {k: set(groups[v]) for k, v in split.items()}
    assert not (seen["train"] & seen["test"]) and not (seen["train"] & seen["val"]) and not (seen["val"] & seen["test"])
    assert len(np.unique(y[split["test"]])) == 2 and len(np.unique(y[split["val"]])) == 2
