"""Fuzzing the configuration loader (exporter/config.py `load_settings`): whatever the YAML file, the
SERVING_EXPORTER_* environment and the command-line overrides hold, the answer is Settings within their
documented bounds or a ConfigError listing non-empty problems — never another exception (a traceback at
start-up instead of a message naming the key). Hypothesis builds the inputs from the real setting names (so
most examples get past the unknown-key check into validation) mixed with odd keys and values of any YAML
type; then raw-text mutations of such files, bytes that are not UTF-8 included.

`FUZZ_EXAMPLES // 40` examples per test (at least 100; the CI default runs a few seconds).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from exporter.config import ENV_NESTED, ENV_PREFIX, ConfigError, Settings, load_settings

from .test_fuzz_parser import FUZZ_EXAMPLES

EXAMPLES = max(100, FUZZ_EXAMPLES // 40)
CANARY = "dapi-fuzz-canary-0123456789"  # a Databricks token in the environment: never in a problem


def _keys(model: type[BaseModel]) -> dict[str, Any]:
    """Setting name -> nested section's keys (a dict) or None, from the models themselves."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        sub = info.annotation
        out[name] = _keys(sub) if isinstance(sub, type) and issubclass(sub, BaseModel) else None
    return out


KEYS = _keys(Settings)
SECTION_KEYS = sorted({k for v in KEYS.values() if v for k in v})
ODD_KEYS = st.one_of(st.sampled_from(("", "Poll_Interval_Seconds", "targets ", "__class__", "é", "1")),
                     st.text(max_size=6), st.integers(), st.none(), st.booleans(), st.floats())
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20), st.floats(),
    st.sampled_from((0, 1, -1, 60, 1e308, "60", "1e400", "0.0.0.0:9877", "127.0.0.1:0", ":", "[::1]:9877",
                     "prod-.*", "(", "((?P<x>", "a" * 300, "DEBUG", "json", "nope", "null", "true", "~",
                     "https://api.datadoghq.eu", "ftp://x", "env:prod")),
    st.text(max_size=12),
)


def _values(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return SCALARS
    inner = _values(depth - 1)
    keys = st.one_of(st.sampled_from(SECTION_KEYS + ["name", "tags", "include", "exclude", "targets"]), ODD_KEYS)
    return st.one_of(SCALARS, SCALARS, st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=4))


@st.composite
def config_data(draw: st.DrawFn) -> dict[Any, Any]:
    """A mapping of mostly real setting names: sections with their own keys, values of any type."""
    data: dict[Any, Any] = {}
    for name in draw(st.lists(st.sampled_from(sorted(KEYS)), max_size=5, unique=True)):
        section = KEYS[name]
        if section and draw(st.booleans()):
            keys = st.one_of(st.sampled_from(sorted(section)), ODD_KEYS)
            data[name] = draw(st.dictionaries(keys, _values(1), max_size=4))
        elif name == "endpoints" and draw(st.booleans()):
            selector = st.fixed_dictionaries({}, optional={"name": SCALARS, "tags": _values(1), "x": SCALARS})
            data[name] = {draw(st.sampled_from(("include", "exclude"))): draw(st.lists(selector, max_size=3))}
        else:
            data[name] = draw(_values(2))
    if draw(st.integers(0, 4)) == 0:
        data[draw(ODD_KEYS)] = draw(SCALARS)
    return data


GOOD = yaml.safe_load((Path(__file__).parent / "fixtures" / "config" / "good.yaml").read_text())
GOOD.update(datadog={"tags": ["env:prod"], "buffer_points": 1000}, listen="127.0.0.1:9877", log_format="json",
            max_concurrent_requests=32, series={"served_entities": False})


@st.composite
def perturbed_good(draw: st.DrawFn) -> dict[Any, Any]:
    """tests/fixtures/config/good.yaml (and a few more settings) with one to three values replaced, removed
    or added, anywhere in the tree: most of the file stays valid, so the change meets validation."""
    data = yaml.safe_load(yaml.safe_dump(GOOD))  # a deep copy
    for _ in range(draw(st.integers(1, 3))):
        node: Any = data
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            child = node[draw(st.sampled_from(sorted(node, key=str)))] if isinstance(node, dict) else \
                node[draw(st.integers(0, len(node) - 1))]
            if not isinstance(child, (dict, list)) or not child:
                break
            node = child
        if isinstance(node, dict):
            key = draw(st.one_of(st.sampled_from(sorted(node, key=str)), ODD_KEYS)) if node else draw(ODD_KEYS)
            if node and draw(st.integers(0, 4)) == 0:
                node.pop(key, None)
            else:
                node[key] = draw(_values(1))
        elif isinstance(node, list):
            node.append(draw(_values(1)))
    return data


ENV_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)


@st.composite
def environment(draw: st.DrawFn) -> dict[str, str]:
    """SERVING_EXPORTER_* variables: real names and sections, odd nested keys, JSON and not-JSON values."""
    env: dict[str, str] = {}
    for _ in range(draw(st.sampled_from((0, 0, 0, 1, 2, 4)))):
        name = draw(st.sampled_from(sorted(KEYS)))
        var = ENV_PREFIX + name.upper()
        if KEYS[name] and draw(st.booleans()):
            var += ENV_NESTED + draw(st.one_of(st.sampled_from(sorted(KEYS[name])), st.text("abcXYZ_", max_size=5)))
        elif draw(st.integers(0, 5)) == 0:
            var += draw(st.sampled_from(("_", "__", "_X", "__Y__Z", "_SERVICE_HOST", "_PORT_9877_TCP")))
        value = draw(st.one_of(ENV_TEXT, SCALARS.map(lambda v: yaml.safe_dump(v).removesuffix("\n...\n").strip()),
                               st.sampled_from(('{"latency_p99_seconds": 1}', '{"x": 1}', "[1", "[]", "{}", "null",
                                                '[{"name": "("}]', '["env:prod"]'))))
        env[var] = value.replace("\x00", "")
    return env


OVERRIDES = st.fixed_dictionaries({}, optional={
    "listen": st.one_of(SCALARS.map(str), st.sampled_from(("127.0.0.1:0", "host:99999", "nowhere"))),
    "poll_interval_seconds": st.one_of(st.none(), st.floats(), st.integers(-5, 100)),
    "shard_index": st.one_of(st.none(), st.integers(-2, 5)),
    "shard_count": st.one_of(st.none(), st.integers(-2, 5)),
})


@contextmanager
def environ(extra: dict[str, str]) -> Iterator[None]:
    """os.environ with these variables added for one example, then restored."""
    saved = dict(os.environ)
    os.environ.update(extra)
    os.environ["DATABRICKS_TOKEN"] = CANARY
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check(path: Path | None, env: dict[str, str], overrides: dict[str, Any]) -> str:
    """load_settings gives Settings within their bounds or a ConfigError; fail on anything else."""
    with environ(env):
        try:
            loaded = load_settings(path, overrides)
        except ConfigError as exc:
            assert exc.problems and all(isinstance(p, str) and p.strip() for p in exc.problems), exc.problems
            assert CANARY not in str(exc)
            event("refused")  # shown by --hypothesis-show-statistics
            return "refused"
        assert isinstance(loaded, Settings)
        # The documented bounds (Field constraints) hold for whatever was accepted.
        assert loaded.poll_interval_seconds >= 1 and loaded.window_seconds >= 60
        assert 1 <= loaded.max_concurrent_requests <= 256 and loaded.max_served_entities >= 1
        index, count = loaded.shard()
        assert 0 <= index < count
        for selector in (*loaded.endpoints.include, *loaded.endpoints.exclude):
            assert selector.name is None or isinstance(selector.name, str)
        event("loaded")
        return "loaded"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.one_of(config_data(), perturbed_good(), perturbed_good()), env=environment(),
       overrides=st.one_of(st.just({}), OVERRIDES))
def test_yaml_env_and_flags_give_settings_or_a_config_error(workdir: Path, data: dict, env: dict[str, str],
                                                            overrides: dict[str, Any]):
    path = workdir / "config.yaml"
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        text = repr(data)  # not representable (e.g. a key of no YAML type): the raw text is fuzz too
    path.write_text(text, encoding="utf-8")
    check(path, env, overrides)


@FUZZ
@given(data=st.one_of(config_data(), perturbed_good()), edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 8), st.binary(max_size=4)),
                                          min_size=1, max_size=4))
def test_mutated_files_give_settings_or_a_config_error(workdir: Path, data: dict, edits: list):
    raw = bytearray(yaml.safe_dump(data, allow_unicode=True).encode())
    for at, cut, insert in edits:  # replace `cut` bytes at `at` by `insert`
        at %= len(raw) + 1
        raw[at:at + cut] = insert
    path = workdir / "mutated.yaml"
    path.write_bytes(bytes(raw))
    check(path, {}, {})


# Found by the fuzzers above, kept as plain regression cases: each escaped as another exception.
FILE_REGRESSIONS = {
    "not UTF-8": (b"poll_interval_seconds: \xff\n", "not UTF-8 text"),
    "integer key": (b"1: 2\n", "1: a setting name must be a string"),
    "null key": (b"~: 2\n", "None: a setting name must be a string"),
    "integer of 5,000 digits": (b"max_concurrent_requests: " + b"9" * 5000 + b"\n", "not valid YAML"),
    "nesting 2,000 deep": (b"a: " + b"[" * 2000 + b"]" * 2000 + b"\n", "not valid YAML"),
    "regex nested 500 deep": (b"endpoints: {include: [{name: '" + b"(" * 500 + b"'}]}\n",
                              "endpoints.include.0.name: Value error, invalid regular expression"),
}


@pytest.mark.parametrize("raw,expected", list(FILE_REGRESSIONS.values()), ids=list(FILE_REGRESSIONS))
def test_file_regressions(tmp_path: Path, raw: bytes, expected: str):
    path = tmp_path / "config.yaml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: ") and expected in problem, problem


@pytest.mark.parametrize("var,value", [("SERVING_EXPORTER_TARGETS", "{not json"),
                                       ("SERVING_EXPORTER_ENDPOINTS__INCLUDE", "prod-.*"),
                                       ("SERVING_EXPORTER_DATADOG__TAGS", "[env:prod")])
def test_environment_not_json_names_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    (problem,) = info.value.problems
    section = var.removeprefix(ENV_PREFIX).split(ENV_NESTED)[0].lower()
    assert problem == f"environment variable {var}: {section}: not valid JSON (a list or a section is written as JSON)"
