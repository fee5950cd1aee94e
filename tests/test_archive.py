"""pdinfer.score_archive on a Dask LocalCluster with worker processes, against the single-process result."""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import pdinfer
from pdinfer import archive
from pdinfer.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "weights" / "samples"
LIGHT = str(ROOT / "weights" / "pd_light.pdw")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """Two worker processes of one thread each, on the loopback interface, scratch under tmp_path."""
    if os.environ.get("CI", "").lower() == "true":  # the dev extra installs it: CI must not skip
        import distributed
    else:
        distributed = pytest.importorskip("distributed")
    import dask
    pdinfer.run(LIGHT, np.zeros((1, 60, 120), np.float32))  # compiled here: the workers load it from the cache
    scratch = str(tmp_path_factory.mktemp("dask"))
    with dask.config.set({"temporary-directory": scratch}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address=None, local_directory=scratch) as cluster, \
            distributed.Client(cluster) as client:
        yield client


@pytest.fixture
def tree(tmp_path) -> Path:
    """Samples in two levels of directories, a batch .npy, an unreadable file and one of a wrong shape."""
    root = tmp_path / "archive"
    (root / "2025" / "03").mkdir(parents=True)
    for i, sample in enumerate(sorted(SAMPLES.glob("*_1.*"))):
        shutil.copy(sample, root / ("2025/03" if i % 2 else "2025") / sample.name)
    np.save(root / "batch.npy", np.stack([np.load(SAMPLES / "void_2.npy"), np.load(SAMPLES / "noise_2.npy")]))
    (root / "2025" / "broken.png").write_bytes(b"\x89PNG not really")
    np.save(root / "2025" / "03" / "wrong_shape.npy", np.zeros((1, 30, 120), np.float32))
    return root


def test_rows_equal_pdinfer_run_and_bad_files_are_rows_of_their_own(client, tree, capsys):
    progress = []
    rows = pdinfer.score_archive(LIGHT, tree, client=client, files_per_task=3,
                                 progress=lambda done, total: progress.append((done, total)))
    assert main(["run", "--json", "--recursive", LIGHT, str(tree)]) == 1
    out, err = capsys.readouterr()
    expected = [json.loads(line) for line in out.splitlines()]
    assert [row for row in rows if "error" not in row] == expected  # same floats, same order
    assert len(expected) == 12 + 2 and any(row["input"].endswith("batch.npy[1]") for row in expected)
    errors = {row["input"]: row["error"] for row in rows if "error" in row}
    assert sorted(errors) == [str(tree / "2025" / "03" / "wrong_shape.npy"), str(tree / "2025" / "broken.png")]
    assert sorted(f"error: {message}" for message in errors.values()) == sorted(err.splitlines())
    files = 12 + 1 + 2
    assert progress[-1] == (files, files) and [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert len(progress) == -(-files // 3)  # one call per task


def test_rows_hold_the_values_of_a_single_process_run(client, tree):
    model = pdinfer.load(LIGHT)
    rows = pdinfer.score_archive(model, [tree / "2025" / "03", tree / "batch.npy"], client=client, recursive=False)
    singles = {str(path): pdinfer.run(model, path) for path in sorted((tree / "2025" / "03").glob("*_1.*"))}
    batch = pdinfer.run(model, tree / "batch.npy")
    singles.update({f"{tree / 'batch.npy'}[{i}]": out for i, out in enumerate(batch)})
    assert [row["input"] for row in rows if "error" not in row] == list(singles)
    for row in rows:
        if "error" not in row:
            assert list(row["probabilities"].values()) == singles[row["input"]].tolist()
            assert row["class"] == model.classes[int(np.argmax(singles[row["input"]]))]


def test_each_worker_loads_the_model_once(client, tree):
    pdinfer.score_archive(LIGHT, tree, client=client, files_per_task=1)  # 15 tasks
    pdinfer.score_archive(LIGHT, tree, client=client, files_per_task=2)
    loads = client.run(lambda: dict(archive._loads))
    assert len(loads) == 2 and sum(sum(counts.values()) for counts in loads.values()) >= 1
    assert all(count == 1 for counts in loads.values() for count in counts.values()), loads


def test_an_array_is_scored_by_the_default_client_as_in_one_process(client):
    x = np.stack([np.load(path) for path in sorted(SAMPLES.glob("*.npy"))[:7]])
    rows = pdinfer.score_archive(LIGHT, x, files_per_task=3)  # the fixture's client is the current one
    expected = pdinfer.run(LIGHT, x)
    assert [row["input"] for row in rows] == list(range(7))
    assert [list(row["probabilities"].values()) for row in rows] == expected.tolist()


def test_errors_before_any_work(client, tmp_path):
    with pytest.raises(pdinfer.InputError, match="no .png or .npy files"):
        pdinfer.score_archive(LIGHT, tmp_path, client=client)
    with pytest.raises(pdinfer.InputError, match="input shape"):
        pdinfer.score_archive(LIGHT, np.zeros((2, 1, 60, 60), np.float32), client=client)
    with pytest.raises(pdinfer.ConfigError, match="files_per_task must be an integer >= 1"):
        pdinfer.score_archive(LIGHT, SAMPLES, client=client, files_per_task=0)
    with pytest.raises(pdinfer.FormatError, match="cannot read weight file"):
        pdinfer.score_archive(tmp_path / "missing.pdw", SAMPLES, client=client)


def test_without_dask_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` raises ImportError
    with pytest.raises(pdinfer.MissingExtraError, match=r"pip install 'pdinfer\[dask\]'"):
        pdinfer.score_archive(LIGHT, SAMPLES)
