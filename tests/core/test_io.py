"""Atomic writes, versioned artifacts, safe (weights-only) loads and the settings hash."""

from __future__ import annotations

import collections
import hashlib

import pandas as pd
import pytest
import torch
import yaml
from pfs_testkit import flip_bytes

from pfs.core import io
from pfs.core.errors import PfsError


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))



# ---------------------------------------------------------------- atomic writes


def test_atomic_write_text_writes_the_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "out.txt"  # the folder is created
    io.atomic_write_text(target, "hello\n")
    assert target.read_text() == "hello\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_atomic_writes_get_the_mode_a_plain_write_gets(tmp_path):
    """mkstemp makes 0600 files: results on a shared filesystem would be unreadable to the rest of the group."""
    (tmp_path / "plain.txt").write_text("x")
    io.atomic_write_text(tmp_path / "atomic.txt", "x")
    io.save_artifact(tmp_path / "a.pt", "pfs.test", {"x": 1})
    want = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == want
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == want


def test_atomic_path_keeps_the_old_file_when_the_writer_raises(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="writer died"), io.atomic_path(target) as tmp:
        tmp.write_text("half of the new cont")
        raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_save_artifact_that_fails_to_serialise_keeps_the_old_artifact(tmp_path):
    target = tmp_path / "gates.pt"
    io.save_artifact(target, "pfs.gates", {"gates": [torch.ones(3)]})
    before = target.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises for a lambda
        io.save_artifact(target, "pfs.gates", {"gates": [torch.zeros(3)], "bad": lambda: 0})
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []
    assert torch.equal(io.load_artifact(target, "pfs.gates")["gates"][0], torch.ones(3))


def test_write_yaml_json_csv_round_trip(tmp_path):
    io.write_yaml(tmp_path / "a.yaml", {"b": 1, "a": [1, 2]})
    assert yaml.safe_load((tmp_path / "a.yaml").read_text()) == {"b": 1, "a": [1, 2]}
    assert (tmp_path / "a.yaml").read_text().startswith("b: 1\n")  # key order kept, not sorted
    io.write_json(tmp_path / "m.json", {"top1": 0.5})
    assert (tmp_path / "m.json").read_text() == '{\n  "top1": 0.5\n}\n'
    io.write_csv(tmp_path / "h.csv", pd.DataFrame({"epoch": [1, 2], "lr": [0.1, 0.01]}))
    assert (tmp_path / "h.csv").read_text() == "epoch,lr\n1,0.1\n2,0.01\n"
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------- artifacts


def test_save_and_load_artifact_round_trip_with_kind_and_format_version(tmp_path):
    path = tmp_path / "gates.pt"
    gates = [torch.rand(4), torch.rand(8)]
    io.save_artifact(path, "pfs.gates", {"arch": "resnet20", "widths": [4, 8], "gates": gates})
    data = io.load_artifact(path, "pfs.gates")
    assert data["kind"] == "pfs.gates"
    assert data["format_version"] == io.FORMAT_VERSION == 1
    assert data["arch"] == "resnet20" and data["widths"] == [4, 8]
    assert all(torch.equal(a, b) for a, b in zip(data["gates"], gates, strict=True))


def test_loading_a_truncated_artifact_names_the_path_and_corruption(tmp_path):
    path = tmp_path / "gates.pt"
    io.save_artifact(path, "pfs.gates", {"gates": [torch.rand(1000)]})
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(PfsError, match="is corrupt or not a torch file") as err:
        io.load_artifact(path, "pfs.gates")
    assert str(path) in str(err.value)
    assert io.REMEDY in str(err.value)


def test_flipped_bytes_in_the_weights_load_silently_by_torch_and_are_refused_by_load_artifact(tmp_path):
    path = tmp_path / "model.pt"
    weights = torch.rand(1000)
    io.save_artifact(path, "pfs.model", {"state_dict": {"w": weights}})
    entry = flip_bytes(path)
    damaged = torch.load(path, weights_only=True)["state_dict"]["w"]  # why the check exists: torch reads it
    assert not torch.equal(damaged, weights)
    with pytest.raises(PfsError) as err:
        io.load_artifact(path, "pfs.model")
    assert str(err.value) == (f"{path} is corrupt: its entry {entry} fails its CRC32 check (the file changed after it "
                              f"was written); {io.REMEDY}")


def test_flipped_bytes_in_the_pickled_fields_are_refused(tmp_path):
    path = tmp_path / "gates.pt"
    io.save_artifact(path, "pfs.gates", {"arch": "resnet20" * 20, "gates": [torch.ones(3)]})
    flip_bytes(path, count=8, entry="data.pkl")
    with pytest.raises(PfsError, match=f"^{path} is corrupt: its entry .*data.pkl fails its CRC32 check"):
        io.load_artifact(path, "pfs.gates", remedy="rerun learn_gates")


@pytest.mark.parametrize("keep", [300, 0.5, 0.999])
def test_a_truncated_artifact_is_refused_wherever_it_was_cut(tmp_path, keep):
    path = tmp_path / "model.pt"
    io.save_artifact(path, "pfs.model", {"state_dict": {"w": torch.rand(10_000)}})
    data = path.read_bytes()
    path.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(PfsError, match=f"^{path} is corrupt") as err:
        io.load_artifact(path, "pfs.model")
    assert str(err.value).endswith(io.REMEDY) and "\n" not in str(err.value)


def test_files_written_by_plain_torch_save_still_load(tmp_path):
    """What pfs wrote before the check (and any torch >= 1.6 zip file) carries the CRCs it checks."""
    path = tmp_path / "gates.pt"
    torch.save({"kind": "pfs.gates", "format_version": 1, "gates": [torch.arange(100.0)]}, path)
    io.check_intact(path)
    assert torch.equal(io.load_artifact(path, "pfs.gates")["gates"][0], torch.arange(100.0))


def test_loading_a_file_that_is_not_a_torch_file_is_refused(tmp_path):
    path = tmp_path / "gates.pt"
    path.write_text("kind: pfs.gates\n")
    with pytest.raises(PfsError, match=f"{path} is corrupt or not a torch file"):
        io.load_artifact(path, "pfs.gates")


def test_loading_an_artifact_of_another_kind_names_both_kinds(tmp_path):
    path = tmp_path / "gates.pt"
    io.save_artifact(path, "pfs.model", {"state_dict": {}})
    with pytest.raises(PfsError) as err:
        io.load_artifact(path, "pfs.gates")
    assert str(err.value) == f"{path} is not a pfs.gates file (found 'pfs.model'); {io.REMEDY}"


def test_loading_a_torch_file_without_header_is_refused(tmp_path):
    path = tmp_path / "gates.pt"
    torch.save([torch.ones(2)], path)
    with pytest.raises(PfsError, match=r"is not a pfs.gates file \(found 'list'\)"):
        io.load_artifact(path, "pfs.gates")


def test_loading_a_wrong_format_version_names_both_versions(tmp_path):
    path = tmp_path / "gates.pt"
    torch.save({"kind": "pfs.gates", "format_version": 2, "gates": []}, path)
    with pytest.raises(PfsError) as err:
        io.load_artifact(path, "pfs.gates", remedy="rerun learn_gates")
    assert str(err.value) == f"{path} has format_version 2, this pfs reads 1; rerun learn_gates"


def test_loading_a_missing_artifact_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "gates.pt"
    with pytest.raises(PfsError) as err:
        io.load_artifact(path, "pfs.gates")
    assert str(err.value) == f"{path} does not exist; {io.MISSING}"  # not "delete it": there is nothing to delete
    with pytest.raises(PfsError) as err:
        io.load_artifact(path, "pfs.gates", missing="run learn_gates")
    assert str(err.value) == f"{path} does not exist; run learn_gates"


@pytest.mark.parametrize("load", [io.load_artifact, io.load_yaml_artifact, io.load_json_artifact])
def test_every_loader_says_a_missing_file_or_a_folder_is_not_there_to_delete(tmp_path, load):
    with pytest.raises(PfsError) as err:
        load(tmp_path / "gone", "pfs.test")
    assert str(err.value) == f"{tmp_path / 'gone'} does not exist; {io.MISSING}"
    with pytest.raises(PfsError) as err:
        load(tmp_path, "pfs.test", missing="give a file")
    assert str(err.value) == f"{tmp_path} is a folder, not a file; give a file"


def _side_effect(marker: str) -> dict:
    with open(marker, "w") as fh:
        fh.write("executed")
    return {}


class _Payload:
    """Unpickling this calls _side_effect: a stand-in for a malicious pickle."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return _side_effect, (self.marker,)


Point = collections.namedtuple("Point", "x y")


def test_load_artifact_refuses_pickled_code_without_running_it(tmp_path):
    path, marker = tmp_path / "gates.pt", tmp_path / "executed.txt"
    torch.save({"kind": "pfs.gates", "format_version": 1, "gates": _Payload(str(marker))}, path)
    with pytest.raises(PfsError, match="is corrupt or not a torch file .*Weights only load failed"):
        io.load_artifact(path, "pfs.gates")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the file really carries code: an unsafe load runs it
    assert marker.read_text() == "executed"


def test_load_artifact_refuses_arbitrary_python_objects(tmp_path):
    path = tmp_path / "gates.pt"
    torch.save({"kind": "pfs.gates", "format_version": 1, "gates": Point(1, 2)}, path)
    with pytest.raises(PfsError, match="Weights only load failed"):
        io.load_artifact(path, "pfs.gates")


# ---------------------------------------------------------------- YAML artifacts and fields


def test_load_yaml_artifact_round_trip(tmp_path):
    path = tmp_path / "channels.yaml"
    io.write_yaml(path, {"kind": "pfs.channels", "format_version": 1, "widths": [3, 4]})
    assert io.load_yaml_artifact(path, "pfs.channels")["widths"] == [3, 4]


def test_load_yaml_artifact_refuses_broken_yaml_naming_the_path(tmp_path):
    path = tmp_path / "channels.yaml"
    path.write_text("kind: pfs.channels\nwidths: [3, 4\n")
    with pytest.raises(PfsError, match="is not valid YAML") as err:
        io.load_yaml_artifact(path, "pfs.channels")
    assert str(err.value).startswith(str(path))
    assert "\n" not in str(err.value) and "(line 3, column 1: expected ',' or ']'" in str(err.value)


@pytest.mark.parametrize(("text", "found"), [("widths: [1]\n", "None"), ("- 1\n- 2\n", "'list'"), ("", "'NoneType'")])
def test_load_yaml_artifact_refuses_a_file_without_the_kind(tmp_path, text, found):
    path = tmp_path / "channels.yaml"
    path.write_text(text)
    with pytest.raises(PfsError, match=rf"is not a pfs.channels file \(found {found}\)"):
        io.load_yaml_artifact(path, "pfs.channels")


def test_load_yaml_artifact_missing_file(tmp_path):
    with pytest.raises(PfsError, match="does not exist"):
        io.load_yaml_artifact(tmp_path / "channels.yaml", "pfs.channels")


def test_check_field_accepts_a_match_and_refuses_a_mismatch_naming_both_values():
    io.check_field("c.yaml", {"arch": "resnet20"}, "arch", "resnet20")
    with pytest.raises(PfsError) as err:
        io.check_field("c.yaml", {"arch": "resnet32"}, "arch", "resnet20")
    assert str(err.value) == f"c.yaml was made for arch='resnet32', but this job needs arch='resnet20'; {io.REMEDY}"
    with pytest.raises(PfsError, match="expansion=None, but this job needs expansion=16"):
        io.check_field("c.yaml", {}, "expansion", 16)


def test_a_mismatch_keeps_its_facts_for_a_caller_that_names_its_own_fix():
    import pickle

    with pytest.raises(io.IdentityMismatch) as err:
        io.check_field("c.yaml", {"multiplier": 0.35}, "multiplier", 1.0)
    facts = (err.value.path, err.value.key, err.value.found, err.value.expected)
    assert facts == ("c.yaml", "multiplier", 0.35, 1.0)
    copy = pickle.loads(pickle.dumps(err.value))  # e.g. out of a worker process
    assert str(copy) == str(err.value) and copy.found == 0.35


# ---------------------------------------------------------------- hashes


def test_stable_hash_ignores_dict_key_order():
    a = {"arch": "resnet20", "train": {"lr": 0.1, "epochs": 12}, "widths": [1, 2]}
    b = {"widths": [1, 2], "train": {"epochs": 12, "lr": 0.1}, "arch": "resnet20"}
    assert io.stable_hash(a) == io.stable_hash(b)
    assert len(io.stable_hash(a)) == 16 and int(io.stable_hash(a), 16) >= 0


def test_stable_hash_is_fixed_across_runs_and_changes_with_values():
    # pinned: a change here orphans every resume checkpoint on disk
    assert io.stable_hash({"a": 1}) == hashlib.sha256(b'{"a": 1}').hexdigest()[:16]
    assert io.stable_hash({"a": 1}) != io.stable_hash({"a": 2})
    assert io.stable_hash({"widths": [1, 2]}) != io.stable_hash({"widths": [2, 1]})


def test_sha256_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * 1000)
    assert io.sha256_file(path, chunk=7) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_json_artifacts_carry_kind_and_version_and_are_checked(tmp_path):
    from pfs.core.io import load_json_artifact, write_json_artifact
    from pfs.results.summary import collect

    path = tmp_path / "metrics.json"
    write_json_artifact(path, "pfs.metrics", {"top1": 0.5})
    assert load_json_artifact(path, "pfs.metrics") == {"kind": "pfs.metrics", "format_version": 1, "top1": 0.5}
    with pytest.raises(PfsError, match="is not a pfs.gates file"):
        load_json_artifact(path, "pfs.gates")
    path.write_text('{"kind": "pfs.metrics", "format_version": 99}')
    with pytest.raises(PfsError, match="format_version 99, this pfs reads 1"):
        load_json_artifact(path, "pfs.metrics")
    path.write_text('{"top1": 0.5')
    with pytest.raises(PfsError, match=r"metrics.json is not valid JSON .* delete it and rerun its training"):
        collect([str(path)])
    with pytest.raises(PfsError, match="does not exist"):
        load_json_artifact(tmp_path / "missing.json", "pfs.metrics")


def test_equal_artifacts_are_equal_byte_for_byte(tmp_path):
    from pfs.core.io import save_artifact, sha256_file

    for name in ("a.pt", "b.pt"):
        save_artifact(tmp_path / name, "pfs.gates", {"gates": [torch.ones(3)], "seed": 0})
    assert sha256_file(tmp_path / "a.pt") == sha256_file(tmp_path / "b.pt")
