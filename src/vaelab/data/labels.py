"""Few labels for semi-supervised learning: keep N labels balanced over the classes, mask the rest to -1.

`data.labelled = N` keeps N training labels, N / C per class (the remainder to the first classes), chosen by a
seeded permutation (`data.split_seed`), and sets every other training label to -1 (unlabelled); validation and
test keep theirs (they score the model, never train it). So that most batches hold a few labelled images,
the labelled images are repeated until they make up about `data.labelled_share` of the training split
(each copy is drawn afresh under dynamic binarization); an epoch then visits every unlabelled image once and
every labelled one several times.
"""

from __future__ import annotations

import math

import torch

from vaelab.data.sources import ImageSet
from vaelab.errors import DataError

UNLABELLED = -1


def keep_labels(split: ImageSet, labelled: int, seed: int) -> ImageSet:
    """The split with only `labelled` labels kept (balanced per class, seeded), the others set to -1."""
    if split.labels is None:
        raise DataError(f"data.labelled = {labelled}, but {split.name or 'the data set'} has no labels")
    classes = torch.unique(split.labels[split.labels >= 0])
    if labelled > len(split) or labelled < len(classes):
        raise DataError(
            f"data.labelled = {labelled}: need at least one label per class ({len(classes)}) "
            f"and at most the {len(split)} training images"
        )
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(split), generator=g)
    per_class, extra = divmod(labelled, len(classes))
    keep = []
    for i, c in enumerate(classes.tolist()):
        want = per_class + (1 if i < extra else 0)
        members = order[split.labels[order] == c]
        if len(members) < want:
            raise DataError(
                f"data.labelled = {labelled} needs {want} images of class {c}; there are {len(members)}"
            )
        keep.append(members[:want])
    kept = torch.cat(keep)
    labels = torch.full_like(split.labels, UNLABELLED)
    labels[kept] = split.labels[kept]
    return ImageSet(split.images, labels, split.name)


def oversample_labelled(split: ImageSet, share: float) -> ImageSet:
    """The split with its labelled images repeated so that they make up about `share` of it (at least once)."""
    if not 0 <= share < 1:
        raise DataError(f"data.labelled_share must be in [0, 1), got {share}")
    known = (split.labels >= 0).nonzero().flatten()
    n_known, n_rest = len(known), len(split) - len(known)
    if n_known == 0 or n_rest == 0:
        return split
    repeats = max(1, math.ceil(share * n_rest / ((1 - share) * n_known)))
    index = torch.cat([torch.arange(len(split)), known.repeat(repeats - 1)])
    return split.subset(index)


def semi_supervised(split: ImageSet, labelled: int, seed: int, share: float) -> ImageSet:
    """`keep_labels`, then `oversample_labelled`: the training split a semi-supervised learner sees."""
    return oversample_labelled(keep_labels(split, labelled, seed), share)
