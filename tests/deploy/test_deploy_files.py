"""docker-compose.yml and deploy/ stay valid (no Docker engine here: parse and cross-check them)."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import yaml

from cpcs.settings import Settings
from cpcs_system.launcher import SERVICE_NAMES

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_runs_its_own_process() -> None:
    services = _compose()["services"]
    for name in SERVICE_NAMES:
        assert name in services, f"docker-compose.yml lacks service {name}"
        assert services[name]["command"] == ["cpcs", "service", "run", name]


def test_infrastructure_has_healthchecks_and_services_wait_for_them() -> None:
    services = _compose()["services"]
    for infra in ("postgres", "rabbitmq"):
        assert "test" in services[infra]["healthcheck"]
    migrate = " ".join(services["migrate"]["command"])
    assert "cpcs db upgrade" in migrate and "cpcs.messaging.topology --declare" in migrate
    for name in SERVICE_NAMES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["rabbitmq"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_services_are_configured_for_postgresql_and_rabbitmq() -> None:
    services = _compose()["services"]
    for name in SERVICE_NAMES:
        env = services[name]["environment"]
        assert env["CPCS_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["CPCS_BROKER_URL"].startswith("amqp://")
    # secrets must be given, never defaulted
    text = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"\$\{CPCS_DB_PASSWORD:\?", text) and re.search(r"\$\{RABBITMQ_PASSWORD:\?", text)
    # every api process (and the migration, which encrypts stored rows) has the same secret key
    assert re.search(r"\$\{CPCS_SECRET_KEY:\?", text)
    for name in (*SERVICE_NAMES, "migrate"):
        assert services[name]["environment"]["CPCS_SECRET_KEY"].startswith("${CPCS_SECRET_KEY:?")


def test_files_the_compose_file_mounts_or_builds_exist() -> None:
    compose = _compose()
    for service in compose["services"].values():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file()
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{source} is mounted but missing"


def test_dockerfile_installs_the_project_and_has_the_cli() -> None:
    dockerfile = (ROOT / "deploy/docker/Dockerfile").read_text()
    assert "pip install ." in dockerfile
    assert "COPY shared" in dockerfile and "COPY services" in dockerfile


def test_rabbitmq_definitions_declare_dead_lettering() -> None:
    definitions = json.loads((ROOT / "deploy/rabbitmq/definitions.json").read_text())
    exchanges = {e["name"]: e for e in definitions["exchanges"]}
    assert exchanges["cpcs"]["type"] == "topic" and exchanges["cpcs"]["durable"]
    queues = {q["name"]: q for q in definitions["queues"]}
    for consumer in ("calibrate", "reduce", "catalog-cache"):
        assert queues[consumer]["durable"]
        assert f"{consumer}.dead" in queues
    # exactly what the code declares (the consumers' queues, nothing without a consumer)
    from cpcs.messaging.topology import CPCS_TOPOLOGY

    assert {q for q in queues if "." not in q} == {spec.name for spec in CPCS_TOPOLOGY.queues}


def test_services_trust_forwarded_addresses_from_the_gateway_only() -> None:
    compose = _compose()
    gateway = compose["services"]["gateway"]["networks"]["default"]["ipv4_address"]
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(gateway) in ipaddress.ip_network(subnet)
    for name in ("ingest", "api", "catalog-cache", "calibrate", "reduce"):
        trusted = compose["services"][name]["environment"]["CPCS_TRUSTED_PROXIES"]
        assert Settings(trusted_proxies=trusted).trusted_proxy_list == (gateway,)
    assert (
        "X-Forwarded-For $proxy_add_x_forwarded_for" in (ROOT / "deploy" / "nginx" / "cpcs.conf").read_text()
    )


NGINX_SIZE = re.compile(r"^(\d+)([kKmMgG]?)$")


def nginx_bytes(value: str) -> int:
    """An nginx size (``419692544``, ``512k``, ``60m``, ``1g``) in bytes."""
    match = NGINX_SIZE.match(value)
    assert match, f"not an nginx size: {value!r}"
    return int(match.group(1)) * 1024 ** " kmg".index((match.group(2) or " ").lower())


def test_the_gateway_and_the_services_cap_upload_bodies_at_one_figure() -> None:
    """What the services accept, the gateway passes, and nothing more: one limit, not two."""
    conf = (ROOT / "deploy" / "nginx" / "cpcs.conf").read_text()
    [size] = re.findall(r"^\s*client_max_body_size\s+(\S+);", conf, flags=re.MULTILINE)
    gateway = nginx_bytes(size)
    compose_env = _compose()["services"]["ingest"]["environment"]
    settings = Settings(
        **{
            name: int(compose_env[f"CPCS_{name.upper()}"])
            for name in ("max_upload_bytes", "max_form_overhead_bytes")
            if f"CPCS_{name.upper()}" in compose_env
        }
    )
    server = settings.max_upload_bytes + settings.max_form_overhead_bytes
    assert gateway == server, f"nginx caps bodies at {gateway} bytes, the services at {server}"
    # The gateway's own 413 says the same figure, in the services' JSON error shape.
    [body] = re.findall(r"return 413 '(.*)';", conf)
    error = json.loads(body)
    assert error["error"] == "request_too_large" and f"limit of {server} bytes" in error["message"]


def test_the_gateway_sends_ingest_its_routes_and_everything_else_to_api() -> None:
    from fastapi.routing import APIRoute

    from cpcs_ingest.app import routers

    served = {route.path for router in routers() for route in router.routes if isinstance(route, APIRoute)}
    conf = (ROOT / "deploy" / "nginx" / "cpcs.conf").read_text()
    routes = dict(re.findall(r"location\s+(?:=\s+)?(\S+)\s*\{\s*proxy_pass http://(\w+);", conf))
    assert {path for path, upstream in routes.items() if upstream == "cpcs_ingest"} == served
    assert routes["/"] == "cpcs_api"


def test_prometheus_scrapes_every_cpcs_process_and_rabbitmq_where_they_listen() -> None:
    compose = _compose()
    services = compose["services"]
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    mounted = [v.split(":")[0] for v in services["prometheus"]["volumes"]]
    assert "./deploy/prometheus/prometheus.yml" in mounted
    targets: set[tuple[str, int]] = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets.add((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            targets.update((name, int(dns["port"])) for name in dns["names"])
    service_port = int(services["ingest"]["environment"]["CPCS_PORT"])
    for host, port in targets:
        assert host in services, f"prometheus scrapes {host}, which is not a compose service"
        if host in SERVICE_NAMES:
            assert port == service_port, f"{host} listens on {service_port}, not {port}"
    assert {name for name, _ in targets} >= set(SERVICE_NAMES), "a CPCS process is not scraped"
    assert ("rabbitmq", 15692) in targets
    plugins = (ROOT / "deploy/rabbitmq/enabled_plugins").read_text()
    assert "rabbitmq_prometheus" in plugins
