"""docker-compose.yml, the Dockerfile and deploy/kubernetes/ against the code.

No container engine runs here, so these read the files and check what they claim:
every command they run is a real command of the project (each ``sourcecheck ...``
subcommand answers ``--help`` through the installed CLI; its options, and those passed on
to ``celery worker`` and Flower, exist; each ``celery`` command and inspect action too),
every ``SOURCECHECK_*`` variable is a field of ``ApiSettings`` and the values are valid
settings, every long-running service or container has a healthcheck that hits a real
route, and grace periods, node names and the KEDA queue agree with the code.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from celery.bin.celery import celery as celery_cli

from api.settings import ApiSettings
from cli.main import app as sourcecheck_app
from worker.app import QUEUE
from worker.app import app as celery_app
from worker.jobs import FINISH_GRACE_SECONDS

ROOT = Path(__file__).parents[1]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "kubernetes"
BIN = Path(sys.executable).parent
SOURCECHECK_CLI = typer.main.get_command(sourcecheck_app)
HARD_DEADLINE_SECONDS = 1.0  # worker.runner kills a child 1 s past a probe's deadline
# Not project commands, but present in the image (python:*-slim) and harmless.
IMAGE_UTILITIES = {"sleep"}


# --- commands ------------------------------------------------------------------------------


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script (split on ; && || |), each without a leading exec."""
    commands = []
    for part in re.split(r"&&|\|\||;|\|", script):
        argv = shlex.split(part)
        if argv and argv[0] == "exec":
            argv = argv[1:]
        if argv:
            commands.append(argv)
    return commands


def argvs(command: Any) -> list[list[str]]:
    """What a command line runs: a list (exec form, ``sh -c SCRIPT`` unwrapped) or a shell string."""
    if isinstance(command, str):
        return shell_commands(command)
    argv = [str(a) for a in command]
    if len(argv) >= 3 and argv[0] in ("sh", "bash", "/bin/sh") and argv[1] == "-c":
        return shell_commands(argv[2])
    return [argv]


# Typer vendors its own click (typer._click): commands and options are told apart by shape.
def is_group(command: Any) -> bool:
    return hasattr(command, "commands")


def options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option"]


def option_names(command: Any) -> set[str]:
    return {name for p in options(command) for name in (*p.opts, *p.secondary_opts)}


def check_options(command: Any, args: list[str], where: str) -> None:
    known = option_names(command) | {"--help"}
    for arg in args:
        if arg.startswith("-"):
            assert arg.split("=", 1)[0] in known, (
                f"{where}: `{command.name}` has no option {arg} (it has {sorted(known)})"
            )


@cache
def cli_help(*path: str) -> str:
    done = subprocess.run([str(BIN / "sourcecheck"), *path, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Usage" in done.stdout, (
        f"`sourcecheck {' '.join(path)} --help` failed: {done.stderr}"
    )
    return done.stdout


@cache
def inspect_actions() -> set[str]:
    done = subprocess.run(
        [str(BIN / "celery"), "-A", "worker.app", "inspect", "--list"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return {line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ") and line.strip()}


@cache
def flower_options() -> set[str]:
    import flower.options  # noqa: F401  (defines Flower's options in tornado's registry)
    from tornado.options import options

    return set(options._options)


def check_sourcecheck(args: list[str], where: str) -> list[str]:
    """Check ``sourcecheck ARGS``; returns the subcommand path, e.g. ["db", "upgrade"]."""
    command: Any = SOURCECHECK_CLI
    path: list[str] = []
    while is_group(command) and args and not args[0].startswith("-"):
        assert args[0] in command.commands, f"{where}: `sourcecheck {' '.join([*path, args[0]])}` is not a command"
        path.append(args[0])
        command, args = command.commands[args[0]], args[1:]
    assert not is_group(command), f"{where}: `sourcecheck {' '.join(path)}` is a group, not a command"
    cli_help(*path)  # the installed command answers
    if path == ["worker"]:  # the rest goes to `celery worker`
        check_options(celery_cli.commands["worker"], args, where)
    elif path == ["flower"]:  # the rest goes to Flower
        for arg in args:
            if arg.startswith("--"):
                name = arg[2:].split("=", 1)[0].replace("_", "-")
                assert name in flower_options(), f"{where}: Flower has no option {arg}"
    else:
        check_options(command, args, where)
    return path


def check_celery(args: list[str], where: str) -> None:
    app = None
    while args and args[0].startswith("-"):
        name, _, inline = args[0].partition("=")
        assert name in option_names(celery_cli), f"{where}: celery has no global option {name}"
        if name in ("-A", "--app"):
            app = inline or args[1]
        takes_value = not any(p.is_flag for p in options(celery_cli) if name in p.opts)
        args = args[1 if inline or not takes_value else 2 :]
    assert app == "worker.app", f"{where}: celery must be given -A worker.app (got {app})"
    assert args and args[0] in celery_cli.commands, f"{where}: `celery {args[:1]}` is not a celery command"
    command = celery_cli.commands[args[0]]
    check_options(command, args[1:], where)
    if args[0] in ("inspect", "control"):
        action = next((a for a in args[1:] if not a.startswith("-")), None)
        assert args[0] != "inspect" or action in inspect_actions(), f"{where}: celery inspect has no action {action}"


def check_command(argv: list[str], where: str) -> None:
    """``argv`` runs in the project's image: it must be one of the project's commands."""
    program, args = argv[0], argv[1:]
    if program == "sourcecheck":
        check_sourcecheck(args, where)
    elif program == "celery":
        check_celery(args, where)
    elif program == "python":
        assert args[0] == "-c", f"{where}: python runs only -c snippets here"
        compile(args[1], where, "exec")
    else:
        assert program in IMAGE_UTILITIES, f"{where}: `{program}` is not a command of the project's image"


def node_name(argv: list[str]) -> str:
    """The Celery node name given to `sourcecheck worker` (-n/--hostname)."""
    for i, arg in enumerate(argv):
        if arg in ("-n", "--hostname"):
            return argv[i + 1]
        if arg.startswith("--hostname="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"no node name in {argv}")


@cache
def routes_of(role: str) -> set[str]:
    if role == "api":
        from api.main import app

        return {getattr(route, "path", "") for route in app.routes}
    if role == "flower":
        from flower.urls import handlers

        return {h[0] if isinstance(h, tuple) else h.regex.pattern.rstrip("$") for h in handlers}
    return set()


def check_probe_url(url_path: str, port: int, role: str, command: list[str], where: str) -> None:
    assert url_path in routes_of(role), f"{where}: {url_path} is not a route of the {role}"
    given = [a for a in command if a.startswith("--port")]
    listens = int(given[0].split("=", 1)[1]) if given and "=" in given[0] else int(command[command.index("--port") + 1])
    assert port == listens, f"{where}: the healthcheck asks port {port}, the {role} listens on {listens}"


# --- settings -------------------------------------------------------------------------------


def check_settings(env: dict[str, str], where: str) -> ApiSettings:
    """Every SOURCECHECK_* name is a setting and the values are valid ones (placeholders: x)."""
    values: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith("SOURCECHECK_"):
            continue
        field = name.removeprefix("SOURCECHECK_").lower()
        assert field in ApiSettings.model_fields, (
            f"{where}: {name} is not a setting (no field {field!r} in ApiSettings)"
        )
        values[field] = re.sub(r"\$\{[^}]*\}", "x", str(value))
    return ApiSettings(**values)


def worker_grace_needed(settings: ApiSettings) -> float:
    """The longest a worker may take to finish a probe it started (see worker.runner, worker.jobs)."""
    return settings.max_timeout_seconds + HARD_DEADLINE_SECONDS + FINISH_GRACE_SECONDS


def check_visibility_timeout(settings: ApiSettings, where: str) -> None:
    visibility = celery_app.conf.broker_transport_options["visibility_timeout"]
    longest_job = settings.queue_timeout_seconds + settings.max_timeout_seconds + FINISH_GRACE_SECONDS
    assert visibility > 2 * longest_job, (
        f"{where}: Redis' visibility timeout ({visibility} s) is not far above a job's life ({longest_job} s)"
    )


def seconds(duration: str | int) -> float:
    if isinstance(duration, int):
        return duration
    total, found = 0.0, re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert found and "".join(n + u for n, u in found) == duration, f"not a duration: {duration}"
    for number, unit in found:
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


# --- docker-compose.yml ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def own_image(service: dict[str, Any]) -> bool:
    return service.get("build") == "." or str(service.get("image", "")).startswith("sourcecheck")


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def unescape(value: Any) -> Any:
    """Compose turns $$ into $ (a literal dollar for the container's shell)."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, list):
        return [unescape(v) for v in value]
    return value


def one_shot(name: str, compose: dict[str, Any]) -> bool:
    """A service others wait for to *complete* (migrate): it has no healthcheck to give."""
    conditions = [
        deps[name]["condition"]
        for s in services(compose).values()
        if isinstance(deps := s.get("depends_on"), dict) and name in deps
    ]
    return bool(conditions) and all(c == "service_completed_successfully" for c in conditions)


def compose_healthcheck(service: dict[str, Any]) -> list[list[str]]:
    test = unescape(service["healthcheck"]["test"])
    if isinstance(test, str):
        return shell_commands(test)
    assert test[0] in ("CMD", "CMD-SHELL"), f"healthcheck test {test}"
    return shell_commands(test[1]) if test[0] == "CMD-SHELL" else [test[1:]]


def test_compose_runs_only_real_project_commands(compose: dict[str, Any]) -> None:
    ran = []
    for name, service in services(compose).items():
        if not own_image(service):
            continue
        assert "command" in service, f"{name}: say which role it runs"
        for argv in argvs(unescape(service["command"])):
            check_command(argv, f"compose {name}")
            ran.append(argv[0:3])
        if "healthcheck" in service:
            for argv in compose_healthcheck(service):
                check_command(argv, f"compose {name} healthcheck")
    assert ["sourcecheck", "db", "upgrade"] in ran and ["sourcecheck", "worker", "-n"] in ran


def test_compose_sets_only_real_valid_settings(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        env = compose_env(service)
        if own_image(service):
            settings = check_settings(env, f"compose {name}")
            assert settings.profile == "production", f"compose {name}: the production profile"
            check_visibility_timeout(settings, f"compose {name}")
        else:
            assert not [k for k in env if k.startswith("SOURCECHECK_")], (
                f"compose {name}: SOURCECHECK_* set on a foreign image"
            )


def test_every_long_running_compose_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if one_shot(name, compose):
            assert service.get("restart") == "no", f"{name}: a one-shot service must not be restarted"
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable") and check.get("test") not in (None, ["NONE"]), (
            f"{name}: no healthcheck"
        )
        for argv in compose_healthcheck(service):
            if argv[0] == "python" and own_image(service):
                url = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/-]*)", argv[2])
                assert url, f"{name}: healthcheck asks no local URL"
                command = argvs(service["command"])[0]
                check_probe_url(url.group(2), int(url.group(1)), command[1], command, f"compose {name}")


def test_compose_migrates_first_and_the_rest_waits_for_it(compose: dict[str, Any]) -> None:
    svc = services(compose)
    assert svc["migrate"]["command"] == ["sourcecheck", "db", "upgrade"]
    assert one_shot("migrate", compose)
    for name in ("api", "worker", "flower"):
        depends = svc[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
    assert svc["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    url = compose_env(svc["api"])["SOURCECHECK_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url


def test_compose_workers_scale_and_shut_down_gracefully(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    assert "ports" not in worker and "container_name" not in worker, "`--scale worker=N` needs neither"
    command = argvs(worker["command"])[0]
    name = node_name(command)
    assert "%h" in name, "each container its own node name: its hostname"
    pings = [a for a in compose_healthcheck(worker) if a[0] == "celery"]
    assert pings and pings[0][pings[0].index("-d") + 1] == name.replace("%h", "$HOSTNAME"), (
        "the healthcheck pings this worker"
    )
    settings = check_settings(compose_env(worker), "compose worker")
    assert seconds(worker["stop_grace_period"]) > worker_grace_needed(settings)
    api = services(compose)["api"]
    assert seconds(api["stop_grace_period"]) > check_settings(compose_env(api), "compose api").max_wait_seconds


def test_compose_redis_persists_and_flower_has_a_password(compose: dict[str, Any]) -> None:
    svc = services(compose)
    redis_command = " ".join(argvs(svc["redis"]["command"])[0])
    assert "--appendonly yes" in redis_command and "--maxmemory-policy noeviction" in redis_command
    assert any(v.endswith(":/data") for v in svc["redis"]["volumes"]), "Redis keeps its files in a volume"
    assert "FLOWER_BASIC_AUTH" in compose_env(svc["flower"]) or any(
        "--basic-auth" in a for a in svc["flower"]["command"]
    )
    assert compose_env(svc["flower"]).get("FLOWER_UNAUTHENTICATED_API") == "false"


# --- Dockerfile -----------------------------------------------------------------------------


def test_the_image_runs_as_a_non_root_user_and_a_real_command() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    for package in ("api", "worker", "connectors", "cli"):
        assert f"COPY {package} {package}" in lines
    assert any(line.startswith(("RUN pip install .", "RUN pip install -c constraints.txt .")) for line in lines)
    cmd = [line for line in lines if line.startswith("CMD ")][-1]
    check_command(yaml.safe_load(cmd.removeprefix("CMD ")), "Dockerfile CMD")


# --- Kubernetes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def of_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m.get("kind") == kind}


def container_env(container: dict[str, Any], manifests: list[dict[str, Any]], where: str) -> dict[str, str]:
    """The container's environment: its ConfigMaps (envFrom) and env, Secret references resolved."""
    config_maps, secrets = of_kind(manifests, "ConfigMap"), of_kind(manifests, "Secret")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_maps[source["configMapRef"]["name"]]["data"])
        else:
            env.update(secrets[source["secretRef"]["name"]]["stringData"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] in secrets and ref["key"] in secrets[ref["name"]]["stringData"], (
                f"{where}: no secret {ref}"
            )
            env[item["name"]] = secrets[ref["name"]]["stringData"][ref["key"]]
    return env


def containers(manifests: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], bool, dict[str, Any]]]:
    """(where, container, is_init, pod spec) of every Deployment."""
    found = []
    for name, deployment in of_kind(manifests, "Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        found += [(f"{name}/{c['name']}", c, True, spec) for c in spec.get("initContainers", [])]
        found += [(f"{name}/{c['name']}", c, False, spec) for c in spec["containers"]]
    return found


def test_kubernetes_runs_only_real_project_commands(manifests: list[dict[str, Any]]) -> None:
    ran = set()
    for where, container, _, _ in containers(manifests):
        assert container.get("command"), f"{where}: say which role it runs"
        for argv in argvs(container["command"] + container.get("args", [])):
            check_command(argv, where)
            ran.add(tuple(argv[:3]))
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if "exec" in container.get(probe, {}):
                for argv in argvs(container[probe]["exec"]["command"]):
                    check_command(argv, f"{where} {probe}")
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec")
        for argv in argvs(pre_stop["command"]) if pre_stop else []:
            check_command(argv, f"{where} preStop")
    assert {("sourcecheck", "db", "upgrade"), ("sourcecheck", "api", "--host"), ("sourcecheck", "worker", "-n")} <= ran


def test_kubernetes_sets_only_real_valid_settings(manifests: list[dict[str, Any]]) -> None:
    for config_map in of_kind(manifests, "ConfigMap").values():
        for name in config_map["data"]:
            assert (
                name.startswith("SOURCECHECK_")
                and name.removeprefix("SOURCECHECK_").lower() in ApiSettings.model_fields
            ), name
    for where, container, _, _ in containers(manifests):
        settings = check_settings(container_env(container, manifests, where), where)
        assert settings.profile == "production", where
        check_visibility_timeout(settings, where)


def test_every_kubernetes_container_has_probes_on_real_routes(manifests: list[dict[str, Any]]) -> None:
    services = of_kind(manifests, "Service")
    for where, container, is_init, _pod in containers(manifests):
        if is_init:
            continue
        assert "livenessProbe" in container, f"{where}: no liveness probe"
        role = argvs(container["command"])[0][1]
        serves = any(s["spec"]["selector"].items() <= pod_labels(manifests, where).items() for s in services.values())
        if serves:
            assert "readinessProbe" in container, f"{where}: behind a Service without a readiness probe"
        for probe in ("livenessProbe", "readinessProbe"):
            get = container.get(probe, {}).get("httpGet")
            if get:
                ports = {p["name"]: p["containerPort"] for p in container["ports"]}
                port = ports.get(get["port"], get["port"])
                check_probe_url(get["path"], int(port), role, argvs(container["command"])[0], f"{where} {probe}")


def pod_labels(manifests: list[dict[str, Any]], where: str) -> dict[str, str]:
    deployment = of_kind(manifests, "Deployment")[where.split("/")[0]]
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), f"{where}: selector misses its pods"
    return labels


def test_kubernetes_api_migrates_before_it_starts(manifests: list[dict[str, Any]]) -> None:
    api = of_kind(manifests, "Deployment")["sourcecheck-api"]["spec"]["template"]["spec"]
    assert [c["command"] for c in api["initContainers"]] == [["sourcecheck", "db", "upgrade"]]
    settings = check_settings(container_env(api["containers"][0], manifests, "api"), "api")
    assert api["terminationGracePeriodSeconds"] > settings.max_wait_seconds


def test_kubernetes_workers_shut_down_gracefully_with_distinct_names(manifests: list[dict[str, Any]]) -> None:
    pod = of_kind(manifests, "Deployment")["sourcecheck-worker"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    settings = check_settings(container_env(container, manifests, "worker"), "worker")
    assert pod["terminationGracePeriodSeconds"] > worker_grace_needed(settings)
    name = node_name(container["command"])
    assert "%h" in name
    (ping,) = argvs(container["livenessProbe"]["exec"]["command"])
    assert ping[ping.index("-d") + 1] == name.replace("%h", "$HOSTNAME"), "the probe pings this pod's worker"


def test_flower_takes_its_password_from_the_secret(manifests: list[dict[str, Any]]) -> None:
    (container,) = of_kind(manifests, "Deployment")["sourcecheck-flower"]["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert "secretKeyRef" in env["FLOWER_BASIC_AUTH"]["valueFrom"]
    assert env["FLOWER_UNAUTHENTICATED_API"]["value"] == "false"


def test_keda_scales_the_workers_on_the_celery_queue(manifests: list[dict[str, Any]]) -> None:
    (scaled,) = of_kind(manifests, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] in of_kind(manifests, "Deployment")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "sourcecheck-worker"
    assert scaled["spec"]["minReplicaCount"] >= 1, "a job waits only SOURCECHECK_QUEUE_TIMEOUT_SECONDS for a worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == QUEUE
    secret = next(iter(of_kind(manifests, "Secret").values()))["stringData"]
    redis = urlsplit(secret["SOURCECHECK_REDIS_URL"])
    assert trigger["metadata"]["address"] == f"{redis.hostname}:{redis.port}"
    assert trigger["metadata"]["databaseIndex"] == (redis.path.strip("/") or "0")
    auth = of_kind(manifests, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "password" and secret[ref["key"]] == redis.password


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


def test_readme_links_the_kubernetes_notes() -> None:
    assert "deploy/kubernetes/README.md" in (ROOT / "README.md").read_text()
    notes = (K8S / "README.md").read_text()
    for topic in ("visibility timeout", "Graceful termination", "Growing past one machine", "Sentinel"):
        assert topic in notes


# --- what is published ----------------------------------------------------------------------


def published(service: dict[str, Any]) -> list[tuple[str | None, int, int]]:
    """(host address or None for every address, host port, container port) of each published port."""
    found = []
    for port in service.get("ports", []):
        parts = str(port).split(":")
        address = parts[0] if len(parts) == 3 else None
        found.append((address, int(parts[-2]), int(parts[-1])))
    return found


def test_compose_publishes_only_the_api_port_to_the_world(compose: dict[str, Any]) -> None:
    svc = services(compose)
    api_settings = check_settings(compose_env(svc["api"]), "compose api")
    api_port = int(argvs(svc["api"]["command"])[0][argvs(svc["api"]["command"])[0].index("--port") + 1])
    for name, service in svc.items():
        for address, _, container in published(service):
            if name == "api" and container == api_port:
                continue
            assert address == "127.0.0.1", f"compose {name}: port {container} is published beyond this machine"
    assert ("127.0.0.1", api_settings.metrics_port, api_settings.metrics_port) in published(svc["api"]), (
        "compose api: the metrics port is published on 127.0.0.1"
    )
    assert published(svc["flower"]) == [("127.0.0.1", 5555, 5555)]


def test_kubernetes_metrics_are_on_the_pod_not_behind_the_service(manifests: list[dict[str, Any]]) -> None:
    pod = of_kind(manifests, "Deployment")["sourcecheck-api"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    settings = check_settings(container_env(container, manifests, "api"), "api")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == settings.metrics_port
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(settings.metrics_port)
    service = of_kind(manifests, "Service")["sourcecheck-api"]
    targets = {p["targetPort"] for p in service["spec"]["ports"]}
    assert targets == {"http"}, f"the public Service reaches only the API's port, not {targets - {'http'}}"
