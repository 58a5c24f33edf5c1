"""deploy/cluster.py's nginx.conf: the shipped site's upstream replaced by the workers given,
as ports on 127.0.0.1 (`make cluster`) or as (host, port) pairs (workers on other hosts)."""

import re
from pathlib import Path

from deploy.cluster import SITE_CONF, nginx_conf


def upstream_servers(conf: str) -> list[str]:
    block = re.search(r"upstream switchboard \{\n(.*?)\}", conf, re.S)
    assert block, conf
    return re.findall(r"server (\S+);", block.group(1))


def test_ports_alone_are_workers_on_127_0_0_1():
    conf = nginx_conf(
        site=SITE_CONF.read_text(), listen_port=8080, worker_ports=[8001, 8002], workdir=Path("/x")
    )

    assert upstream_servers(conf) == ["127.0.0.1:8001", "127.0.0.1:8002"]
    assert "listen 127.0.0.1:8080;" in conf


def test_host_port_pairs_name_workers_on_other_hosts_beside_plain_ports():
    conf = nginx_conf(
        site=SITE_CONF.read_text(),
        listen_port=8080,
        worker_ports=[("127.0.0.2", 8001), ("127.0.0.3", 8001), 8003],
        workdir=Path("/x"),
    )

    assert upstream_servers(conf) == ["127.0.0.2:8001", "127.0.0.3:8001", "127.0.0.1:8003"]
