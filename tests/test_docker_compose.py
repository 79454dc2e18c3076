"""Static validation of docker/ (compose.yaml, Dockerfile, .env.example).

This machine has no Docker engine, so the deployment is checked by reading the files: structure,
the OpenSearch cluster's discovery settings, variable interpolation, service dependencies, the GPU
reservation, the module paths the commands name, the Dockerfile's inputs and the SHOPSEARCH_*
names. Docker Compose itself also runs over the files, checking them (`config -q`) and resolving
them (`config --format json`) as the static reading does: the docker CLI's plugin, or the release
`./run test` builds with Go (skipped, saying why, where neither exists). No service fixture.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from shopsearch.settings import SETTINGS, default

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILE = DOCKER / "Dockerfile"

OPENSEARCH_NODES = ("opensearch-1", "opensearch-2", "opensearch-3")
APP_SERVICES = ("proxy-public", "proxy-internal", "worker-cpu", "worker-gpu")
FACES = {"proxy-public": ("public", "8000", "shopsearch-public"), "proxy-internal": ("internal", "8001", "shopsearch-internal")}
SECURITY = DOCKER / "security"

# Compose interpolation: `$$` (a literal dollar), `${NAME}`, `${NAME:-default}`, `${NAME-default}`,
# `${NAME:?message}`, `${NAME?message}`, `${NAME:+alt}`, `${NAME+alt}`, and bare `$NAME`.
_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


# ------------------------------------------------------------------------------------- helpers

def _strings(node):
    """Every string scalar (keys and values) of a parsed YAML document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _variables(text: str) -> list[tuple[str, str | None, str | None]]:
    """(name, operator, argument) of each interpolation in text; `$$` escapes are skipped."""
    out = []
    for m in _VAR.finditer(text):
        if m["escaped"]:
            continue
        if m["braced"]:
            out.append((m["braced"], m["op"], m["arg"]))
        else:
            out.append((m["bare"], None, None))
    return out


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Resolve text as Compose would, given env (raises on a `?` operator with no value)."""
    def sub(m: re.Match) -> str:
        if m["escaped"]:
            return "$"
        name = m["braced"] or m["bare"]
        op, arg = m["op"], m["arg"] or ""
        value = env.get(name)
        set_, nonempty = value is not None, bool(value)
        if op in (":-", "-"):
            return value if (nonempty if op == ":-" else set_) else arg
        if op in (":?", "?"):
            if not (nonempty if op == ":?" else set_):
                raise AssertionError(f"required variable {name} is not set: {arg}")
            return value
        if op in (":+", "+"):
            return arg if (nonempty if op == ":+" else set_) else ""
        return value or ""
    return _VAR.sub(sub, text)


def _resolve(node, env):
    if isinstance(node, str):
        return _interpolate(node, env)
    if isinstance(node, dict):
        return {_resolve(k, env): _resolve(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, env) for v in node]
    return node


def _environment(service: dict) -> dict[str, str]:
    """A service's `environment`, in either the mapping or the list form, as a dict of strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _command(service: dict) -> list[str]:
    cmd = service.get("command")
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd or [])


def _option(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert "=" in line, f"{path.name}: not NAME=value: {line!r}"
        name, value = line.split("=", 1)
        values[name.strip()] = value.strip()
    return values


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.partition(" ")
        out.append((keyword.upper(), args.strip()))
        buf = ""
    return out


@pytest.fixture(scope="module")
def compose() -> dict:
    with open(COMPOSE_FILE, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), "compose.yaml has no services"
    return doc


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return _env_file(ENV_EXAMPLE)


def _secrets(compose, env_example) -> dict[str, str]:
    """The required variables (the secrets) as a deployment sets them: its own values, not the example's."""
    required = {name for s in _strings(compose) for name, op, _ in _variables(s) if op in (":?", "?")}
    return {name: env_example.get(name) or f"deployment-secret-{name.lower()}" for name in required}


@pytest.fixture(scope="module")
def resolved(compose, env_example) -> dict:
    """compose.yaml interpolated with .env.example (and the deployment's secrets), as `docker compose --env-file` would."""
    return _resolve(compose, {**env_example, **_secrets(compose, env_example)})


@pytest.fixture(scope="module")
def resolved_defaults(compose, env_example) -> dict:
    """compose.yaml interpolated with only the required variables set: the defaults in effect."""
    return _resolve(compose, _secrets(compose, env_example))


def _docker_compose() -> list[str]:
    """The command that runs Docker Compose v2: the docker CLI's plugin, else the release `./run test`
    built into the cache (``SHOPSEARCH_DOCKER_COMPOSE``); the test is skipped, saying why, without either."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60).returncode == 0:
        return [docker, "compose"]
    built = os.environ.get("SHOPSEARCH_DOCKER_COMPOSE")
    if built and os.access(built, os.X_OK):
        return [built]
    pytest.skip("no Docker Compose v2 here (no docker CLI plugin, and no build of it by `./run test`, which needs Go "
                "and the Go module proxy): `docker compose config` not run")


# ---------------------------------------------------------------------------------------- tests

def test_every_service_has_an_image_or_a_build(compose):
    for name, service in compose["services"].items():
        assert service.get("image") or service.get("build"), f"service {name} has neither image nor build"
    assert set(OPENSEARCH_NODES) | {"redis", *APP_SERVICES} <= set(compose["services"])


def test_app_services_build_from_docker_dockerfile_with_the_repo_root_as_context(compose):
    for name in APP_SERVICES:
        build = compose["services"][name]["build"]
        context = (COMPOSE_FILE.parent / build["context"]).resolve()
        assert context == ROOT, name
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE.resolve(), name


def test_opensearch_nodes_form_one_cluster(resolved):
    services = resolved["services"]
    envs = {n: _environment(services[n]) for n in OPENSEARCH_NODES}
    for key in ("cluster.name", "discovery.seed_hosts", "cluster.initial_cluster_manager_nodes"):
        values = {n: env.get(key) for n, env in envs.items()}
        assert len(set(values.values())) == 1 and None not in values.values(), f"nodes disagree on {key}: {values}"
    any_env = envs[OPENSEARCH_NODES[0]]
    assert any_env["cluster.name"] == "shopsearch"
    seeds = any_env["discovery.seed_hosts"].split(",")
    managers = any_env["cluster.initial_cluster_manager_nodes"].split(",")
    node_names = [env["node.name"] for env in envs.values()]
    assert len(set(node_names)) == len(node_names), node_names
    for service_name, env in envs.items():
        # the seed hosts are resolved by the compose network: service name == hostname == node name
        assert env["node.name"] == service_name
        assert service_name in seeds, f"{service_name} is not a seed host {seeds}"
        assert env["node.name"] in managers, f"{service_name} is not an initial cluster manager {managers}"
        # the security plugin is on (TLS on transport and HTTP) with the deployment's own certificates
        assert "DISABLE_SECURITY_PLUGIN" not in env and env["DISABLE_INSTALL_DEMO_CONFIG"] == "true"
        assert env["plugins.security.ssl.http.enabled"] == "true"
        for key in ("transport.pemcert_filepath", "transport.pemkey_filepath", "transport.pemtrustedcas_filepath",
                    "http.pemcert_filepath", "http.pemkey_filepath", "http.pemtrustedcas_filepath"):
            assert env[f"plugins.security.ssl.{key}"].startswith("certs/"), key
        assert re.fullmatch(r"-Xms(\S+) -Xmx\1", env["OPENSEARCH_JAVA_OPTS"]), env["OPENSEARCH_JAVA_OPTS"]
        service = resolved["services"][service_name]
        # the version the project's own node runs, so the tests speak to what the deployment gets
        assert service["image"] == f"opensearchproject/opensearch:{default('opensearch_version')}"
        assert service["ulimits"]["memlock"] == {"soft": -1, "hard": -1}
        assert int(service["ulimits"]["nofile"]["soft"]) >= 65536
        assert "_cluster/health" in " ".join(service["healthcheck"]["test"])
        data_volume = service["volumes"][0].split(":")[0]
        assert data_volume in resolved["volumes"], f"{service_name}: {data_volume} is not a named volume"


def test_only_the_first_opensearch_node_is_published_on_loopback_by_default(resolved_defaults):
    services = resolved_defaults["services"]
    assert [n for n in OPENSEARCH_NODES if services[n].get("ports")] == ["opensearch-1"]
    assert services["opensearch-1"]["ports"] == ["127.0.0.1:9200:9200"]


def test_every_variable_used_is_listed_in_env_example_and_vice_versa(compose, env_example):
    used = {name for s in _strings(compose) for name, _, _ in _variables(s)}
    assert used, "compose.yaml reads no variables?"
    missing = used - set(env_example)
    assert not missing, f"variables read by compose.yaml but absent from .env.example: {sorted(missing)}"
    unused = set(env_example) - used
    assert not unused, f"variables in .env.example that compose.yaml never reads: {sorted(unused)}"


def test_the_secrets_are_required_and_the_example_ships_none_that_works(compose, env_example):
    from shopsearch import local_secrets
    required = {name for s in _strings(compose) for name, op, _ in _variables(s) if op in (":?", "?")}
    assert {"SHOPSEARCH_ADMIN_TOKEN", "SHOPSEARCH_PSEUDONYM_SALT", "OPENSEARCH_ADMIN_PASSWORD",
            "OPENSEARCH_PUBLIC_PASSWORD", "OPENSEARCH_INTERNAL_PASSWORD", "OPENSEARCH_WORKER_PASSWORD",
            "RABBITMQ_PASSWORD"} <= required
    for name in required:
        assert name in env_example, f"{name} is required by compose.yaml but missing from .env.example"
        assert local_secrets.weak(env_example[name]), f"{name} has a usable value in .env.example"


def test_depends_on_targets_exist_and_wait_for_health(resolved):
    services = resolved["services"]
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        targets = deps if isinstance(deps, list) else list(deps)
        for target in targets:
            assert target in services, f"{name} depends on unknown service {target}"
            assert services[target].get("healthcheck"), f"{name} waits for {target}, which has no healthcheck"
            if isinstance(deps, dict):
                assert deps[target].get("condition") == "service_healthy", f"{name} -> {target}"
    for name in APP_SERVICES:
        assert {"opensearch-1", "redis", "rabbitmq"} <= set(services[name]["depends_on"]), name
    # a service outside the default profile must not be a dependency of one inside it
    for name, service in services.items():
        for target in service.get("depends_on") or {}:
            assert not services[target].get("profiles") or service.get("profiles"), f"{name} -> {target}"


def test_named_volumes_are_declared_and_models_is_shared(resolved):
    declared = set(resolved.get("volumes") or {})
    for name, service in resolved["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"
    for name in APP_SERVICES:
        assert "models:/models" in resolved["services"][name]["volumes"], name
    assert resolved["services"]["redis"]["image"] == "redis:7"
    assert "--appendonly" in _command(resolved["services"]["redis"])


def test_worker_gpu_reserves_an_nvidia_device_and_is_behind_the_gpu_profile(resolved):
    gpu = resolved["services"]["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) and int(d.get("count", 0)) >= 1
               for d in devices), devices
    assert gpu.get("profiles") == ["gpu"]
    assert _environment(gpu)["SHOPSEARCH_DEVICE"] == "cuda"
    assert _environment(resolved["services"]["worker-cpu"])["SHOPSEARCH_DEVICE"] == "cpu"
    for name, service in resolved["services"].items():
        if name != "worker-gpu":
            assert not service.get("profiles"), f"{name} should run without any profile"


def test_worker_commands_name_the_celery_app_and_its_queues(resolved, resolved_defaults):
    module = importlib.import_module("shopsearch.workers.app")
    from celery import Celery
    assert isinstance(module.app, Celery)
    known_queues = {r["queue"] for r in module.TASK_ROUTES.values()} | {module.app.conf.task_default_queue}

    def queues(doc, name):
        argv = _command(doc["services"][name])
        assert argv[:2] == ["celery", "-A"] and argv[2] == "shopsearch.workers.app" and argv[3] == "worker", argv
        return set(_option(argv, "-Q").split(","))

    for doc in (resolved, resolved_defaults):
        assert queues(doc, "worker-gpu") == {"encode"}
        cpu = queues(doc, "worker-cpu")
        assert cpu <= known_queues, cpu - known_queues
        assert {"ingest", "celery"} <= cpu
    # without the gpu profile nobody else consumes `encode`: the CPU worker must, by default
    assert "encode" in queues(resolved_defaults, "worker-cpu")
    assert "encode" in queues(resolved, "worker-cpu"), ".env.example is for the CPU-only case"
    assert int(_option(_command(resolved["services"]["worker-cpu"]), "-c")) >= 1
    # unique node names when scaled: %h is the container hostname
    assert _option(_command(resolved["services"]["worker-cpu"]), "-n") == "cpu@%h"
    assert _option(_command(resolved["services"]["worker-gpu"]), "-n") == "gpu@%h"


def test_each_face_of_the_proxy_is_served_by_shopsearch_serve_on_its_own_port(resolved, resolved_defaults):
    for name, (face, port, _) in FACES.items():
        service = resolved["services"][name]
        assert _command(service) == ["shopsearch", "serve", "--face", face]
        env = _environment(service)
        host_key, port_key = (("SHOPSEARCH_PROXY_HOST", "SHOPSEARCH_PROXY_PORT") if face == "public"
                              else ("SHOPSEARCH_INTERNAL_HOST", "SHOPSEARCH_INTERNAL_PORT"))
        assert env[host_key] == "0.0.0.0" and env[port_key] == port
        assert f"127.0.0.1:{port}/healthz" in " ".join(service["healthcheck"]["test"])
        # published on loopback unless the env file says otherwise
        assert resolved_defaults["services"][name]["ports"] == [f"127.0.0.1:{port}:{port}"]
    # the internal face's pass-through forwards the caller's own cluster credentials
    assert _environment(resolved["services"]["proxy-internal"])["SHOPSEARCH_PASSTHROUGH_FORWARD_AUTH"] == "true"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["shopsearch"].startswith("shopsearch.cli")


def test_proxy_and_workers_share_the_connection_settings(resolved):
    expected = {
        "SHOPSEARCH_REDIS_URL": "redis://redis:6379/0",
        "SHOPSEARCH_RESULT_BACKEND": "redis://redis:6379/1",
        "SHOPSEARCH_OPENSEARCH_CA_CERTS": "/certs/root-ca.pem",
    }
    rabbit = resolved["services"]["rabbitmq"]
    assert rabbit["image"].startswith("rabbitmq:") and "rabbitmq-data:/var/lib/rabbitmq" in rabbit["volumes"]
    for name in APP_SERVICES:
        service = resolved["services"][name]
        env = _environment(service)
        for key, value in expected.items():
            assert env.get(key) == value, (name, key, env.get(key))
        assert env.get("SHOPSEARCH_ADMIN_TOKEN"), name
        assert env["SHOPSEARCH_BROKER_URL"].startswith("amqp://shopsearch:") and env["SHOPSEARCH_BROKER_URL"].endswith(
            "@rabbitmq:5672//"), name
        assert any(v.endswith(":/certs/root-ca.pem:ro") for v in service["volumes"]), name


def _users_of_services(resolved) -> dict[str, str]:
    from urllib.parse import urlsplit
    return {name: urlsplit(_environment(resolved["services"][name])["SHOPSEARCH_OPENSEARCH_URL"]).username
            for name in APP_SERVICES}


def test_every_process_talks_tls_to_the_cluster_as_a_least_privilege_user_of_its_own(resolved):
    users = _users_of_services(resolved)
    for name in APP_SERVICES:
        url = _environment(resolved["services"][name])["SHOPSEARCH_OPENSEARCH_URL"]
        assert url.startswith("https://") and url.endswith("@opensearch-1:9200"), (name, url)
    assert users["proxy-public"] == "shopsearch-public" and users["proxy-internal"] == "shopsearch-internal"
    assert users["worker-cpu"] == users["worker-gpu"] == "shopsearch-worker"
    mapping = yaml.safe_load((SECURITY / "roles_mapping.yml").read_text())
    roles = yaml.safe_load((SECURITY / "roles.yml").read_text())
    role_of = {user: role for role, body in mapping.items() if role != "_meta" for user in body.get("users", [])}
    for user in set(users.values()):
        assert role_of[user] in roles and role_of[user] != "all_access", user
    # the users init.sh writes are exactly those the mapping names
    written = set(re.findall(r"^([a-z][a-z-]*):$", (SECURITY / "init.sh").read_text(), re.M))
    assert written == set(role_of), (written, set(role_of))


def test_no_role_of_the_project_can_change_cluster_settings_scripts_or_snapshots(resolved):
    roles = {k: v for k, v in yaml.safe_load((SECURITY / "roles.yml").read_text()).items() if k != "_meta"}
    forbidden = ("*", "cluster_all", "cluster_manage", "cluster:admin/settings", "cluster:admin/script",
                 "cluster:admin/snapshot", "cluster:admin/repository", "indices_all", "indices:admin/delete")
    for name, role in roles.items():
        perms = list(role.get("cluster_permissions", []))
        perms += [a for p in role.get("index_permissions", []) for a in p["allowed_actions"]]
        assert not [p for p in perms if p in forbidden or any(p.startswith(f) for f in forbidden[3:7])], name
        for p in role.get("index_permissions", []):  # on every index: only the lookup of aliases
            assert "*" not in p["index_patterns"] or p["allowed_actions"] == ["indices:admin/aliases/get"], (name, p)
    # the public face reads catalogues: it can neither write them nor move their aliases
    public = [p for p in roles["shopsearch_public"]["index_permissions"] if p["index_patterns"] == ["*-v*"]][0]
    assert set(public["allowed_actions"]) <= {"read", "indices:admin/aliases/get", "indices:admin/mappings/get"}
    assert "indices:admin/aliases" not in roles["shopsearch_public"]["cluster_permissions"]
    config = yaml.safe_load((SECURITY / "config.yml").read_text())
    assert config["config"]["dynamic"]["http"]["anonymous_auth_enabled"] is False


def test_the_nodes_mount_the_security_configuration_that_the_repository_ships(resolved):
    for node in OPENSEARCH_NODES:
        mounts = {v.split(":")[0]: v.split(":")[1] for v in resolved["services"][node]["volumes"]}
        for name in ("config.yml", "roles.yml", "roles_mapping.yml"):
            assert mounts[f"./security/{name}"].endswith(f"opensearch-security/{name}"), (node, name)
            assert (SECURITY / name).is_file()
        assert mounts["./security/generated/internal_users.yml"].endswith("opensearch-security/internal_users.yml")
        assert mounts["./security/generated/certs"] == "/usr/share/opensearch/config/certs"
    init = (SECURITY / "init.sh").read_text()
    assert 'out="${OUT_DIR:-$here/generated}"' in init and '"$out/internal_users.yml"' in init and 'mkdir -p "$out/certs"' in init
    assert "docker/security/generated/" in (ROOT / ".gitignore").read_text()


def test_every_shopsearch_variable_is_a_real_setting(compose, env_example):
    known = {s.env for s in SETTINGS}
    names = set()
    for service in compose["services"].values():
        names |= {k for k in _environment(service) if k.startswith("SHOPSEARCH_")}
    names |= {n for s in _strings(compose) for n, _, _ in _variables(s) if n.startswith("SHOPSEARCH_")}
    names |= {n for n in env_example if n.startswith("SHOPSEARCH_")}
    for keyword, args in _dockerfile_instructions(DOCKERFILE):
        if keyword == "ENV":
            names |= set(re.findall(r"\b(SHOPSEARCH_[A-Z0-9_]+)=", args))
    # SHOPSEARCH_IMAGE names the image tag for compose only; it is never read by shopsearch
    names.discard("SHOPSEARCH_IMAGE")
    assert names, "no SHOPSEARCH_* variables found"
    unknown = names - known
    assert not unknown, f"SHOPSEARCH_* names that are not settings in shopsearch/settings.py: {sorted(unknown)}"


def test_dockerfile_installs_the_lock_then_the_project_as_non_root(compose):
    instructions = _dockerfile_instructions(DOCKERFILE)
    keywords = [k for k, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    copies = [args.split() for k, args in instructions if k == "COPY"]
    sources = [src for args in copies for src in args[:-1] if not src.startswith("--")]
    for src in sources:
        if not any(ch in src for ch in "*?["):  # globs may match nothing (optional files)
            assert (ROOT / src).exists(), f"the Dockerfile copies {src}, which is not in the repository"
    assert "requirements.lock" in sources
    runs = [args for k, args in instructions if k == "RUN"]
    lock_install = next(i for i, r in enumerate(runs) if "pip install -r" in r and "requirements.lock" in r)
    project_install = next(i for i, r in enumerate(runs) if "pip install --no-deps" in r)
    assert lock_install < project_install
    env = " ".join(args for k, args in instructions if k == "ENV")
    assert "HF_HUB_OFFLINE=1" in env
    users = [args for k, args in instructions if k == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")


def test_the_files_pyproject_needs_to_build_are_copied_into_the_image():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools_cfg = pyproject["tool"]["setuptools"]
    copied = {Path(src).as_posix().rstrip("/")
              for k, args in _dockerfile_instructions(DOCKERFILE) if k == "COPY"
              for src in args.split()[:-1] if not src.startswith("--")}
    assert "pyproject.toml" in copied
    package_dirs = dict(setuptools_cfg["package-dir"])
    for package in setuptools_cfg["packages"]:
        # a package lives under its mapped directory, or under its parent's mapping
        parts = package.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in package_dirs:
                directory = Path(package_dirs[".".join(parts[:i])], *parts[i:])
                break
        else:
            directory = Path(*parts)
        assert (ROOT / directory).is_dir(), f"pyproject.toml package {package}: {directory} does not exist"
        assert directory.parts[0] in copied, f"the Dockerfile does not copy {directory.parts[0]} ({package})"
    for package, patterns in setuptools_cfg.get("package-data", {}).items():
        for pattern in patterns:
            top = (package_dirs.get(package) or package.replace(".", "/")).split("/")[0]
            assert top in copied, f"package data {package}:{pattern} is not copied"
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str):
        # copied literally (then it must exist) or through a glob (optional while it is absent)
        assert readme in copied or any(Path(readme).match(c) for c in copied), f"{readme} is not copied"
        if readme in copied:
            assert (ROOT / readme).is_file()


def test_docker_compose_accepts_the_files(compose, env_example):
    """`docker compose config -q` with .env.example and the deployment's own secrets (the example
    ships none, and compose refuses every command without them), where Docker Compose exists; reported
    as skipped where it does not (the static checks above always run)."""
    command = _docker_compose()
    for profile_args in ([], ["--profile", "gpu"]):
        result = subprocess.run(
            [*command, "-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE), *profile_args, "config", "-q"],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
            env={**os.environ, **_secrets(compose, env_example)},  # the shell's values win over the env file's
        )
        assert result.returncode == 0, result.stderr


def test_the_static_reading_resolves_the_file_as_docker_compose_does(compose, env_example):
    """The tests above read compose.yaml through their own interpolation: Compose's own resolution
    (`config --format json`, every profile) gives every service the same environment, command and image."""
    secrets = _secrets(compose, env_example)
    result = subprocess.run(
        [*_docker_compose(), "-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE), "--profile", "gpu",
         "config", "--format", "json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, **secrets},
    )
    assert result.returncode == 0, result.stderr
    theirs = json.loads(result.stdout)["services"]
    ours = _resolve(compose, {**env_example, **secrets})["services"]
    assert sorted(ours) == sorted(theirs)
    for name, service in ours.items():
        assert _environment(service) == _environment(theirs[name]), name
        assert _command(service) == list(theirs[name].get("command") or []), name
        assert service.get("image") == theirs[name].get("image"), name
