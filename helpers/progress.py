"""Progress bars that look right both live in Jupyter/Colab and in papermill's saved notebooks.

Live, `tqdm.auto` draws a widget. In a batch run nobody watches, and a widget saved by
papermill reads 0%; the runner sets PLAIN_PROGRESS so bars become text lines, updated
every few seconds, that stay readable in the executed notebook.
"""
import os
import sys

PLAIN_PROGRESS = "IMDB_DISTIL_PLAIN_PROGRESS"
BATCH = "IMDB_DISTIL_BATCH"  # set by the runner too: no one is there to use a widget (see helpers.demo)


def in_batch_run():
    """True inside `python -m helpers.run`, whose kernels inherit its environment."""
    return bool(os.environ.get(BATCH))


def quiet_library_bars():
    """In batch runs, silence the loading bars of transformers and datasets (saved, they read 0%)."""
    if os.environ.get(PLAIN_PROGRESS):
        import datasets
        import transformers

        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()


def progress(iterable=None, **kwargs):
    if os.environ.get(PLAIN_PROGRESS):
        from tqdm.std import tqdm

        return tqdm(iterable, file=sys.stdout, mininterval=10, ascii=True, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
