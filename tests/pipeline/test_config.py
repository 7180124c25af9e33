from __future__ import annotations

import pytest
import yaml

from socialpipe.pipeline.contracts.config import Config, load_config
from tests.conftest import REPO

CONFIG_DIR = REPO / "configs"
from socialpipe.pipeline.contracts.errors import InputError


def test_default_yaml_matches_the_built_in_defaults():
    assert load_config(CONFIG_DIR / "default.yaml") == Config()


def test_default_yaml_uses_only_bundled_perception_models():
    config = load_config(CONFIG_DIR / "default.yaml")
    assert config.people.detector == "mtcnn"
    assert config.speech.asr_model.startswith("bundled:") and config.speech.diarizer == "offline"


def test_hub_yaml_loads_and_names_hub_models():
    config = load_config(CONFIG_DIR / "hub.yaml")
    assert config.people.person_detector == "yolo" and "/" in config.answer.model


def test_overrides_parse_values_and_apply_last():
    config = load_config(CONFIG_DIR / "hub.yaml", ["answer.alpha=0.5", "speech.num_speakers=3",
                                                   "answer.layer_range=[0.25, 0.75]", "speech.language=null"])
    assert config.answer.alpha == 0.5 and config.speech.num_speakers == 3
    assert config.answer.layer_range == (0.25, 0.75) and config.speech.language is None


def test_saved_config_loads_back(tmp_path):
    config = load_config(None, ["people.detect_fps=3"])
    assert load_config(config.save(tmp_path / "c.yaml")) == config


@pytest.mark.parametrize("overrides, message", [
    (["answer.alpah=1"], r"unknown key answer.alpah; valid keys in 'answer' are \['model'"),
    (["render.x=1"], r"unknown section 'render'; valid sections are \['people', 'speech', 'link', 'answer', 'finetune'\]"),
    (["answer.alpha=high"], "answer.alpha: expected float, got 'high'"),
    (["answer.num_frames=2.5"], "answer.num_frames: expected int"),
    (["answer.variant=magic"], r"'magic' is not one of \['none', 'box', 'visual', 'align'\]"),
    (["alpha=1"], "expected section.key=value"),
])
def test_bad_settings_name_what_is_valid(overrides, message):
    with pytest.raises(InputError, match=message):
        load_config(None, overrides)


def test_bad_config_files(tmp_path):
    (tmp_path / "bad.yaml").write_text("people: [1, 2\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "unknown.yaml").write_text(yaml.safe_dump({"people": {"detectr": "mtcnn"}}))
    with pytest.raises(InputError, match="unknown.yaml: config: unknown key people.detectr"):
        load_config(tmp_path / "unknown.yaml")
    with pytest.raises(InputError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_a_setting_that_moved_names_its_new_place():
    from socialpipe.pipeline.contracts.config import apply_overrides

    with pytest.raises(InputError, match=r"speech.diarization is no longer a setting; use speech.diarizer"):
        apply_overrides(Config(), ["speech.diarization=offline"])
    with pytest.raises(InputError, match=r"people.head_expand is no longer a setting; use answer.head_expand"):
        apply_overrides(Config(), ["people.head_expand=2.0"])
