"""k8s/: well-formed objects, a RayService that the CRD and KubeRay accept, and in step with production.yaml."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
PRODUCTION = REPO / "configs" / "production.yaml"
RENDER = REPO / "scripts" / "render_rayservice.py"
RENDER_POPULATE = REPO / "scripts" / "render_populate_job.py"
DOCKERFILE = REPO / "docker" / "Dockerfile"
# The KubeRay CRD lives in the project's shared/ folder, cloned beside the repository (or inside it).
CRD_CANDIDATES = [root / "shared" / "schemas" / "ray.io_rayservices.yaml" for root in (REPO.parent, REPO)]
NAMESPACE = "vividflow"
MODELS_CLAIM = "vividflow-models"
RESULTS_CLAIM = "vividflow-results"
POPULATE_JOB = "vividflow-populate-models"
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def _script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


render_rayservice = _script(RENDER)
render_populate_job = _script(RENDER_POPULATE)


def _documents() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(K8S.glob("*.y*ml")):
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return found


DOCUMENTS = _documents()


def find(kind: str, name: str) -> dict:
    matches = [doc for _, doc in DOCUMENTS if doc.get("kind") == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected exactly one {kind} {name!r} under k8s/, found {len(matches)}"
    return matches[0]


@pytest.fixture(scope="module")
def rayservice() -> dict:
    return find("RayService", "vividflow")


@pytest.fixture(scope="module")
def args() -> dict:
    return yaml.safe_load(PRODUCTION.read_text())["applications"][0]["args"]


def ray_groups(rayservice: dict) -> dict[str, dict]:
    cluster = rayservice["spec"]["rayClusterConfig"]
    return {"head": cluster["headGroupSpec"]} | {g["groupName"]: g for g in cluster.get("workerGroupSpecs", [])}


def ray_pod_specs(rayservice: dict) -> dict[str, dict]:
    return {name: group["template"]["spec"] for name, group in ray_groups(rayservice).items()}


def all_pod_specs() -> dict[str, dict]:
    specs = {}
    for _, doc in DOCUMENTS:
        if doc["kind"] == "RayService":
            specs |= {f"RayService/{group}": spec for group, spec in ray_pod_specs(doc).items()}
        elif doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            specs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc["spec"]["template"]["spec"]
    return specs


def containers(pod_spec: dict) -> list[dict]:
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def claim_of(pod_spec: dict, volume_name: str) -> dict | None:
    volume = next(v for v in pod_spec.get("volumes", []) if v["name"] == volume_name)
    return volume.get("persistentVolumeClaim")


def quantity(value: str | int) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    text = str(value)
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


# --- every object ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source,doc", DOCUMENTS, ids=[f"{src}:{doc.get('kind')}" for src, doc in DOCUMENTS])
def test_every_document_is_a_named_kubernetes_object(source, doc):
    assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], f"{source}: apiVersion missing"
    assert isinstance(doc.get("kind"), str) and doc["kind"], f"{source}: kind missing"
    name = doc.get("metadata", {}).get("name")
    assert isinstance(name, str) and DNS1123_SUBDOMAIN.match(name), f"{source}: bad metadata.name {name!r}"
    if doc["kind"] != "Namespace":
        assert doc["metadata"].get("namespace") == NAMESPACE, f"{source}: {doc['kind']} {name} outside {NAMESPACE}"


def test_the_expected_objects_are_there():
    present = {(doc["kind"], doc["metadata"]["name"]) for _, doc in DOCUMENTS}
    expected = {
        ("Namespace", NAMESPACE),
        ("RayService", "vividflow"),
        ("PersistentVolumeClaim", MODELS_CLAIM),
        ("PersistentVolumeClaim", RESULTS_CLAIM),
        ("Job", POPULATE_JOB),
        ("Deployment", "redis"),
        ("Service", "redis"),
        ("PersistentVolumeClaim", "redis-data"),
        ("Secret", "vividflow-secrets"),
        ("PodMonitor", "vividflow-ray"),
    }
    assert expected <= present, f"missing: {sorted(expected - present)}"


def test_every_pod_container_has_a_name_an_image_and_resources():
    for owner, spec in all_pod_specs().items():
        for container in containers(spec):
            assert container.get("name") and container.get("image"), f"{owner}: container without name or image"
            assert container.get("resources", {}).get("requests"), f"{owner}/{container['name']}: no requests"


def test_every_claimed_volume_has_a_claim_manifest():
    claims = {doc["metadata"]["name"] for _, doc in DOCUMENTS if doc["kind"] == "PersistentVolumeClaim"}
    for owner, spec in all_pod_specs().items():
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, f"{owner}: unknown claim"
    assert "ReadOnlyMany" in find("PersistentVolumeClaim", MODELS_CLAIM)["spec"]["accessModes"]
    assert find("PersistentVolumeClaim", RESULTS_CLAIM)["spec"]["accessModes"] == ["ReadWriteMany"]


# --- the RayService against the CRD and KubeRay's own checks ----------------------------------------


def _strict(schema: dict) -> dict:
    """The schema, rejecting unknown fields as the API server does under kubectl's default --validate=strict."""
    out = dict(schema)
    if "properties" in schema:
        out["properties"] = {key: _strict(value) for key, value in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(schema["additionalProperties"])
    if isinstance(schema.get("items"), dict):
        out["items"] = _strict(schema["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            out[key] = [_strict(branch) for branch in schema[key]]
    return out


def schema_errors(schema: dict, instance: dict) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


@pytest.fixture(scope="module")
def crd_schema(rayservice) -> dict:
    """The openAPIV3Schema the API server checks this RayService's apiVersion against."""
    crd_path = next((path for path in CRD_CANDIDATES if path.exists()), None)
    if crd_path is None:
        pytest.skip(f"KubeRay CRD not found (looked in {', '.join(str(p) for p in CRD_CANDIDATES)})")
    crd = yaml.load(crd_path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # a 1 MB file
    group, served = rayservice["apiVersion"].split("/")
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (group, rayservice["kind"])
    versions = {entry["name"]: entry for entry in crd["spec"]["versions"]}
    assert versions[served]["served"], f"{rayservice['apiVersion']} is not served by this CRD"
    return versions[served]["schema"]["openAPIV3Schema"]


def test_rayservice_validates_against_the_crd_schema(rayservice, crd_schema):
    for schema in (crd_schema, _strict(crd_schema)):
        errors = schema_errors(schema, rayservice)
        assert not errors, "the RayService does not match the CRD:\n" + "\n".join(errors[:20])


def test_other_pod_templates_match_the_pod_template_schema_in_the_crd(crd_schema):
    # The CRD embeds Kubernetes' PodTemplateSpec schema: reuse it for the Job and Deployment pods.
    cluster = crd_schema["properties"]["spec"]["properties"]["rayClusterConfig"]
    template_schema = _strict(cluster["properties"]["headGroupSpec"]["properties"]["template"])
    for _, doc in DOCUMENTS:
        if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            errors = schema_errors(template_schema, doc["spec"]["template"])
            assert not errors, f"{doc['kind']}/{doc['metadata']['name']}:\n" + "\n".join(errors[:20])


def test_rayservice_passes_kuberays_own_validation(rayservice):
    """The checks of KubeRay's ValidateRayServiceSpec/ValidateRayClusterSpec that the schema cannot express."""
    name = rayservice["metadata"]["name"]
    assert DNS1035_LABEL.match(name) and len(name) <= 47, "RayService names are DNS-1035 labels of <= 47 chars"
    spec = rayservice["spec"]
    assert isinstance(spec["serveConfigV2"], str) and "serveConfig" not in spec
    # Deprecated and ignored by KubeRay; upgradeStrategy is the current knob.
    assert not {"serviceUnhealthySecondThreshold", "deploymentUnhealthySecondThreshold"} & set(spec)
    assert spec.get("upgradeStrategy", {}).get("type", "NewCluster") in {
        "NewCluster",
        "NewClusterWithIncrementalUpgrade",
        "None",
    }
    cluster = spec["rayClusterConfig"]
    head = cluster["headGroupSpec"]
    assert head["template"]["spec"]["containers"], "the head needs at least one container"
    assert not head.get("headService", {}).get("metadata", {}).get("name"), "KubeRay names the head service"
    groups = [head] + cluster["workerGroupSpecs"]
    for group in cluster["workerGroupSpecs"]:
        assert group["template"]["spec"]["containers"], f"worker group {group['groupName']} has no container"
        assert 0 <= group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
    assert len({g["groupName"] for g in cluster["workerGroupSpecs"]}) == len(cluster["workerGroupSpecs"])
    for group in groups:
        params = group.get("rayStartParams", {})
        assert not ({"num-cpus", "num-gpus", "memory", "resources"} & set(params) and group.get("resources")), (
            "KubeRay refuses resources in both rayStartParams and the group's `resources`"
        )
        assert "labels" not in params, "KubeRay wants the group's `labels` field instead"
    assert cluster["enableInTreeAutoscaling"] is True
    if cluster.get("autoscalerOptions", {}).get("version") == "v2":
        for group in groups:
            assert group["template"]["spec"].get("restartPolicy", "Never") == "Never", "autoscaler v2 needs Never"
    if cluster.get("authOptions", {}).get("mode") == "token":
        assert tuple(map(int, cluster["rayVersion"].split(".")[:2])) >= (2, 52), "token auth needs Ray >= 2.52"


def test_rayversion_matches_the_image_base_and_the_installed_ray(rayservice):
    cluster = rayservice["spec"]["rayClusterConfig"]
    ray_version = cluster["rayVersion"]
    assert ray_version == version("ray"), "rayVersion differs from the tested Ray"
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert len(bases) == 1 and bases[0].startswith(f"rayproject/ray:{ray_version}-"), bases


def test_every_ray_container_runs_the_one_image_named_in_the_renderer(rayservice):
    images = {spec["containers"][0]["image"] for spec in ray_pod_specs(rayservice).values()}
    assert images == {render_rayservice.IMAGE}
    name, tag = render_rayservice.IMAGE.rsplit(":", 1)
    assert (
        name.endswith("vividflow-serve")
        and tag == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    ), "the image tag is the project's version"


def test_rendering_another_image_changes_only_the_image_lines(tmp_path):
    out = tmp_path / "rayservice.yaml"
    image = "registry.example.com/team/vividflow-serve:0.1.0-rc1"
    done = subprocess.run(
        [sys.executable, str(RENDER), "--image", image, "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    before, after = (K8S / "rayservice.yaml").read_text().splitlines(), out.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(changed) == len(ray_pod_specs(find("RayService", "vividflow"))) == 2
    assert all(b.strip() == f"image: {image}" for _, b in changed)
    for bad in ("vividflow-serve:latest", "vividflow-serve", "two words:1"):
        refused = subprocess.run(
            [sys.executable, str(RENDER), "--image", bad, "--output", str(out)], capture_output=True, text=True
        )
        assert refused.returncode == 2 and "explicit tag" in refused.stderr, bad


def test_ray_auth_mode_is_left_to_kuberay(rayservice):
    # A hand-set RAY_AUTH_MODE would win over the value KubeRay injects from authOptions.
    for group, spec in ray_pod_specs(rayservice).items():
        for container in containers(spec):
            names = {entry["name"] for entry in container.get("env", [])}
            assert "RAY_AUTH_MODE" not in names, f"{group}/{container['name']} sets RAY_AUTH_MODE"


# --- kept in step with configs/production.yaml ------------------------------------------------------


def test_serve_config_is_production_yaml(rayservice):
    text = PRODUCTION.read_text()
    assert yaml.safe_load(rayservice["spec"]["serveConfigV2"]) == yaml.safe_load(text)
    assert rayservice["spec"]["serveConfigV2"] == text, "embedded verbatim, comments included"


def test_render_check_passes():
    done = subprocess.run([sys.executable, str(RENDER), "--check"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_render_check_reports_drift(tmp_path):
    stale = tmp_path / "rayservice.yaml"
    stale.write_text((K8S / "rayservice.yaml").read_text().replace("port: 8000", "port: 8001", 1))
    done = subprocess.run(
        [sys.executable, str(RENDER), "--check", "--output", str(stale)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "out of date" in done.stderr and "render_rayservice.py" in done.stderr


# --- pods: GPUs, volumes, offline loading, ports ----------------------------------------------------


def test_gpu_workers_request_whole_gpus_and_fit_the_video_replica(rayservice, args):
    video = args["video_generator"]["deployment"]
    workers = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    limits = [(g, g["template"]["spec"]["containers"][0]["resources"]["limits"]) for g in workers]
    gpu_groups = [group for group, limit in limits if "nvidia.com/gpu" in limit]
    assert gpu_groups, "no worker group asks for nvidia.com/gpu"
    for group in gpu_groups:
        spec = group["template"]["spec"]
        resources = spec["containers"][0]["resources"]
        gpus = int(resources["limits"]["nvidia.com/gpu"])
        assert gpus >= 1 and int(resources["requests"]["nvidia.com/gpu"]) == gpus, "GPU requests must equal limits"
        assert any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", [])), "GPU nodes are tainted"
        assert video["num_gpus"] <= gpus and video["num_cpus"] <= quantity(resources["limits"]["cpu"])
        assert group["maxReplicas"] >= 1


def test_head_has_no_gpu(rayservice):
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    for container in containers(head["template"]["spec"]):
        for section in ("requests", "limits"):
            assert "nvidia.com/gpu" not in container.get("resources", {}).get(section, {}), container["name"]


def test_models_are_mounted_read_only_everywhere_but_the_populate_job():
    for owner, spec in all_pod_specs().items():
        writer = owner == f"Job/{POPULATE_JOB}"
        for container in containers(spec):
            for mount in container.get("volumeMounts", []):
                claim = claim_of(spec, mount["name"]) or {}
                if mount["mountPath"] != "/models" and claim.get("claimName") != MODELS_CLAIM:
                    continue
                if writer:
                    assert not mount.get("readOnly") and not claim.get("readOnly"), "the populate Job must write"
                else:
                    assert mount.get("readOnly") is True, f"{owner}/{container['name']} mounts /models writable"
                    assert claim.get("readOnly") is True, f"{owner}: the models claim is not mounted readOnly"


def test_ray_pods_have_a_memory_backed_dev_shm_larger_than_the_object_store(rayservice):
    for name, group in ray_groups(rayservice).items():
        spec = group["template"]["spec"]
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == "/dev/shm")
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        empty_dir = volume.get("emptyDir") or {}
        assert empty_dir.get("medium") == "Memory", f"{name}: /dev/shm is not an emptyDir with medium Memory"
        store = group["rayStartParams"].get("object-store-memory")
        if store and "sizeLimit" in empty_dir:
            assert int(store) < quantity(empty_dir["sizeLimit"]), f"{name}: object store outgrows /dev/shm"


def test_ray_containers_load_offline_and_expose_serve_and_metrics(rayservice):
    for group, spec in ray_pod_specs(rayservice).items():
        ray = spec["containers"][0]
        env = {entry["name"]: entry.get("value") for entry in ray.get("env", [])}
        assert env.get("HF_HUB_OFFLINE") == "1" and env.get("TRANSFORMERS_OFFLINE") == "1", group
        ports = {port["name"]: port["containerPort"] for port in ray["ports"]}
        assert ports.get("serve") == 8000 and ports.get("metrics") == 8080, group


def test_config_paths_live_on_the_mounted_volumes(rayservice, args):
    model = args["video_generator"]["model"]
    model_paths = [model["path"], model.get("experts_path"), (model.get("lora") or {}).get("path")]
    store = args["job_store"]
    written = [store["results_dir"]] + ([store["sqlite_path"]] if store.get("backend", "sqlite") == "sqlite" else [])
    for group, spec in ray_pod_specs(rayservice).items():
        mounts = {m["mountPath"]: claim_of(spec, m["name"]) for m in spec["containers"][0]["volumeMounts"]}
        for path, claim in [(p, MODELS_CLAIM) for p in model_paths if p] + [(p, RESULTS_CLAIM) for p in written]:
            owners = [mounts[root] for root in mounts if Path(path).is_relative_to(root)]
            assert owners and (owners[0] or {}).get("claimName") == claim, f"{group}: {path} is not on {claim}"


# --- the populate Job and the PodMonitor -----------------------------------------------------------

VALUE_OPTIONS = {"--local-dir", "--include", "--exclude", "--revision", "--max-workers", "--cache-dir", "--type"}


def hf_downloads(script: str) -> list[dict]:
    """Each `hf download` in a shell script: repo, files and options."""
    downloads = []
    for line in script.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        if tokens[:2] != ["hf", "download"]:
            continue
        options: dict[str, list[str]] = {}
        positional = []
        rest = iter(tokens[2:])
        for token in rest:
            if token in VALUE_OPTIONS:
                options.setdefault(token, []).append(next(rest))
            elif not token.startswith("-"):
                positional.append(token)
        downloads.append({"repo": positional[0], "files": positional[1:], "options": options})
    return downloads


def fetches(script: str) -> list[dict]:
    """Each `fetch URL MD5 FILE` in a shell script."""
    found = []
    for line in script.splitlines():
        tokens = shlex.split(line, comments=True) if line.strip().startswith("fetch ") else []
        if len(tokens) == 4:
            found.append({"url": tokens[1], "md5": tokens[2], "file": tokens[3]})
    return found


def model_paths(value, where: str = "") -> dict[str, str]:
    """Every string under /models in the typed config, by its dotted setting name."""
    if hasattr(value, "model_fields"):
        found = {}
        for name in type(value).model_fields:
            found |= model_paths(getattr(value, name), f"{where}.{name}" if where else name)
        return found
    if isinstance(value, str) and Path(value).is_relative_to("/models"):
        return {where: value}
    return {}


@pytest.fixture(scope="module")
def production_downloads():
    return render_populate_job.downloads(render_populate_job.production_config(PRODUCTION))


def populate_script() -> str:
    return "\n".join(find("Job", POPULATE_JOB)["spec"]["template"]["spec"]["containers"][0]["args"])


def test_production_reads_models_only_from_the_populated_paths(production_downloads):
    # Loaded through the config classes: every setting that names something under /models, whatever model
    # it belongs to, must be what one download fills: no model is missing from the Job, none is extra.
    wanted = model_paths(render_populate_job.production_config(PRODUCTION))
    assert {"video_generator.model.path", "prompt_expander.model.path", "image_analyzer.model.checkpoint",
            "segmenter.model.birefnet_path", "segmenter.model.u2net_path",
            "background_generator.model.path"} <= set(wanted)  # fmt: skip
    assert {d.setting: d.local_dir for d in production_downloads} == wanted


def test_populate_job_runs_exactly_the_derived_downloads(production_downloads):
    script = populate_script()
    # one folder may be filled by two downloads of different files (two LoRA files of one repository)
    hub = {(d["options"]["--local-dir"][0], tuple(d["files"])): d for d in hf_downloads(script)}
    files = {f["file"]: f for f in fetches(script)}
    created = [want for want in production_downloads if want.init_text is not None]
    assert len(hub) + len(files) + len(created) == len(production_downloads), "a download the config does not need"
    for want in created:  # folders the project fills itself (the LoRA library): made, with their first file
        assert f"mkdir -p {want.local_dir} && {{ test -s {want.local_dir}/{want.markers[0]} ||" in script
    for want in production_downloads:
        if want.init_text is not None:
            continue
        if want.url:
            got = files[f"{want.local_dir}/{want.markers[0]}"]
            assert (got["url"], got["md5"]) == (want.url, want.md5)
            continue
        got = hub[(want.local_dir, want.files)]
        assert want.local_dir == f"/models/{got['repo']}" == f"/models/{want.repo}"
        assert got["files"] == list(want.files)
        assert got["options"].get("--include", []) == list(want.include)
        assert got["options"].get("--exclude", []) == list(want.exclude)
        assert got["options"].get("--revision", []) == ([want.revision] if want.revision else [])
    # the markers the Job checks at the end are the files the loaders look for
    for want in production_downloads:
        for marker in want.markers:
            assert f"{want.local_dir}/{marker}" in script
    env = {
        entry["name"]: entry for entry in find("Job", POPULATE_JOB)["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_the_video_downloads_follow_the_experts_setting(production_downloads):
    by_setting = {d.setting: d for d in production_downloads}
    config = render_populate_job.production_config(PRODUCTION)
    model = config.video_generator.model
    assert model.experts_path and by_setting["video_generator.model.path"].exclude == (
        "transformer/*",
        "transformer_2/*",
    )
    assert by_setting["video_generator.model.lora.path"].files == (model.lora.weight_name,)
    without = config.model_copy(
        update={"video_generator": config.video_generator.model_copy(
            update={"model": model.model_copy(update={"experts_path": None})})}
    )  # fmt: skip
    own = {d.setting: d for d in render_populate_job.downloads(without)}
    assert own["video_generator.model.path"].exclude == () and "video_generator.model.experts_path" not in own


def test_populate_render_check_passes_and_reports_drift(tmp_path):
    done = subprocess.run(
        [sys.executable, str(RENDER_POPULATE), "--check"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    stale = tmp_path / "job.yaml"
    stale.write_text((K8S / "populate-models-job.yaml").read_text().replace("u2net.onnx", "u2netp.onnx"))
    done = subprocess.run(
        [sys.executable, str(RENDER_POPULATE), "--check", "--output", str(stale)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "render_populate_job.py" in done.stderr


def test_the_populate_script_is_valid_shell():
    done = subprocess.run(["sh", "-n"], input=populate_script(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_podmonitor_scrapes_the_ray_metrics_port(rayservice):
    monitor = find("PodMonitor", "vividflow-ray")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    keys = set(monitor["spec"]["selector"].get("matchLabels", {}))
    keys |= {expr["key"] for expr in monitor["spec"]["selector"].get("matchExpressions", [])}
    assert "ray.io/cluster" in keys
    ports = {endpoint["port"] for endpoint in monitor["spec"]["podMetricsEndpoints"]}
    assert ports == {"metrics"}
    for name, group in ray_groups(rayservice).items():
        declared = group["template"]["spec"]["containers"][0]["ports"]
        assert any(p["name"] == "metrics" and p["containerPort"] == 8080 for p in declared), name
        assert group["rayStartParams"].get("metrics-export-port", "8080") == "8080", name


def test_cluster_ingress_strips_ray_timeout_headers():
    route = yaml.safe_load((REPO / "k8s" / "httproute.yaml").read_text())
    assert route["kind"] == "HTTPRoute" and route["apiVersion"] == "gateway.networking.k8s.io/v1"
    removed = {
        header
        for rule in route["spec"]["rules"]
        for f in rule.get("filters", [])
        if f["type"] == "RequestHeaderModifier"
        for header in f["requestHeaderModifier"]["remove"]
    }
    assert {"x-request-timeout-seconds", "x-request-disconnect-disabled"} <= removed
    assert route["spec"]["rules"][0]["backendRefs"][0]["port"] == 8000


def _route_matches(path: str, matches: list[dict]) -> bool:
    for match in matches:
        kind, value = match["path"]["type"], match["path"]["value"]
        if (kind == "Exact" and path == value) or (kind == "PathPrefix" and path.startswith(value)):
            return True
    return False


def test_cluster_ingress_routes_only_the_applications_paths():
    route = yaml.safe_load((REPO / "k8s" / "httproute.yaml").read_text())
    matches = [match for rule in route["spec"]["rules"] for match in rule["matches"]]
    for public in ("/v1/videos", "/v1/jobs/abc/events", "/healthz", "/docs", "/openapi.json", "/", "/ui/app.js"):
        assert _route_matches(public, matches), public
    for internal in ("/-/routes", "/-/healthz", "/api/serve/applications/"):
        assert not _route_matches(internal, matches), internal


def test_production_turns_api_keys_on_from_the_mounted_secret():
    config = yaml.safe_load((REPO / "configs" / "production.yaml").read_text())
    ingress = config["applications"][0]["args"]["ingress"]
    assert ingress["auth"]["mode"] == "api_keys"
    # without a key nothing but /healthz (and the web UI's static page) answers with data
    assert ingress["auth"]["metrics"] == ingress["auth"]["docs"] == "admin"
    mount = "/etc/vividflow/secrets"
    assert ingress["auth"]["keys_file"].startswith(mount + "/")
    assert ingress["webhooks"]["signing_secret_file"].startswith(mount + "/")
    rayservice = yaml.safe_load((REPO / "k8s" / "rayservice.yaml").read_text())
    for name, group in ray_groups(rayservice).items():
        spec = group["template"]["spec"]
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["secrets"]["mountPath"] == mount and mounts["secrets"]["readOnly"], name
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["secrets"]["secret"]["secretName"] == "vividflow-secrets", name
    secret = yaml.safe_load((REPO / "k8s" / "secrets.yaml").read_text())
    assert secret["metadata"]["name"] == "vividflow-secrets" and yaml.safe_load(secret["stringData"]["keys.yaml"]) == []
    local = yaml.safe_load((REPO / "configs" / "local.yaml").read_text())["applications"][0]["args"]["ingress"]
    assert local.get("auth", {}).get("mode", "off") == "off"


def test_redis_keeps_every_acknowledged_write():
    redis_deployment = next(
        doc for _, doc in DOCUMENTS if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "redis"
    )
    args = redis_deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    options = dict(zip(args[::2], args[1::2], strict=True))
    assert options["--appendonly"] == "yes" and options["--appendfsync"] == "always"
    assert options["--maxmemory-policy"] == "noeviction"
