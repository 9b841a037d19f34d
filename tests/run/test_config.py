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


def test_unknown_setting_is_named():
    with pytest.raises(DebuggableError, match=r"'extract.batchsize'"):
        loads_config("[extract]\nbatchsize = 3\n")


def test_invalid_value_is_named():
    with pytest.raises(DebuggableError, match=r"'extract.batch_size'.*greater than or equal to 1"):
        loads_config("[extract]\nbatch_size = 0\n")


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
