"""Config validation: every mistake is a ValueError whose message names the problem."""

import math

import numpy as np
import pytest

from core.config import (
    Limits,
    ModelConfig,
    SampleConfig,
    TaskConfig,
    TrainConfig,
    as_int,
    parse_int_list,
    parse_layer_rows,
)


def model(d_models, ffs=None, nhead=2, **kw):
    ffs = ffs if ffs is not None else [32] * len(d_models)
    return ModelConfig(kw.pop("vocab_size", 5), d_models, ffs, nhead, **kw)


# --- ModelConfig ---------------------------------------------------------------------------

def test_valid_config_validates_and_chains():
    config = model([16, 32, 32, 16], nhead=[2, 4, 4, 2], dropout=0.1)
    assert config.validate() is config
    assert config.num_layers == 4
    assert config.heads_per_layer == [2, 4, 4, 2]


def test_single_nhead_applies_to_every_layer():
    assert model([16, 16, 16], nhead=4).heads_per_layer == [4, 4, 4]


def test_empty_layer_list():
    with pytest.raises(ValueError, match="d_model_configs is empty"):
        model([], []).validate()


def test_mismatched_list_lengths():
    with pytest.raises(ValueError, match="d_model_configs has 2 layers but dim_feedforward_configs has 1"):
        model([16, 16], [32]).validate()


def test_nhead_list_of_wrong_length():
    with pytest.raises(ValueError, match="nhead lists 1 values for 3 layers"):
        model([16, 16, 16], nhead=[2]).validate()


@pytest.mark.parametrize("d_models, ffs, nhead, message", [
    ([16, 0], [32, 32], 2, "layer 2: d_model must be at least 1, got 0"),
    ([-16], [32], 2, "layer 1: d_model must be at least 1, got -16"),
    ([16], [0], 2, "layer 1: dim_feedforward must be at least 1, got 0"),
    ([16, 16], [32, -1], 2, "layer 2: dim_feedforward must be at least 1"),
    ([16], [32], 0, "layer 1: nhead must be at least 1, got 0"),
    ([16, 16], [32, 32], [2, -2], "layer 2: nhead must be at least 1"),
    ([16.5], [32], 2, "layer 1: d_model must be a whole number"),
    (["abc"], [32], 2, "layer 1: d_model must be a whole number, got 'abc'"),
])
def test_non_positive_or_non_integer_widths(d_models, ffs, nhead, message):
    with pytest.raises(ValueError, match=message):
        model(d_models, ffs, nhead=nhead).validate()


def test_d_model_not_divisible_by_nhead_names_the_layer_and_suggests_widths():
    with pytest.raises(ValueError, match="layer 3: d_model 100 is not divisible by nhead 8") as info:
        model([16, 16, 100], [32, 32, 32], nhead=[2, 2, 8]).validate()
    assert "96 or 104" in str(info.value)


def test_d_model_smaller_than_nhead_suggests_nhead_itself():
    with pytest.raises(ValueError, match="layer 1: d_model 5 is not divisible by nhead 8") as info:
        model([5], nhead=8).validate()
    assert "try d_model 8," in str(info.value)


@pytest.mark.parametrize("dropout", [1.0, 1.5, -0.1, math.nan, "lots"])
def test_dropout_outside_zero_to_one(dropout):
    with pytest.raises(ValueError, match="dropout must be"):
        model([16], dropout=dropout).validate()


def test_whole_numbers_as_text_are_validated_and_stored_as_ints():
    config = ModelConfig("5", ["16", 32.0], [64, "128"], "4", "0.1").validate()
    assert (config.vocab_size, config.d_model_configs, config.dim_feedforward_configs) == (5, [16, 32], [64, 128])
    assert (config.nhead, config.dropout) == (4, 0.1)
    with pytest.raises(ValueError, match="layer 1: d_model must be a whole number, got 16.5"):
        ModelConfig(5, [16.5], [64], 4).validate()


@pytest.mark.parametrize("dropout", [0.0, 0, 0.5, 0.99, "0.1"])
def test_dropout_inside_zero_to_one(dropout):
    model([16], dropout=dropout).validate()


def test_unknown_model_type():
    with pytest.raises(ValueError, match="model type must be one of configurable, simple"):
        model([16], model_type="gpt").validate()


def test_vocab_size_below_two():
    with pytest.raises(ValueError, match="vocab_size must be at least 2"):
        model([16], vocab_size=1).validate()


def test_too_many_layers():
    with pytest.raises(ValueError, match="25 layers is above the limit of 24 .set by PLAYGROUND_MAX_LAYERS"):
        model([4] * 25, [4] * 25, nhead=1).validate()
    model([4] * 24, [4] * 24, nhead=1).validate()  # the limit itself is allowed


def test_too_wide_layer():
    with pytest.raises(ValueError, match=r"layer 2: d_model 4096 is above the limit of 2,048 "
                                         r"\(set by PLAYGROUND_MAX_D_MODEL\)"):
        model([16, 4096], [32, 32]).validate()


def test_too_wide_feed_forward():
    with pytest.raises(ValueError, match="layer 1: dim_feedforward 9000 is above the limit of 8,192"):
        model([16], [9000]).validate()


def test_too_many_parameters():
    config = model([16], [32])
    with pytest.raises(ValueError, match=r"the model has [\d,]+ parameters, above the limit of 1,000 "
                                         r"\(set by PLAYGROUND_MAX_PARAMS\)"):
        config.validate(Limits(max_params=1000))
    config.validate(Limits(max_params=config.num_parameters()))  # exactly at the limit is fine


def test_public_limits_are_stricter():
    config = model([512], [32], nhead=8)
    config.validate()
    with pytest.raises(ValueError, match="above the limit of 256"):
        config.validate(Limits.public())


@pytest.mark.parametrize("d_models, ffs, nhead, name, layer", [
    ([16, 32], [32, 32], 2, "d_model", 2),
    ([16, 16, 16], [32, 32, 64], 2, "dim_feedforward", 3),
    ([16, 16], [32, 32], [2, 4], "nhead", 2),
])
def test_simple_model_needs_uniform_layers(d_models, ffs, nhead, name, layer):
    with pytest.raises(ValueError, match=f"the simple model uses one {name} for every layer, "
                                         f"but layer {layer} has"):
        model(d_models, ffs, nhead=nhead, model_type="simple").validate()
    model(d_models, ffs, nhead=nhead, model_type="configurable").validate()  # fine per layer


def test_projection_positions():
    assert model([32, 64, 64, 32], nhead=4).projection_positions() == [1, 3]
    assert model([16, 16, 16]).projection_positions() == []


def test_breakdown_lists_projections_where_widths_change():
    names = [name for name, _ in model([32, 64, 64, 32], nhead=4).parameter_breakdown()]
    assert names[0].startswith("token embedding")
    assert names[2] == "projection 32 -> 64"
    assert names[5] == "projection 64 -> 32"
    assert names[-1].startswith("final norm + head")
    assert sum(n.startswith("layer ") for n in names) == 4


def test_model_config_round_trips_through_a_dict():
    config = model([16, 32], [48, 64], nhead=[2, 4], dropout=0.2, model_type="configurable")
    data = config.to_dict()
    assert ModelConfig.from_dict({**data, "unknown_future_key": 1}) == config


# --- parse_layer_rows / parse_int_list / as_int ---------------------------------------------

def test_layer_rows_accept_string_and_float_cells():
    rows = [["48", "192", "3"], [64.0, 256, "4 "], [" 1_024", "2048", 8]]
    assert parse_layer_rows(rows) == ([48, 64, 1024], [192, 256, 2048], [3, 4, 8])


def test_layer_rows_skip_blank_rows():
    rows = [["", "", ""], [48, 192, 3], [None, None, None], ["  ", "", None],
            [math.nan, math.nan, math.nan], [64, 256, 4]]
    assert parse_layer_rows(rows) == ([48, 64], [192, 256], [3, 4])


def test_layer_rows_junk_names_layer_and_field():
    # The blank row is not a layer, so the junk is in layer 2.
    with pytest.raises(ValueError, match="layer 2: dim_feedforward must be a whole number, got 'abc'"):
        parse_layer_rows([[48, 192, 3], ["", "", ""], [64, "abc", 4]])


@pytest.mark.parametrize("rows, message", [
    ([[48, 192, "4.5"]], "layer 1: nhead must be a whole number, got '4.5'"),
    ([[48, "", 3]], "layer 1: dim_feedforward is empty"),
    ([[48, 192, 3], [0, 192, 3]], "layer 2: d_model must be at least 1, got 0"),
    ([[48, 192]], "layer 1: needs d_model, dim_feedforward and nhead"),
    ([], "the layer table is empty"),
    ([["", "", ""], [None, None, None]], "the layer table is empty"),
    ([[True, 192, 3]], "layer 1: d_model must be a whole number"),
])
def test_layer_rows_errors(rows, message):
    with pytest.raises(ValueError, match=message):
        parse_layer_rows(rows)


def test_parse_int_list():
    assert parse_int_list("48,48, 64", "widths") == [48, 48, 64]
    assert parse_int_list("48 64", "widths") == [48, 64]
    assert parse_int_list([1, "2", 3.0], "widths") == [1, 2, 3]
    with pytest.raises(ValueError, match="widths is empty"):
        parse_int_list(" , ", "widths")
    with pytest.raises(ValueError, match="widths item 2 must be a whole number, got 'x'"):
        parse_int_list("48,x", "widths")


def test_as_int_accepts_whole_numbers_in_many_forms():
    assert as_int("1_000", "n") == 1000
    assert as_int(" 7 ", "n") == 7
    assert as_int(7.0, "n") == 7
    assert as_int(np.int64(5), "n") == 5
    for bad in (True, math.inf, math.nan, "7.5", None, [3]):
        with pytest.raises(ValueError, match="n must be a whole number"):
            as_int(bad, "n")
    with pytest.raises(ValueError, match="n 11 is above the limit of 10 .set by PLAYGROUND_MAX_LAYERS"):
        as_int(11, "n", maximum=10, limit_name="max_layers")


# --- Limits ---------------------------------------------------------------------------------

def test_limits_from_env_overrides_only_what_is_set():
    limits = Limits.from_env(environ={"PLAYGROUND_MAX_PARAMS": "5_000_000",
                                      "PLAYGROUND_MAX_TRAIN_SECONDS": "12.5",
                                      "PLAYGROUND_MAX_LAYERS": "  ",  # blank: ignored
                                      "UNRELATED": "x"})
    assert limits.max_params == 5_000_000
    assert limits.max_train_seconds == 12.5
    assert limits.max_layers == Limits().max_layers
    assert limits.max_d_model == Limits().max_d_model


def test_limits_from_env_starts_from_the_given_base():
    limits = Limits.from_env(Limits.public(), environ={"PLAYGROUND_MAX_EPOCHS": "10"})
    assert limits.max_epochs == 10
    assert limits.max_d_model == Limits.public().max_d_model


def test_limits_from_env_reads_os_environ(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_MAX_LAYERS", "3")
    limits = Limits.from_env()
    assert limits.max_layers == 3
    with pytest.raises(ValueError, match="4 layers is above the limit of 3 .set by PLAYGROUND_MAX_LAYERS"):
        model([16] * 4, [32] * 4).validate(limits)


@pytest.mark.parametrize("name, raw, message", [
    ("PLAYGROUND_MAX_LAYERS", "abc", "PLAYGROUND_MAX_LAYERS='abc' is not a number"),
    ("PLAYGROUND_MAX_PARAMS", "2.5", "PLAYGROUND_MAX_PARAMS='2.5' is not a number"),
    ("PLAYGROUND_MAX_D_MODEL", "-1", "PLAYGROUND_MAX_D_MODEL must not be negative"),
    ("PLAYGROUND_MAX_TRAIN_SECONDS", "-0.5", "PLAYGROUND_MAX_TRAIN_SECONDS must not be negative"),
])
def test_limits_from_env_bad_values(name, raw, message):
    with pytest.raises(ValueError, match=message):
        Limits.from_env(environ={name: raw})


# --- TaskConfig -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="palindrome"), "task must be one of sort, copy, reverse, addition, parity, brackets, text"),
    (dict(train_size=0), "train size must be at least 1"),
    (dict(val_size=0), "validation size must be at least 1"),
    (dict(seed=-1), "seed must be at least 0"),
    (dict(seq_len=0), "sequence length must be at least 1"),
    (dict(num_digits=1), "number of distinct digits must be at least 2"),
    (dict(num_digits=11), "number of distinct digits 11 is above the limit of 10"),
    (dict(kind="addition", num_digits=0), "digits per number must be at least 1"),
    (dict(kind="addition", num_digits=10), "digits per number 10 is above the limit of 9"),
    (dict(kind="text"), "the text task needs some text"),
    (dict(kind="text", text="   \n"), "the text task needs some text"),
    (dict(kind="text", text="hello", seq_len=0), "context length must be at least 1"),
])
def test_task_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TaskConfig(**kwargs).validate()


def test_task_config_limits():
    with pytest.raises(ValueError, match="makes model inputs of 11 tokens, above the limit of 10"):
        TaskConfig("sort", seq_len=6).validate(Limits(max_seq_len=10))
    TaskConfig("sort", seq_len=5).validate(Limits(max_seq_len=10))
    with pytest.raises(ValueError, match="the text has 11 characters, above the limit of 10"):
        TaskConfig("text", seq_len=2, text="hello world").validate(Limits(max_text_chars=10))
    with pytest.raises(ValueError, match="train size 30000 is above the limit of 20,000 "
                                         ".set by PLAYGROUND_MAX_TRAIN_SIZE"):
        TaskConfig(train_size=30_000).validate(Limits.public())


def test_task_config_dict_leaves_out_the_text_unless_asked():
    config = TaskConfig("text", seq_len=8, text="some pasted text")
    assert "text" not in config.to_dict()
    assert config.to_dict(include_text=True)["text"] == "some pasted text"
    assert TaskConfig.from_dict(config.to_dict(include_text=True)) == config


# --- TrainConfig / SampleConfig -------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=0), "epochs must be at least 1"),
    (dict(batch_size=0), "batch size must be at least 1"),
    (dict(lr=0), "learning rate must be above 0 and at most 1"),
    (dict(lr=2.0), "learning rate must be above 0 and at most 1"),
    (dict(lr="fast"), "learning rate must be a number"),
    (dict(lr=math.inf), "learning rate must be a finite number"),
    (dict(weight_decay=1.0), "weight decay must be at least 0 and below 1"),
    (dict(warmup_fraction=-0.1), "warmup fraction must be at least 0 and below 1"),
    (dict(grad_clip=-1), "gradient clipping must be 0 .off. or positive"),
    (dict(patience=0), "patience must be at least 1"),
    (dict(max_seconds=0), "time limit must be positive"),
    (dict(seed=-3), "seed must be at least 0"),
])
def test_train_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs).validate()


def test_train_config_limits():
    TrainConfig(epochs=1000).validate()
    with pytest.raises(ValueError, match="epochs 1000 is above the limit of 300 "
                                         ".set by PLAYGROUND_MAX_EPOCHS"):
        TrainConfig(epochs=1000).validate(Limits.public())


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_new_tokens=0), "max new tokens must be at least 1"),
    (dict(temperature=-0.5), "temperature must be 0 .greedy. or positive"),
    (dict(top_k=0), "top-k must be at least 1"),
    (dict(top_p=0.0), "top-p must be above 0 and at most 1"),
    (dict(top_p=1.01), "top-p must be above 0 and at most 1"),
    (dict(seed=-1), "seed must be at least 0"),
])
def test_sample_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SampleConfig(**kwargs).validate()


def test_sample_config_greedy_flag():
    assert SampleConfig(temperature=0).is_greedy
    assert SampleConfig(greedy=True, temperature=0.7).is_greedy
    assert not SampleConfig(temperature=0.7).is_greedy
    with pytest.raises(ValueError, match="max new tokens 501 is above the limit of 500"):
        SampleConfig(max_new_tokens=501).validate(Limits.public())


# --- values a hostile or careless caller sends ----------------------------------------------

@pytest.mark.parametrize("text, words", [
    ("abc\ud800def", "a lone surrogate U\\+D800 at character 4"),
    ("ok\x00no", "the control character U\\+0000 '\\\\x00' at character 3"),
    ("bell\x07", "the control character U\\+0007"),
])
def test_text_with_characters_that_cannot_be_sent_back_is_refused(text, words):
    with pytest.raises(ValueError, match=f"the text contains characters that can't be shown or sent back: {words}"):
        TaskConfig("text", seq_len=2, text=text * 20).validate()


def test_text_may_hold_newlines_tabs_and_any_script():
    TaskConfig("text", seq_len=2, text="line one\n\ttabbed — ünïcødé 日本語 💥\n" * 5).validate()


@pytest.mark.parametrize("value", [2**64, 10**400, float("nan"), float("inf"), 2.5, "1e999", [1], None])
def test_numbers_of_every_odd_kind_get_a_message(value):
    with pytest.raises(ValueError, match="seed"):
        TaskConfig(seed=value).validate()
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=value).validate()


def test_seed_is_bounded_so_every_library_accepts_it():
    with pytest.raises(ValueError, match="seed 18446744073709551616 is above the limit of 4,294,967,295"):
        TrainConfig(seed=2**64).validate()
    TrainConfig(seed=2**32 - 1).validate()


@pytest.mark.parametrize("num_digits", [-3, 0, 1])
def test_too_few_distinct_digits(num_digits):
    with pytest.raises(ValueError, match="number of distinct digits must be at least 2"):
        TaskConfig("sort", num_digits=num_digits).validate()


@pytest.mark.parametrize("rows, words", [
    ([[16, 64, 2, 9]], "layer 1: needs d_model, dim_feedforward and nhead .three values., got 4"),
    ([[16, 64, 2], 7], "layer 2: needs d_model, dim_feedforward and nhead, got 7"),
    ([[16, float("nan"), 2]], "layer 1: dim_feedforward must be a whole number, got nan"),
    ([[16, 10**400, 2]], "layer 1: dim_feedforward must be a whole number|above the limit"),
])
def test_ragged_and_odd_layer_rows(rows, words):
    with pytest.raises(ValueError, match=words):
        d, f, h = parse_layer_rows(rows)
        ModelConfig(3, d, f, h).validate()


def test_a_built_config_holds_the_types_it_declares():
    """Whole numbers typed as text or floats are ints once the config exists, before any validate."""
    model = ModelConfig("7", ["48", 48.0], [96, "96"], "3", "0.1")
    assert (model.vocab_size, model.d_model_configs, model.dim_feedforward_configs, model.nhead) == \
        (7, [48, 48], [96, 96], 3)
    assert model.dropout == 0.1
    train = TrainConfig(epochs="5", batch_size=16.0, lr="0.01", seed="3", patience="2")
    assert (train.epochs, train.batch_size, train.lr, train.seed, train.patience) == (5, 16, 0.01, 3, 2)
    task = TaskConfig("addition", train_size="100")
    assert (task.num_digits, task.train_size) == (2, 100)  # the task's own default digits
    sample = SampleConfig(max_new_tokens="4", temperature="0", top_k=2.0)
    assert (sample.max_new_tokens, sample.temperature, sample.top_k) == (4, 0.0, 2)
    with pytest.raises(ValueError, match="layer 2: d_model must be a whole number"):
        ModelConfig(7, [48, "wide"], [96, 96], 3)

