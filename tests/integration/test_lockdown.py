"""Lock-down: what is reachable, what can be registered, how big a request may be, and what ships.

Each test here is the proof cited for one threat in docs/security.md.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import psutil
import pytest
import requests

from deploy import ROOT
from deploy.server import CONFIG, Ports, Server, read_properties, render_config
from tests.conftest import run_server

pytestmark = pytest.mark.integration

PRODUCTION_CONFIGS = [CONFIG]  # the Kubernetes ConfigMap is this same file (deploy/config/kustomization.yaml)
REMOTE_URLS = [
    "http://127.0.0.1:9/evil.mar",
    "https://example.com/art-category.mar",
    "ftp://example.com/a.mar",
    "file:///etc/passwd",
    "file:///tmp/../etc/x.mar",
]


def host_of(address: str) -> str:
    return address.split("://", 1)[1].rsplit(":", 1)[0]


def java_allowed_urls(props: dict[str, str]) -> list[re.Pattern]:
    """``allowed_urls`` as the Java frontend reads it: properties unescaping, comma-separated regexes."""
    raw = props["allowed_urls"].replace("\\\\", "\\")
    return [re.compile(p) for p in raw.split(",")]


@pytest.mark.parametrize("path", PRODUCTION_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_production_config_is_locked_down(path):
    props = read_properties(path)
    assert host_of(props["management_address"]) == "127.0.0.1", f"{path}: management is not on loopback"
    assert props.get("enable_model_api") == "false", f"{path}: the model registration API is on"
    assert props.get("install_py_dep_per_model") == "false", f"{path}: archives may pip-install code"
    assert int(props["max_request_size"]) <= 32 * 1024 * 1024, f"{path}: request limit above 32 MiB"
    assert int(props["max_response_size"]) <= 1024 * 1024, f"{path}: response limit above 1 MiB"
    assert int(props["job_queue_size"]) <= 256, f"{path}: the job queue is unbounded in practice"
    patterns = java_allowed_urls(props)
    for url in REMOTE_URLS:
        assert not any(p.fullmatch(url) for p in patterns), f"{path}: allowed_urls accepts {url}"


def test_rendered_config_keeps_management_on_loopback_when_inference_is_public(tmp_path):
    """``bind=None`` is the container case: inference and metrics on all interfaces, management not."""
    path = render_config(tmp_path, tmp_path, "art-category.mar", Ports())
    props = read_properties(path)
    assert host_of(props["inference_address"]) == "0.0.0.0", f"inference: {props['inference_address']}"
    assert host_of(props["management_address"]) == "127.0.0.1", f"management: {props['management_address']}"
    assert props["enable_model_api"] == "false", "the rendered config turned the model API on"
    store = f"file://{tmp_path.resolve()}/art-category.mar"
    patterns = java_allowed_urls(props)
    assert any(p.fullmatch(store) for p in patterns), f"the store's own archive {store} is not allowed"
    for url in [*REMOTE_URLS, f"file://{tmp_path.resolve()}/../evil.mar"]:
        assert not any(p.fullmatch(url) for p in patterns), f"rendered allowed_urls accepts {url}"


def listening_addresses(server: Server) -> dict[int, str]:
    """port -> IP of every TCP socket the server's processes listen on."""
    procs = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    found = {}
    for proc in procs:
        for conn in proc.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                found[conn.laddr.port] = conn.laddr.ip
    return found


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    return addr.is_loopback or (addr.version == 6 and addr.ipv4_mapped is not None and addr.ipv4_mapped.is_loopback)


def test_server_listens_on_loopback_only_for_management(ts_server):
    sockets = listening_addresses(ts_server)
    ports = ts_server.ports
    assert ports.management in sockets, f"management port {ports.management} not listening: {sockets}"
    assert is_loopback(sockets[ports.management]), f"management listens on {sockets[ports.management]}"
    for name in ("grpc_inference", "grpc_management"):  # TorchServe always starts gRPC; it must stay local
        port = getattr(ports, name)
        assert port in sockets and is_loopback(sockets[port]), f"{name} port {port}: {sockets}"
    expected = {ports.inference, ports.management, ports.metrics, ports.grpc_inference, ports.grpc_management}
    assert set(sockets) <= expected, f"unexpected listening ports {set(sockets) - expected}: {sockets}"


def test_model_registration_api_is_off(ts_server):
    mgmt = ts_server.management_url
    for url in ("art-category.mar", *REMOTE_URLS):
        r = requests.post(f"{mgmt}/models", params={"url": url}, timeout=10)
        assert r.status_code == 405, f"registering {url} answered {r.status_code} {r.text[:200]}"
    r = requests.delete(f"{mgmt}/models/{ts_server.name}", timeout=10)
    assert r.status_code == 405, f"unregistering the model answered {r.status_code} {r.text[:200]}"
    r = requests.get(f"{ts_server.inference_url}/models", timeout=10)
    assert r.status_code == 404, f"the management API answers on the inference port: {r.status_code}"
    assert ts_server.is_ready(), "the model is no longer READY after the registration attempts"


@pytest.fixture(scope="module")
def model_api_server(tiny_mar, tmp_path_factory) -> Server:
    """Defence in depth: even with the model API switched on, allowed_urls must refuse remote archives."""
    yield from run_server(tiny_mar, tmp_path_factory.mktemp("model-api"), overrides={"enable_model_api": "true"})


def test_remote_archives_are_refused_even_with_the_model_api_on(model_api_server):
    mgmt = model_api_server.management_url
    for url in REMOTE_URLS:
        r = requests.post(f"{mgmt}/models", params={"url": url}, timeout=30)
        assert 400 <= r.status_code < 500, f"registering {url} answered {r.status_code} {r.text[:200]}"
        assert "not allowed" in r.text.lower() or r.status_code == 404, f"{url}: {r.status_code} {r.text[:200]}"
    names = [m["modelName"] for m in requests.get(f"{mgmt}/models", timeout=10).json()["models"]]
    assert names == [model_api_server.name], f"models registered after the attempts: {names}"


def test_request_over_the_frontend_limit_is_413(ts_server):
    limit = int(read_properties(ts_server.run_dir / "config.properties")["max_request_size"])
    r = requests.post(ts_server.predict_url, data=bytes(limit + 1), headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert r.status_code == 413, f"a {limit + 1}-byte request answered {r.status_code} {r.text[:200]}"
    assert ts_server.is_ready(), "the model is not READY after an oversize request"


SECRET_PATTERNS = [
    re.compile(p)
    for p in (
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"AKIA[0-9A-Z]{16}",
        r"(?i)(password|passwd|secret|api[_-]?key|token)\s*[:=]\s*['\"]?[A-Za-z0-9/+_-]{12,}",
        r"ghp_[A-Za-z0-9]{36}",
    )
]


def test_no_secrets_in_deploy_files():
    files = [p for p in (ROOT / "deploy").rglob("*") if p.is_file() and p.suffix not in (".pyc", ".mar", ".pt")]
    hits = [
        f"{p.relative_to(ROOT)}: {m.group(0)[:40]}"
        for p in files
        for m in (pat.search(p.read_text(encoding="utf-8", errors="replace")) for pat in SECRET_PATTERNS)
        if m
    ]
    assert not hits, "possible secrets in deploy/:\n" + "\n".join(hits)


def test_container_runs_as_non_root():
    dockerfile = ROOT / "deploy" / "docker" / "Dockerfile"
    if not dockerfile.exists():
        pytest.skip("no deploy/docker/Dockerfile in this checkout")
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(encoding="utf-8"), flags=re.M)
    assert users, f"{dockerfile} never sets USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), f"{dockerfile} ends with USER {users[-1]}"
    deployment = ROOT / "deploy" / "k8s" / "base" / "deployment.yaml"
    if deployment.exists():
        text = deployment.read_text(encoding="utf-8")
        assert re.search(r"runAsNonRoot:\s*true", text), f"{deployment} does not set runAsNonRoot: true"
        assert not re.search(r"privileged:\s*true", text), f"{deployment} runs a privileged container"


def test_checked_in_config_documents_the_token_stance():
    text = Path(CONFIG).read_text(encoding="utf-8")
    assert "disable_token_authorization=true" in text, "token-auth setting missing from deploy/config/config.properties"
    assert re.search(r"(?im)^#.*token.*(public|loopback)", text), "the token-auth decision is not explained"
