"""The flags of ``training.train``, in groups; ``--config`` YAML sets defaults that flags override."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from handlers.model import ARCHS
from training import DATA_DIR, schedule


def get_args_parser(description: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--config",
        default=None,
        help="YAML file whose keys (flag names) set defaults; flags override it (default: none)",
    )
    g = p.add_argument_group("data")
    a = g.add_argument
    a(
        "--data",
        default=str(DATA_DIR),
        help="ImageFolder directory, optionally with train/ and val/ (default: %(default)s)",
    )
    a("--output", default=None, help="run directory (default: runs/<data folder name>)")
    a("--val-fraction", type=float, default=0.1, help="validation share when DATA has no val/ (default: %(default)s)")
    a(
        "--dev-fraction",
        type=float,
        default=0.1,
        help="share of train held out to pick the epoch; 0 = pick on the validation split (default: %(default)s)",
    )
    a(
        "--dev-avoid",
        nargs="+",
        default=[],
        metavar="CHECKPOINT",
        help="draw dev only from training images these checkpoints never trained on (their records list them), so "
        "that they can be compared and calibrated on it (default: none)",
    )
    a("--limit-per-class", type=int, default=0, help="use at most N images per class and split, 0 = all (default: 0)")
    a(
        "--extra-train",
        nargs="+",
        default=[],
        metavar="CSV",
        help="labelled CSVs (path,label columns, e.g. "
        "curators' corrections.csv) whose images join the training split, never dev or val (default: none)",
    )
    a("--cache-side", type=int, default=256, help="longer side of the decoded images kept in memory (default: 256)")
    g = p.add_argument_group("model")
    a = g.add_argument
    a("--arch", default="vgg16_bn", choices=sorted(ARCHS), help="model preset (default: %(default)s)")
    a(
        "--pretrained",
        default="none",
        help="'imagenet' (torchvision download), a local state-dict PATH, or 'none' for from-scratch (default: none)",
    )
    a(
        "--init-from",
        default=None,
        metavar="CHECKPOINT",
        help="start from a whole artserve checkpoint (a run's best.pt or an exported model, head included) of the "
        "same arch and labels that never trained on this run's dev or validation images, to fine-tune it further; "
        "excludes --pretrained (default: none)",
    )
    a("--freeze-blocks", type=int, default=0, help="freeze the first N convolution blocks (default: 0)")
    a("--image-size", type=int, default=224, help="crop side fed to the model (default: %(default)s)")
    a(
        "--resize",
        type=int,
        default=256,
        help="shorter side before the centre crop at evaluation (default: %(default)s)",
    )
    schedule.add_arguments(p)
    g = p.add_argument_group("augmentation and distillation")
    a = g.add_argument
    a("--augment", default="art", choices=("art", "none"), help="training augmentation (default: %(default)s)")
    a("--min-scale", type=float, default=0.35, help="smallest random-resized-crop area share (default: %(default)s)")
    a("--mixup", type=float, default=0.0, help="mixup Beta(a, a) parameter, 0 = off (default: %(default)s)")
    a(
        "--progressive-from",
        type=int,
        default=0,
        help="start at this crop side and grow to --image-size; 0 = off (default: 0)",
    )
    a(
        "--progressive-until",
        type=float,
        default=0.5,
        help="share of the epochs after which the full --image-size is used (default: %(default)s)",
    )
    a(
        "--teacher",
        nargs="+",
        default=None,
        help="teacher checkpoint(s) from training.teacher to distil; several are averaged (the mean of their "
        "log-probabilities), each at its own resolution (default: none)",
    )
    a("--kd-weight", type=float, default=0.5, help="weight of the soft-target loss (default: %(default)s)")
    a("--kd-temperature", type=float, default=2.0, help="softmax temperature of distillation (default: %(default)s)")
    a(
        "--kd-features",
        type=float,
        default=0.0,
        help="weight of matching the teacher's embedding (1 - cosine, training.distill.FeatureMatch); needs one "
        "--teacher (default: %(default)s = off)",
    )
    a(
        "--patience",
        type=int,
        default=10,
        help="stop after N epochs without a better dev macro-F1, 0 = never (default: 10)",
    )
    g = p.add_argument_group("run")
    a = g.add_argument
    a("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    a(
        "--amp",
        default="auto",
        choices=("auto", "on", "off"),
        help="reduced-precision autocast: auto = where "
        "the hardware has it natively (CUDA; a CPU with AVX512_BF16 or AMX), on = always (bf16 on CPU) "
        "(default: auto)",
    )
    a(
        "--channels-last",
        default="auto",
        choices=("auto", "on", "off"),
        help="channels_last memory format (default: auto = with reduced precision or CUDA)",
    )
    a("--compile", action="store_true", help="torch.compile the model (default: off)")
    a(
        "--workers",
        type=int,
        default=None,
        help="loader processes for dev/val (default: min(8, CPUs) on CUDA, 0 on CPU)",
    )
    a("--seed", type=int, default=0, help="seed for split, order, views and init (default: %(default)s)")
    a("--resume", action="store_true", help="continue from OUTPUT/last.pt (default: off)")
    a(
        "--time-budget",
        type=float,
        default=0.0,
        help="minutes of training in this invocation, then save last.pt "
        "and stop (resume with --resume); 0 = no limit (default: 0)",
    )
    a("--log-every", type=int, default=20, help="progress line every N steps (default: %(default)s)")
    a(
        "--max-steps",
        type=int,
        default=0,
        help="timing run: time N steps, print the step time, skip validation and checkpoints (default: 0 = off)",
    )
    return p


def parse_args(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    """Flags over ``--config`` YAML over built-in defaults."""
    parser = get_args_parser(description)
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        values = yaml.safe_load(Path(pre.config).read_text(encoding="utf-8")) or {}
        known = {a.dest for a in parser._actions}
        values = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(values) - known - {"config"})
        if unknown:
            raise SystemExit(
                f"{pre.config}: unknown keys {unknown}; use the flag names of `python -m training.train -h`"
            )
        parser.set_defaults(**values)
    args = parser.parse_args(argv)
    if isinstance(args.teacher, str):  # a YAML `teacher:` may name one path without a list
        args.teacher = [args.teacher]
    if args.output is None:
        args.output = str(Path("runs") / Path(args.data).resolve().name)
    return args
