"""What makes a run a batch run: the execute request the kernel answers (Jupyter's `allow_stdin`), no private attribute."""
import IPython
import pytest

from helpers.core import progress


class FakeKernel:
    """A kernel as ipykernel exposes it publicly: the message it is answering, by get_parent()."""

    def __init__(self, allow_stdin):
        self.request = {"header": {"msg_type": "execute_request"}, "content": {"code": "", "allow_stdin": allow_stdin}}

    def get_parent(self, channel=None):
        return self.request


class FakeShell:
    def __init__(self, kernel):
        self.kernel = kernel


@pytest.mark.parametrize("allow_stdin, batch", [(True, False), (False, True)], ids=["live notebook", "papermill"])
def test_a_kernel_is_in_a_batch_run_when_its_client_cannot_answer_input(monkeypatch, allow_stdin, batch):
    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell(FakeKernel(allow_stdin)))
    assert progress.in_batch_run() is batch


def test_plain_python_and_terminal_ipython_are_batch_runs(monkeypatch):
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)  # plain Python: no shell at all
    assert progress.in_batch_run()
    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell(None))  # terminal IPython: a shell, no kernel
    assert progress.in_batch_run()
