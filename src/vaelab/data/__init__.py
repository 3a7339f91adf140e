"""Data: named sources, IDX files, binarization and in-memory batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaelab.config import DataConfig, split_source
from vaelab.data.batches import Prepared, epoch_batches, iterate, prepare
from vaelab.data.binarize import check_mode
from vaelab.data.folder import load_folder
from vaelab.data.idx import read_idx, write_idx
from vaelab.data.kinds import load_kind
from vaelab.data.labels import semi_supervised
from vaelab.data.sources import SOURCES, ImageSet, Splits, get_source, source_names
from vaelab.errors import DataError
from vaelab.registry import Registry

__all__ = [
    "SOURCES",
    "VALID_SPLITS",
    "DataSplits",
    "ImageSet",
    "Prepared",
    "Splits",
    "epoch_batches",
    "iterate",
    "load_data",
    "load_source",
    "prepare",
    "prepare_split",
    "read_idx",
    "source_names",
    "write_idx",
]


# How data.valid_fraction of the training images become the validation split.
VALID_SPLITS: Registry[str] = Registry(
    "validation split",
    {
        "random": "a seeded random subset of the training images",
        "tail": "the last training images, just before the test split: for frames of a video, whose "
        "neighbours are near copies (a random subset would sit between training frames)",
    },
)


@dataclass(frozen=True)
class DataSplits:
    """Train, validation (possibly empty) and test splits of one source."""

    train: ImageSet
    valid: ImageSet | None
    test: ImageSet

    @property
    def shape(self) -> tuple[int, int, int]:
        """One datum's shape (C, H, W)."""
        return self.train.shape


def load_source(cfg: DataConfig) -> Splits:
    """The published train/test split of the source `cfg.name`; a named source refuses the folder-only
    settings (image_size, channels, skip_bad) when they differ from their defaults, rather than ignore them.

    Args:
        cfg: the data settings (name, data_dir, download; image_size, channels and skip_bad for folder:).
    """
    kind, path, key = split_source(cfg.name)
    if kind == "folder":
        return load_folder(path, cfg.image_size, cfg.channels, cfg.skip_bad, cfg.data_dir)
    default = DataConfig()
    folder_only = (  # (what was asked, in the user's words; whether it differs from the default)
        (f"--image-size {cfg.image_size} (data.image_size)", cfg.image_size != default.image_size),
        (f"--channels {cfg.channels} (data.channels)", cfg.channels != default.channels),
        ("data.skip_bad=true", cfg.skip_bad != default.skip_bad),
    )
    for asked, differs in folder_only:
        if differs:
            raise DataError(
                f"{asked} applies to folder:PATH images only; {cfg.name} is read as published: leave it out"
            )
    if kind:  # npz:, npy:, csv:, parquet: (vaelab.data.kinds)
        return load_kind(kind, path, key, cfg)
    return get_source(cfg.name).load(cfg.data_dir, allow_download=cfg.download)


MAX_IMAGE_SIZE = 1024  # folder images are resized to a square this side at most: 1024^2 x 3 bytes a picture


def load_data(cfg: DataConfig, splits: Splits | None = None) -> DataSplits:
    """Load a source and carve the validation split from train (a seeded permutation, or its last images with
    `data.valid_split: tail`); with `data.labelled`, keep only that many training labels (`vaelab.data.labels`)."""
    check_mode(cfg.binarize)
    VALID_SPLITS.check(cfg.valid_split)
    if not 0.0 <= cfg.valid_fraction < 1.0:
        raise DataError(f"valid_fraction must be in [0, 1), got {cfg.valid_fraction}")
    if cfg.train_limit < 0:
        raise DataError(f"train_limit must be >= 0 (0: every training image), got {cfg.train_limit}")
    if not 1 <= cfg.image_size <= MAX_IMAGE_SIZE:
        raise DataError(f"image_size must be in 1..{MAX_IMAGE_SIZE} pixels, got {cfg.image_size}")
    splits = load_source(cfg) if splits is None else splits  # given: data passed from Python (data.python)
    train = splits.train
    if cfg.train_limit > 0:
        train = train.subset(torch.arange(min(cfg.train_limit, len(train))))
    valid = None
    n_valid = round(cfg.valid_fraction * len(train))
    if n_valid > 0:
        if cfg.valid_split == "tail":
            perm = torch.cat(
                [torch.arange(len(train) - n_valid, len(train)), torch.arange(len(train) - n_valid)]
            )
        else:
            perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.split_seed))
        valid = train.subset(perm[:n_valid].sort().values, f"{cfg.name}/valid")
        train = train.subset(perm[n_valid:].sort().values, f"{cfg.name}/train")
    if len(train) == 0:
        raise DataError(f"{cfg.name}: no training images left after the validation split")
    if cfg.labelled > 0:
        seed = cfg.label_seed if cfg.label_seed >= 0 else cfg.split_seed
        train = semi_supervised(train, cfg.labelled, seed, cfg.labelled_share)
    return DataSplits(train, valid, splits.test)


# Seed offsets (from data.binarize_seed) of the fixed draws of each split; the trainer evaluates with the same.
SPLIT_SEED_OFFSET = {"test": 1, "valid": 2, "train": 3}


def prepare_split(cfg: DataConfig, name: str, device: torch.device | str = "cpu") -> Prepared:
    """One split on `device`, as a fixed draw for evaluation (exactly as the trainer evaluated it)."""
    if name not in SPLIT_SEED_OFFSET:
        raise DataError(f"unknown split '{name}'; choose one of: {', '.join(SPLIT_SEED_OFFSET)}")
    if name == "valid":
        split = load_data(cfg).valid
        if split is None:
            raise DataError(f"{cfg.name}: no validation split (data.valid_fraction is 0)")
    elif name == "train":
        split = load_data(cfg).train
    else:
        split = load_source(cfg).test
    return prepare(split, cfg.binarize, device, cfg.binarize_seed + SPLIT_SEED_OFFSET[name], train=False)
