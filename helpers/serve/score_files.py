"""Score your own reviews: a run's model (PyTorch) or an exported one (ONNX Runtime, no torch needed).

    python -m helpers.predict runs/quick my_reviews.csv --out scored.csv            # the run's student
    python -m helpers.predict runs/quick my_reviews.csv --model int8                # CSV on standard output
    python -m helpers.predict runs/quick/export reviews.parquet --out scored.parquet  # helpers.export's folder
    cat reviews.txt | python -m helpers.predict runs/quick/export -                 # one review per line

INPUT is Parquet, CSV, JSON Lines (.jsonl) or text with one review per line (.txt; also what `-`, standard input,
holds unless --input-format says otherwise). The output keeps the input's columns and adds `predicted` (NEGATIVE or
POSITIVE) and `p_positive`, calibrated with the run's temperature. Reviews are cut as the run cut its training
reviews. Files are read and written in chunks, so memory stays flat however long the file. Empty or non-text rows
are named, skipped (kept in the output with no prediction) and counted, or refused with --strict. An output file is
written whole or not at all. With a `label` column (0/1, neg/pos, negative/positive), accuracy and its 95% interval
are printed.
"""
import argparse
import signal
import sys
import time
from contextlib import ExitStack, redirect_stdout
from itertools import chain, islice
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.core.files import atomic_write
from helpers.core.sentiment import LABEL_WORDS, accuracy_interval, predicted_labels
from helpers.runs import layout
from helpers.serve import onnx_backend

CHUNK_ROWS = 1000  # reviews read, scored and written at a time: memory holds one chunk, not the file
INPUT_FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".txt": "txt"}
OUTPUT_FORMATS = (".parquet", ".csv")
MODELS = ("student", "int8", "teacher")
ADDED = ("predicted", "p_positive")
SHOWN_ROWS = 10  # bad rows named one by one; the rest counted


class InputError(ValueError):
    """Input that cannot be scored; the message names the file, the row and the fix."""


def read_chunks(source, kind):
    """The input as frames of at most CHUNK_ROWS rows. CSV cells stay strings (no guessed types, so every
    chunk has the same columns' types); a text file is one `text` column, one review per line."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(source).iter_batches(batch_size=CHUNK_ROWS):
            yield batch.to_pandas()
    elif kind == "csv":
        with pd.read_csv(source, chunksize=CHUNK_ROWS, dtype=str, keep_default_na=False, index_col=False) as reader:
            yield from reader
    elif kind == "jsonl":
        with pd.read_json(source, lines=True, chunksize=CHUNK_ROWS, dtype=False) as reader:
            yield from reader
    else:
        with source if hasattr(source, "read") else open(source, encoding="utf-8") as handle:
            lines = (line.rstrip("\r\n") for line in handle)
            while texts := list(islice(lines, CHUNK_ROWS)):
                yield pd.DataFrame({"text": texts})


def label_value(value):
    """A label as 0/1, NaN where it is neither 0/1 nor one of the label words (core.sentiment.LABEL_WORDS)."""
    if isinstance(value, str):
        return LABEL_WORDS.get(value.strip().lower(), np.nan)
    return float(value) if value in (0, 1) and not isinstance(value, bool) else np.nan


class OutputWriter:
    """Chunks to a CSV stream, or to a Parquet or CSV file under a temporary name renamed at the end."""

    def __init__(self, stack, out, stream):
        self.stack, self.parquet, self.first = stack, bool(out) and out.endswith(".parquet"), True
        self.target = stack.enter_context(atomic_write(out)) if out else stream

    def write(self, frame):
        if not self.parquet:
            frame.to_csv(self.target, mode="w" if self.first else "a", header=self.first, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.first:
                self.writer = self.stack.enter_context(pq.ParquetWriter(self.target, table.schema))
            elif table.schema != self.writer.schema:
                table = table.cast(self.writer.schema)  # e.g. a column all null in this chunk: typed as in the first
            self.writer.write_table(table)
        self.first = False


def load_classifier(source, model, threads):
    """A run folder's model (PyTorch) or an export folder's (ONNX Runtime), behind helpers.serve.classifier."""
    if onnx_backend.is_export_folder(source):
        return onnx_backend.ExportedClassifier.load(source, model, threads)
    if not (Path(source) / layout.PARAMS_FILE).is_file():
        raise InputError(f"{source} is neither a run folder (params.json) nor an export folder "
                         f"({onnx_backend.SERVING_FILE}); give one of those")
    from helpers.serve.torch_backend import TorchClassifier

    return TorchClassifier.load(source, model, threads)


def score(args, stream):
    """Read, score and write every chunk; returns the summary printed at the end."""
    kind = args.input_format or ("txt" if args.input == "-" else INPUT_FORMATS.get(Path(args.input).suffix.lower()))
    if kind is None:
        raise InputError(f"{args.input}: cannot tell its format from the extension; name it .parquet, .csv, .jsonl or "
                         "(one review per line) .txt, or pass --input-format")
    stdin = sys.stdin.buffer if kind == "parquet" else sys.stdin
    chunks = read_chunks(stdin if args.input == "-" else args.input, kind)
    first = next(chunks, None)
    if first is None or args.text_column not in first.columns:
        found = "no rows" if first is None else f"columns {list(first.columns)}"
        raise InputError(f"{args.input}: no {args.text_column!r} column ({found}); name the review column with "
                         "--text-column")
    if clash := [name for name in ADDED if name in first.columns]:
        raise InputError(f"{args.input}: already has column(s) {clash}, which the output adds; rename them")
    classifier = load_classifier(args.source, args.model, args.threads)
    batch_size = args.batch_size or classifier.batch_size
    from tqdm import tqdm

    totals = {"rows": 0, "scored": 0, "labelled": 0, "correct": 0, "bad_rows": [], "seconds": 0.0}
    with ExitStack() as stack:
        writer = OutputWriter(stack, args.out, stream)
        bar = stack.enter_context(tqdm(desc="scoring", unit="reviews", file=sys.stderr, disable=args.quiet))
        for chunk in chain([first], chunks):
            texts = chunk[args.text_column]
            ok = texts.map(lambda text: isinstance(text, str) and bool(text.strip())).to_numpy(dtype=bool)
            bad = np.flatnonzero(~ok) + totals["rows"]
            if len(bad) and args.strict:
                raise InputError(f"{args.input}: row {bad[0]} has no text to score "
                                 f"({texts.iloc[bad[0] - totals['rows']]!r}; rows count from 0, header excluded); "
                                 "remove it, or drop --strict to skip such rows")
            totals["bad_rows"] += bad.tolist()
            started = time.perf_counter()
            p_positive = np.full(len(chunk), np.nan)
            if ok.any():
                logits = classifier.logits(texts[ok].tolist(), batch_size, bar.update)
                p_positive[ok] = classifier.positive_probability(logits)
            totals["seconds"] += time.perf_counter() - started
            decided = predicted_labels(p_positive[ok])
            chunk["predicted"] = pd.Series(None, index=chunk.index, dtype=object)
            chunk.loc[chunk.index[ok], "predicted"] = np.array([classifier.label_names[v] for v in decided], dtype=object)
            chunk["p_positive"] = p_positive
            if "label" in chunk.columns:
                labels = chunk["label"].map(label_value).to_numpy(dtype=float)[ok]
                known = ~np.isnan(labels)
                totals["labelled"] += int(known.sum())
                totals["correct"] += int((decided[known] == labels[known]).sum())
            writer.write(chunk)
            totals["rows"] += len(chunk)
            totals["scored"] += int(ok.sum())
    return {**totals, "model": f"{args.source}'s {args.model} ({classifier.engine}, batch {batch_size})"}


def summary_lines(totals):
    """What the run did, for standard error: reviews and speed, skipped rows by number, accuracy."""
    speed = totals["scored"] / totals["seconds"] if totals["seconds"] else float("nan")
    lines = [f"scored {totals['scored']:,} reviews in {totals['seconds']:.1f} s ({speed:.1f} reviews/s) with "
             f"{totals['model']}"]
    if bad := totals["bad_rows"]:
        named = ", ".join(map(str, bad[:SHOWN_ROWS])) + (f" and {len(bad) - SHOWN_ROWS} more" if len(bad) > SHOWN_ROWS else "")
        lines.append(f"skipped {len(bad):,} row(s) with no text to score (empty, blank or not text): rows {named} "
                     "(rows count from 0, header excluded); they are in the output with no prediction")
    if totals["labelled"]:
        accuracy = totals["correct"] / totals["labelled"]
        low, high = accuracy_interval(accuracy, totals["labelled"])
        lines.append(f"accuracy on the {totals['labelled']:,} labelled reviews: {accuracy:.4f} "
                     f"(95% interval {low:.4f}-{high:.4f})")
    return lines


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m helpers.predict", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a run folder (its distill stage finished) or an export folder (helpers.export)")
    parser.add_argument("input", help="Parquet, CSV, JSON Lines or text file of reviews; - reads standard input")
    parser.add_argument("--out", help="output file, .parquet or .csv (default: CSV on standard output)")
    parser.add_argument("--model", choices=MODELS, default="student", help="which model scores (default student)")
    parser.add_argument("--text-column", default="text", help="the column holding the reviews (default text)")
    parser.add_argument("--input-format", choices=sorted(set(INPUT_FORMATS.values())),
                        help="the input's format when its extension does not say (default for -: txt)")
    parser.add_argument("--strict", action="store_true", help="refuse the input if any row has no text to score")
    parser.add_argument("--batch-size", type=int, help="reviews per batch (default: the run's eval_batch_size)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: the library's own choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.out and not args.out.endswith(OUTPUT_FORMATS):
        parser.error(f"--out {args.out}: name it .parquet or .csv")
    if not Path(args.source).is_dir():
        parser.error(f"{args.source}: no such folder; give a run folder or an export folder")
    if args.input != "-" and not Path(args.input).is_file():
        parser.error(f"{args.input}: no such file")
    return args


def main(argv=None):
    args = parse_args(argv)
    # SIGTERM raises SystemExit, which unwinds, so the temporary output file is removed; the handler is put back at
    # the end (a notebook's kernel calls main)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    stream = sys.stdout  # the CSV, when no --out; anything else printed goes to standard error
    try:
        with redirect_stdout(sys.stderr):
            totals = score(args, stream)
    except (InputError, onnx_backend.ExportError) as error:
        raise SystemExit(f"error: {error}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("\n".join(summary_lines(totals)), file=sys.stderr)
    return totals


if __name__ == "__main__":
    main()
