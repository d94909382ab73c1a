"""Progress bars that look right both live in Jupyter/Colab and in papermill's saved notebooks.

Live, `tqdm.auto` draws a widget. In a batch run nobody watches, and a widget saved by
papermill reads 0%; the runner sets PLAIN_PROGRESS so bars become text lines, updated
every few seconds, that stay readable in the executed notebook.
"""
import os
import sys

PLAIN_PROGRESS = "IMDB_DISTIL_PLAIN_PROGRESS"


def progress(iterable=None, **kwargs):
    if os.environ.get(PLAIN_PROGRESS):
        from tqdm.std import tqdm

        return tqdm(iterable, file=sys.stdout, mininterval=10, ascii=True, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
