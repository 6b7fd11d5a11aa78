"""Toy sequence tasks: a vocabulary, seeded disjoint train/validation sets, and the right answers.

Algorithmic tasks (every entry of `core.tasks.TASKS` but text) are a prompt followed by its answer. As in
minGPT's sort and adder demos, the loss counts only the answer tokens (the prompt positions get
IGNORE_INDEX), and a task scores a model by the exact match of its greedy answers on held-out
prompts. The "text" task is plain next-character prediction.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch
from torch.utils.data import Dataset, TensorDataset

from .config import Limits, TaskConfig, check_text
from .tasks import Problem, make_problem, task_kind

IGNORE_INDEX = -100  # nn.CrossEntropyLoss's default ignore_index
TEXT_VALIDATION_FRACTION = 0.1
TEXT_EXAMPLE_CHARS = 12  # a text prompt offered as an example: the start of a held-out line
_ENUMERATE_UP_TO = 200_000  # problem spaces this small are listed exhaustively before splitting


class Vocab:
    """Characters <-> token ids. Every task here is character level, so prompts are plain text."""

    def __init__(self, tokens: Iterable[str]):
        self.tokens = list(tokens)
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")
        self.stoi = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and other.tokens == self.tokens

    def encode(self, text: str) -> list[int]:
        unknown = sorted({ch for ch in text if ch not in self.stoi})
        if unknown:
            shown = " ".join(repr(ch) for ch in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise ValueError(f"{shown}{more} {'is' if len(unknown) == 1 else 'are'} not in the "
                             f"vocabulary; use only these characters: {self.describe()}")
        return [self.stoi[ch] for ch in text]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[int(i)] for i in ids)

    def describe(self, limit: int = 40) -> str:
        shown = "".join(self.tokens[:limit]).replace("\n", "\u23ce")
        return shown + ("..." if len(self.tokens) > limit else "")


class TextWindows(Dataset):
    """Windows of `block_size + 1` characters from an encoded text: x is the window minus its last
    token, y the window minus its first (next-character targets).

    Indexing takes one index or a list of them, so a loader fetches a whole batch in one call.
    """

    def __init__(self, ids: torch.Tensor, starts: list[int], block_size: int):
        self.ids, self.starts, self.block_size = ids, starts, block_size
        self._start_ids = torch.tensor(starts, dtype=torch.long)  # (N,)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        starts = self._start_ids[index]  # () or (B,)
        offsets = torch.arange(self.block_size + 1)  # (T + 1,)
        chunk = self.ids[starts.unsqueeze(-1) + offsets]  # (T + 1,) or (B, T + 1)
        # contiguous, so the loss can flatten them with view() as the seed does
        return chunk[..., :-1].contiguous(), chunk[..., 1:].contiguous()  # x, y: (T,) or (B, T) each


@dataclass
class Task:
    """What training and sampling need to know about a task.

    `block_size` is the model's input length. For algorithmic tasks `problem` gives prompt and
    answer lengths and the right answers, and `val_prompts` are the held-out prompts scored by
    exact match; a text task offers `text_examples` instead (openings of held-out lines).
    Datasets are None for a task rebuilt from a checkpoint or kept after training.
    """

    config: TaskConfig
    vocab: Vocab
    block_size: int
    problem: Problem | None = None
    train_dataset: Dataset | None = None
    val_dataset: Dataset | None = None
    val_prompts: list[str] | None = None
    text_examples: list[str] | None = None

    @property
    def name(self) -> str:
        return self.config.kind

    @property
    def sample_tokens(self) -> int:
        """How many tokens to sample by default: the answer's length, or the registry's for text."""
        return self.problem.answer_len if self.problem is not None else task_kind(self.name).sample_tokens

    @property
    def is_algorithmic(self) -> bool:
        return self.problem is not None

    def expected_answer(self, prompt: str) -> str | None:
        """The right answer for an algorithmic prompt (None for the text task)."""
        if self.problem is None:
            return None
        self.check_prompt(prompt)
        return self.problem.solve(prompt)

    def check_prompt(self, prompt: str) -> None:
        """Raise ValueError saying what a valid prompt for this task looks like."""
        if not prompt:
            raise ValueError(f"the prompt is empty; try {self.examples(1)[0]!r}")
        self.vocab.encode(prompt)  # names any unknown character
        if self.problem is None:
            return
        problem = self.problem
        if len(prompt) != problem.prompt_len:
            article = "an" if self.name[0] in "aeiou" else "a"
            raise ValueError(f"{article} {self.name} prompt is {problem.example_hint} ({problem.prompt_len} "
                             f"characters), e.g. {self.examples(1)[0]!r}; got {len(prompt)} characters")
        template = problem.format_prompt(problem.symbols[0] * problem.length)
        for i, (got, want) in enumerate(zip(prompt, template), start=1):
            if (got not in problem.symbols) if want in problem.symbols else (got != want):  # '=' is not '+'
                raise ValueError(f"character {i} of the prompt should be "
                                 f"{'a digit' if want in problem.symbols else repr(want)}, got "
                                 f"{got!r}; e.g. {self.examples(1)[0]!r}")

    def examples(self, count: int = 5, seed: int = 1234) -> list[str]:
        """Prompts to show a user: held-out ones where we have them (the model never trained on them)."""
        if self.val_prompts:
            return self.val_prompts[:count]
        if self.problem is not None:
            rng = random.Random(seed)
            return [self.problem.random_prompt(rng) for _ in range(count)]
        if self.text_examples:
            return self.text_examples[:count]
        return ["".join(self.vocab.tokens[: min(4, len(self.vocab))])]

    def __getstate__(self) -> dict:
        """Pickled without its problem, whose answers are functions pickle can't carry: the config
        rebuilds it (a training process hands its task back to the page this way)."""
        return {**self.__dict__, "problem": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if not task_kind(self.config.kind).needs_text:
            self.problem = make_problem(self.config)

    def without_data(self) -> Task:
        """What a visitor's session keeps after a run: vocabulary, answers, examples; no datasets
        and no pasted text (a page's largest sort data is ~86 MB, its largest text 200,000 chars)."""
        return replace(self, config=replace(self.config, text=None), train_dataset=None, val_dataset=None)


def text_openings(text: str, count: int = 20) -> list[str]:
    """Openings of lines in the held-out tail of a text: prompts the model never trained on."""
    held_out = text[held_out_start(text):]
    lines = [line.strip()[:TEXT_EXAMPLE_CHARS] for line in held_out.splitlines()[1:]]
    return list(dict.fromkeys(line for line in lines if len(line) >= 3))[:count]


def make_task(config: TaskConfig, limits: Limits | None = None) -> Task:
    """A task with its seeded datasets. Same config -> same data; train and validation disjoint."""
    config.validate(limits)
    if task_kind(config.kind).needs_text:
        return _make_text_task(config)
    problem = make_problem(config)
    vocab = task_vocab(config)
    rng = random.Random(config.seed)
    val_prompts, train_prompts = _split_prompts(problem, config.train_size, config.val_size, rng)

    def encode_all(prompts: list[str]) -> TensorDataset:
        sequences = torch.tensor([vocab.encode(p + problem.solve(p)) for p in prompts], dtype=torch.long)  # (N, L)
        x = sequences[:, :-1]  # (N, L-1)
        y = sequences[:, 1:].clone()  # (N, L-1): the next token at each position
        y[:, : problem.prompt_len - 1] = IGNORE_INDEX  # only the answer is learned
        return TensorDataset(x, y)

    return Task(config, vocab, problem.block_size, problem, encode_all(train_prompts), encode_all(val_prompts),
                val_prompts)


def held_out_start(text: str) -> int:
    """Where a text task's validation part begins: the last TEXT_VALIDATION_FRACTION is held out."""
    return int(len(text) * (1 - TEXT_VALIDATION_FRACTION))


def task_vocab(config: TaskConfig) -> Vocab:
    """The vocabulary a task will have, without building its datasets (the page sizes models with it)."""
    if task_kind(config.kind).needs_text:
        if not config.text:
            raise ValueError("the text task needs some text: paste a few paragraphs")
        if len(set(config.text)) < 2:
            raise ValueError("the text uses a single distinct character; paste text with some variety")
        return Vocab(sorted(set(config.text)))
    problem = make_problem(config)
    return Vocab(problem.symbols + problem.extra_tokens)


def task_for_checkpoint(config: TaskConfig, tokens: list[str], block_size: int,
                        val_prompts: list[str] | None = None) -> Task:
    """A data-less task (vocabulary, answers, some held-out prompts) rebuilt from a checkpoint.

    `config` must be validated. Everything else a file claims is checked against what the task
    itself implies, so a tampered file can't bring an odd vocabulary, length or prompt.
    """
    if task_kind(config.kind).needs_text:
        if not all(isinstance(t, str) and len(t) == 1 for t in tokens):
            raise ValueError("its vocabulary must be single characters")
        check_text("".join(tokens), "its vocabulary")
        vocab, problem, expected_block = Vocab(tokens), None, config.seq_len
    else:
        vocab, problem = task_vocab(config), make_problem(config)
        expected_block = problem.block_size
        if tokens != vocab.tokens:
            raise ValueError(f"its vocabulary {_short_tokens(tokens)} is not the {config.kind} task's "
                             f"{_short_tokens(vocab.tokens)}")
    if block_size != expected_block:
        raise ValueError(f"its block size {block_size} does not match its task, which needs {expected_block}")
    task = Task(config, vocab, block_size, problem, val_prompts=list(val_prompts or []) or None)
    for prompt in task.val_prompts or []:
        if not isinstance(prompt, str):
            raise ValueError(f"its held-out prompts must be text, got {type(prompt).__name__}")
        task.check_prompt(prompt)
    return task


def _short_tokens(tokens: list) -> str:
    text = repr("".join(map(str, tokens)))
    return text if len(text) <= 40 else text[:37] + "..."


def _split_prompts(problem: Problem, train_size: int, val_size: int,
                   rng: random.Random) -> tuple[list[str], list[str]]:
    """Held-out validation prompts, then `train_size` training prompts that never include them.

    Validation takes at most a fifth of the problem space, so small spaces (sort of 6 digits
    over 0-2 has 729 problems) still leave most problems to train on. A small space's remaining
    problems each appear equally often (to within one) in an epoch of `train_size` examples:
    drawn at random instead, sort seed 0 saw the pattern of one held-out prompt 7 times in 2,000
    and never solved it.
    """
    space = problem.space_size
    n_val = min(val_size, max(1, space // 5))
    if space < 2:
        raise ValueError("this task has a single possible problem; use a longer sequence or more digits")
    if space <= _ENUMERATE_UP_TO:
        order = list(range(space))
        rng.shuffle(order)
        val_ids, rest = order[:n_val], order[n_val:]
        repeats, extra = divmod(train_size, len(rest))
        train_ids = rest * repeats + rng.sample(rest, extra)
        rng.shuffle(train_ids)
        return [problem.prompt_from_index(i) for i in val_ids], [problem.prompt_from_index(i) for i in train_ids]
    val_set: dict[str, None] = {}
    while len(val_set) < n_val:
        val_set[problem.random_prompt(rng)] = None
    train: list[str] = []
    while len(train) < train_size:
        prompt = problem.random_prompt(rng)
        if prompt not in val_set:
            train.append(prompt)
    return list(val_set), train


def _make_text_task(config: TaskConfig) -> Task:
    text = config.text or ""
    block = config.seq_len
    vocab = task_vocab(config)
    split = held_out_start(text)
    val_len = len(text) - split
    if val_len < block + 1 or split < block + 1:
        needed = int((block + 1) / TEXT_VALIDATION_FRACTION) + 1
        raise ValueError(f"the text has {len(text):,} characters; with a context length of {block} it needs "
                         f"at least {needed:,} (the last 10% is held out and must hold one window of "
                         f"{block + 1}): paste more text or lower the context length")
    ids = torch.tensor(vocab.encode(text), dtype=torch.long)  # (N,)
    rng = random.Random(config.seed)
    train_starts = [rng.randrange(0, split - block) for _ in range(config.train_size)]
    n_val = min(config.val_size, val_len - block)
    last = len(text) - block - 1
    val_starts = sorted({split + (last - split) * i // max(1, n_val - 1) for i in range(n_val)})
    return Task(config, vocab, block, None, TextWindows(ids, train_starts, block),
                TextWindows(ids, val_starts, block), text_examples=text_openings(text))
