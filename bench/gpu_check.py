r"""The GPU check: the pipeline's GPU path verified in one prepared run, in parts (issue 21).

    python bench/gpu_check.py --dry-run                    # every part at tiny sizes on the CPU (the suite runs it)
    python bench/gpu_check.py --payload gpu_payload --out DIR [--part fp16,oom] [--full-test N]

Parts, in order (`--part NAME[,NAME]`, default all); each writes DIR/<part>.json as soon as it
ends, checks and figures together, so a part that failed can run again alone while the GPU is there:

- fp16:      quick's stages called directly (helpers.pipeline.stages, no papermill) with precision fp16, then
             a bf16 run of the same seed through evaluate; all stages finish, losses are finite, the
             loss scale stays above 0, skipped steps are counted, and the fp16 teacher's test
             accuracy lies inside the bf16 teacher's 95% interval (bench/gpu_check_stages.py);
- bert-base: bert-base shapes with random weights (built by tests/hub_cache.py) at 512 tokens on
             real IMDB reviews, batch 32 (full's): ours against the Trainer, bf16 and fp16, length
             grouping on and off, saving and evaluation off on both; reviews/s, MFU against this
             GPU's measured 8192-cube product, peak memory; ours once more with `compile`
             (bench/gpu_check_loops.py);
- oom:       one step of full's batch 32 x 512 uncapped, then capped at 60% of its peak memory
             (torch.cuda.set_per_process_memory_fraction): the loop's Stepper halves the pieces, the
             effective batch stays one optimizer step over the 32 reviews, the loss matches;
- full-data: MiniLM-L6 on all 25,000 training and 25,000 test reviews (or --full-test N), every
             stage, stage times, accuracy beside the same-split TF-IDF baseline, whose C is chosen
             from a smaller grid here (FULL_DATA_C_GRID in bench/gpu_check_stages.py).

The exit status is 1 when a part raised or, on a GPU, when a check failed. With --dry-run the
parts run on the CPU at tiny sizes (the tiny random BERT, the committed sample) and only what
needs CUDA is left out or emulated, each with a printed note: fp16 (the CPU emulation), the memory cap
(simulated by an out-of-memory error raised for pieces over half the batch) and inductor's
kernels (compile uses the eager backend); there the checks are reported but, at tiny sizes,
decide nothing.

On the GPU machine lent by the device tool. First, here: `python bench/gpu_payload.py` builds
gpu_payload/ (git-ignored: MiniLM-L6 in float16, IMDB recompressed, the wheels of `datasets`
that the GPU image lacks; it checks that all that travels fits in 64 MiB). Then one call:

    run(carry=["gpu_payload"], timeout_s=600, command=<the lines below>)

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        --find-links gpu_payload/wheels datasets dill multiprocess || exit 1; export PYTHONPATH=/tmp/site
    mkdir -p $OUT/gpu; python3 bench/gpu_check.py --payload gpu_payload --out $OUT/gpu > $OUT/gpu/log.txt 2>&1
    rc=$?; tr '\r' '\n' < $OUT/gpu/log.txt | grep -vE 'it/s|s/it|reviews/s|examples/s|^ *$' | tail -100
    exit $rc

The JSON files and log.txt come back under $OUT/gpu, also when the call runs out of time. A part
that failed, or did not get its turn, runs alone in a second call while the machine is warm: the
same lines with `--part NAME[,NAME]` after `--out $OUT/gpu`.
"""
import argparse
import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from bench import gpu_check_loops, gpu_check_stages, gpu_payload, loop_timing  # noqa: E402
from helpers.core.files import read_json, write_json  # noqa: E402
from helpers.data import imdb

PARTS = {"fp16": gpu_check_stages.fp16_part, "bert-base": gpu_check_loops.bert_base_part,
         "oom": gpu_check_loops.oom_part, "full-data": gpu_check_stages.full_data_part}
DRY_RUN_REVIEWS = {"train": 120, "test": 60}  # the dry run's data folder, drawn from the committed sample
DEFAULT_OUT = ROOT / "bench" / "results" / "gpu_check"


@dataclasses.dataclass
class Check:
    """What every part reads: where to work, which model and reviews, and whether this is the dry run."""
    dry_run: bool
    work: Path  # run folders and unpacked weights
    minilm: str  # MiniLM-L6's folder (unpacked from the payload), or the tiny model's name in the dry run
    imdb: str  # a data folder with train.parquet and test.parquet
    full_test: int = None  # test reviews for full-data (None: all)
    notes: list = dataclasses.field(default_factory=list)

    @property
    def cuda(self):
        return torch.cuda.is_available()

    def note(self, text):
        """Say, and record in the part's JSON, what this run leaves out or changes, and why."""
        print(f"note: {text}", flush=True)
        self.notes.append(text)


def dry_run_check(work):
    """The dry run's setting: the tiny model and a small data folder written as the payload writes IMDB."""
    # it checks code, not speed: one thread keeps a busy CPU from stalling torch's parallel regions
    torch.set_num_threads(1)
    sample = imdb.load_imdb("sample")
    folder = Path(work) / "imdb"
    for split, n in DRY_RUN_REVIEWS.items():
        gpu_payload.write_reviews(imdb.stratified_sample(sample[split], n, seed=0), folder / f"{split}.parquet")
    return Check(dry_run=True, work=Path(work), minilm="tiny-random-bert", imdb=str(folder))


def payload_check(payload, work, full_test):
    """The GPU setting: MiniLM-L6 unpacked from the payload to float32, the payload's IMDB folder."""
    for name in ("minilm", "imdb"):
        if not (Path(payload) / name).is_dir():
            raise SystemExit(f"{payload}/{name} is missing: build the payload with python bench/gpu_payload.py "
                             "and carry it (see this file's docstring)")
    minilm = gpu_payload.unpack_model(Path(payload) / "minilm", Path(work) / "minilm")
    return Check(dry_run=False, work=Path(work), minilm=str(minilm), imdb=str(Path(payload) / "imdb"),
                 full_test=full_test)


def environment(payload):
    """Versions, device and commit, for the results table (the GPU copy of the tree has no .git: the
    payload records the commit it was built at)."""
    versions = {name: _version(name) for name in ("torch", "transformers", "accelerate", "datasets", "scikit-learn")}
    made = Path(payload or "") / "payload.json"
    return {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else loop_timing.cpu_name(),
            "cuda": torch.version.cuda, "python": platform.python_version(), "packages": versions,
            "commit": _git_commit() or (read_json(made)["commit"] if made.is_file() else None),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def _version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_commit():
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=False, capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() or None


def run_part(name, check, out, env):
    """Run one part, write out/<name>.json (also when it raised); True if it raised nothing and its checks
    passed (in the dry run, if it raised nothing)."""
    print(f"\n=== part {name} ===", flush=True)
    check.notes = []
    started = time.perf_counter()
    try:
        result = PARTS[name](check)
        error = None
    except Exception:  # noqa: BLE001 - a failed part is reported in its JSON and the next part still runs
        result, error = {}, traceback.format_exc()
        print(error, flush=True)
    checks = result.get("checks", {})
    passed = error is None and (check.dry_run or all(value is not False for value in checks.values()))
    record = {"part": name, "dry_run": check.dry_run, "passed": passed, "seconds": round(time.perf_counter() - started, 1),
              "notes": list(check.notes), "error": error, **env, **result}
    write_json(Path(out) / f"{name}.json", record)
    print(f"part {name}: {'passed' if passed else 'FAILED'} in {record['seconds']} s; checks "
          f"{json.dumps(checks)}; written to {Path(out) / f'{name}.json'}", flush=True)
    return passed


def part_names(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return list(PARTS)
    unknown = [name for name in names if name not in PARTS]
    if unknown or not names:
        raise SystemExit(f"--part: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(PARTS)} or all")
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", default="all", help=f"comma-separated parts: {', '.join(PARTS)}, or all")
    parser.add_argument("--dry-run", action="store_true", help="every part at tiny sizes on the CPU")
    parser.add_argument("--payload", help="the carried payload folder (bench/gpu_payload.py); needed without --dry-run")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="folder for <part>.json")
    parser.add_argument("--work", help="folder for run folders and weights (default: a temporary folder)")
    parser.add_argument("--full-test", type=int, help="full-data: test reviews (default all the payload holds)")
    args = parser.parse_args(argv)
    names = part_names(args.part)
    if not args.dry_run and not args.payload:
        raise SystemExit("--payload is needed (or --dry-run): see this file's docstring")
    with contextlib.ExitStack() as stack:
        work = Path(args.work) if args.work else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        check = dry_run_check(work) if args.dry_run else payload_check(args.payload, work, args.full_test)
        env = environment(args.payload)
        print(f"gpu check on {env['device']} (torch {env['packages']['torch']}, CUDA {env['cuda']}), "
              f"parts {', '.join(names)}{', dry run' if args.dry_run else ''}", flush=True)
        results = {name: run_part(name, check, args.out, env) for name in names}
    failed = [name for name, passed in results.items() if not passed]
    print(f"\ngpu check: {len(names) - len(failed)} of {len(names)} part(s) passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
