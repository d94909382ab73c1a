"""Progress bars and widget cells that behave right both live (Jupyter, Colab) and in batch runs.

A batch run is one nobody can interact with: papermill runs every cell with standard input disallowed however it was
started (the `allow_stdin` of Jupyter's execute request says so, not an environment variable), and a multi-process
launch has no kernel. There, bars are text lines on stdout (a saved widget reads 0%) and widget cells print a static
example (helpers.evaluate.demo)."""
import sys

BATCH_UPDATE_SECONDS = 10  # how often a text bar prints a new line in a batch run


def in_batch_run():
    """True when no one can answer this kernel: papermill, plain Python, terminal IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return True
    kernel = getattr(get_ipython(), "kernel", None)
    # papermill's client sends `allow_stdin` False with each execute request, a live notebook True
    return kernel is None or not kernel.get_parent("shell").get("content", {}).get("allow_stdin", False)


def quiet_library_bars():
    """In batch runs, silence the loading bars of transformers and datasets (saved, they read 0%)."""
    if in_batch_run():
        import datasets
        import transformers

        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()


def progress(iterable=None, **kwargs):
    if in_batch_run():
        from tqdm.std import tqdm

        return tqdm(iterable, file=sys.stdout, mininterval=BATCH_UPDATE_SECONDS, ascii=True, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def show(markdown):
    """Markdown in a notebook (Jupyter, Colab, papermill's saved copy), plain text elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown(markdown))
    else:
        print(markdown)
