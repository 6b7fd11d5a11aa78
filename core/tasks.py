"""The task registry: every toy task the playground offers, one entry each.

An entry holds what the page, the command line and the engine need to know about a task: its
name, a line of help, which numbers it reads (with labels, defaults and bounds), and how it
builds its problem (the prompt format and the right answers). `core.config` checks a task's
numbers with it, `core.data` builds the datasets from it, and the page and the CLI list, label
and default their task widgets and flags from it. Adding a task means adding an entry here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import TaskConfig


@dataclass(frozen=True)
class Problem:
    """An algorithmic task's format: how prompts look and what their answers are."""

    symbols: str  # the prompt is built from `length` of these
    length: int
    format_prompt: Callable[[str], str]  # raw symbols -> prompt text
    solve: Callable[[str], str]  # prompt text -> answer text
    answer_len: int
    extra_tokens: str = ""  # answer or format characters that are not prompt symbols
    example_hint: str = ""

    @property
    def space_size(self) -> int:
        return len(self.symbols) ** self.length

    @property
    def prompt_len(self) -> int:
        return len(self.format_prompt(self.symbols[0] * self.length))

    @property
    def block_size(self) -> int:
        """The model's input length: the prompt and the answer, less the last answer token."""
        return self.prompt_len + self.answer_len - 1

    def prompt_from_index(self, index: int) -> str:
        base, digits = len(self.symbols), []
        for _ in range(self.length):
            index, r = divmod(index, base)
            digits.append(self.symbols[r])
        return self.format_prompt("".join(reversed(digits)))

    def random_prompt(self, rng: random.Random) -> str:
        return self.format_prompt("".join(rng.choice(self.symbols) for _ in range(self.length)))


@dataclass(frozen=True)
class NumberField:
    """One whole number a task reads from its TaskConfig (`seq_len` or `num_digits`).

    `maximum` is a number, or the name of a `Limits` field when the hosting limits bound it.
    """

    name: str
    label: str  # the widget's label on the page
    what: str  # how messages name it
    default: int
    minimum: int
    maximum: int | str | None = None


@dataclass(frozen=True)
class TaskKind:
    """A registry entry. `problem` is None for next-character text, which reads `text` instead."""

    name: str
    help: str  # Markdown, one line: what the task is, with an example
    fields: tuple[NumberField, ...]  # the first one sets the input length (named in length errors)
    problem: Callable[[TaskConfig], Problem] | None = None
    sample_tokens: int | None = None  # default new tokens to sample; None: the answer's length

    @property
    def needs_text(self) -> bool:
        return self.problem is None

    def field(self, name: str) -> NumberField | None:
        return next((f for f in self.fields if f.name == name), None)


# --- problems ---------------------------------------------------------------------------------

def digit_problem(solve: Callable[[str], str]) -> Callable[[TaskConfig], Problem]:
    """sort / copy / reverse: `seq_len` digits from the first `num_digits`; the answer as long."""
    def make(config: TaskConfig) -> Problem:
        symbols = "0123456789"[: config.num_digits]
        hint = f"{config.seq_len} digits from {symbols[0]}-{symbols[-1]}"
        return Problem(symbols, config.seq_len, lambda raw: raw, solve, config.seq_len, example_hint=hint)
    return make


def addition_problem(config: TaskConfig) -> Problem:
    """Two zero-padded `num_digits`-digit numbers, `47+85=`; the sum with one digit more, `132`."""
    n = config.num_digits

    def solve(prompt: str) -> str:
        a, b = prompt.rstrip("=").split("+")
        return f"{int(a) + int(b):0{n + 1}d}"

    return Problem("0123456789", 2 * n, lambda raw: f"{raw[:n]}+{raw[n:]}=", solve, n + 1, extra_tokens="+=",
                   example_hint=f"two {n}-digit numbers, zero-padded, like {'4' * n}+{'7' * n}=")


def yes_no_problem(symbols: str, question: Callable[[str], bool], what: str) -> Callable[[TaskConfig], Problem]:
    """`seq_len` characters from `symbols`, answered `Y` or `N`: a question about the whole string."""
    def make(config: TaskConfig) -> Problem:
        return Problem(symbols, config.seq_len, lambda raw: raw, lambda p: "Y" if question(p) else "N", 1,
                       extra_tokens="YN", example_hint=f"{config.seq_len} {what}")
    return make


def parity_problem(config: TaskConfig) -> Problem:
    """`seq_len` bits; the answer spells, after each bit, whether the 1s so far are Even or Odd.

    Its last letter answers "is the count of 1s even?". Asked for that letter alone, the sort
    model stayed at chance (58.5% held-out after 60 epochs at 12 bits): one parity bit depends on
    every input bit at once. Spelled out step by step, each letter follows from the one before
    and one bit, and the same model solved 12 bits in 9 epochs (seed 0).
    """
    def running_parity(bits: str) -> str:
        letters, odd = [], False
        for bit in bits:
            odd ^= bit == "1"
            letters.append("O" if odd else "E")
        return "".join(letters)

    return Problem("01", config.seq_len, lambda raw: raw, running_parity, config.seq_len, extra_tokens="EO",
                   example_hint=f"{config.seq_len} bits (0 or 1)")


def is_balanced(brackets: str) -> bool:
    """Whether every '(' closes, in order: the running depth never dips below 0 and ends at 0."""
    depth = 0
    for ch in brackets:
        depth += 1 if ch == "(" else -1
        if depth < 0:
            return False
    return depth == 0


# --- the registry ------------------------------------------------------------------------------

SEQUENCE_LENGTH = NumberField("seq_len", "sequence length (digits)", "sequence length", 6, 1)
DISTINCT_DIGITS = NumberField("num_digits", "distinct digits", "number of distinct digits", 3, 2, 10)

TASKS: dict[str, TaskKind] = {kind.name: kind for kind in (
    TaskKind("sort", "Sort the digits: `210120` → `001122` (minGPT's demo).",
             (SEQUENCE_LENGTH, DISTINCT_DIGITS), digit_problem(lambda p: "".join(sorted(p)))),
    TaskKind("copy", "Repeat the digits: `2101` → `2101`.",
             (SEQUENCE_LENGTH, DISTINCT_DIGITS), digit_problem(lambda p: p)),
    TaskKind("reverse", "Reverse the digits: `2101` → `1012`.",
             (SEQUENCE_LENGTH, DISTINCT_DIGITS), digit_problem(lambda p: p[::-1])),
    TaskKind("addition", "Add two zero-padded numbers: `47+85=` → `132`.",
             (NumberField("num_digits", "digits per number", "digits per number", 2, 1, 9),), addition_problem),
    TaskKind("parity", "Is the count of 1s even? The answer says it after every bit, E(ven) or O(dd); "
             "its last letter is the verdict: `0110` → `EOEE`.",
             (NumberField("seq_len", "number of bits", "number of bits", 12, 1),), parity_problem),
    TaskKind("brackets", "Are the brackets balanced? `(())` → `Y`, `())(` → `N`.",
             (NumberField("seq_len", "string length", "string length", 10, 1),),
             yes_no_problem("()", is_balanced, "brackets, ( or )")),
    TaskKind("text", "Predict the next character of your own text (the last 10% is held out).",
             (NumberField("seq_len", "context length (characters)", "context length", 32, 1, "max_seq_len"),),
             sample_tokens=120),
)}


def task_kind(name: object) -> TaskKind:
    """The registry entry for `name`, or a message listing the tasks there are."""
    if isinstance(name, str) and name in TASKS:
        return TASKS[name]
    shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
    raise ValueError(f"task must be one of {', '.join(TASKS)}, got {shown}")


def make_problem(config: TaskConfig) -> Problem:
    """The prompt/answer format of an algorithmic task."""
    kind = task_kind(config.kind)
    if kind.problem is None:
        raise ValueError(f"{config.kind!r} is not an algorithmic task")
    return kind.problem(config)
