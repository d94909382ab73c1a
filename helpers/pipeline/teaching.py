"""The notebooks' teaching text for the run in hand: what this run's truncation, head and student are.

A notebook's markdown cells cannot know the run's parameters, so where the explanation depends on
them (head+tail or plain truncation, BERT's pooler or the `cls` head, a student built from the
teacher's layers or a pre-trained one), the notebook prints one of these instead of explaining
every case. Each returns Markdown; `show` displays it in a notebook and prints it elsewhere.
"""
from helpers.core.models import DISTIL_FROM_TEACHER
from helpers.tokens.tokens import cut_span


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


def truncation(params):
    """How this run cuts a review longer than max_length."""
    if params.truncation_head >= 1.0:
        return (f"**This run's truncation** (`truncation_head` 1.0): the model reads the first {params.max_length} "
                "word pieces of a long review and never sees the rest. Reviewers often give their verdict at the "
                "end; `truncation_head` below 1.0 would keep the end too.")
    head, _ = cut_span(params.max_length + 1, params.max_length, params.truncation_head)  # the tokenize stage's arithmetic
    return (f"**This run's truncation** (`truncation_head` {params.truncation_head}, head+tail after Sun et al. 2019): "
            f"of a long review the model reads the first {head} and the last {params.max_length - head} word "
            f"pieces ({params.max_length} in all), where reviewers often give their verdict; the middle is dropped.")


def head(params):
    """The classification head this run's teacher gets."""
    if params.head == "cls":
        return ("**This run's head** (`head: cls`): the classifier reads the `[CLS]` state itself, through a fresh "
                "dense layer and GELU, then a linear layer to the 2 labels; BERT's tanh pooler is not used "
                "(docs/recipe.md says why). transformers saves this model as `ElectraForSequenceClassification`, "
                "whose encoder is BERT's layer for layer, so `pipeline()` and `AutoModel` load it as they are.")
    return ("**This run's head** (`head: pooler`, BERT's own): the `[CLS]` state goes through BERT's pre-trained "
            "pooler (a dense layer and tanh), then a new linear layer to the 2 labels.")


def student(params):
    """Where this run's student comes from."""
    if params.student_model == DISTIL_FROM_TEACHER:
        return ("**This run's student** (`student_model: distil-from-teacher`): a DistilBERT built from every other "
                "layer of the fine-tuned teacher (half the layers, the same width and vocabulary), as DistilBERT "
                "itself was initialised from BERT; its head starts from the teacher's and must adapt to fewer layers.")
    return (f"**This run's student** (`student_model: {params.student_model}`): the pre-trained model of that name "
            "with a new 2-label head; it shares the teacher's vocabulary, so both read the same word pieces.")
