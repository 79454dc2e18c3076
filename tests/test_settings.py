"""One settings table, read from SHOPSEARCH_* variables and an optional TOML file."""

import pytest

from shopsearch.settings import SETTINGS, SettingsError, load_settings, settings_table_markdown

from .conftest import ROOT


def test_defaults_apply_without_configuration():
    s = load_settings({})
    assert s.opensearch_url == "http://127.0.0.1:9200"
    assert s.proxy_port == 8000


def test_environment_values_are_typed():
    s = load_settings({"SHOPSEARCH_PROXY_PORT": "9001", "SHOPSEARCH_BATCH_SIZE": "8"})
    assert s.proxy_port == 9001 and s.batch_size == 8


def test_environment_wins_over_the_config_file(tmp_path):
    cfg = tmp_path / "shopsearch.toml"
    cfg.write_text('proxy_port = 7000\ntext_model = "usem3"\n')
    s = load_settings({"SHOPSEARCH_CONFIG": str(cfg), "SHOPSEARCH_PROXY_PORT": "7100"})
    assert s.proxy_port == 7100 and s.text_model == "usem3"


@pytest.mark.parametrize("env,message", [
    ({"SHOPSEARCH_PROXY_PORT": "eighty"}, "proxy_port .* must be a int"),
])
def test_a_wrong_type_is_a_clear_error(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_an_unknown_key_in_the_config_file_is_an_error(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("proxy_prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'proxy_prot'"):
        load_settings({}, config_file=cfg)


def test_the_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert settings_table_markdown() in readme, "regenerate with: ./run shopsearch settings --markdown"
    assert all(s.env in readme for s in SETTINGS)
