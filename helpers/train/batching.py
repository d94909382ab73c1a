"""How reviews become batches: each epoch's order (length-grouped by default, so a batch is padded little: see
`length_grouped_order`), and padded loaders."""
import pyarrow.compute as pc
import torch
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding

from helpers.core.errors import CheckpointError
from helpers.core.padding import PAD_TO_MULTIPLE

GROUP_BATCHES = 50  # batches per length-sorted group: large enough to find similar lengths, small enough to mix


class EpochSampler(Sampler):
    """The training order of each epoch, drawn from (seed, epoch) alone, so it can be drawn again. Checkpoints also
    store it and a resumed epoch follows the stored order (`resume_order`), which stays right even if a library
    upgrade changed how orders are drawn. The epoch is set through `epoch`, not `set_epoch`, which Accelerate calls
    with its own count of passes over a loader."""

    def __init__(self, lengths, batch_size, seed, group_by_length):
        self.lengths, self.batch_size, self.seed, self.group_by_length = list(lengths), batch_size, seed, group_by_length
        self.epoch = 1
        self._cached = (None, None)  # (epoch, order): drawn once, or restored from a checkpoint

    def __len__(self):
        return len(self.lengths)

    def __iter__(self):
        return iter(self.order(self.epoch))

    def order(self, epoch):
        if self._cached[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch - 1)
            order = (length_grouped_order(self.lengths, self.batch_size, generator) if self.group_by_length
                     else torch.randperm(len(self.lengths), generator=generator).tolist())
            self._cached = (epoch, list(order))
        return self._cached[1]

    def resume_order(self, epoch, order):
        if sorted(order) != list(range(len(self.lengths))):
            raise CheckpointError(f"its stored data order ({len(order)} indices) does not cover the {len(self.lengths)} reviews")
        self._cached = (epoch, list(order))


def token_lengths(dataset):
    """Each review's number of tokens, read from the Arrow column (no Python lists of ids)."""
    return pc.list_value_length(dataset.with_format("arrow")["input_ids"]).to_numpy()


def length_grouped_order(lengths, batch_size, generator, group_batches=GROUP_BATCHES):
    """Review indices shuffled, cut into groups of `group_batches` batches and sorted by length within each group, then
    the batches shuffled; an incomplete batch stays last. (transformers' get_length_grouped_indices stops before the
    final shuffle, so on a small training set, one group, a whole epoch went from the longest reviews to the
    shortest.)"""
    shuffled = torch.randperm(len(lengths), generator=generator).tolist()
    group = group_batches * batch_size
    batches = []
    for start in range(0, len(shuffled), group):
        ordered = sorted(shuffled[start:start + group], key=lambda i: lengths[i], reverse=True)
        batches += [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    partial = [b for b in batches if len(b) < batch_size]
    return [i for k in torch.randperm(len(full), generator=generator).tolist() for i in full[k]] + sum(partial, [])


def make_loader(dataset, tokenizer, batch_size, sampler=None, extra_columns=()):
    """Batches padded to their longest review (rounded up to PAD_TO_MULTIPLE), in the sampler's or the dataset's order.
    The loader draws its worker seed from a generator of its own, so a pass over it does not move torch's global
    random state (which dropout uses): a resumed run draws exactly the numbers an unbroken one does. With a GPU,
    batches go to pinned memory, copied asynchronously while Accelerate's loader fetches one batch ahead. No worker
    processes: padding costs the main process little, while a worker would start anew at every epoch and resume."""
    columns = ["input_ids", "attention_mask", "labels", *extra_columns]
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=PAD_TO_MULTIPLE, return_tensors="pt")
    return DataLoader(dataset.select_columns(columns), batch_size=batch_size, sampler=sampler, collate_fn=collator,
                      generator=torch.Generator().manual_seed(0), pin_memory=torch.cuda.is_available())


def split_batch(batch, parts):
    """`batch` cut along its rows into at most `parts` pieces."""
    cuts = [torch.tensor_split(values, min(parts, len(batch["input_ids"]))) for values in batch.values()]
    return [{key: values[i] for key, values in zip(batch, cuts)} for i in range(len(cuts[0]))]
