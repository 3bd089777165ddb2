"""scripts/spark_har.py, the Spark ML anchor: a behaviour model on the UCI HAPT raw signals
(UCI-HAR protocol) trained with PySpark on a local[2] master, its figures beside our own model's.

`TRIBUTARY_HAR_CSV` names the CSV of scripts/har_dataset.py (the test command sets it; the data
stay outside the work tree, their licence forbids commercial use).

| case | expected |
|---|---|
| `spark_har.py CSV --json OUT` | exit 0; stdout is one JSON document, the same as OUT; 7415 train and 2996 test windows; logistic regression and multilayer perceptron each with test accuracy > 0.85, macro-F1 in (0, 1], fit seconds > 0 and a 6x6 confusion matrix of counts over the 2996 test windows whose diagonal gives the accuracy |
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

# Spark's start-up and both fits take about a minute on 2 cores; the bounds leave room for a
# busy machine, the script's own first so that its output is in the report.
pytestmark = pytest.mark.timeout(600)
SCRIPT_TIMEOUT_S = 540

SCRIPT = REPO / "scripts" / "spark_har.py"
TRAIN_WINDOWS = 7415
TEST_WINDOWS = 2996
MODELS = ["logistic_regression", "multilayer_perceptron"]
MIN_ACCURACY = 0.85
CLASSES = 6


def har_csv() -> Path:
    path = os.environ.get("TRIBUTARY_HAR_CSV")
    if not path:
        pytest.fail("TRIBUTARY_HAR_CSV is not set: point it at the CSV of scripts/har_dataset.py "
                    "(`python scripts/har_dataset.py CACHE_DIR` prints its path)", pytrace=False)
    if not Path(path).is_file():
        pytest.fail(f"TRIBUTARY_HAR_CSV={path} is not a file: make it with scripts/har_dataset.py",
                    pytrace=False)
    return Path(path)


def test_spark_ml_models_reach_the_accuracy_of_the_protocol(tmp_path, figures):
    out_path = tmp_path / "spark_har.json"
    run = subprocess.run([sys.executable, str(SCRIPT), str(har_csv()), "--json", str(out_path)],
                         capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S,
                         stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert run.returncode == 0, f"spark_har.py exited {run.returncode}:\n{run.stderr[-8000:]}"

    # Only the JSON document on stdout: json.loads refuses anything before or after it.
    document = json.loads(run.stdout)
    assert json.loads(out_path.read_text()) == document, "--json OUT differs from stdout"

    assert document["train_windows"] == TRAIN_WINDOWS, run.stderr
    assert document["test_windows"] == TEST_WINDOWS, run.stderr
    models = {m["name"]: m for m in document["models"]}
    assert sorted(models) == MODELS, document["models"]

    for name in MODELS:
        m = models[name]
        assert isinstance(m["accuracy"], float), (name, m["accuracy"])
        assert m["accuracy"] > MIN_ACCURACY, (name, m["accuracy"])
        assert 0.0 < m["macro_f1"] <= 1.0, (name, m["macro_f1"])
        assert m["train_seconds"] > 0, (name, m["train_seconds"])
        confusion = m["confusion"]
        assert len(confusion) == CLASSES, confusion
        assert all(len(row) == CLASSES for row in confusion), confusion
        assert all(isinstance(v, int) and v >= 0 for row in confusion for v in row), confusion
        # One count per test window (rows: true class, columns: predicted).
        assert sum(map(sum, confusion)) == TEST_WINDOWS, confusion
        diagonal = sum(confusion[k][k] for k in range(CLASSES))
        assert abs(diagonal / TEST_WINDOWS - m["accuracy"]) < 1e-9, (name, diagonal, m["accuracy"])
        figures(f"spark {document.get('spark_version')} {name}: accuracy {m['accuracy']:.4f}, "
                f"macro-F1 {m['macro_f1']:.4f}, fit {m['train_seconds']:.1f}s")
