"""Environment parsing: periods, server, disable; bad values -> defaults
with exactly one warning line each."""

from __future__ import annotations

import io

import pytest

from microlog import config


def _load(env):
    out = io.StringIO()
    return config.load(env, out), out.getvalue()


def test_defaults():
    cfg, warnings = _load({})
    assert cfg == config.Config("http://localhost:7777", False, 0.05, 0.1, 1.0)
    assert warnings == ""


def test_tracer_and_microlog_spellings():
    cfg, warnings = _load(
        {"TRACER_SAMPLE_DELAY": "0.01", "MICROLOG_STATUS_DELAY": "0.5", "MICROLOG_MEMORY_DELAY": "2"}
    )
    assert (cfg.sample_period, cfg.status_period, cfg.memory_period) == (0.01, 0.5, 2.0)
    assert warnings == ""


def test_tracer_spelling_wins_over_microlog_spelling():
    cfg, _ = _load({"TRACER_SAMPLE_DELAY": "0.02", "MICROLOG_SAMPLE_DELAY": "0.3"})
    assert cfg.sample_period == 0.02


def test_smallest_sample_period_is_one_millisecond():
    assert _load({"TRACER_SAMPLE_DELAY": "0.001"})[0].sample_period == 0.001
    cfg, warnings = _load({"TRACER_SAMPLE_DELAY": "0.0001"})
    assert cfg.sample_period == 0.05
    assert warnings.count("\n") == 1 and "TRACER_SAMPLE_DELAY" in warnings


@pytest.mark.parametrize("bad", ["abc", "-1", "0", "nan", "inf", "1e9", "0x10"])
def test_bad_values_fall_back_with_one_warning(bad):
    cfg, warnings = _load({"TRACER_STATUS_DELAY": bad})
    assert cfg.status_period == 0.1
    assert warnings.count("\n") == 1
    assert warnings.startswith("Microlog: TRACER_STATUS_DELAY=")


def test_each_bad_variable_warns_once():
    _, warnings = _load({"TRACER_SAMPLE_DELAY": "x", "TRACER_MEMORY_DELAY": "y"})
    assert warnings.count("\n") == 2


def test_blank_value_means_unset():
    cfg, warnings = _load({"TRACER_SAMPLE_DELAY": "  "})
    assert cfg.sample_period == 0.05 and warnings == ""


def test_server():
    assert config.server({}) == "http://localhost:7777"
    assert config.server({"MICROLOG_SERVER": "https://ml.example.com/"}) == "https://ml.example.com"


@pytest.mark.parametrize("value,disabled", [("true", True), ("TRUE", True), ("True ", True),
                                            ("false", False), ("1", False), ("", False)])
def test_disable(value, disabled):
    assert config.is_disabled({"MICROLOG_DISABLE": value}) is disabled


def test_bad_period_in_a_real_run_warns_once_and_still_records(runner):
    from conftest import child_env  # pylint: disable=import-outside-toplevel

    env = child_env(TRACER_SAMPLE_DELAY="fast", TRACER_STATUS_DELAY="0.02")
    result = runner.run(
        ["-c", "import microlog; microlog.start('cfg'); print(microlog.is_running()); microlog.stop()"],
        env=env,
    )
    assert result.returncode == 0
    assert result.stdout == b"True\n"
    warnings = [l for l in result.stderr.decode().splitlines() if "TRACER_SAMPLE_DELAY" in l]
    assert warnings == ["Microlog: TRACER_SAMPLE_DELAY='fast' is not a number; using 0.05"]
