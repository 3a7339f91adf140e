"""`vaelab train`: train a model on a named data set and write its run folder and figures."""

from __future__ import annotations

import argparse
import sys

from vaelab.commands.catalog import LIKELIHOODS, MLP_ACTIVATIONS, MODELS, MODES, OPTIMIZERS, PRECISIONS
from vaelab.commands.lazy import lazy_function, lazy_module
from vaelab.config import build_config, load_config_file, parse_assignments
from vaelab.errors import ConfigError
from vaelab.runs import RunDir

# The parser's tables come from the catalog (the built-in names, or the registries once a --plugin loaded
# them); the training code, and torch with it, loads when `run` calls it, not for `vaelab train --help`.
distributed = lazy_module("vaelab.train.distributed")
get_spec = lazy_function("vaelab.models.registry.get_spec")
model_config = lazy_function("vaelab.models.registry.model_config")
posterior_defaults = lazy_function("vaelab.models.config_checks.posterior_defaults")
parse_noise = lazy_function("vaelab.objectives.noise.parse_noise")
config_of = lazy_function("vaelab.train.checkpoint.config_of")
read_checkpoint = lazy_function("vaelab.train.checkpoint.read_checkpoint")
train = lazy_function("vaelab.train.loop.train")
resume_config = lazy_function("vaelab.train.resume.resume_config")
check_world = lazy_function("vaelab.train.validate.check_world")
check_loggers = lazy_function("vaelab.train.loggers.check_loggers")
log_outputs = lazy_function("vaelab.train.loggers.log_outputs")
table_defaults = lazy_function("vaelab.data.kinds.table_defaults")
binarized_grey_warning = lazy_function("vaelab.data.kinds.binarized_grey_warning")

# flag -> config key; a flag left out keeps the config file's (or the default) value.
FLAGS = {
    "data": "data.name",
    "data_dir": "data.data_dir",
    "binarize": "data.binarize",
    "image_size": "data.image_size",
    "channels": "data.channels",
    "model": "model.name",
    "body": "model.body",
    "hidden": "model.hidden",
    "activation": "model.activation",
    "latent_dim": "model.latent_dim",
    "likelihood": "model.likelihood",
    "posterior": "model.posterior",
    "beta": "objective.beta",
    "kl": "objective.kl",
    "warmup": "objective.warmup_epochs",
    "objective": "objective.name",
    "samples": "objective.num_samples",
    "free_bits": "objective.free_bits",
    "kl_cycle": "objective.kl_cycle_epochs",
    "labelled": "data.labelled",
    "features": "model.features",
    "label_seed": "data.label_seed",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "optimizer": "train.optimizer",
    "seed": "train.seed",
    "device": "train.device",
    "threads": "train.threads",
    "precision": "train.precision",
    "ema": "train.ema",
}
# config key -> the flag that sets it, named with the key when its value is refused
FLAG_OF = {
    **{key: "--" + flag.replace("_", "-") for flag, key in FLAGS.items()},
    "objective.noise_level": "--noise",
}


def _defaults(defaults: dict) -> str:
    if not defaults:
        return ""
    return (
        " ["
        + ", ".join(
            f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in defaults.items()
        )
        + "]"
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add `vaelab train` and its flags (choices and help from the tables they pick from).

    Args:
        sub: the CLI's subcommand parsers.
    """
    models = "\n".join(f"  {n:<16}{s.description}{_defaults(s.defaults)}" for n, s in MODELS.items())
    p = sub.add_parser(
        "train",
        help="train a model and write its run folder",
        description=f"Train a model; writes config.json, checkpoints, metrics.jsonl and figures into --out.\n\nmodels:\n{models}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", help="mnist, fashion-mnist, mnist-5k, digits, frey-face or folder:PATH (default mnist-5k)"
    )
    p.add_argument("--data-dir", help="folder holding the data set's files (searched first)")
    p.add_argument(
        "--binarize",
        help=f"{' | '.join(MODES)}: a fresh draw per batch, one seeded draw, grey levels (default dynamic; "
        "none for csv:/parquet: tables)",
    )
    p.add_argument("--image-size", type=int, help="side of folder: images after crop and resize (default 64)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="folder: images, 1 grey or 3 RGB (default 1)")
    p.add_argument("--model", help=f"{' | '.join(MODELS)} (default vae)")
    p.add_argument("--body", help="mlp | conv encoder and decoder bodies (default mlp)")
    p.add_argument("--hidden", help="hidden widths, e.g. 500 or 200,200 (default 400)")
    p.add_argument(
        "--activation",
        help=f"{' | '.join(MLP_ACTIVATIONS)} after each hidden layer; gated: gated linear units, MLP only "
        "(default relu)",
    )
    p.add_argument("--latent-dim", type=int, help="latent dimension D (default 20)")
    p.add_argument(
        "--likelihood",
        help=f"decoder p(x|z): {' | '.join(LIKELIHOODS)} (default bernoulli; mixed for csv:/parquet: tables)",
    )
    p.add_argument(
        "--posterior",
        help="q(z|x): gaussian | planar:K (planar flow) | iaf:K[:WIDTH] (inverse autoregressive flow) | "
        "sylvester:K (triangular Sylvester flow); a flow implies --kl mc (vae, iwae, vampprior, hierarchical; default gaussian)",
    )
    p.add_argument("--beta", type=float, help="weight of the KL term (default 1)")
    p.add_argument("--kl", help="analytic | mc: the KL estimator (default analytic)")
    p.add_argument("--warmup", type=float, help="epochs of linear KL warm-up (default 0)")
    p.add_argument(
        "--kl-cycle", type=float, help="cyclical KL weight: one cycle per this many epochs (default off)"
    )
    p.add_argument(
        "--free-bits", type=float, help="free bits: nats per latent dimension not penalised (default 0)"
    )
    p.add_argument(
        "--objective",
        help="override the model's own objective: elbo | iwae | wake-sleep | reweighted-wake-sleep | mcem | "
        "a plugin's (the models' specs say which each accepts)",
    )
    p.add_argument("--samples", type=int, help="samples of z per datum: K of the IWAE bound (default 1)")
    p.add_argument(
        "--dreg", action="store_true", help="IWAE with doubly reparameterised gradients (Tucker et al. 2019)"
    )
    p.add_argument(
        "--noise",
        help="denoising: gaussian:SIGMA or masking:SHARE corruption of the encoder's input (default none)",
    )
    p.add_argument("--labelled", type=int, help="semi-supervised: keep this many training labels (m2: 100)")
    p.add_argument(
        "--label-seed", type=int, help="seed of which labels --labelled keeps (default: the split's seed)"
    )
    p.add_argument(
        "--features",
        metavar="RUN",
        help="m2: learn on the codes of this trained VAE run (M1+M2, Kingma et al. 2014); default the images",
    )
    p.add_argument("--epochs", type=int, help="epochs (default 10)")
    p.add_argument("--batch-size", type=int, help="batch size (default 128)")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    p.add_argument("--optimizer", help=f"{' | '.join(OPTIMIZERS)} (default adam)")
    p.add_argument("--seed", type=int, help="seed of initialisation, data order and noise (default 0)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--threads", type=int, help="torch threads per process (default: cores / processes)")
    p.add_argument(
        "--precision", help=f"{' | '.join(PRECISIONS)}: autocast of the training step (default fp32)"
    )
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the training step (eager if it fails)"
    )
    p.add_argument(
        "--ema",
        type=float,
        metavar="DECAY",
        help="score and save an exponential moving average of the weights, e.g. 0.999 (default 0: off)",
    )
    p.add_argument(
        "--nproc",
        type=int,
        help="data-parallel over N local processes (DDP; gloo on CPU, NCCL on GPU); several nodes: torchrun",
    )
    p.add_argument(
        "--config",
        help="a YAML or JSON config file, or the name of a shipped one (`vaelab configs` lists them)",
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any config value, e.g. train.lr=3e-4"
    )
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument(
        "--overwrite", action="store_true", help="start again in an --out that already holds a run"
    )
    p.add_argument("--no-figures", action="store_true", help="skip the figures at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--log",
        action="append",
        metavar="NAME",
        help="also follow training in tensorboard (RUN/tb) or mlflow (train.mlflow_uri, default "
        "sqlite:///RUN/mlflow.db); give it twice for both (config key train.log)",
    )
    p.set_defaults(func=run)


# What `vaelab train` prints at the end, per split: the first of these the model reports.
STATS = (
    ("log_px", "exact log p(x)"),
    ("iwae", "IWAE bound"),
    ("elbo", "ELBO"),
    ("rec", "reconstruction log p(x|z)"),
)


def run(args: argparse.Namespace) -> int:
    """Build the config from --config, the flags and --set; train (or launch --nproc ranks); print the last
    epoch's numbers and write the figures. Returns the exit code.

    Args:
        args: the parsed command line.
    """
    from vaelab.plugins import load_plugins
    from vaelab.ranges import check_numbers
    from vaelab.train.resume import check_start

    load_plugins(args.plugin)  # the ranks of --nproc call run() without cli.main
    check_start(args.resume, args.overwrite)
    overrides = {key: getattr(args, flag) for flag, key in FLAGS.items() if getattr(args, flag) is not None}
    overrides.update(parse_assignments(args.set))
    if args.quiet:
        overrides["train.progress"] = False
    if args.log:
        overrides["train.log"] = tuple(dict.fromkeys(args.log))
    if args.compile:
        overrides["train.compile"] = True
    if args.dreg:
        overrides["objective.dreg"] = True
    if args.noise is not None:
        kind, level = parse_noise(args.noise)
        overrides.update({"objective.noise": kind, "objective.noise_level": level})
    config = build_config(args.config, overrides)
    get_spec(config.model.name)
    config = build_config(args.config, overrides, base=model_config(config.model.name))
    check_numbers(config, FLAG_OF)
    # on --resume, a key set in --config counts as asked for, as a flag does: changed if it may, else refused
    from_file = set(load_config_file(args.config)) if args.config else set()
    explicit = set(overrides) | from_file if args.resume else None
    # a table's defaults (binarize none, likelihood mixed) where not asked for; grey levels binarized: one line
    config = table_defaults(config, set(overrides) | from_file)
    config = posterior_defaults(config, set(overrides) | from_file)  # a flow: objective.kl=mc unless asked
    warning = binarized_grey_warning(config, set(overrides) | from_file)
    if warning and args.nproc in (None, 1) and distributed.world().main:
        print(warning, file=sys.stderr)
    if args.nproc is not None and args.nproc != 1:
        if distributed.world().distributed:
            raise ConfigError("--nproc starts its own processes; under torchrun leave it out")
        if args.nproc < 1:
            raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
        last = RunDir.at(args.out).last
        if args.resume and last.is_file():  # the ranks will train the saved config, not the command line's
            checked = resume_config(config, config_of(read_checkpoint(last), last), explicit or set())
        else:
            checked = config
        check_world(checked, distributed.World(0, args.nproc, 0, args.nproc))
        check_loggers(checked)
        distributed.launch(args.nproc, run, (argparse.Namespace(**{**vars(args), "nproc": None}),))
        return 0
    if not distributed.world().main:
        train(config, out=args.out, resume=args.resume, explicit=explicit, overwrite=args.overwrite)
        return 0
    from vaelab.runs import hold_lock

    with hold_lock(RunDir.at(args.out)):  # the figures too: no other training may start in between
        result = train(config, out=args.out, resume=args.resume, explicit=explicit, overwrite=args.overwrite)
        if result.nothing_to_train:  # said so on stderr; every file stays as it was
            return 0
        _print_last(result.history)
        if not args.no_figures:  # after train.epochs 0 too: the untrained model's figures are the baseline
            from vaelab.commands.viz import write_figures

            write_figures(args.out, device=result.config.train.device)
        log_outputs(args.out, result.config)  # the figures (and a current eval.json) to an MLflow run
    print(f"run folder: {args.out}")
    return 0


def _print_last(history: list[dict]) -> None:
    """The last epoch's numbers per split, as STATS names them (nothing after train.epochs 0)."""
    last = history[-1] if history else {}
    for split in ("test", "valid"):
        for stat, name in STATS:
            if f"{split}_{stat}" in last:
                print(f"{split} {name}: {last[f'{split}_{stat}']:.2f} nats per image (epoch {last['epoch']})")
                break
        if f"{split}_d_real" in last:
            print(
                f"{split} discriminator: D(x) {last[f'{split}_d_real']:.3f} on images, "
                f"{last[f'{split}_d_fake']:.3f} on samples (a GAN has no likelihood; epoch {last['epoch']})"
            )
        if f"{split}_error" in last:
            print(
                f"{split} classification error: {100 * last[f'{split}_error']:.2f}% (epoch {last['epoch']})"
            )
