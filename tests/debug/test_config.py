import pytest

from debuggable import pipeline
from debuggable.cli import main
from debuggable.errors import DebuggableError
from debuggable.run import DebugConfig, dumps_config, loads_config


def test_text_demo_config_is_valid_and_round_trips():
    config = pipeline.text_demo_config()
    pipeline.validate(config)
    assert config.data.name == "vader_movies" and config.model.kind == "minilm"
    assert config.data.bugs[0].kind == "trigger_token" and config.debug.enabled
    again = loads_config(dumps_config(config))
    assert again.debug == config.debug


def test_debug_split_must_be_extracted():
    config = pipeline.demo_config()
    config.debug = DebugConfig(split="test_tweets")
    with pytest.raises(DebuggableError, match="debug.split 'test_tweets' is not extracted"):
        pipeline.validate(config)


def test_demo_text_and_pretrained_are_exclusive(tmp_path, capsys):
    assert main(["demo", "--text", "--pretrained", "--out", str(tmp_path / "x")]) == 2
    assert "--text and --pretrained" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
