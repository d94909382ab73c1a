"""Extra labelled test sets, scored by every model beside the run's own test split. `extra_test` names them,
comma-separated: `short` (shipped: 1,000 single IMDB sentences labelled by Kotzias et al. 2015) or a Parquet or CSV
file with `text` and `label` (relative paths as the README says), named by its stem (`my_reviews`):

    python -m helpers.run quick -p extra_test short,helpers/data/sample_data/my_reviews.csv
"""
from helpers.core.errors import ConfigError
from helpers.core.files import project_path
from helpers.data.imdb import SAMPLE_DIR, check_labelled_file, load_labelled_file

SHIPPED = {"short": SAMPLE_DIR / "short_sentences.parquet"}
MAIN = "test"  # the run's own test split, which no extra set may be named after


def extra_test_files(spec):
    """{name: file} of the sets an `extra_test` value names, each checked (cheaply) for text and label columns."""
    files = {}
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        file = SHIPPED.get(item) or project_path(item)
        name = item if item in SHIPPED else file.stem
        if name in files or name == MAIN:
            raise ConfigError(f"extra_test: two sets would be named {name!r} (a set is named by its file's stem, "
                              f"and {MAIN!r} is the run's own test split); rename one file")
        check_labelled_file(file)
        files[name] = file
    return files


def load_extra_tests(spec):
    """{name: frame with text and label} of the extra test sets, in the order given."""
    return {name: load_labelled_file(file) for name, file in extra_test_files(spec).items()}
