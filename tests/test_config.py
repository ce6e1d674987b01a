"""Configuration: sources, priority, strict validation with every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import ConfigError, load_settings
from exporter.model import EndpointInfo

CONFIGS = Path(__file__).parent / "fixtures" / "config"


def problems(path: str | None = None, **overrides) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(CONFIGS / path if path else None, overrides)
    return info.value.problems


def test_defaults_follow_the_serving_guide():
    s = load_settings()
    assert s.poll_interval_seconds == 60 and s.window_seconds == 300
    t = s.targets
    assert (t.latency_p50_seconds, t.latency_p90_seconds, t.latency_p99_seconds) == (0.1, 0.25, 0.5)
    assert (t.error_ratio, t.queue_depth, t.cpu_utilization_ratio, t.memory_utilization_ratio) == (0.01, 0, 0.8, 0.8)


def test_unknown_key_names_the_key_and_the_file():
    path = CONFIGS / "unknown_key.yaml"
    assert problems("unknown_key.yaml") == [f"{path}: targets.latncy_p99_seconds: unknown key"]


def test_every_error_is_reported_at_once():
    path = CONFIGS / "many_errors.yaml"
    found = problems("many_errors.yaml")
    assert f"{path}: poll_intervall: unknown key" in found
    assert f"{path}: window_seconds: Input should be greater than or equal to 60" in found
    assert f"{path}: targets.error_ratio: Input should be less than or equal to 1" in found
    assert any(p.startswith(f"{path}: endpoints.include.0.name: Value error, invalid regular expression 'prod-('") for p in found)
    assert len(found) == 4


def test_yaml_syntax_and_shape_errors_name_the_file():
    (syntax,) = problems("bad_yaml.yaml")
    assert syntax.startswith(f"{CONFIGS / 'bad_yaml.yaml'}: not valid YAML")
    assert problems("not_a_mapping.yaml") == [
        f"{CONFIGS / 'not_a_mapping.yaml'}: the top level must be a mapping of settings, not list"]
    (missing,) = problems("does_not_exist.yaml")
    assert "does_not_exist.yaml: cannot read" in missing


def test_unknown_environment_variable_is_an_error(monkeypatch):
    monkeypatch.setenv("SERVING_EXPORTER_POLL_INTERVL", "5")
    monkeypatch.setenv("SERVING_EXPORTER_TARGETS__LATENCY_P99", "5")
    assert problems() == [
        "environment variable SERVING_EXPORTER_POLL_INTERVL: unknown setting 'poll_intervl'",
        "environment variable SERVING_EXPORTER_TARGETS__LATENCY_P99: targets.latency_p99: unknown key",
    ]


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("SERVING_EXPORTER_TARGETS__ERROR_RATIO", "lots")
    (p,) = problems()
    assert p.startswith("environment variable SERVING_EXPORTER_TARGETS__ERROR_RATIO: targets.error_ratio:")


def test_priority_defaults_file_env_flags(monkeypatch):
    path = CONFIGS / "good.yaml"
    assert load_settings(path).poll_interval_seconds == 30
    monkeypatch.setenv("SERVING_EXPORTER_POLL_INTERVAL_SECONDS", "45")
    monkeypatch.setenv("SERVING_EXPORTER_TARGETS__LATENCY_P50_SECONDS", "0.05")
    s = load_settings(path)
    assert s.poll_interval_seconds == 45
    # Nested env values merge with the file's nested values instead of replacing them.
    assert s.targets.latency_p50_seconds == 0.05 and s.targets.latency_p99_seconds == 1.0
    assert load_settings(path, {"poll_interval_seconds": 5}).poll_interval_seconds == 5


def test_bad_flag_value_names_the_command_line():
    assert problems(listen="nowhere") == ["command line: listen: Value error, expected HOST:PORT, got 'nowhere'"]


def test_endpoint_filter_by_name_and_tags():
    s = load_settings(CONFIGS / "good.yaml")
    sel = s.endpoints.selects
    assert sel(EndpointInfo(name="prod-ranker"))
    assert sel(EndpointInfo(name="adhoc", tags={"team": "ml"}))
    assert not sel(EndpointInfo(name="adhoc"))
    assert not sel(EndpointInfo(name="prod-ranker-canary"))
    assert not sel(EndpointInfo(name="xprod-ranker"))  # the regex must match the whole name


def test_per_endpoint_targets_by_name_and_tag_later_wins():
    s = load_settings(CONFIGS / "good.yaml")
    fraud = s.targets_for(EndpointInfo(name="fraud-scorer", tags={"tier": "batch"}))
    assert fraud["latency_p99"] == 30  # the tag rule comes later
    assert fraud["cpu_utilization"] is None  # disabled by null
    assert fraud["error_ratio"] == 0.01  # untouched keys keep the global target
    assert s.targets_for(EndpointInfo(name="other"))["latency_p99"] == 1.0


def test_environment_can_disable_a_check_and_is_case_insensitive(monkeypatch):
    monkeypatch.setenv("SERVING_EXPORTER_TARGETS__CPU_UTILIZATION_RATIO", "null")
    monkeypatch.setenv("serving_exporter_poll_interval_seconds", "42")
    s = load_settings()
    assert s.targets.cpu_utilization_ratio is None
    assert s.poll_interval_seconds == 42


def test_yaml_error_and_environment_errors_are_reported_together(monkeypatch):
    monkeypatch.setenv("SERVING_EXPORTER_POLL_INTERVL", "5")
    found = problems("bad_yaml.yaml")
    assert len(found) == 2 and any("not valid YAML" in p for p in found)
    assert any("SERVING_EXPORTER_POLL_INTERVL" in p for p in found)


def test_kubernetes_service_link_variables_are_not_settings(monkeypatch):
    for var, value in {"SERVING_EXPORTER_SERVICE_HOST": "10.0.0.1", "SERVING_EXPORTER_SERVICE_PORT": "9877",
                       "SERVING_EXPORTER_SERVICE_PORT_HTTP": "9877", "SERVING_EXPORTER_PORT": "tcp://10.0.0.1:9877",
                       "SERVING_EXPORTER_PORT_9877_TCP": "tcp://10.0.0.1:9877",
                       "SERVING_EXPORTER_PORT_9877_TCP_ADDR": "10.0.0.1",
                       "SERVING_EXPORTER_HEADLESS_SERVICE_HOST": "10.0.0.2"}.items():
        monkeypatch.setenv(var, value)
    assert load_settings().poll_interval_seconds == 60
    monkeypatch.setenv("SERVING_EXPORTER_POLL_INTERVL", "5")
    assert len(problems()) == 1


def test_infinity_and_nan_are_not_settings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("poll_interval_seconds: .inf\ntargets:\n  error_ratio: .nan\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    text = str(err.value)
    assert "poll_interval_seconds" in text and "targets.error_ratio" in text and "finite" in text
