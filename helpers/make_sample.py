"""Draw the stratified IMDB sample that ships in `helpers/sample_data/`.

The sample is the offline data of the `smoke` and `quick` profiles. It was drawn once with

    python -m helpers.make_sample ../shared/data/imdb

and is committed, so this script only matters to someone who wants to redraw it.
"""
import argparse
from pathlib import Path

import pandas as pd

from helpers.data import stratified_sample
from helpers.io import write_frame

SAMPLE_DIR = Path(__file__).parent / "sample_data"
SAMPLE_SIZES = {"train": 2000, "test": 1000}
SAMPLE_SEED = 2011  # the year of Maas et al.; any fixed number would do


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder with the full train.parquet and test.parquet")
    args = parser.parse_args(argv)
    for split, size in SAMPLE_SIZES.items():
        full = pd.read_parquet(args.source / f"{split}.parquet")
        sample = stratified_sample(full, size, SAMPLE_SEED).reset_index(drop=True)
        target = SAMPLE_DIR / f"{split}.parquet"
        write_frame(target, sample[["text", "label"]], compression="zstd", index=False)
        print(f"{target}: {len(sample)} reviews, labels {sample.label.value_counts().to_dict()}")


if __name__ == "__main__":
    main()
