"""Every prediction of a PyTorch model: tokenized reviews in, logits out. `forward` is the one place the model is
called (the loop's loss too), `batches_logits` the one function that calls it to predict; around it
`predict_logits` (a dataset, shortest first, on an Accelerator or where the model is), `predict_sets`,
`cpu_logits`/`timed_cpu_logits` (on the CPU in the model's own precision, timed warm) and `batch_logits`."""
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from helpers.core.accelerators import plain_model
from helpers.core.progress import progress
from helpers.core.timing import warmed_timing
from helpers.train.batching import make_loader, token_lengths

MODEL_INPUTS = ("input_ids", "attention_mask")  # token type ids are left out: a single review is one segment


def forward(model, batch):
    """The model's logits for a batch of tokenized reviews, in fp32 whatever the autocast: every softmax on them (the
    losses, the soft labels, P(positive)) then runs in fp32, where CPU autocast would keep fp16's."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()


def batches_logits(model, batches, accelerator=None):
    """fp32 logits on the CPU for each review of `batches`, in order, in evaluation mode without gradients: with an
    accelerator in its precision, gathered across processes once each; without, on the model's device."""
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
    """Logits for every review of a tokenized `dataset`, in its order, predicted shortest first (little padding)."""
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
    """{name: logits} for each dataset of `sets`, on the stage's Accelerator (device, precision, processes). The model
    is moved, not prepared: Accelerate hands back a model it prepared once without its autocast (`plain_model`)."""
    model.to(accelerator.device)
    return {name: predict_logits(model, dataset, tokenizer, batch_size, accelerator, desc)
            for name, dataset in sets.items()}


def cpu_logits(model, dataset, tokenizer, batch_size):
    """Logits of `model` on the CPU in its own precision (fp32, or int8; never a loop's autocast: `plain_model`)."""
    return predict_logits(plain_model(model).to("cpu"), dataset, tokenizer, batch_size, desc="on the CPU")


def timed_cpu_logits(model, dataset, tokenizer, batch_size):
    """`cpu_logits` and the seconds they took, after one untimed batch of the same shapes (`warm_up_batch`)."""
    predict = partial(cpu_logits, model, tokenizer=tokenizer, batch_size=batch_size)
    return warmed_timing(predict, dataset, warm_up_batch(dataset, batch_size))


def warm_up_batch(dataset, batch_size):
    """The `batch_size` longest reviews of `dataset`: one batch of the largest shape a timed pass over it meets."""
    return dataset.select(np.sort(np.argsort(token_lengths(dataset), kind="stable")[-batch_size:]))


def batch_logits(model, batch):
    """The logits of `model` on one collated batch (a tensor, fp32, on the CPU), wherever the model is."""
    return batches_logits(model, [batch])


def validation_scores(logits, labels):
    """Accuracy and mean cross-entropy of logits against labels (the loop's per-epoch validation)."""
    labels = np.asarray(labels)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    return {"accuracy": float((logits.argmax(-1) == labels).mean()), "loss": loss}
