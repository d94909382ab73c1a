"""Draw the stratified IMDB sample that ships in `helpers/data/sample_data/` (the offline data of `smoke` and
`quick`), once, committed: `python -m helpers.data.sample ../shared/data/imdb` redraws it."""
import argparse
from pathlib import Path

import pandas as pd

from helpers.core.files import write_frame
from helpers.data.imdb import SAMPLE_DIR, SAMPLE_SIZES, stratified_sample

SAMPLE_SEED = 2011  # the year of Maas et al.; any fixed number would do


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder with the full train.parquet, test.parquet and unsup.parquet")
    parser.add_argument("--unlabelled-only", action="store_true", help="write only the unlabelled slice")
    args = parser.parse_args(argv)
    if args.unlabelled_only:
        return write_unlabelled(args.source)
    for split in ("train", "test"):
        full = pd.read_parquet(args.source / f"{split}.parquet")
        sample = stratified_sample(full, SAMPLE_SIZES[split], SAMPLE_SEED).reset_index(drop=True)
        target = SAMPLE_DIR / f"{split}.parquet"
        write_frame(target, sample[["text", "label"]], compression="zstd", index=False)
        print(f"{target}: {len(sample)} reviews, labels {sample.label.value_counts().to_dict()}")
    write_unlabelled(args.source)


def write_unlabelled(source):
    """SAMPLE_SIZES["unlabelled"] reviews of unsup.parquet, none equal to a test review of the full test split or
    holding a sentence of the shipped short-sentence set."""
    from helpers.data.extra_sets import SHIPPED
    from helpers.data.unlabelled import SHIPPED_FILE, draw_unlabelled

    test_reviews = pd.read_parquet(source / "test.parquet")["text"]
    sentences = pd.read_parquet(SHIPPED["short"])["text"]
    drawn, _ = draw_unlabelled(str(source / "unsup.parquet"), SAMPLE_SIZES["unlabelled"], SAMPLE_SEED, test_reviews, sentences)
    write_frame(SHIPPED_FILE, drawn[["text"]], compression="zstd", index=False)
    print(f"{SHIPPED_FILE}: {len(drawn)} unlabelled reviews")


if __name__ == "__main__":
    main()
