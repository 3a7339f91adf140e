"""Configuration: a frozen dataclass per part, overridden by a YAML/JSON file and `key=value` flags.

The merged config is saved with every run (`config.json`) and inside every checkpoint, so a checkpoint
alone rebuilds its model and names its data. Its numbers are checked by `vaelab.ranges.check_numbers` (each
key's range, finiteness), each name (model, objective, likelihood, optimiser, ...) by the table it picks from
(`vaelab.train.validate.validate_config` asks them all).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from vaelab.errors import ConfigError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


# Data names KIND:PATH that name a file or folder (vaelab.data.sources.SOURCES takes them besides its names).
PATH_KINDS = ("folder", "npz", "npy", "csv", "parquet")


def split_source(name: str) -> tuple[str, str, str | None]:
    """(kind, path, key) of a KIND:PATH data name (`npz:FILE.npz:KEY` names one array of an npz); ("", name,
    None) for a named data set.

    Args:
        name: a --data value.
    """
    kind, sep, path = name.partition(":")
    if not sep or kind not in PATH_KINDS:
        return "", name, None
    head, colon, key = path.rpartition(":")
    if kind == "npz" and colon and head.lower().endswith(".npz") and key:
        return kind, head, key
    return kind, path, None


def join_source(kind: str, path: str, key: str | None = None) -> str:
    """The data name of (kind, path, key), as `split_source` reads it."""
    return f"{kind}:{path}" + (f":{key}" if key else "")


@dataclass(frozen=True)
class DataConfig:
    """Which images, where to find them, and how they are binarized and split."""

    name: str = "mnist-5k"
    data_dir: str | None = None
    binarize: str = "dynamic"  # dynamic | static | none
    binarize_seed: int = 0  # the static draw for training (static) and for every evaluation split
    valid_fraction: float = 0.1  # carved from train (see valid_split); 0 disables validation
    valid_split: str = "random"  # random: a seeded permutation | tail: the last training images (a video)
    split_seed: int = 0
    image_size: int = 64  # folder: sources only
    channels: int = 1  # folder: sources only; 1 grey, 3 RGB
    train_limit: int = 0  # use only the first N training images (0: all)
    download: bool = True
    labelled: int = 0  # semi-supervised: keep N training labels, balanced and seeded; the rest become -1
    label_seed: int = -1  # which labels are kept (-1: split_seed): label draws at one validation split
    labelled_share: float = 0.1  # ...and repeat the labelled images to about this share of each epoch
    skip_bad: bool = False  # folder: sources: leave unreadable image files out (counted) instead of stopping
    # tables (vaelab.data.tables): column -> continuous | binary | categorical | drop (else inferred); refuse a
    # missing cell (named) or mask it out of the likelihood; the encoding training found (written by training)
    columns: dict[str, str] = field(default_factory=dict)
    missing: str = "refuse"
    table: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """A KIND:PATH name (folder:, npz:, npy:, csv:, parquet:) and a data_dir are stored absolute (~
        expanded), so that a run's config names the same files from any working directory; an empty path
        stays empty (the data layer refuses it rather than read the current folder)."""
        kind, path, key = split_source(self.name)
        if kind and path.strip():
            object.__setattr__(
                self, "name", join_source(kind, os.path.abspath(os.path.expanduser(path)), key)
            )
        if self.data_dir is not None and str(self.data_dir).strip():
            object.__setattr__(self, "data_dir", os.path.abspath(os.path.expanduser(str(self.data_dir))))


@dataclass(frozen=True)
class ModelConfig:
    """The model's family and size; `name` is a key of the model registry."""

    name: str = "vae"
    body: str = "mlp"  # mlp | conv
    hidden: tuple[int, ...] = (400,)
    activation: str = "relu"
    conv_channels: tuple[int, ...] = ()  # empty: chosen by image size
    latent_dim: int = 20
    likelihood: str = "bernoulli"
    gaussian_variance: str = "shared"  # fixed | shared | per-pixel | decoder
    gaussian_mean: str = (
        "identity"  # identity | sigmoid: the Gaussian decoder's mean map (Kingma & Welling 2014)
    )
    gaussian_sigma: float = 0.1  # the fixed sigma, and the starting sigma of learned ones
    variance_floor: float = 1e-4  # the Gaussian decoder's variance never goes below this
    extra: dict[str, Any] = field(default_factory=dict)  # model-specific settings
    features: str = ""  # m2: the run of a trained VAE (M1) whose codes M2 learns on (M1+M2); "": the images
    posterior: str = "gaussian"  # q(z|x): gaussian | planar:K | iaf:K[:WIDTH] | sylvester:K (see flows.py)
    # the likelihood `mixed`: each column's kind, width, mean and sd (`vaelab.distributions.mixed.table_layout`),
    # which training writes from the table it read (data.table); empty for images
    table: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectiveConfig:
    """The training objective: its name, beta and its schedule, KL estimator, samples, free bits, input noise."""

    name: str = "default"  # a key of OBJECTIVES; "default": the model's own
    beta: float = 1.0
    kl: str = "analytic"  # analytic | mc
    warmup_epochs: float = 0.0  # linear KL warm-up from 0 to beta over this many epochs
    kl_cycle_epochs: float = 0.0  # cyclical KL schedule (Fu et al. 2019): one cycle every this many epochs
    kl_cycle_ramp: float = 0.5  # share of each cycle over which the weight rises linearly from 0 to beta
    free_bits: float = 0.0  # nats per latent dimension below which KL is not penalised (Kingma et al. 2016)
    num_samples: int = 1  # Monte Carlo samples of z per datum (K of the IWAE bound)
    dreg: bool = False  # IWAE: doubly reparameterised encoder gradients (Tucker et al. 2019)
    noise: str = "none"  # denoising: none | gaussian | masking corruption of the encoder's input
    noise_level: float = 0.0  # Gaussian sigma, or the masked share of pixels


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation: optimiser, learning-rate schedule, epochs, batches, seed and device."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | adagrad
    lr_schedule: str = "constant"  # constant | step | exponential | cosine | iwae
    lr_step_epochs: int = 10
    lr_gamma: float = 0.5
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # clip the gradients' total norm to this (0: no clipping)
    grad_clip_value: float = 0.0  # then each gradient element to [-v, v] (0: none; Maaloe et al. 2016 use 1)
    seed: int = 0
    device: str = "cpu"
    threads: int = 0  # 0: this process's cores, split among the ranks on its node
    eval_batch_size: int = 1000
    eval_seed: int = 1234  # the noise draw used for every per-epoch evaluation
    eval_test: bool = True  # score the test split every epoch too (off: valid only, ~10% faster records)
    progress: bool = True
    precision: str = "fp32"  # fp32 | bf16: autocast of the training step (evaluation stays fp32)
    compile: bool = False  # torch.compile the training objective (eager if compiling fails)
    dist_timeout: float = 300.0  # seconds a distributed run waits for its rendezvous and each collective
    on_diverge: str = "stop"  # stop | restart: on a non-finite loss, stop, or go back to the last checkpoint
    max_restarts: int = 3  # restarts allowed with on_diverge=restart
    restart_lr_factor: float = 0.5  # each restart multiplies the learning rate by this
    log: tuple[str, ...] = ()  # tensorboard | mlflow: also log each epoch there (vaelab.train.loggers)
    mlflow_uri: str = ""  # MLflow tracking URI; "": sqlite:///RUN/mlflow.db, a store inside the run
    log_images_every: int = 1  # epochs between TensorBoard's sample grids (0: none)
    ema: float = 0.0  # decay of the weights' exponential moving average (0: off); what scoring uses


@dataclass(frozen=True)
class Config:
    """The whole configuration of a run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Rebuild from `to_dict` output; unknown keys are an error.

        Args:
            d: nested sections of settings, as `to_dict` writes them.
        """
        return apply_overrides(cls(), _flatten(d))

    def replace(self, **flat: Any) -> Config:
        """A copy with dotted keys replaced, e.g. `cfg.replace(**{"train.lr": 1e-4})`.

        Args:
            flat: dotted key -> value (strings are converted to the field's type).
        """
        return apply_overrides(self, flat)


# Settings whose value is a mapping (kept whole by _flatten); `--set data.columns.age=continuous` sets one entry.
MAPPING_KEYS = (".extra", ".columns", ".table")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not key.endswith(MAPPING_KEYS):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a parsed value to the field's type, or raise a ConfigError naming the key."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        empty = value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))
        if empty and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
        if isinstance(value, (int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], key) for v in value)
    if origin is dict or tp is dict:
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ConfigError(f"{key}: not a valid YAML mapping: {value!r}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp in (int, float):
        try:
            parsed = float(value.strip()) if isinstance(value, str) else value
            if isinstance(parsed, bool) or not isinstance(parsed, (int, float)):
                raise ValueError
            if tp is int and float(parsed) != int(parsed):
                raise ValueError
            return tp(parsed)
        except (ValueError, TypeError, OverflowError):
            raise ConfigError(
                f"{key}: expected {'an integer' if tp is int else 'a number'}, got {value!r}"
            ) from None
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def apply_overrides(cfg: Config, flat: dict[str, Any]) -> Config:
    """Apply dotted-key overrides (`{"train.lr": "3e-4"}`), converting strings to each field's type.

    Args:
        cfg: the config to start from.
        flat: dotted key -> value; an unknown key or a value of the wrong type is a ConfigError.
    """
    parts = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    changes: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        if section not in parts or not name:
            raise ConfigError(f"unknown config key {key!r}; sections are: {', '.join(parts)}")
        part = parts[section]
        hints = typing.get_type_hints(type(part))
        field_name, dot, entry = name.partition(".")
        if dot and entry and f".{field_name}" in MAPPING_KEYS and field_name in hints:  # a mapping's entry
            mapping = changes.get(section, {}).get(field_name, getattr(part, field_name))
            changes.setdefault(section, {})[field_name] = {**mapping, entry: value}
            continue
        if name not in hints:
            raise ConfigError(f"unknown config key {key!r}; {section} has: {', '.join(hints)}")
        changes.setdefault(section, {})[name] = _coerce(value, hints[name], key)
    new_parts = {s: dataclasses.replace(parts[s], **c) for s, c in changes.items()}
    return dataclasses.replace(cfg, **new_parts)


def parse_assignments(items: list[str]) -> dict[str, str]:
    """`["train.lr=3e-4", ...]` -> `{"train.lr": "3e-4"}`; a ConfigError for items without '='.

    Args:
        items: the --set values.
    """
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def shipped_configs() -> dict[str, Traversable]:
    """The ready configs inside the package (`vaelab/configs/`), name (the file's stem) -> file, sorted."""
    folder = importlib.resources.files("vaelab") / "configs"
    found = [f for f in folder.iterdir() if f.is_file() and f.name.endswith(CONFIG_SUFFIXES)]
    return {f.name.rsplit(".", 1)[0]: f for f in sorted(found, key=lambda f: f.name)}


def find_config_file(path: str | os.PathLike) -> Path | Traversable:
    """The config file `--config` names: the path when it exists, else the shipped config of that name.

    A bare name (`pytorch-examples`, or `pytorch-examples.yaml`) that is no file here is looked up among
    the shipped configs, so an installed package finds its configs from any folder.

    Args:
        path: a file path, or the name of a shipped config.
    """
    if not str(path).strip():  # an unset shell variable: Path("") is the current folder
        raise ConfigError("the config file is an empty path: name a YAML or JSON file")
    p = Path(path)
    if p.exists():
        return p
    shipped = shipped_configs()
    if p.parent == Path(".") and (p.suffix in CONFIG_SUFFIXES or not p.suffix):
        name = p.name[: -len(p.suffix)] if p.suffix in CONFIG_SUFFIXES else p.name
        if name in shipped:
            return shipped[name]
    raise ConfigError(
        f"cannot read config file {p}: no such file, and no shipped config of that name "
        f"(shipped: {', '.join(shipped)}; `vaelab configs` describes them)"
    )


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML or JSON config file (a path, or the name of a shipped config) into a flat dotted-key dict.

    Args:
        path: the file (sections data, model, objective, train), or a shipped config's name (`find_config_file`).
    """
    p = find_config_file(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {p}: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        raise ConfigError(
            f"{p}: not valid YAML/JSON{f' at line {where.line + 1}' if where else ''}"
        ) from None
    if data is None:  # an empty or truncated file ran on the defaults without a word
        raise ConfigError(
            f"{p}: holds no settings (empty, or comments only); a config sets some of data, model, objective, train"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections (data, model, objective, train)")
    return _flatten(data)


def build_config(
    file: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    base: Config | None = None,
) -> Config:
    """Defaults (`base`, e.g. a model's own defaults), then the file, then the overrides (in that order); a
    mapping setting (`model.extra`, `data.columns`) is merged entry by entry onto what came before.

    Args:
        file: a YAML or JSON config file, or None.
        overrides: dotted key -> value, applied last.
        base: the config to start from (default: Config()).
    """
    cfg = base if base is not None else Config()
    if file is not None:
        cfg = apply_overrides(cfg, _entrywise(load_config_file(file)))
    return apply_overrides(cfg, _entrywise(overrides or {}, typed_entries=True))


def _entrywise(flat: dict[str, Any], typed_entries: bool = False) -> dict[str, Any]:
    """A mapping setting (`model.extra: {alpha: 1}`) as its entries, so a file or `--set` adds to the model's own
    defaults (m2's `active_sd`, ...) instead of dropping them; an empty mapping still clears them. With
    `typed_entries` (flags), an entry given as text (`--set model.extra.alpha=30`) is read as a YAML scalar, as it
    would be in a file: a mapping's entries have no declared type to convert them."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if typed_entries and isinstance(value, str) and key.rpartition(".")[0].endswith(MAPPING_KEYS):
            try:
                value = yaml.safe_load(value) if value else value
            except yaml.YAMLError:
                raise ConfigError(f"{key}: not a valid YAML value: {value!r}") from None
        if key.endswith(MAPPING_KEYS) and isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ConfigError(f"{key}: not a valid YAML mapping: {value!r}") from None
        if key.endswith(MAPPING_KEYS) and isinstance(value, dict) and value:
            out.update({f"{key}.{entry}": v for entry, v in value.items()})
        else:
            out[key] = value
    return out
