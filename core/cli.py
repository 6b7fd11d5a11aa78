"""The playground without a browser: `python -m core train | sample | export | bench`.

The same configs, the same `train_task`/`fit` loop and the same sampler as the page.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .checkpoint import atomic_write, load_checkpoint, save_checkpoint
from .config import DEFAULT_LAYERS, ModelConfig, SampleConfig, TaskConfig, TrainConfig, parse_int_list
from .data import make_task
from .export import export_code
from .sampling import sample_text
from .tasks import TASKS, task_kind
from .training import EpochEvent, FitResult, format_epoch, resolve_device, train_task


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr and exit code 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description="Transformer Playground from the command line.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a causal Transformer on a toy task",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    task = train.add_argument_group("task")
    task.add_argument("--task", default=TaskConfig.kind, choices=list(TASKS),
                      help="; ".join(f"{kind.name}: {kind.help}".replace("`", "").replace("%", "%%")
                                     for kind in TASKS.values()))
    for name, flag in (("seq_len", "--seq-len"), ("num_digits", "--num-digits")):
        task.add_argument(flag, type=int, default=None, help=_field_help(name))
    task.add_argument("--train-size", type=int, default=TaskConfig.train_size, help="training examples per epoch")
    task.add_argument("--val-size", type=int, default=TaskConfig.val_size, help="held-out validation examples")
    task.add_argument("--text-file", type=Path, help="UTF-8 text for --task text")
    model = train.add_argument_group("model")
    model.add_argument("--model", default="configurable", choices=["configurable", "simple"])
    d_models, ffs, heads = (",".join(map(str, column)) for column in zip(*DEFAULT_LAYERS))
    model.add_argument("--d-model", default=d_models, help="width of each layer, comma-separated")
    model.add_argument("--dim-feedforward", default=ffs, help="feed-forward width of each layer")
    model.add_argument("--nhead", default=heads, help="heads: one number for all layers, or one per layer")
    model.add_argument("--dropout", type=float, default=ModelConfig.dropout)
    model.add_argument("--causal", action=argparse.BooleanOptionalAction, default=ModelConfig.causal,
                       help="the causal mask; --no-causal trains without it, as an experiment")
    opt = train.add_argument_group("training")
    opt.add_argument("--epochs", type=int, default=TrainConfig.epochs,
                     help="at most this many; a solved task stops earlier (see --stop-when-solved)")
    opt.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    opt.add_argument("--lr", type=float, default=TrainConfig.lr)
    opt.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    opt.add_argument("--warmup-steps", type=int, default=TrainConfig.warmup_steps,
                     help="steps of linear learning-rate warmup")
    opt.add_argument("--warmup", type=float, default=None,
                     help="fraction of all steps spent warming up (overrides --warmup-steps)")
    opt.add_argument("--stop-when-solved", type=int, default=TrainConfig.solved_epochs, metavar="EPOCHS",
                     help="stop once the best model scores 100%% held-out exact match and this many "
                          "epochs ended at 100%% (algorithmic tasks; 0 = train every epoch)")
    opt.add_argument("--precision", choices=["auto", "bf16", "fp32"], default=TrainConfig.precision,
                     help="auto = bfloat16 autocast where the CPU/GPU does bf16 natively, else fp32")
    opt.add_argument("--grad-clip", type=float, default=TrainConfig.grad_clip, help="max gradient norm (0 = off)")
    opt.add_argument("--patience", type=int, default=None, help="stop after this many epochs without improvement")
    opt.add_argument("--max-seconds", type=float, default=None, help="wall-clock budget for training")
    opt.add_argument("--seed", type=int, default=TaskConfig.seed)
    opt.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    train.add_argument("--out", type=Path, default=Path("runs/latest"),
                       help="folder for best.safetensors and history.json")
    train.add_argument("--quiet", action="store_true", help="print only the final summary")

    sample = commands.add_parser("sample", help="continue a prompt with a trained checkpoint",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sample.add_argument("--checkpoint", type=Path, required=True)
    sample.add_argument("--prompt", required=True)
    sample.add_argument("--max-new-tokens", type=int, default=None,
                        help="default: the answer's length for algorithmic tasks, "
                             f"{TASKS['text'].sample_tokens} for text")
    sample.add_argument("--temperature", type=float, default=1.0, help="0 means greedy")
    sample.add_argument("--top-k", type=int, default=None)
    sample.add_argument("--top-p", type=float, default=None)
    sample.add_argument("--greedy", action="store_true", help="always take the likeliest token")
    sample.add_argument("--seed", type=int, default=None)
    sample.add_argument("--device", default="cpu")

    export = commands.add_parser("export", help="write a checkpoint's model as standalone PyTorch code",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    export.add_argument("--checkpoint", type=Path, required=True)
    export.add_argument("--out", type=Path, default=Path("model.py"), help="the .py file to write")

    bench = commands.add_parser("bench", help="measure training, sampling and page-update speed")
    bench.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    bench.add_argument("--quick", action="store_true", help="smaller runs (a smoke check, not a measurement)")
    return parser


def _field_help(name: str) -> str:
    """What a task number means for each task that reads it, with its default, from the registry."""
    uses = [f"{kind.name}: {field.what}, default {field.default}"
            for kind in TASKS.values() if (field := kind.field(name)) is not None]
    return "; ".join(uses)


def _task_config(args: argparse.Namespace) -> TaskConfig:
    text = None
    if task_kind(args.task).needs_text:
        if args.text_file is None:
            raise ValueError(f"--task {args.task} needs --text-file PATH")
        try:
            text = args.text_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read --text-file {args.text_file}: {error}") from None
    return TaskConfig(args.task, args.seq_len, args.num_digits, args.train_size, args.val_size, args.seed, text)


def _train(args: argparse.Namespace) -> int:
    task = make_task(_task_config(args))
    heads = parse_int_list(args.nhead, "--nhead")
    model_config = ModelConfig(len(task.vocab), parse_int_list(args.d_model, "--d-model"),
                               parse_int_list(args.dim_feedforward, "--dim-feedforward"),
                               heads[0] if len(heads) == 1 else heads, args.dropout, args.model,
                               args.causal)
    train_config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                               weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
                               warmup_fraction=args.warmup, grad_clip=args.grad_clip, patience=args.patience,
                               seed=args.seed, device=args.device, max_seconds=args.max_seconds,
                               solved_epochs=args.stop_when_solved, precision=args.precision)
    events = train_task(task, model_config, train_config)  # checks the configs and the device first
    out: Path = args.out
    _prepare_out(out)
    checkpoint_path, history_path = out / "best.safetensors", out / "history.json"
    if not args.quiet:
        print(f"{task.name}: {len(task.train_dataset)} training / {len(task.val_dataset)} validation examples, "
              f"vocabulary {task.vocab.describe()!r}; model {model_config.num_parameters():,} parameters")
    for event in events:
        if isinstance(event, EpochEvent):
            if event.record.improved:
                summary = {"best_epoch": event.record.epoch, "best_val_loss": event.record.val_loss,
                           "val_accuracy": event.record.val_accuracy, "seed": args.seed,
                           "train_config": vars(train_config)}
                save_checkpoint(checkpoint_path, event.best_model, model_config, task, summary)
            rows = json.dumps(event.history.to_json_rows(), indent=1)
            atomic_write(history_path, lambda tmp_name, rows=rows: Path(tmp_name).write_text(rows))
            if not args.quiet:
                print(format_epoch(event), flush=True)
        elif isinstance(event, FitResult):
            best = event.history.epochs[event.best_epoch - 1] if event.best_epoch else None
            accuracy = "" if best is None or best.val_accuracy is None else \
                f", held-out exact match {best.val_accuracy:.1%}"
            print(f"{event.message}{accuracy}")
            if event.best_model is not None:
                print(f"best checkpoint: {checkpoint_path}")
            return 1 if event.stop_reason == "diverged" else 0
    return 0


def _prepare_out(out: Path) -> None:
    """Create --out and prove it writable before training, so no run ends in a traceback."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise ValueError(f"cannot write to --out {out}: {error.strerror or error}; "
                         "give a folder you can write to") from None


def _sample(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint, resolve_device(args.device))
    task = checkpoint.task
    max_new = task.sample_tokens if args.max_new_tokens is None else args.max_new_tokens
    config = SampleConfig(max_new, args.temperature, args.top_k, args.top_p, args.greedy, args.seed)
    answer = sample_text(checkpoint.model, task, args.prompt, config)
    expected = task.expected_answer(args.prompt)
    if expected is None:
        print(args.prompt + answer)
    else:
        verdict = "correct" if answer[: len(expected)] == expected else f"expected {expected}"
        print(f"{args.prompt} -> {answer}  ({verdict})")
    return 0


def _export(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    source = export_code(checkpoint.model_config, checkpoint.task, args.out.name)
    atomic_write(args.out, lambda tmp_name: Path(tmp_name).write_text(source))
    print(f"wrote {args.out}: python {args.out} --checkpoint {args.checkpoint} --prompt ...")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "sample":
            return _sample(args)
        if args.command == "export":
            return _export(args)
        from .benchmark import run_benchmarks
        return run_benchmarks(quick=args.quick, json_path=args.json)
    except ValueError as error:
        print(f"python -m core {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a disk that fills up or a folder removed mid-run
        print(f"python -m core {args.command}: error: {error.strerror or error}: {error.filename or ''}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

