"""The package cache's address choice and apt configuration (no Docker needed)."""

from __future__ import annotations

from pathlib import Path

import yaml

from swarmlab.containerlab.cache import cache_address, proxy_config
from swarmlab.model.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]


def test_cache_takes_the_highest_free_address():
    spec = load_spec(ROOT / "labs/local.yaml")
    assert cache_address(spec) == "10.77.0.254"


def test_cache_skips_addresses_that_nodes_use():
    data = yaml.safe_load((ROOT / "labs/local.yaml").read_text())
    data["nodes"][2]["ip"] = "10.77.0.254"
    data["nodes"][1]["ip"] = "10.77.0.253"
    assert cache_address(parse_spec(yaml.safe_dump(data))) == "10.77.0.252"


def test_proxy_config_only_for_plain_http():
    conf = proxy_config("http://10.77.0.254:3142")
    assert conf == 'Acquire::http::Proxy "http://10.77.0.254:3142";\n'
    assert "https" not in conf
