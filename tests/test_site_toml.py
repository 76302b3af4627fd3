"""The harness's site-file builder: its text is what the agent's own loader reads back."""

from __future__ import annotations

import pytest

from drivers.bus_config import TcpBusConfig
from drivers.profiles import builtin_profiles
from hardware_sim.harness.site_toml import (
    CREEK_LEVEL_RULE,
    CREEK_RADAR,
    RAIN_1H_RULE,
    RAIN_GAUGE,
    SIREN_RELAYS,
    SiteDevice,
    siren_actuator,
    tcp_site,
)
from site_schema.site_config import SiteConfig, SiteConfigError, parse_site_text


def loaded(text: str, port: int = 5020) -> SiteConfig:
    return parse_site_text(text.replace("{port}", str(port)), "site.toml")


def test_every_device_polls_at_the_sites_interval_on_the_one_tcp_bus() -> None:
    text = tcp_site(
        "creek-village",
        [RAIN_GAUGE, CREEK_RADAR, SIREN_RELAYS],
        poll_s=2.5,
        before_bus=["[agent]\nreassert_s = 1"],
        after_devices=[RAIN_1H_RULE, CREEK_LEVEL_RULE, siren_actuator("warble")],
    )
    site = loaded(text, 1502)
    assert site.site_id == "creek-village"
    (bus,) = site.buses
    assert isinstance(bus, TcpBusConfig)
    assert (bus.name, bus.host, bus.port) == ("field", "127.0.0.1", 1502)
    assert [(d.name, d.poll_interval_s, d.timeout_s) for d in site.devices] == [
        ("rain", 2.5, 0.2),
        ("creek", 2.5, 0.2),
        ("relays", 2.5, 0.2),
    ]
    assert [d.polled_channels() for d in site.devices] == [
        ("rain_total",),
        ("water_level",),
        ("relay1", "relay2"),
    ]
    assert [r.id for r in site.rules] == ["rain_1h", "creek"]
    assert site.agent.reassert_s == 1
    (siren,) = site.actuation.actuators
    assert siren.test_pattern == "warble"
    assert set(siren.patterns) == {"strobe", "warble"}


def test_left_out_settings_are_the_site_files_and_profiles_defaults() -> None:
    bare = tcp_site(
        "gauge-site",
        [SiteDevice("gauge", "generic_rs485_rain", timeout_s=None, unit_id=7)],
        name="Gauge site",
    )
    polled = tcp_site("gauge-site", [SiteDevice("gauge", "generic_rs485_rain")], poll_s=10)
    defaults = loaded(bare).devices[0]
    assert loaded(bare).name == "Gauge site"
    assert defaults.unit_id == 7
    assert defaults.channels is None  # every readable channel
    assert defaults.timeout_s == builtin_profiles()["generic_rs485_rain"].timeout_s
    assert "poll_interval_s" not in bare
    assert "timeout_s" not in bare
    assert loaded(polled).devices[0].poll_interval_s == 10
    assert "poll_interval_s = 10\n" in polled  # written as a person would, not 10.0
    assert loaded(polled).devices[0].timeout_s == 0.2


def test_names_with_quotes_backslashes_and_chinese_are_written_as_toml_strings() -> None:
    # Names as people write them: the builder must quote them, not break the TOML around them.
    text = tcp_site(
        "creek-village",
        [SiteDevice("rain", "dfrobot_sen0575", ("rain_total",))],
        name='张村 "upper" creek \\ ford',
    )
    site = loaded(text)
    assert site.name == '张村 "upper" creek \\ ford'
    with pytest.raises(SiteConfigError) as refused:  # the loader's own refusal, not TOML's
        loaded(tcp_site("creek-village", [SiteDevice("rain", 'dfrobot"sen0575')]))
    assert "not valid TOML" not in str(refused.value)
    assert 'dfrobot"sen0575' in str(refused.value)
