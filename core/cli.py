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

from tqdm import tqdm

from . import distributed
from .checkpoint import atomic_write, load_checkpoint, load_run_state, save_checkpoint, save_run_state
from .config import DEFAULT_LAYERS, ModelConfig, SampleConfig, TaskConfig, TrainConfig, parse_int_list
from .data import make_task
from .export import export_code
from .sampling import sample_text
from .tasks import TASKS, task_kind
from .training import EpochEvent, FitResult, StepEvent, format_epoch, resolve_device, train_task


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
    opt.add_argument("--batch-size", type=int, default=TrainConfig.batch_size,
                     help="examples per step; under torchrun the global batch, split evenly over the processes")
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
    train.add_argument("--resume", type=Path, metavar="OUT",
                       help="go on with the run in OUT from the end of its last epoch (its config.json and "
                            "last.safetensors); its own settings are used")
    train.add_argument("--config", type=Path, metavar="RUN_JSON",
                       help="a JSON object of settings, named as in a run's config.json; flags given here win")

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

    parser.set_defaults(train_parser=train)
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


NOT_SETTINGS = ("command", "config", "resume", "quiet", "train_parser")  # not part of a run's setup


def _train(args: argparse.Namespace) -> int:
    resume = args.resume
    if resume is not None:
        args = _saved_setup(resume, args)
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
    out: Path = args.out
    state = _run_state(out) if resume is not None else None
    events = train_task(task, model_config, train_config, resume=state)  # checks the configs and the device first
    if not distributed.is_main():  # under torchrun, rank 0 writes and prints; the others only train
        return _follow(events, None, model_config, task, args, train_config)
    _prepare_out(out)
    if resume is None:
        setup = {key: str(value) if isinstance(value, Path) else value
                 for key, value in vars(args).items() if key not in NOT_SETTINGS}
        atomic_write(out / "config.json", lambda tmp_name: Path(tmp_name).write_text(json.dumps(setup, indent=1)))
    if not args.quiet:
        again = f"resuming after epoch {state.epoch}; " if state is not None else ""
        print(f"{again}{task.name}: {len(task.train_dataset)} training / {len(task.val_dataset)} validation "
              f"examples, vocabulary {task.vocab.describe()!r}; model {model_config.num_parameters():,} parameters")
    return _follow(events, out, model_config, task, args, train_config)


def _follow(events, out: Path | None, model_config: ModelConfig, task, args: argparse.Namespace,
            train_config: TrainConfig) -> int:
    """Write best.safetensors on improvement and last.safetensors and history.json every epoch,
    with a progress bar of steps (on a terminal) and a line per epoch. `out` None: train silently
    (another torchrun rank writes)."""
    if out is None:
        result = [event for event in events if isinstance(event, FitResult)][0]
        return 1 if result.stop_reason == "diverged" else 0
    checkpoint_path, history_path = out / "best.safetensors", out / "history.json"
    with tqdm(unit="step", dynamic_ncols=True, leave=False, disable=True if args.quiet else None) as bar:
        for event in events:
            if isinstance(event, StepEvent):
                bar.total = event.total_steps
                bar.update(event.step - bar.n)
            elif isinstance(event, EpochEvent):
                if event.record.improved:
                    summary = {"best_epoch": event.record.epoch, "best_val_loss": event.record.val_loss,
                               "val_accuracy": event.record.val_accuracy, "seed": args.seed,
                               "train_config": vars(train_config)}
                    save_checkpoint(checkpoint_path, event.best_model, model_config, task, summary)
                rows = json.dumps(event.history.to_json_rows(), indent=1)
                atomic_write(history_path, lambda tmp_name, rows=rows: Path(tmp_name).write_text(rows))
                if not event.record.partial:
                    save_run_state(out / "last.safetensors", event.state)
                if not args.quiet:
                    bar.write(format_epoch(event))
            elif isinstance(event, FitResult):
                bar.close()
                best = event.history.epochs[event.best_epoch - 1] if event.best_epoch else None
                accuracy = "" if best is None or best.val_accuracy is None else \
                    f", held-out exact match {best.val_accuracy:.1%}"
                print(f"{event.message}{accuracy}")
                if event.best_model is not None:
                    print(f"best checkpoint: {checkpoint_path}")
                return 1 if event.stop_reason == "diverged" else 0
    return 0


def _saved_setup(folder: Path, args: argparse.Namespace) -> argparse.Namespace:
    """The setup a run in `folder` started with (its config.json), to go on with it."""
    try:
        setup = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot resume from {folder}: its config.json is missing or damaged ({error}); "
                         "give the --out folder of an earlier run") from None
    setup["out"] = folder
    if setup.get("text_file"):
        setup["text_file"] = Path(setup["text_file"])
    return argparse.Namespace(**{**vars(args), **setup})


def _run_state(folder: Path):
    last, best = folder / "last.safetensors", folder / "best.safetensors"
    if not last.is_file():
        raise ValueError(f"cannot resume from {folder}: it has no last.safetensors (a run writes it at the end "
                         "of each epoch)")
    return load_run_state(last, load_checkpoint(best).model.train() if best.is_file() else None)


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


def _with_config_file(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse `argv`; with `train --config FILE`, the file's settings become the defaults the flags override."""
    args = parser.parse_args(argv)
    if args.command != "train" or args.config is None:
        return args
    try:
        settings = json.loads(args.config.read_text())
    except (OSError, ValueError) as error:
        parser.exit(2, f"python -m core train: error: cannot read --config {args.config}: {error}\n")
    known = {action.dest for action in args.train_parser._actions} - set(NOT_SETTINGS) - {"help", "train_parser"}
    unknown = sorted(set(settings) - known) if isinstance(settings, dict) else ["(not a JSON object)"]
    if unknown:
        parser.exit(2, f"python -m core train: error: --config {args.config} has unknown settings "
                       f"{', '.join(unknown)}; use the names in a run's config.json\n")
    paths = {"out", "text_file"}
    args.train_parser.set_defaults(**{key: Path(value) if key in paths and value is not None else value
                                      for key, value in settings.items()})
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _with_config_file(_build_parser(), argv)
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
    except RuntimeError as error:
        if not distributed.launched():
            raise
        print(f"python -m core {args.command}: error: another process of this torchrun job stopped "
              f"({str(error).splitlines()[0][:200]}); files already written (best.safetensors, history.json) "
              "are whole", file=sys.stderr)
        return 1
    except OSError as error:  # a disk that fills up or a folder removed mid-run
        print(f"python -m core {args.command}: error: {error.strerror or error}: {error.filename or ''}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.finish()

