#!/usr/bin/env python3
"""The 2016 tool as anchor: a behaviour model on the UCI HAPT raw signals trained with Spark ML.

It reads the CSV that scripts/har_dataset.py writes and follows the UCI-HAR protocol, so its
figures can stand beside those of our own Rust model:

* only labels 1-6 (walking, upstairs, downstairs, sitting, standing, lying) are kept;
* each (subject, experiment) recording is split into maximal runs of consecutive samples
  (sample numbers one apart) with the same label, and each run is cut into windows of 128
  samples (2.56 s at 50 Hz) with a step of 64; a window lies wholly inside one run, the tail
  shorter than 128 is dropped, and a window's label is its run's;
* subjects 2, 4, 9, 10, 12, 13, 18, 20 and 24 are the test set, the other 21 the training set:
  7415 training and 2996 test windows, checked (the script fails on any other count).

The windows and their features are computed with numpy on the driver (the whole data set is
about 1.1 M rows, one pass, a few seconds); Spark ML does the rest: StandardScaler fitted on the
training set only, then a multinomial LogisticRegression and a MultilayerPerceptronClassifier
(layers [n_features, 64, 6], seed 42) on a local[2] master. For each model it reports the test
accuracy, the macro-F1 (mean of the per-class F1 of MulticlassClassificationEvaluator), the
seconds its fit took and the 6x6 confusion matrix (rows: true class, columns: predicted).

Human-readable lines go to stderr; stdout carries exactly one JSON document:
  {"train_windows": ..., "test_windows": ..., "models": [{"name": "logistic_regression",
   "accuracy": ..., "macro_f1": ..., "train_seconds": ..., "confusion": [[...], ...]}, ...], ...}

Needs pyspark and numpy (PyPI) and a Java 17 runtime (`java` on PATH or JAVA_HOME). Without a
system BLAS the JVM prints that it cannot load libblas.so.3 and Spark uses its Java BLAS instead.

Usage: spark_har.py CSV_PATH [--json OUT]   (OUT: a copy of the JSON document)

The data (UCI HAPT) may not be used commercially: nothing this script makes is written into the
work tree unless --json points there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

import spark_local

COLUMNS = ["subject", "experiment", "sample", "acc_x", "acc_y", "acc_z",
           "gyr_x", "gyr_y", "gyr_z", "label"]
CLASSES = ["walking", "upstairs", "downstairs", "sitting", "standing", "lying"]
TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
WINDOW = 128
STEP = 64
RATE_HZ = 50.0
EXPECTED_TRAIN_WINDOWS = 7415
EXPECTED_TEST_WINDOWS = 2996

# Spectral bands (Hz) whose energy is a feature. 0.3 Hz keeps the slow drift of posture changes
# out; the steps of walking sit at about 1-3 Hz and their harmonics above.
BANDS_HZ = [(0.3, 1.0), (1.0, 3.0), (3.0, 6.0), (6.0, 12.0), (12.0, 25.0)]
STAT_NAMES = ["mean", "std", "min", "max", "median", "iqr", "energy", "mad"]
CHANNEL_NAMES = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z", "acc_mag"]

SEED = 42
HIDDEN = 64
LR_MAX_ITER = 300
# A light L2 penalty, chosen before looking at test figures (the protocol has no validation
# split, so nothing here is tuned on the test set).
LR_REG = 1e-3
# Spark's default. The network fits the training set exactly (loss about 1e-6) by then; past it
# the loss reaches rounding level, the L-BFGS line search fails and Spark logs errors and gives up.
MLP_MAX_ITER = 100


def log(line: str = "") -> None:
    print(line, file=sys.stderr, flush=True)


# -- data and windows ------------------------------------------------------------------------


def load_csv(path: str) -> np.ndarray:
    """The CSV as one float64 array with the columns of COLUMNS, header checked."""
    with open(path, encoding="ascii") as f:
        header = f.readline().strip().split(",")
    if header != COLUMNS:
        raise SystemExit(f"{path}: columns {header}, expected {COLUMNS} (scripts/har_dataset.py)")
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)


def windows(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start row, label 1-6, subject) of every window of the protocol, in row order."""
    subject = data[:, 0].astype(np.int64)
    experiment = data[:, 1].astype(np.int64)
    sample = data[:, 2].astype(np.int64)
    label = data[:, 9].astype(np.int64)

    # A run starts at the first row, at a new recording, where the sample numbers are not one
    # apart (a gap in a recording ends the run) and where the label changes.
    starts_run = np.ones(len(data), dtype=bool)
    starts_run[1:] = ((subject[1:] != subject[:-1]) | (experiment[1:] != experiment[:-1])
                      | (sample[1:] != sample[:-1] + 1) | (label[1:] != label[:-1]))
    run_start = np.flatnonzero(starts_run)
    run_end = np.append(run_start[1:], len(data))

    starts, labels = [], []
    for begin, end in zip(run_start, run_end):
        run_label = label[begin]
        if not 1 <= run_label <= 6 or end - begin < WINDOW:
            continue
        first = np.arange(begin, end - WINDOW + 1, STEP)
        starts.append(first)
        labels.append(np.full(len(first), run_label))
    start = np.concatenate(starts)
    return start, np.concatenate(labels), subject[start]


# -- features (numpy) ------------------------------------------------------------------------


def features(data: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """One row of features per window, and their names.

    Per channel (the 6 raw axes and the acceleration magnitude): the 8 statistics of
    STAT_NAMES and the log energy in each band of BANDS_HZ; the pairwise correlations of the
    acc axes and of the gyro axes; the direction of the mean acceleration (gravity, so the tilt
    of the phone on the waist, which is what tells sitting from standing).
    """
    rows = start[:, None] + np.arange(WINDOW)            # (n, 128) row indices
    raw = data[:, 3:9][rows]                             # (n, 128, 6)
    acc_mag = np.linalg.norm(raw[:, :, 0:3], axis=2, keepdims=True)
    x = np.concatenate([raw, acc_mag], axis=2)           # (n, 128, 7)

    mean = x.mean(axis=1)
    centred = x - mean[:, None, :]
    std = x.std(axis=1)
    q25, median, q75 = np.percentile(x, [25, 50, 75], axis=1)
    stats = [mean, std, x.min(axis=1), x.max(axis=1), median, q75 - q25,
             (x ** 2).mean(axis=1), np.abs(centred).mean(axis=1)]

    # Energy per band of the mean-free signal; log because it spans orders of magnitude between
    # lying still and walking downstairs, which a linear model could not use after scaling.
    power = np.abs(np.fft.rfft(centred, axis=1)) ** 2 / WINDOW   # (n, 65, 7)
    freq = np.fft.rfftfreq(WINDOW, d=1.0 / RATE_HZ)
    bands = [np.log(power[:, (freq >= lo) & (freq < hi), :].sum(axis=1) + 1e-6)
             for lo, hi in BANDS_HZ[:-1]]
    lo, hi = BANDS_HZ[-1]                                # the last band includes Nyquist (25 Hz)
    bands.append(np.log(power[:, (freq >= lo) & (freq <= hi), :].sum(axis=1) + 1e-6))

    pairs = [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)]
    # A channel that does not move in a window has std 0: its correlation is taken as 0.
    corr = [np.where(std[:, a] * std[:, b] > 1e-12,
                     (centred[:, :, a] * centred[:, :, b]).mean(axis=1)
                     / np.maximum(std[:, a] * std[:, b], 1e-12), 0.0)
            for a, b in pairs]

    gravity = mean[:, 0:3] / np.maximum(np.linalg.norm(mean[:, 0:3], axis=1, keepdims=True), 1e-9)

    columns = stats + bands + [np.stack(corr, axis=1), gravity]
    matrix = np.concatenate(columns, axis=1)
    names = ([f"{s}_{c}" for s in STAT_NAMES for c in CHANNEL_NAMES]
             + [f"band{lo:g}-{hi:g}Hz_{c}" for lo, hi in BANDS_HZ for c in CHANNEL_NAMES]
             + [f"corr_{CHANNEL_NAMES[a]}_{CHANNEL_NAMES[b]}" for a, b in pairs]
             + ["gravity_x", "gravity_y", "gravity_z"])
    assert matrix.shape[1] == len(names), (matrix.shape, len(names))
    if not np.isfinite(matrix).all():
        raise SystemExit("a feature is not finite: the CSV has NaN or infinite values")
    return matrix, names


# -- Spark -----------------------------------------------------------------------------------


def spark_session(tmp: str):
    return spark_local.spark_session(tmp, "tributary-spark-har", "local[2]", "2g",
                                     config={"spark.sql.shuffle.partitions": "2"})


def to_frame(spark, x: np.ndarray, y: np.ndarray):
    """A DataFrame (label: class index 0-5 as double, raw: feature vector), in 2 partitions."""
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql.types import DoubleType, StructField, StructType

    rows = [(float(label - 1), Vectors.dense(row)) for label, row in zip(y.tolist(), x)]
    schema = StructType([StructField("label", DoubleType(), False),
                         StructField("raw", VectorUDT(), False)])
    # Local data travel inside the tasks that read them: slices of at most ~256 KiB keep each
    # task under Spark's recommended size (it warns past 1000 KiB). The local checkpoint keeps
    # the rows as blocks, so no later task carries them; coalescing its partitions to 2 (one per
    # core) keeps the row order. A shuffle would not, and with another order of the rows the
    # perceptron's L-BFGS run ends elsewhere (test accuracy varied by about 1 point).
    slices = max(2, -(-x.nbytes // (256 * 1024)))
    rdd = spark.sparkContext.parallelize(rows, slices)
    return spark.createDataFrame(rdd, schema).localCheckpoint(eager=True).coalesce(2)


def evaluate(name: str, model, test, train_seconds: float) -> dict:
    """Accuracy, macro-F1, fit seconds, optimiser iterations and confusion matrix of `model` on
    `test`."""
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator

    predictions = model.transform(test).select("label", "prediction").cache()
    evaluator = MulticlassClassificationEvaluator(labelCol="label", predictionCol="prediction")
    accuracy = evaluator.evaluate(predictions, {evaluator.metricName: "accuracy"})
    # The evaluator's "f1" is weighted by class size; macro-F1 is the plain mean of the
    # per-class F1 ("fMeasureByLabel"), each class counted once.
    per_class = [evaluator.evaluate(predictions, {evaluator.metricName: "fMeasureByLabel",
                                                  evaluator.metricLabel: float(k)})
                 for k in range(len(CLASSES))]
    macro_f1 = float(np.mean(per_class))

    confusion = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
    for row in predictions.collect():
        confusion[int(row.label), int(row.prediction)] += 1
    predictions.unpersist()

    # The matrix and the evaluator must tell the same story.
    if abs(np.trace(confusion) / confusion.sum() - accuracy) > 1e-9:
        raise SystemExit(f"{name}: confusion matrix and evaluator disagree on the accuracy")
    # The training summary is a property of the logistic model but a method of the perceptron's.
    summary = model.summary() if callable(model.summary) else model.summary
    return {"name": name, "accuracy": accuracy, "macro_f1": macro_f1,
            "train_seconds": round(train_seconds, 3),
            "iterations": summary.totalIterations,
            "f1_per_class": dict(zip(CLASSES, per_class)),
            "confusion": confusion.tolist()}


def report(result: dict) -> None:
    log(f"{result['name']}: accuracy {result['accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f}, "
        f"trained in {result['train_seconds']:.1f} s ({result['iterations']} iterations)")
    width = max(len(c) for c in CLASSES)
    log("  confusion (rows: true, columns: predicted)")
    log("  " + " " * width + "".join(f"{c[:6]:>8}" for c in CLASSES))
    for label, row in zip(CLASSES, result["confusion"]):
        log(f"  {label:>{width}}" + "".join(f"{v:>8}" for v in row))


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", metavar="CSV_PATH", help="the CSV of scripts/har_dataset.py")
    parser.add_argument("--json", metavar="OUT", help="also write the JSON document to OUT")
    args = parser.parse_args()

    # The JVM that pyspark starts inherits file descriptor 1 and may print there. So that stdout
    # carries only the JSON document, fd 1 points at stderr while Spark runs and the document is
    # written to a copy of the original stdout.
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    t_start = time.perf_counter()
    data = load_csv(args.csv)
    log(f"read {len(data)} rows from {args.csv} in {time.perf_counter() - t_start:.1f} s")

    start, labels, subject = windows(data)
    is_test = np.isin(subject, TEST_SUBJECTS)
    n_train, n_test = int((~is_test).sum()), int(is_test.sum())
    log(f"windows: {n_train} train, {n_test} test "
        f"(expected {EXPECTED_TRAIN_WINDOWS} and {EXPECTED_TEST_WINDOWS})")
    if (n_train, n_test) != (EXPECTED_TRAIN_WINDOWS, EXPECTED_TEST_WINDOWS):
        log("window counts differ from the UCI-HAR protocol's: wrong CSV or a changed windowing")
        return 1

    t_features = time.perf_counter()
    x, names = features(data, start)
    del data
    log(f"{x.shape[1]} features per window in {time.perf_counter() - t_features:.1f} s (numpy)")

    from pyspark.ml.classification import LogisticRegression, MultilayerPerceptronClassifier
    from pyspark.ml.feature import StandardScaler

    with tempfile.TemporaryDirectory(prefix="spark-har-") as tmp:
        t_spark = time.perf_counter()
        spark = spark_session(tmp)
        try:
            log(f"Spark {spark.version} (local[2]) up in {time.perf_counter() - t_spark:.1f} s")
            train_raw = to_frame(spark, x[~is_test], labels[~is_test])
            test_raw = to_frame(spark, x[is_test], labels[is_test])

            scaler = StandardScaler(inputCol="raw", outputCol="features",
                                    withMean=True, withStd=True).fit(train_raw)
            train = scaler.transform(train_raw).select("label", "features").cache()
            test = scaler.transform(test_raw).select("label", "features").cache()
            # Materialised now, so the models' fit times hold no data preparation.
            assert (train.count(), test.count()) == (n_train, n_test)

            models = [
                ("logistic_regression",
                 # Features are standardised already, so the estimator need not do it again.
                 LogisticRegression(family="multinomial", maxIter=LR_MAX_ITER, regParam=LR_REG,
                                    elasticNetParam=0.0, standardization=False)),
                ("multilayer_perceptron",
                 MultilayerPerceptronClassifier(layers=[x.shape[1], HIDDEN, len(CLASSES)],
                                                maxIter=MLP_MAX_ITER, seed=SEED)),
            ]
            results = []
            for name, estimator in models:
                t_fit = time.perf_counter()
                model = estimator.fit(train)
                result = evaluate(name, model, test, time.perf_counter() - t_fit)
                report(result)
                results.append(result)
            spark_version = spark.version
        finally:
            spark.stop()

    wall = time.perf_counter() - t_start
    log(f"total {wall:.1f} s")
    document = {
        "train_windows": n_train,
        "test_windows": n_test,
        "n_features": len(names),
        "spark_version": spark_version,
        "wall_seconds": round(wall, 1),
        "models": results,
    }
    text = json.dumps(document, indent=2) + "\n"
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    json_out.write(text)
    json_out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
