"""deploy/kubernetes, deploy/spire, deploy/consul and deploy/otel against the code they run, so
they cannot rot: every manifest parses; names, ports, volumes and probes agree with each other;
the containers' flags and environment load through the real configuration code; SPIFFE IDs
and DNS names are the ones the code derives; the Consul example reads back through the codec.
"""

from __future__ import annotations

import argparse
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from meshwarden.addresses import UnixSocket, parse_host_port
from meshwarden.cli.main import build_parser
from meshwarden.identity.spiffe_ids import agent_id, dns_name
from meshwarden.registry import config as registry_config
from meshwarden.registry.operators import OPERATOR_TOKEN_FILE
from meshwarden.sidecar import config as sidecar_config
from meshwarden.sidecar.discovery.consul_api import ServiceEntry
from meshwarden.sidecar.discovery.consul_service import (
    MAX_META_KEYS,
    MAX_META_VALUE_LENGTH,
    MESH_TAG,
    META_KEY,
    META_SPIFFE_ID,
    SCHEMA_KEY_PREFIX,
    check_id,
    decode_capabilities,
    instance_from_entry,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "kubernetes"
NAMESPACE = "meshwarden"
# What the kubelet would put in the downward-API variables the manifests use.
DOWNWARD = {"POD_IP": "10.42.3.17", "POD_NAME": "billing-7d9f8c6b5-x2x4q", "HOST_IP": "10.0.0.5"}
NAMESPACED = {"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service", "ServiceAccount", "NetworkPolicy"}


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None)
    return docs


def find(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name} in deploy/kubernetes, found {len(matches)}"
    return matches[0]


def pod_spec(deployment: str) -> dict[str, Any]:
    spec: dict[str, Any] = find("Deployment", deployment)["spec"]["template"]["spec"]
    return spec


def running_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers that run for the pod's life: its containers and its native sidecars
    (init containers with restartPolicy Always, which start first and keep running)."""
    sidecars = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    return [*sidecars, *spec["containers"]]


def container(deployment: str, name: str) -> dict[str, Any]:
    found = [c for c in running_containers(pod_spec(deployment)) if c["name"] == name]
    assert len(found) == 1, f"{deployment} has no container {name}"
    return found[0]


def port(c: dict[str, Any], name: str) -> int:
    return int(next(p["containerPort"] for p in c["ports"] if p["name"] == name))


def mounts(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in c.get("volumeMounts", [])}


def volume(deployment: str, name: str) -> dict[str, Any]:
    return next(v for v in pod_spec(deployment)["volumes"] if v["name"] == name)


def mount_holding(c: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The volume mount `path` lives under (a subPath mount only for that exact file)."""
    p = PurePosixPath(str(path))
    for mount_path, mount in mounts(c).items():
        if p == PurePosixPath(mount_path) or (not mount.get("subPath") and PurePosixPath(mount_path) in p.parents):
            return mount
    raise AssertionError(f"container {c['name']}: {path} is on no volume (the root file system is read-only)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in args and env values."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], text)


def container_env(deployment: str, c: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    """The container's environment as the kubelet builds it: downward API values, secrets as
    placeholders, config files written out from their ConfigMaps."""
    env = dict(DOWNWARD)
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = expand(item["value"], env)
        elif "secretKeyRef" in item.get("valueFrom", {}):
            env[item["name"]] = f"<secret {item['valueFrom']['secretKeyRef']['name']}>"
    for name in [n for n in env if n.startswith("MESHWARDEN_") and n.endswith("_CONFIG")]:
        mount = mount_holding(c, env[name])
        config_map = find("ConfigMap", volume(deployment, mount["name"])["configMap"]["name"])
        local = tmp_path / mount["subPath"]
        local.write_text(config_map["data"][mount["subPath"]])
        env[name] = str(local)
    return env


def args_of(c: dict[str, Any], component: str) -> argparse.Namespace:
    """The container's args parsed by the real CLI parser."""
    argv = [expand(a, DOWNWARD) for a in c["args"]]
    options = registry_config.OPTIONS if component == "registry" else sidecar_config.OPTIONS
    known = {o.flag for o in options}
    unknown = [w for w in argv if w.startswith("--") and w not in known | {"--log-format", "--log-level"}]
    assert not unknown, f"{c['name']}: {unknown} are no options of meshwarden {component}"
    return build_parser().parse_args(argv)


def admin_port(c: dict[str, Any], args: argparse.Namespace) -> int:
    value = getattr(args, "admin_listen", None)
    assert value, f"{c['name']} sets no --admin-listen"
    return parse_host_port(value).port


def readme() -> str:
    return (DEPLOY / "README.md").read_text()


# -- structure


def test_every_manifest_parses_and_names_its_kind_and_namespace() -> None:
    docs = documents()
    assert {d["kind"] for d in docs} >= {"Namespace", "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"}
    for doc in docs:
        assert doc.get("apiVersion") and doc["metadata"].get("name"), doc
        if doc["kind"] in NAMESPACED:
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']} {doc['metadata']['name']}"
    assert find("Namespace", NAMESPACE)


def deployments() -> Iterator[dict[str, Any]]:
    return (d for d in documents() if d["kind"] == "Deployment")


def test_deployments_select_their_own_pods_and_services_select_a_deployment_s_named_ports() -> None:
    pods = {}
    for d in deployments():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert d["spec"]["selector"]["matchLabels"].items() <= labels.items(), d["metadata"]["name"]
        pods[d["metadata"]["name"]] = (labels, d["spec"]["template"]["spec"])
    for service in (d for d in documents() if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        matched = [spec for labels, spec in pods.values() if selector.items() <= labels.items()]
        assert len(matched) == 1, f"Service {service['metadata']['name']} selects {len(matched)} Deployments"
        named = {p["name"]: p["containerPort"] for c in running_containers(matched[0]) for p in c.get("ports", [])}
        for p in service["spec"]["ports"]:
            assert p["targetPort"] in named, f"Service port {p['name']} targets no container port"
            assert p["port"] == named[p["targetPort"]], (
                "Service and container ports differ; clients use the same number"
            )


def test_every_volume_source_exists_or_is_made_by_a_readme_command() -> None:
    made_by_readme = set(
        re.findall(r"kubectl -n meshwarden create (?:secret generic|configmap) ([a-z0-9-]+)", readme())
    )
    for d in deployments():
        spec = d["spec"]["template"]["spec"]
        names = {v["name"] for v in spec["volumes"]}
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            for m in c.get("volumeMounts", []):
                assert m["name"] in names, f"{c['name']} mounts {m['name']}, which the pod does not declare"
        for v in spec["volumes"]:
            if "configMap" in v:
                name = v["configMap"]["name"]
                assert name in made_by_readme or find("ConfigMap", name)
            if "secret" in v:
                assert v["secret"]["secretName"] in made_by_readme, (
                    f"README must say how to make {v['secret']['secretName']}"
                )
            if "persistentVolumeClaim" in v:
                find("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"])
        for c in running_containers(spec):
            for item in c.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                assert ref is None or ref["name"] in made_by_readme, f"README must say how to make {ref}"
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True


def test_probes_and_prometheus_use_the_admin_port() -> None:
    for deployment, name, component in (
        ("meshwarden-registry", "registry", "registry"),
        ("billing", "sidecar", "sidecar"),
    ):
        c = container(deployment, name)
        args = args_of(c, component)
        number = admin_port(c, args)
        assert port(c, "admin") == number
        assert (c["readinessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["port"]) == ("/readyz", "admin")
        assert (c["livenessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["port"]) == ("/healthz", "admin")
        annotations = find("Deployment", deployment)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(number) and annotations["prometheus.io/path"] == "/metrics"


# -- the registry


def test_registry_flags_and_config_load_and_agree_with_its_service_and_volume(tmp_path: Path) -> None:
    c = container("meshwarden-registry", "registry")
    args = args_of(c, "registry")
    assert (args.command, args.action) == ("registry", "serve")
    cfg = registry_config.load(args, container_env("meshwarden-registry", c, tmp_path))
    assert not cfg.open_enrollment_enabled, "beyond loopback, join tokens (or SPIRE) only"
    assert cfg.listen.port == port(c, "registry") and cfg.mtls_listen.port == port(c, "registry-mtls")
    service = find("Service", "meshwarden-registry")
    mtls_port = next(p["port"] for p in service["spec"]["ports"] if p["targetPort"] == "registry-mtls")
    assert cfg.mtls_advertise == f"meshwarden-registry.{NAMESPACE}.svc:{mtls_port}"
    data = mount_holding(c, cfg.data_dir)
    assert "persistentVolumeClaim" in volume("meshwarden-registry", data["name"])
    seed = next(i for i in pod_spec("meshwarden-registry")["initContainers"] if i["name"] == "seed-operator-token")
    assert str(cfg.data_dir / OPERATOR_TOKEN_FILE) in " ".join(seed["command"])
    assert find("Deployment", "meshwarden-registry")["spec"]["strategy"]["type"] == "Recreate"
    assert find("Deployment", "meshwarden-registry")["spec"]["replicas"] == 1, "SQLite: one writer"


# -- an agent pod: agent + sidecar


def sidecar_config_loaded(tmp_path: Path) -> tuple[dict[str, Any], sidecar_config.SidecarConfig]:
    c = container("billing", "sidecar")
    args = args_of(c, "sidecar")
    assert (args.command, args.action) == ("sidecar", "run")
    return c, sidecar_config.load(args, container_env("billing", c, tmp_path))


def test_sidecar_flags_config_and_environment_load(tmp_path: Path) -> None:
    c, cfg = sidecar_config_loaded(tmp_path)
    labels = find("Deployment", "billing")["spec"]["template"]["metadata"]["labels"]
    assert cfg.agent == labels["meshwarden.io/agent"] == pod_spec("billing")["serviceAccountName"]
    assert cfg.instance_id == DOWNWARD["POD_NAME"]
    assert cfg.peer_listen.port == port(c, "peer") and cfg.peer_advertise == f"{DOWNWARD['POD_IP']}:{port(c, 'peer')}"
    service = find("Service", "meshwarden-registry")
    ports = {p["targetPort"]: p["port"] for p in service["spec"]["ports"]}
    assert str(cfg.registry) == f"meshwarden-registry.{NAMESPACE}.svc:{ports['registry']}"
    assert cfg.registry_mtls == f"meshwarden-registry.{NAMESPACE}.svc:{ports['registry-mtls']}"
    registry_toml = tomllib.loads(find("ConfigMap", "meshwarden-registry-config")["data"]["registry.toml"])
    assert cfg.trust_domain == registry_toml["registry"]["trust_domain"]
    assert cfg.discovery == "consul" and cfg.consul is not None
    assert cfg.consul.base_url == f"http://{DOWNWARD['HOST_IP']}:8500" and cfg.consul.token.startswith("<secret ")


def test_agent_and_sidecar_share_the_socket_and_token_and_nothing_else(tmp_path: Path) -> None:
    side, cfg = sidecar_config_loaded(tmp_path)
    agent = container("billing", "agent")
    assert isinstance(cfg.listen, UnixSocket) and cfg.api_token_file is not None
    argv = agent["args"]
    assert argv[argv.index("--sidecar") + 1] == str(cfg.listen)
    assert parse_host_port(argv[argv.index("--listen") + 1]) == cfg.app
    for path in (cfg.listen.path, cfg.api_token_file):
        assert mount_holding(side, path)["name"] == mount_holding(agent, path)["name"]
    socket_volume = volume("billing", mount_holding(side, cfg.listen.path)["name"])
    assert "emptyDir" in socket_volume, "the socket stays inside the pod"
    agent_env = {e["name"]: e.get("value") for e in agent["env"]}
    assert agent_env["MESHWARDEN_SIDECAR_TOKEN_FILE"] == str(cfg.api_token_file)
    assert "secret" in volume("billing", mount_holding(side, cfg.api_token_file)["name"])
    agent_volumes = {m["name"] for m in agent["volumeMounts"]}
    assert not agent_volumes & {"spiffe-workload-api", "sidecar-state"}, (
        "the agent must not hold the sidecar's identity"
    )


def test_sidecar_paths_are_on_the_right_volumes(tmp_path: Path) -> None:
    c, cfg = sidecar_config_loaded(tmp_path)
    assert cfg.bundle_keys is not None
    keys = mount_holding(c, cfg.bundle_keys)
    assert "configMap" in volume("billing", keys["name"]) and keys.get("readOnly")
    state = mount_holding(c, cfg.data_dir)
    assert not state.get("readOnly")
    socket = cfg.spiffe_endpoint_socket.removeprefix("unix://")
    assert volume("billing", mount_holding(c, socket)["name"])["csi"]["driver"] == "csi.spiffe.io"


# -- SPIRE


def test_spire_entries_give_the_spiffe_id_and_dns_name_the_code_expects(tmp_path: Path) -> None:
    c, cfg = sidecar_config_loaded(tmp_path)
    td, agent = cfg.trust_domain, cfg.agent
    crd = yaml.safe_load((DEPLOY / "spire" / "cluster-spiffe-id.yaml").read_text())

    def render(template: str) -> str:
        return template.replace("{{ .TrustDomain }}", td).replace(
            '{{ index .PodMeta.Labels "meshwarden.io/agent" }}', agent
        )

    assert render(crd["spec"]["spiffeIDTemplate"]) == agent_id(td, agent)
    assert [render(t) for t in crd["spec"]["dnsNameTemplates"]] == [dns_name(agent_id(td, agent))]
    assert crd["spec"]["workloadSelectorTemplates"] == [f"k8s:container-name:{c['name']}"]
    assert crd["spec"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == NAMESPACE

    script = (DEPLOY / "spire" / "entries.sh").read_text()
    assert f"TRUST_DOMAIN=${{TRUST_DOMAIN:-{td}}}" in script
    symbolic = agent_id("$TRUST_DOMAIN", "$AGENT")
    assert f'-spiffeID "{symbolic}"' in script
    assert (
        f'-dns "{dns_name(agent_id("td.example", "name")).replace("name", "$AGENT").replace("td.example", "$TRUST_DOMAIN")}"'
        in script
    )
    assert "-selector k8s:container-name:sidecar" in script and f"-selector k8s:ns:{NAMESPACE}" in script
    assert re.search(rf'trust_domain = "{re.escape(td)}"', (DEPLOY / "spire" / "server-upstream.conf").read_text())


# -- Consul


def test_consul_service_example_is_what_the_sidecar_registers() -> None:
    service = json.loads((DEPLOY / "consul" / "billing.service.json").read_text())["service"]
    meta = service["meta"]
    assert MESH_TAG in service["tags"]
    assert len(meta) <= MAX_META_KEYS and all(META_KEY.fullmatch(k) for k in meta)
    assert all(len(v) <= MAX_META_VALUE_LENGTH for v in meta.values())
    entry = ServiceEntry(
        service["id"], service["name"], service["address"], service["port"], tuple(service["tags"]), meta
    )
    with pytest.raises(ValueError, match="no valid schema document"):
        instance_from_entry(entry, "meshwarden.local", {})  # well-formed; only the KV documents are missing
    assert meta[META_SPIFFE_ID] == agent_id("meshwarden.local", service["name"])
    assert decode_capabilities(meta)
    assert meta["meshwarden-peer-address"] == f"{service['address']}:{service['port']}"
    (check,) = service["checks"]
    assert check["id"] == check_id(service["id"]) and check["ttl"].endswith("s")
    assert float(check["deregister_critical_service_after"].removesuffix("s")) >= 60

    policy = (DEPLOY / "consul" / "sidecar-policy.hcl").read_text()
    assert f'service "{service["name"]}" {{\n  policy = "write"' in policy
    assert f'key_prefix "{SCHEMA_KEY_PREFIX}" {{\n  policy = "write"' in policy


# -- OpenTelemetry Collector


def test_collector_pipelines_use_defined_parts_and_the_port_the_manifests_send_to() -> None:
    collector = yaml.safe_load((DEPLOY / "otel" / "collector.yaml").read_text())
    for name, pipeline in collector["service"]["pipelines"].items():
        for part in ("receivers", "processors", "exporters"):
            missing = set(pipeline.get(part, [])) - set(collector[part])
            assert not missing, f"pipeline {name} uses undefined {part} {missing}"
    grpc_port = parse_host_port(collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]).port
    endpoints = {
        e["value"]
        for d in deployments()
        for c in running_containers(d["spec"]["template"]["spec"])
        for e in c.get("env", [])
        if e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT"
    }
    assert endpoints == {f"http://otel-collector.{NAMESPACE}.svc:{grpc_port}"}


def test_readme_explains_every_file_in_deploy() -> None:
    text = readme()
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.name != "README.md"):
        assert str(path.relative_to(DEPLOY)) in text, f"deploy/README.md does not mention {path.relative_to(DEPLOY)}"


# -- native sidecars, network policies, the collector


def agent_deployments() -> list[dict[str, Any]]:
    return [d for d in deployments() if "meshwarden.io/agent" in d["spec"]["template"]["metadata"]["labels"]]


def test_each_sidecar_is_a_native_sidecar_that_starts_before_its_agent() -> None:
    assert agent_deployments()
    for d in agent_deployments():
        spec = d["spec"]["template"]["spec"]
        sidecars = [c for c in spec.get("initContainers", []) if c["name"] == "sidecar"]
        assert len(sidecars) == 1 and sidecars[0].get("restartPolicy") == "Always", d["metadata"]["name"]
        assert sidecars[0]["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
        assert "sidecar" not in {c["name"] for c in spec["containers"]}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "Exists", "the evaluator below knows only Exists"
        if expression["key"] not in labels:
            return False
    return True


def _admitted(source: dict[str, str], target: dict[str, str], port: int) -> bool:
    """NetworkPolicy ingress semantics for pods of one namespace: a pod no policy selects takes
    everything; a selected pod takes what at least one rule of a selecting policy allows."""
    policies = [d for d in documents() if d["kind"] == "NetworkPolicy" and _selects(d["spec"]["podSelector"], target)]
    if not policies:
        return True
    return any(
        any(_selects(peer["podSelector"], source) for peer in rule["from"])
        and any(p["port"] == port for p in rule["ports"])
        for policy in policies
        for rule in policy["spec"].get("ingress", [])
    )


def test_network_policies_open_the_mesh_ports_to_agents_and_admin_ports_to_the_collector_only() -> None:
    agent = find("Deployment", "billing")["spec"]["template"]["metadata"]["labels"]
    registry = find("Deployment", "meshwarden-registry")["spec"]["template"]["metadata"]["labels"]
    collector = find("Deployment", "otel-collector")["spec"]["template"]["metadata"]["labels"]
    peer, sidecar_admin = port(container("billing", "sidecar"), "peer"), port(container("billing", "sidecar"), "admin")
    registry_c = container("meshwarden-registry", "registry")
    tls, mtls, registry_admin = (port(registry_c, n) for n in ("registry", "registry-mtls", "admin"))
    assert _admitted(agent, agent, peer)
    assert _admitted(agent, registry, tls) and _admitted(agent, registry, mtls)
    assert _admitted(collector, agent, sidecar_admin) and _admitted(collector, registry, registry_admin)
    assert not _admitted(agent, agent, sidecar_admin), "agents must not read each other's admin ports"
    assert not _admitted(agent, registry, registry_admin)
    assert not _admitted({"app": "something-else"}, agent, peer)
    assert not _admitted(collector, registry, mtls)


def test_collector_manifest_runs_deploy_otel_collector_yaml_verbatim() -> None:
    config = find("ConfigMap", "otel-collector-config")["data"]["collector.yaml"]
    assert config == (DEPLOY / "otel" / "collector.yaml").read_text(), (
        "regenerate the ConfigMap from otel/collector.yaml"
    )
    service_ports = {p["port"] for p in find("Service", "otel-collector")["spec"]["ports"]}
    collector = yaml.safe_load(config)
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert {parse_host_port(p["endpoint"]).port for p in protocols.values()} == service_ports


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_collector_config_escapes_every_literal_dollar() -> None:
    """The collector expands `$VAR` and `${env:VAR}` in its configuration, so a literal `$` (a
    relabelling replacement such as `$1:$2`) must be written `$$`."""
    collector = yaml.safe_load((DEPLOY / "otel" / "collector.yaml").read_text())
    for text in _strings(collector):
        bare = re.sub(r"\$\$|\$\{env:[A-Za-z_][A-Za-z0-9_]*\}", "", text)
        assert "$" not in bare, f"unescaped $ in the collector configuration: {text!r}"


# -- the registry as replicas on PostgreSQL (deploy/kubernetes/postgresql)

PG = K8S / "postgresql"


def replica_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(PG.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None)
    return docs


def replica_find(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in replica_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name} in deploy/kubernetes/postgresql, found {len(matches)}"
    return matches[0]


def _secret_env(c: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's environment with each secretKeyRef resolved from `secrets` (name -> key -> value)."""
    env = {}
    for item in c.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
        elif "value" in item:
            env[item["name"]] = item["value"]
    return env


def test_replicas_run_three_on_the_cloudnativepg_cluster_s_primary(tmp_path: Path) -> None:
    cluster = replica_find("Cluster", "meshwarden-pg")
    assert cluster["apiVersion"].startswith("postgresql.cnpg.io/") and cluster["spec"]["instances"] >= 3
    database = cluster["spec"]["bootstrap"]["initdb"]["database"]
    # What CloudNativePG puts in <cluster>-app: the URI of the primary's read-write Service.
    app_uri = f"postgresql://meshwarden:secret@meshwarden-pg-rw.{NAMESPACE}:5432/{database}"
    secrets = {"meshwarden-pg-app": {"uri": app_uri}}
    deployment = replica_find("Deployment", "meshwarden-registry")
    assert deployment["spec"]["replicas"] == 3 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    spec = deployment["spec"]["template"]["spec"]
    (registry,) = [c for c in spec["containers"] if c["name"] == "registry"]
    env = _secret_env(registry, secrets)
    env["MESHWARDEN_REGISTRY_CONFIG"] = str(tmp_path / "registry.toml")
    (tmp_path / "registry.toml").write_text(
        replica_find("ConfigMap", "meshwarden-registry-config")["data"]["registry.toml"]
    )
    args = args_of(registry, "registry")
    cfg = registry_config.load(args, env)
    assert cfg.store == app_uri, "the replicas must share the cluster's database"
    # The migration runs first, on the same database, through the real CLI.
    (migrate,) = [c for c in spec["initContainers"] if c["name"] == "migrate"]
    migrate_args = build_parser().parse_args(migrate["args"])
    assert (migrate_args.command, migrate_args.action) == ("registry", "migrate")
    assert _secret_env(migrate, secrets)["MESHWARDEN_STORE"] == app_uri
    # Each pod's data dir is its own (the shared files come from the database).
    data = mounts(registry)[str(cfg.data_dir)]
    assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == data["name"])


def test_replicas_keep_two_serving_and_are_the_service_sidecars_use() -> None:
    budget = replica_find("PodDisruptionBudget", "meshwarden-registry")
    labels = replica_find("Deployment", "meshwarden-registry")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["minAvailable"] == 2
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = replica_find("Service", "meshwarden-registry")
    assert service["spec"]["ports"] == find("Service", "meshwarden-registry")["spec"]["ports"]
    assert service["spec"]["selector"].items() <= labels.items()
    policy = replica_find("NetworkPolicy", "meshwarden-pg-from-registry")
    allowed = [p["podSelector"]["matchLabels"] for p in policy["spec"]["ingress"][0]["from"]]
    assert {"app.kubernetes.io/name": "meshwarden-registry"} in allowed
