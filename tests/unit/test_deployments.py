"""The deployment files (KubeRay RayService, Prometheus, Grafana, Dockerfile) are valid and in step with the code.

Needs neither a Ray cluster nor Kubernetes: the RayService is checked against KubeRay's own CRD schema (from
`../shared`, skipped when absent), the Serve config against Ray's Serve schema, the dashboard's queries against the
series `serve_app.metrics` exports.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
import types
import typing
from pathlib import Path, PurePosixPath

import jsonschema
import pydantic
import pytest
import ray
import yaml
from ray.serve.schema import ServeDeploySchema

from serve_app.config import ServiceArgs
from serve_app.metrics import METRICS, PREFIX, exported_series

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO.parent / "shared" / "kuberay" / "ray.io_rayservices.yaml"
RAYSERVICE_PATH = REPO / "deployments" / "kuberay" / "rayservice.yaml"
PODMONITOR_PATH = REPO / "deployments" / "prometheus" / "podmonitor.yaml"
PROMETHEUS_PATH = REPO / "deployments" / "prometheus" / "prometheus.yml"
DASHBOARD_PATH = REPO / "deployments" / "grafana" / "evalscope-serve.json"
DOCKERFILE_PATH = REPO / "Dockerfile"
SERVE_CONFIG_PATH = REPO / "configs" / "serve.yaml"

# The only args serveConfigV2 may change from configs/serve.yaml: they point at the mounted volume, or at the
# samples the image ships.
VOLUME_ARGS = {"outputs_root", "datasets_root"}
PATH_ARGS = VOLUME_ARGS | {"samples_root"}
# ... and the most CPUs the autoscaled cluster can have (locally: the cluster's own CPUs).
CLUSTER_ARGS = PATH_ARGS | {"max_cluster_cpus"}
KUBERAY_SERVE_PORT = 8000  # KubeRay's serve Service targets the container port named `serve`, 8000 by default.


# ---------------------------------------------------------------------------------------------------------------
# Loading


def _load_all(path: Path) -> list[dict]:
    # PyYAML reads YAML 1.1 like the Kubernetes API's YAML decoder does (`yes` is a boolean in both).
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _one(docs: list[dict], kind: str) -> dict:
    found = [doc for doc in docs if doc.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return _load_all(RAYSERVICE_PATH)


@pytest.fixture(scope="module")
def rayservice(manifests) -> dict:
    return _one(manifests, "RayService")


@pytest.fixture(scope="module")
def serve_config_v2(rayservice) -> dict:
    raw = rayservice["spec"]["serveConfigV2"]
    assert isinstance(raw, str), "serveConfigV2 is a YAML string in the CRD"
    return yaml.safe_load(raw)


@pytest.fixture(scope="module")
def local_serve_config() -> dict:
    return yaml.safe_load(SERVE_CONFIG_PATH.read_text())


def _groups(rayservice: dict) -> list[tuple[str, dict]]:
    """(node type, group spec) for the head group and every worker group."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    return [("head", cluster["headGroupSpec"])] + [("worker", g) for g in cluster.get("workerGroupSpecs", [])]


def _ray_container(group: dict) -> dict:
    # KubeRay runs Ray in the Pod template's first container.
    return group["template"]["spec"]["containers"][0]


def _ports(container: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}


# ---------------------------------------------------------------------------------------------------------------
# The CRD's OpenAPI v3 schema as a JSON Schema that means what the Kubernetes API server enforces


def _open_dict_or_models(annotation) -> tuple[list[type[pydantic.BaseModel]], bool]:
    """The pydantic models an annotation accepts, and whether it also accepts a free-form dict."""
    models, free_dict = [], False
    stack = [annotation]
    while stack:
        tp = stack.pop()
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
            models.append(tp)
        elif tp is dict or origin is dict:
            free_dict = True
        elif origin is typing.Annotated:
            stack.append(typing.get_args(tp)[0])
        elif origin in (typing.Union, types.UnionType, list):
            stack.extend(typing.get_args(tp))
    return models, free_dict


def unknown_keys(data: dict, model: type[pydantic.BaseModel], path: str = "") -> list[str]:
    """Keys of `data` that `model` (recursively) has no field for. Ray's Serve schemas ignore those silently."""
    by_name = {}
    for name, field in model.model_fields.items():
        by_name[name] = field
        if field.alias:
            by_name[field.alias] = field
    unknown = []
    for key, value in data.items():
        field = by_name.get(key)
        if field is None:
            unknown.append(path + key)
            continue
        models, free_dict = _open_dict_or_models(field.annotation)
        if not models or free_dict:
            continue
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, dict):
                where = f"{path}{key}[{i}]." if isinstance(value, list) else f"{path}{key}."
                unknown.extend(min((unknown_keys(item, m, where) for m in models), key=len))
    return unknown


def kube_json_schema(node: dict) -> dict:
    """A structural schema of a CRD turned into the JSON Schema the API server effectively applies.

    - An object with `properties` and neither `additionalProperties` nor `x-kubernetes-preserve-unknown-fields`
      gets `additionalProperties: false`: the API server prunes unknown fields, and `kubectl apply` (strict
      field validation, its default) rejects them, so a misspelt field must fail here too, not vanish.
    - `nullable: true` also allows null; `x-kubernetes-int-or-string` is integer or string (the CRD already spells
      that as anyOf; added where missing).
    - `format` stays: int32/int64 are checked by the format checker below, unknown formats are ignored as the
      API server ignores them. `x-kubernetes-list-type` is checked by the validator below.
    """
    out = dict(node)
    if "properties" in node:
        out["properties"] = {name: kube_json_schema(sub) for name, sub in node["properties"].items()}
        if "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = kube_json_schema(node["additionalProperties"])
    if isinstance(node.get("items"), dict):
        out["items"] = kube_json_schema(node["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            out[key] = [kube_json_schema(sub) for sub in node[key]]
    if isinstance(node.get("not"), dict):
        out["not"] = kube_json_schema(node["not"])
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
    return out


def _list_type(validator, list_type, instance, schema):
    """x-kubernetes-list-type: `set` items are unique; `map` items are unique by their list-map-keys."""
    if not validator.is_type(instance, "array"):
        return
    if list_type == "set":
        keys = [json.dumps(item, sort_keys=True) for item in instance]
    elif list_type == "map":
        names = schema.get("x-kubernetes-list-map-keys", [])
        defaults = {n: p.get("default") for n, p in schema.get("items", {}).get("properties", {}).items()}
        keys = [json.dumps([item.get(n, defaults.get(n)) for n in names]) if isinstance(item, dict) else None
                for item in instance]
    else:
        return
    seen = set()
    for i, key in enumerate(keys):
        if key in seen:
            yield jsonschema.ValidationError(f"item {i} duplicates {key} (x-kubernetes-list-type={list_type})")
        seen.add(key)


_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("int32")
def _int32(value) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@_FORMATS.checks("int64")
def _int64(value) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


KubeValidator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"x-kubernetes-list-type": _list_type})


def _cel_paths(node: dict, path: tuple = ()) -> list[tuple]:
    """Where the schema carries x-kubernetes-validations (CEL rules, which jsonschema cannot evaluate)."""
    found = [path] if "x-kubernetes-validations" in node else []
    for name, sub in node.get("properties", {}).items():
        found += _cel_paths(sub, path + (name,))
    if isinstance(node.get("items"), dict):
        found += _cel_paths(node["items"], path + ("*",))
    if isinstance(node.get("additionalProperties"), dict):
        found += _cel_paths(node["additionalProperties"], path + ("*",))
    return found


def _has_path(instance, path: tuple) -> bool:
    if not path:
        return True
    head, rest = path[0], path[1:]
    if head == "*":
        if isinstance(instance, dict):
            instance = list(instance.values())
        values = instance if isinstance(instance, list) else []
        return any(_has_path(v, rest) for v in values)
    return isinstance(instance, dict) and head in instance and _has_path(instance[head], rest)


@pytest.fixture(scope="module")
def crd_v1_schema() -> dict:
    if not CRD_PATH.is_file():
        pytest.skip(f"KubeRay's RayService CRD is not at {CRD_PATH} (the workspace's shared/ folder beside the repo)")
    # 1 MB of YAML: libyaml's loader (in PyYAML's wheels) reads it in a quarter of the pure-Python one's time.
    crd = yaml.load(CRD_PATH.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["names"]["kind"] == "RayService"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


@pytest.fixture(scope="module")
def kube_validator(crd_v1_schema):
    schema = kube_json_schema(crd_v1_schema)
    KubeValidator.check_schema(schema)
    return KubeValidator(schema, format_checker=_FORMATS)


def _errors(validator, instance) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(instance)]


# ---------------------------------------------------------------------------------------------------------------
# RayService against KubeRay's CRD


def test_rayservice_validates_against_the_kuberay_crd(kube_validator, rayservice):
    assert rayservice["apiVersion"] == "ray.io/v1"
    assert rayservice["metadata"]["name"]
    assert _errors(kube_validator, rayservice) == []


def test_rayservice_sets_no_field_guarded_by_a_cel_rule(crd_v1_schema, rayservice):
    # CEL rules (x-kubernetes-validations) are not evaluated here, so the manifest must not depend on one.
    paths = _cel_paths(crd_v1_schema)
    assert paths, "the CRD has CEL rules; if it no longer does, drop this test"
    assert [".".join(p) for p in paths if _has_path(rayservice, p)] == []


def _mutated(rayservice: dict, change) -> dict:
    doc = copy.deepcopy(rayservice)
    change(doc)
    return doc


def _head_group(doc: dict) -> dict:
    return doc["spec"]["rayClusterConfig"]["headGroupSpec"]


def _head_container(doc: dict) -> dict:
    return _ray_container(_head_group(doc))


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d["spec"].update(serveConfigV3="x"), "Additional properties"),
        (lambda d: _head_container(d).update(imagePullPolicyy="Always"), "Additional properties"),
        (lambda d: _head_group(d)["rayStartParams"].update(port=6379), "is not of type 'string'"),
        (lambda d: _head_container(d)["ports"].append({"name": "dup", "containerPort": 8000}), "duplicates"),
        (lambda d: _head_container(d)["resources"]["limits"].update(cpu="two"), "does not match"),
        (lambda d: _head_container(d)["readinessProbe"].update(periodSeconds=2**31), "is not a 'int32'"),
        (lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].pop("maxReplicas"), "is a required property"),
        (lambda d: d["spec"]["rayClusterConfig"].update(rayVersion=2.6), "is not of type 'string'"),
    ],
    ids=["unknown-spec-field", "misspelt-container-field", "int-ray-start-param", "duplicate-container-port",
         "bad-quantity", "int32-overflow", "missing-max-replicas", "numeric-ray-version"],
)
def test_the_crd_schema_catches_mistakes(kube_validator, rayservice, change, expected):
    # The schema conversion must not weaken the CRD: each of these mistakes is rejected.
    errors = _errors(kube_validator, _mutated(rayservice, change))
    assert any(expected in e for e in errors), errors


def test_the_crd_schema_accepts_int_or_string_quantities(kube_validator, rayservice):
    doc = _mutated(rayservice, lambda d: _head_container(d)["resources"]["requests"].update(cpu=2, memory="8Gi"))
    assert _errors(kube_validator, doc) == []


# ---------------------------------------------------------------------------------------------------------------
# RayService: the cluster


def test_rayservice_runs_this_ray_version_and_image(rayservice):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert rayservice["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__
    for _, group in _groups(rayservice):
        for container in group["template"]["spec"]["containers"]:
            # The image built from the Dockerfile, at this version; a registry prefix is up to the deployer.
            image = f"{project['name']}:{project['version']}"
            assert re.fullmatch(rf"([^\s/]+/)*{re.escape(image)}", container["image"]), container["image"]


def test_rayservice_head_and_workers(rayservice):
    cluster = rayservice["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert _ports(_ray_container(head)) == {
        "gcs-server": 6379, "dashboard": 8265, "client": 10001, "serve": KUBERAY_SERVE_PORT, "metrics": 8080}

    (workers,) = cluster["workerGroupSpecs"]
    assert (workers["minReplicas"], workers["maxReplicas"]) == (1, 4)
    assert workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
    assert cluster["enableInTreeAutoscaling"] is True  # otherwise min/max are not a range
    assert {"serve": KUBERAY_SERVE_PORT, "metrics": 8080}.items() <= _ports(_ray_container(workers)).items()

    for _, group in _groups(rayservice):
        container = _ray_container(group)
        assert group["rayStartParams"]["metrics-export-port"] == str(_ports(container)["metrics"])
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= container["resources"][kind].keys()


def test_rayservice_probes(rayservice):
    for node_type, group in _groups(rayservice):
        container = _ray_container(group)
        for probe in ("readinessProbe", "livenessProbe"):
            port = container[probe]["httpGet"]["port"]
            # A named port must be one the container declares, or the probe never connects.
            assert isinstance(port, int) or port in _ports(container), (node_type, probe, port)
        readiness = container["readinessProbe"]["httpGet"]
        if node_type == "worker":
            # Serve readiness as KubeRay does it for RayService workers: the node's Serve proxy.
            assert readiness["path"] == "/-/healthz"
            assert _ports(container).get(readiness["port"], readiness["port"]) == KUBERAY_SERVE_PORT
        else:
            # KubeRay deploys Serve only after the head is ready: a head gated on Serve would never be ready.
            assert readiness["path"] != "/-/healthz"
        # Liveness never depends on Serve: a worker without a replica has no proxy and must not be restarted.
        assert container["livenessProbe"]["httpGet"]["path"] != "/-/healthz"


def test_rayservice_runs_as_non_root(rayservice):
    for node_type, group in _groups(rayservice):
        pod = group["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, node_type
        assert pod["securityContext"]["runAsUser"] == 1000, node_type
        for container in pod["containers"]:
            ctx = container.get("securityContext", {})
            assert ctx.get("runAsUser", 1000) != 0 and not ctx.get("privileged", False)
            assert ctx.get("allowPrivilegeEscalation") is False


def test_rayservice_mounts_a_persistent_volume_everywhere(manifests, rayservice):
    claims = {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == "PersistentVolumeClaim"}
    for node_type, group in _groups(rayservice):
        pod = group["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        (mount,) = [m for m in _ray_container(group)["volumeMounts"] if m["mountPath"] == "/data"]
        claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
        assert claim in claims, f"{node_type}: claim {claim} is not defined in {RAYSERVICE_PATH.name}"
    for claim in claims.values():
        assert claim["apiVersion"] == "v1"
        # Eval tasks and perf shards write from any node: every Ray Pod mounts the claim at once.
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        assert claim["spec"]["resources"]["requests"]["storage"]


# ---------------------------------------------------------------------------------------------------------------
# RayService: serveConfigV2 is configs/serve.yaml


def _without_cluster_args(applications: list[dict]) -> list[dict]:
    apps = copy.deepcopy(applications)
    for app in apps:
        for key in CLUSTER_ARGS:
            app.get("args", {}).pop(key, None)
    return apps


def test_serve_config_v2_is_the_local_serve_config(serve_config_v2, local_serve_config):
    kube_apps, local_apps = serve_config_v2["applications"], local_serve_config["applications"]
    assert _without_cluster_args(kube_apps) == _without_cluster_args(local_apps)
    assert serve_config_v2.get("proxy_location") == local_serve_config.get("proxy_location")
    local_http = dict(local_serve_config.get("http_options", {}), port=KUBERAY_SERVE_PORT)
    assert serve_config_v2.get("http_options") == local_http
    assert set(serve_config_v2) <= {"applications", "proxy_location", "http_options"}


def _cpus(quantity: str) -> float:
    """A Kubernetes CPU quantity ("4", "500m") in CPUs."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_max_cluster_cpus_is_what_the_autoscaled_workers_can_grow_to(serve_config_v2, rayservice):
    # Ray gives a Pod the CPUs of its container's limit unless rayStartParams sets num-cpus (the head's "0").
    grown = sum(
        group.get("maxReplicas", group.get("replicas", 1)) * float(
            group.get("rayStartParams", {}).get("num-cpus", _cpus(_ray_container(group)["resources"]["limits"]["cpu"]))
        )
        for _, group in _groups(rayservice)
    )
    for app in serve_config_v2["applications"]:
        assert app["args"]["max_cluster_cpus"] == grown


def test_serve_config_v2_writes_to_the_mounted_volume(serve_config_v2, rayservice):
    mounts_per_group = [
        [PurePosixPath(m["mountPath"]) for m in _ray_container(group).get("volumeMounts", [])]
        for _, group in _groups(rayservice)
    ]
    for app in serve_config_v2["applications"]:
        for key in VOLUME_ARGS:
            path = PurePosixPath(app["args"][key])
            assert path.is_absolute(), f"{key}: a relative path depends on each Ray worker's directory"
            for mounts in mounts_per_group:
                assert any(path == m or m in path.parents for m in mounts), f"{key}={path} is not on a mounted volume"


def test_serve_config_v2_reads_samples_where_the_image_puts_them(serve_config_v2):
    workdir = next(line.split()[1] for line in DOCKERFILE_PATH.read_text().splitlines() if line.startswith("WORKDIR"))
    copied = [line.split()[-1] for line in DOCKERFILE_PATH.read_text().splitlines() if line.startswith("COPY")]
    assert "./examples/" in copied
    for app in serve_config_v2["applications"]:
        assert PurePosixPath(app["args"]["samples_root"]) == PurePosixPath(workdir) / "examples" / "datasets"


@pytest.mark.parametrize("source", ["configs/serve.yaml", "serveConfigV2"])
def test_serve_configs_validate_with_rays_serve_schema(source, serve_config_v2, local_serve_config):
    config = local_serve_config if source == "configs/serve.yaml" else serve_config_v2
    schema = ServeDeploySchema.model_validate(config)
    assert [app.name for app in schema.applications] == ["evalscope"]
    # Ray ignores keys it does not know (forward compatibility), so look for them ourselves.
    assert unknown_keys(config, ServeDeploySchema) == []
    for app in config["applications"]:
        ServiceArgs.model_validate(app["args"])


def test_rays_serve_schema_ignores_unknown_keys_which_our_check_catches(local_serve_config):
    config = copy.deepcopy(local_serve_config)
    config["bogus_top"] = 1
    config["http_options"]["bogus_http"] = 1
    app = config["applications"][0]
    app["bogus_app"] = 1
    app["deployments"][0]["bogus_deployment"] = 1
    app["deployments"][0]["ray_actor_options"]["bogus_actor"] = 1
    # Ray 2.60's ServeDeploySchema (and the schemas under it) accept these without a word...
    ServeDeploySchema.model_validate(config)
    # ...so this test's own walk over the schema's fields is what rejects them.
    assert sorted(unknown_keys(config, ServeDeploySchema)) == sorted([
        "bogus_top",
        "http_options.bogus_http",
        "applications[0].bogus_app",
        "applications[0].deployments[0].bogus_deployment",
        "applications[0].deployments[0].ray_actor_options.bogus_actor",
    ])


def test_rays_serve_schema_rejects_invalid_values(local_serve_config):
    config = copy.deepcopy(local_serve_config)
    config["applications"][0]["deployments"][0]["num_replicas"] = 0
    with pytest.raises(pydantic.ValidationError):
        ServeDeploySchema.model_validate(config)


def test_service_args_reject_a_misspelt_arg(local_serve_config):
    args = dict(local_serve_config["applications"][0]["args"], outputs_rot="/data/outputs")
    with pytest.raises(pydantic.ValidationError, match="outputs_rot"):
        ServiceArgs.model_validate(args)


# ---------------------------------------------------------------------------------------------------------------
# Prometheus


def _pod_labels(rayservice: dict, node_type: str, group: dict) -> dict[str, str]:
    """The labels KubeRay gives a Ray Pod: the template's own, then its own where the template has none."""
    labels = dict(group["template"].get("metadata", {}).get("labels", {}))
    for key, value in {
        "ray.io/node-type": node_type,
        "ray.io/group": group.get("groupName", "headgroup"),
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": f"{rayservice['metadata']['name']}-raycluster-xxxxx",  # generated, changes on upgrade
    }.items():
        labels.setdefault(key, value)
    return labels


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {"In": labels.get(key) in values, "NotIn": key not in labels or labels[key] not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def test_podmonitor_scrapes_every_ray_pod_on_the_metrics_port(rayservice):
    monitor = _one(_load_all(PODMONITOR_PATH), "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]
    assert selector.get("matchLabels") or selector.get("matchExpressions"), "an empty selector picks every Pod"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    for node_type, group in _groups(rayservice):
        assert _selects(selector, _pod_labels(rayservice, node_type, group)), f"{node_type} Pods are not selected"
        ports = _ports(_ray_container(group))
        assert endpoint["port"] in ports, f"{node_type} containers declare no port named {endpoint['port']}"
        assert str(ports[endpoint["port"]]) == group["rayStartParams"]["metrics-export-port"]
    assert not _selects(selector, {"app": "something-else", "ray.io/node-type": "head"})


def test_prometheus_config_scrapes_rays_metrics_port(rayservice):
    config = yaml.safe_load(PROMETHEUS_PATH.read_text())
    assert config["global"]["scrape_interval"] == "5s"
    jobs = config["scrape_configs"]
    assert jobs and all(job.get("job_name") for job in jobs)
    targets = [t for job in jobs for static in job.get("static_configs", []) for t in static["targets"]]
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert f"127.0.0.1:{head['rayStartParams']['metrics-export-port']}" in targets
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in jobs)
    assert "--metrics-export-port=8080" in PROMETHEUS_PATH.read_text()


# ---------------------------------------------------------------------------------------------------------------
# Grafana


PROMQL_WORDS = {
    # aggregations, functions and keywords the dashboard may use
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "stddev", "stdvar", "group",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes", "histogram_quantile",
    "clamp", "clamp_min", "clamp_max", "abs", "ceil", "floor", "round", "sqrt", "vector", "scalar", "time",
    "absent", "label_replace", "sort", "sort_desc", "avg_over_time", "max_over_time", "min_over_time",
    "sum_over_time", "count_over_time", "last_over_time", "quantile_over_time",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
}
GRAFANA_BUILTINS = {"__range", "__rate_interval", "__interval", "__range_s", "__interval_ms"}
SERIES_RE = re.compile(r"\bray_evalscope_serve_\w+")


def _series_to_metric() -> dict[str, str]:
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    return {f"ray_{PREFIX}{name}{s}": name for name, (kind, _) in METRICS.items() for s in suffixes[kind]}


def _strip_promql(expr: str) -> str:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)  # label lists
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    return re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables


def _dashboard() -> dict:
    return json.loads(DASHBOARD_PATH.read_text())


def _all_panels(panels: list[dict]) -> list[dict]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(_all_panels(panel.get("panels", [])))
    return out


def _exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every panel target."""
    panels = _all_panels(dashboard["panels"])
    return [(f"panel {p.get('title')!r}", t["expr"]) for p in panels for t in p.get("targets", [])]


def _variable_queries(dashboard: dict) -> dict[str, str]:
    return {v["name"]: v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            for v in dashboard["templating"]["list"] if v["type"] == "query"}


def test_dashboard_has_what_grafana_import_needs():
    dashboard = _dashboard()
    assert dashboard["title"] and dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int) and 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["panels"] and isinstance(dashboard["templating"]["list"], list)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["type"] == "query"
    assert _variable_queries(dashboard)["model"] == "label_values(ray_evalscope_serve_perf_requests_total, model)"
    panels = _all_panels(dashboard["panels"])
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
        for source in [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]:
            # The data source variable, so the import works against any Prometheus.
            assert source == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_dashboard_queries_use_only_exported_series():
    exported = exported_series()
    series_to_metric = _series_to_metric()
    assert set(series_to_metric) == exported
    variables = {v["name"] for v in _dashboard()["templating"]["list"]} | GRAFANA_BUILTINS
    for where, expr in _exprs(_dashboard()):
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), where
        assert expr.count("[") == expr.count("]"), where
        named = set(SERIES_RE.findall(expr))
        assert named, f"{where}: names no ray_evalscope_serve_ series"
        assert named <= exported, f"{where}: {sorted(named - exported)} are not exported"
        # Nothing else than those series, PromQL's words and numbers.
        others = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", _strip_promql(expr))) - PROMQL_WORDS - exported
        assert not others, f"{where}: unexpected names {sorted(others)}"
        # Labels used exist on the metrics used.
        labels = {"le"} | {label for s in named for label in METRICS[series_to_metric[s]][1]}
        grouped = {label.strip() for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
                   for label in group.split(",") if label.strip()}
        assert grouped <= labels, f"{where}: groups by {sorted(grouped - labels)}"
        for series, matchers in re.findall(r"\b(ray_evalscope_serve_\w+)\{([^}]*)\}", expr):
            used = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
            assert used <= set(METRICS[series_to_metric[series]][1]), f"{where}: {series} has no label {used}"
        for var in re.findall(r"\$\{?(\w+)\}?", expr):
            assert var in variables, f"{where}: ${var} is not a dashboard variable"
        for func in re.findall(r"\b([a-z_]+)\s*\(", _strip_promql(expr)):
            assert func in PROMQL_WORDS, f"{where}: unknown function {func}"


def test_dashboard_variables_query_exported_series_and_labels():
    series_to_metric = _series_to_metric()
    for name, query in _variable_queries(_dashboard()).items():
        # Grafana's label_values(<series selector>, <label>), not PromQL.
        match = re.fullmatch(r"label_values\((ray_evalscope_serve_\w+)(?:\{[^}]*\})?\s*,\s*(\w+)\)", query)
        assert match, f"variable {name}: {query}"
        series, label = match.groups()
        assert series in series_to_metric, f"variable {name}: {series} is not exported"
        assert label in METRICS[series_to_metric[series]][1], f"variable {name}: {series} has no label {label}"


def test_dashboard_uses_every_metric():
    series_to_metric = _series_to_metric()
    used = {series_to_metric[s] for p in _all_panels(_dashboard()["panels"]) for t in p.get("targets", [])
            for s in SERIES_RE.findall(t["expr"])}
    assert used == set(METRICS), f"no panel shows {sorted(set(METRICS) - used)}"


def test_dashboard_panels_the_brief_asks_for():
    exprs = [t["expr"] for p in _all_panels(_dashboard()["panels"]) for t in p.get("targets", [])]
    for name in ("ttft", "itl", "latency"):
        for q in ("0.5", "0.9", "0.99"):
            wanted = f"histogram_quantile({q}, sum by (le) (rate(ray_evalscope_serve_perf_{name}_seconds_bucket"
            assert any(e.startswith(wanted) for e in exprs), wanted
    assert any("histogram_quantile(0.9" in e and "job_duration_seconds_bucket" in e for e in exprs)
    assert any("sum by (outcome) (rate(ray_evalscope_serve_perf_requests_total" in e for e in exprs)
    assert any("sum by (kind, status) (increase(ray_evalscope_serve_jobs_finished_total" in e for e in exprs)
    assert any("by (model, dataset)" in e and "ray_evalscope_serve_eval_score" in e for e in exprs)


# ---------------------------------------------------------------------------------------------------------------
# Dockerfile


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    assert not current, "dangling line continuation"
    return [(ins.split(None, 1)[0].upper(), ins.split(None, 1)[1] if " " in ins else "") for ins in logical]


def test_dockerfile_builds_on_the_matching_ray_image():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    python = re.search(r">=\s*3\.(\d+)", project["requires-python"]).group(1)
    froms = [args for ins, args in _instructions(DOCKERFILE_PATH) if ins == "FROM"]
    assert froms == [f"rayproject/ray:{ray.__version__}-py3{python}"]
    assert f'org.opencontainers.image.version="{project["version"]}"' in DOCKERFILE_PATH.read_text()
    assert f"ray[serve]=={ray.__version__}" in project["dependencies"]


def test_dockerfile_installs_the_project_not_editable():
    instructions = _instructions(DOCKERFILE_PATH)
    runs = [args for ins, args in instructions if ins == "RUN"]
    installs = [r for r in runs if re.search(r"\bpip install\b", r)]
    assert installs, "no pip install"
    for run in installs:
        assert not re.search(r"(^|\s)(-e|--editable)(\s|$)", run), run
    assert any(re.search(r"\bpip install\b[^&;|]*\s\.(\s|$|&|;)", r) for r in installs), "does not install `.`"
    copied = " ".join(args for ins, args in instructions if ins == "COPY")
    for needed in ("pyproject.toml", "README.md", "serve_app/", "configs/", "examples/"):
        assert needed in copied, needed
    cmd = [args for ins, args in instructions if ins == "CMD"]
    assert cmd and json.loads(cmd[-1]) == ["evalscope-serve", "run", "configs/serve.yaml"]  # SIGTERM stops it cleanly
    exposed = {p for ins, args in instructions if ins == "EXPOSE" for p in args.split()}
    assert {"8000", "8265", "8080"} <= exposed


def test_dockerfile_does_not_run_as_root():
    users = [args.split(":")[0] for ins, args in _instructions(DOCKERFILE_PATH) if ins == "USER"]
    # The base image already runs as `ray` (uid 1000); a USER line, if any, must not leave root behind.
    assert not users or users[-1] not in ("root", "0")
    assert users and users[-1] in ("ray", "1000"), "state the non-root user (numeric lets runAsNonRoot verify it)"


def test_dockerfile_holds_no_secrets():
    secret = re.compile(r"API_KEY|TOKEN|PASSWORD|SECRET", re.IGNORECASE)
    for ins, args in _instructions(DOCKERFILE_PATH):
        # No assignment of a secret-looking name anywhere (ENV, ARG, RUN export, ...), and no ENV/ARG named so.
        assert not re.search(rf"({secret.pattern})\w*\s*=", args, re.IGNORECASE), f"{ins} {args}"
        if ins in ("ENV", "ARG"):
            assert not secret.search(args), f"{ins} {args}"


def test_dockerignore_keeps_local_state_out():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for pattern in (".venv", "outputs", ".git", "**/__pycache__", ".pytest_cache", ".whl", "**/*.egg-info"):
        assert pattern in ignored, pattern
