"""Every prediction of a PyTorch model: tokenized reviews in, logits out.

`forward` is the one place the model is called (training's loss too), `batches_logits` the one function that calls
it to predict; around it `predict_logits` (a dataset), `predict_sets` (several, on the stage's Accelerator),
`timed_cpu_logits` (a CPU copy, timed) and `batch_logits` (one batch the notebooks show).

Validation, the test predictions, the teacher's soft labels, the CPU copies and their timing, the
export's check, helpers.predict on a run folder, the demo and the notebook views all predict here.
"""
import time

import numpy as np
import torch
import torch.nn.functional as F

from helpers.core.accelerators import plain_model
from helpers.core.progress import progress
from helpers.train.batching import make_loader, token_lengths

MODEL_INPUTS = ("input_ids", "attention_mask")  # token type ids are left out: a single review is one segment


def forward(model, batch):
    """The model's logits for a batch of tokenized reviews, in fp32 whatever the autocast: every softmax on them (the
    losses, the soft labels, P(positive)) then runs in fp32, where CPU autocast would keep fp16's."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()


def batches_logits(model, batches, accelerator=None):
    """fp32 logits on the CPU for each review of `batches`, in order, in evaluation mode. With an accelerator: in its
    precision (autocast), gathered across processes without the duplicates even batching adds; without one, on
    the model's device in the model's own precision."""
    model.eval()
    device = next(model.parameters()).device
    chunks = []
    with torch.inference_mode():
        for batch in batches:
            if accelerator is None:
                logits = forward(model, {key: batch[key].to(device) for key in MODEL_INPUTS})
            else:
                with accelerator.autocast():
                    logits = accelerator.gather_for_metrics(forward(model, batch))
            chunks.append(logits.cpu())
    return torch.cat(chunks)


def predict_logits(model, dataset, tokenizer, batch_size, accelerator=None, desc="predicting"):
    """Logits for every review of a tokenized `dataset`, a NumPy array in the dataset's order; predicted shortest
    first, so each batch is padded little. With an accelerator, `model` is on its device."""
    order = np.argsort(token_lengths(dataset), kind="stable")
    loader = make_loader(dataset.select(order), tokenizer, batch_size)
    show = True
    if accelerator is not None:
        loader, show = accelerator.prepare_data_loader(loader), accelerator.is_local_main_process
    logits = batches_logits(model, progress(loader, desc=desc, disable=not show, leave=False), accelerator).numpy()
    in_order = np.empty_like(logits)
    in_order[order] = logits
    return in_order


def predict_sets(model, sets, tokenizer, batch_size, accelerator, desc="predicting"):
    """{name: logits} for each tokenized dataset of `sets` on the stage's Accelerator (its device and precision; every
    process predicts its share and gets them all). The model is moved, not prepared: Accelerate hands a model it
    prepared once back without its autocast (`plain_model`), so a second prepare would predict in fp32."""
    model.to(accelerator.device)
    return {name: predict_logits(model, dataset, tokenizer, batch_size, accelerator, desc)
            for name, dataset in sets.items()}


def timed_cpu_logits(model, dataset, tokenizer, batch_size):
    """The logits of `model` predicting `dataset` on the CPU, and the seconds that took, in the model's own
    precision: fp32, or int8 for a quantized copy (never a loop's bf16 autocast: `plain_model`)."""
    model = plain_model(model).to("cpu")
    started = time.perf_counter()
    logits = predict_logits(model, dataset, tokenizer, batch_size, desc="timing on the CPU")
    return logits, time.perf_counter() - started


def batch_logits(model, batch):
    """The logits of `model` on one collated batch (a tensor, fp32, on the CPU), wherever the model is."""
    return batches_logits(model, [batch])


def validation_scores(logits, labels):
    """Accuracy and mean cross-entropy of logits against labels (the loop's per-epoch validation)."""
    labels = np.asarray(labels)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    return {"accuracy": float((logits.argmax(-1) == labels).mean()), "loss": loss}
