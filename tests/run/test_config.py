import pytest

from debuggable.errors import DebuggableError
from debuggable.run import BugConfig, RunConfig, dumps_config, load_config, loads_config


def test_round_trip_through_toml(tmp_path):
    cfg = RunConfig(seed=3)
    cfg.data.bugs.append(BugConfig(kind="spurious_patch", params={"target_class": 2, "train_fraction": 0.5}))
    cfg.model.train = {"epochs": 2, "lr": 0.01}
    (tmp_path / "run.toml").write_text(dumps_config(cfg))
    again = load_config(tmp_path)
    assert again == cfg
    assert again.robust_model is None  # None survives TOML, which has no null


def test_unknown_setting_is_named_with_its_section_and_the_closest_key():
    with pytest.raises(DebuggableError, match=r"^run.toml \[extract\]: 'batchsize' is not a setting here; did you mean `batch_size`\?$"):
        loads_config("[extract]\nbatchsize = 3\n")
    with pytest.raises(DebuggableError, match=r"^run.toml \[glm\]: 'n_lambda' is not a setting here; did you mean `n_lambdas`\?$"):
        loads_config("[glm]\nn_lambda = 3\n")
    with pytest.raises(DebuggableError, match=r"^run.toml: 'sede' is not a setting here; did you mean `seed`\?$"):
        loads_config("sede = 3\n")
    with pytest.raises(DebuggableError, match=r"\[data.bugs\[0\]\]: 'paramz' .* did you mean `params`"):
        loads_config("[[data.bugs]]\nkind = 'mislabels'\nparamz = {}\n")
    # nothing close: the valid keys are listed instead
    with pytest.raises(DebuggableError, match=r"'zzzz' is not a setting here; expected one of \['alpha'"):
        loads_config("[glm]\nzzzz = 3\n")


@pytest.mark.parametrize("text, sentence", [
    ("[extract]\nbatch_size = 0\n", "run.toml [extract]: batch_size = 0 is not valid; expected an integer >= 1."),
    ("[glm]\nn_lambdas = 'ten'\n", "run.toml [glm]: n_lambdas = 'ten' is not valid; expected an integer >= 2."),
    ("[glm]\nalpha = 0\n", "run.toml [glm]: alpha = 0 is not valid; expected a number > 0 and <= 1."),
    ("[glm]\nfamily = 'multinomal'\n",
     "run.toml [glm]: family = 'multinomal' is not valid; expected one of 'multinomial', 'binomial'; did you mean 'multinomial'?"),
    ("[evaluate]\ntop_k = [1, 'x']\n", "run.toml [evaluate]: top_k[1] = 'x' is not valid; expected an integer."),
    ("[extract]\nspatial = 'yes'\n", "run.toml [extract]: spatial = 'yes' is not valid; expected true or false."),
    ("[[data.bugs]]\nparams = {}\n", "run.toml [data.bugs[0]]: 'kind' is required; add `kind = ...`."),
])
def test_invalid_value_is_named_with_its_section_and_what_is_expected(text, sentence):
    with pytest.raises(DebuggableError) as err:
        loads_config(text)
    assert str(err.value) == sentence
    assert "Input should" not in str(err.value) and "type=" not in str(err.value)  # no pydantic text


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(DebuggableError, match="not valid TOML"):
        loads_config("seed = = 1")
    with pytest.raises(DebuggableError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_section_hash_tracks_only_named_sections():
    a, b = RunConfig(), RunConfig()
    b.report.title = "other"
    assert a.section_hash("data", "model") == b.section_hash("data", "model")
    b.data.params["seed"] = 1
    assert a.section_hash("data", "model") != b.section_hash("data", "model")
