"""Deployment files: docker-compose.yml, the Dockerfile, .env.example and the generated
configuration reference agree with the code; the package installs from a wheel and runs."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import typer
import yaml
from pydantic import BaseModel

from signalcast.cli.app import cli
from signalcast.config import EnvConfig, FileConfig, load_settings
from signalcast.tasks.app import QUEUES

REPO = Path(__file__).resolve().parents[1]
COMPOSE_TEXT = (REPO / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict] = COMPOSE["services"]
OURS = {name: s for name, s in SERVICES.items() if "build" in s}  # built from our Dockerfile
ONE_SHOT = {"migrate"}
ENV_PREFIX = EnvConfig.model_config["env_prefix"]


def resolve(words: list[str]):
    """The CLI command ``signalcast WORDS...`` runs, with its options parsed as click would
    (unknown commands, options or bad values raise click's usage errors). Groups are told by
    their ``commands`` (typer may ship its own click, so no isinstance check)."""
    command = typer.main.get_command(cli)
    words, path = list(words), ["signalcast"]
    while getattr(command, "commands", None) is not None:
        assert words, f"`{' '.join(path)}` needs a sub-command"
        word = words.pop(0)
        assert word in command.commands, \
            f"`{' '.join(path)}` has no command {word!r}; it has {sorted(command.commands)}"
        command, path = command.commands[word], [*path, word]
    command.make_context(" ".join(path), words, resilient_parsing=False)
    return command


def option(argv: list[str], *names: str) -> str:
    for i, word in enumerate(argv):
        if word in names:
            return argv[i + 1]
    raise AssertionError(f"{argv} has none of {names}")


def env_example() -> dict[str, str]:
    """VAR -> value for every variable .env.example documents (set or commented out)."""
    found = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)[=:]\s*(.*)$", line)
        if match:
            found[match[1]] = match[2]
    return found


def interpolated() -> set[str]:
    """Every ${VAR} docker compose fills in ($${...} is an escaped literal for the container)."""
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_TEXT))


def environment_keys() -> set[str]:
    keys = set()
    for service in SERVICES.values():
        env = service.get("environment") or {}
        keys |= set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
    return keys


SETTINGS_VARS = {f"{ENV_PREFIX}{name.upper()}" for name in EnvConfig.model_fields}


# -- docker-compose.yml ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_signalcast_service_runs_a_command_the_cli_has(name):
    resolve(OURS[name]["command"])


@pytest.mark.parametrize("name", sorted(OURS))
def test_health_checks_of_signalcast_services_call_commands_the_cli_has(name):
    check = OURS[name]["healthcheck"]
    if name in ONE_SHOT:
        assert check == {"disable": True}
        return
    test = check["test"]
    if test[1] == "signalcast":
        resolve(test[2:])
    else:  # an HTTP probe with the image's Python
        assert test[1:3] == ["python", "-c"] and "urlopen('http://127.0.0.1:" in test[3]


@pytest.mark.parametrize("name", sorted(set(SERVICES) - ONE_SHOT))
def test_every_long_running_service_has_a_health_check_and_restarts(name):
    service = SERVICES[name]
    assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    assert service["restart"] in ("unless-stopped", "always")


def test_migrate_runs_once_and_before_every_other_signalcast_service():
    migrate = SERVICES["migrate"]
    assert migrate["command"] == ["db", "upgrade"] and migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in set(OURS) - ONE_SHOT:
        assert OURS[name]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully", name


def test_each_queue_has_one_worker_service_and_the_alerts_worker_cannot_be_scaled():
    workers = {name: s for name, s in OURS.items() if s["command"][0] == "worker"}
    queues = {option(s["command"], "-Q", "--queues"): name for name, s in workers.items()}
    assert sorted(queues) == sorted(QUEUES) and len(queues) == len(workers)
    concurrency = {q: int(option(workers[n]["command"], "-c", "--concurrency"))
                   for q, n in queues.items()}
    assert concurrency == {"predict": 2, "train": 1, "alerts": 1}
    alerts = workers[queues["alerts"]]
    # a fixed container_name makes `docker compose up --scale worker-alerts=2` an error
    assert alerts["container_name"] and alerts.get("deploy", {}).get("replicas", 1) == 1
    assert "container_name" not in workers[queues["predict"]]  # predict scales


def test_only_one_bot_polls_the_token():
    bot = SERVICES["bot"]
    assert bot["command"] == ["bot"]
    assert bot["container_name"] and bot.get("deploy", {}).get("replicas", 1) == 1


def test_scheduler_can_run_a_standby_replica():
    scheduler = SERVICES["scheduler"]
    assert "container_name" not in scheduler  # --scale scheduler=2 gives a hot standby
    assert scheduler["healthcheck"]["test"][1:] == ["signalcast", "health", "--scheduler"]


def test_redis_keeps_queued_tasks_and_never_evicts_them():
    redis = SERVICES["redis"]
    command = redis["command"]
    assert option(command, "--appendonly") == "yes"
    assert option(command, "--maxmemory-policy") == "noeviction"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_redis_asks_for_a_password_that_every_client_and_the_health_check_send():
    redis = SERVICES["redis"]
    required = "${REDIS_PASSWORD:?"
    assert option(redis["command"], "--requirepass").startswith(required)
    assert redis["environment"]["REDISCLI_AUTH"].startswith(required)  # redis-cli ping logs in
    for name in OURS:
        assert OURS[name]["environment"]["SIGNALCAST_BROKER_URL"].startswith(
            "redis://:" + required), name
    assert SERVICES["flower"]["environment"]["CELERY_BROKER_URL"].startswith(
        "redis://:" + required)


def test_flower_and_the_dashboard_ask_for_credentials_and_publish_on_loopback_only():
    assert SERVICES["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith(
        "${FLOWER_BASIC_AUTH:?")
    web = SERVICES["web"]
    assert web["command"][0] == "web" and option(web["command"], "--host") == "0.0.0.0"
    assert web["environment"]["SIGNALCAST_WEB_TOKEN"].startswith("${SIGNALCAST_WEB_TOKEN:?")
    assert web["environment"]["SIGNALCAST_CONFIG"] == "/etc/signalcast/config.yaml"
    assert "/healthz" in web["healthcheck"]["test"][3]
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_dockerfile_family_extras_name_extras_of_pyproject():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    text = (REPO / "Dockerfile").read_text()
    assert 'ARG FAMILY_EXTRAS=""' in text  # lean by default
    for name in re.findall(r"FAMILY_EXTRAS=([a-z,]+)", text):
        assert set(name.split(",")) <= set(extras), name


def test_postgres_keeps_its_data_and_reports_ready_with_pg_isready():
    postgres = SERVICES["postgres"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in postgres["healthcheck"]["test"][1]
    assert set(COMPOSE["volumes"]) >= {v.split(":")[0] for v in postgres["volumes"]}


def test_signalcast_services_read_the_env_file_and_the_mounted_config_read_only():
    for name, service in OURS.items():
        assert service["env_file"] == ".env", name
        target = service["environment"]["SIGNALCAST_CONFIG"]
        (mount,) = [v for v in service["volumes"] if v["target"] == target]
        assert mount["type"] == "bind" and mount["read_only"] is True, name


@pytest.mark.integration  # needs the live extra (ccxt)
def test_every_variable_compose_or_the_settings_use_is_documented_in_env_example():
    documented = set(env_example())
    used = interpolated() | environment_keys() | SETTINGS_VARS
    assert sorted(used - documented) == []


def test_env_example_documents_no_variable_that_nothing_reads():
    used = interpolated() | environment_keys() | SETTINGS_VARS
    assert sorted(set(env_example()) - used) == []


def test_env_example_values_are_valid_settings(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    for key, value in env_example().items():
        if key.startswith(ENV_PREFIX) and key != f"{ENV_PREFIX}CONFIG":
            monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.env.broker_url == "redis://redis:6379/0"
    assert settings.env.log_format == "json" and settings.env.telegram_token is None


def test_services_the_docs_name_exist_in_compose():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Production with Docker Compose", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^\| `([a-z-]+)` \|", section, flags=re.M))
    assert named == set(SERVICES)
    production = (REPO / "docs" / "production.md").read_text()
    assert set(re.findall(r"^\| `([a-z-]+)` \|", production, flags=re.M)) == set(SERVICES)
    for doc in (readme, production, (REPO / "docs" / "scaling.md").read_text()):
        for service in re.findall(r"--scale ([a-z-]+)=", doc):
            assert service in SERVICES and service not in ("worker-alerts", "bot"), service


# -- Dockerfile -----------------------------------------------------------------------------------

DOCKERFILE = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()
              if line.strip() and not line.strip().startswith("#")]


def instruction_index(prefix: str) -> int:
    return next(i for i, line in enumerate(DOCKERFILE) if line.startswith(prefix))


def test_dockerfile_builds_a_slim_image_that_runs_as_a_non_root_user():
    assert DOCKERFILE[0] == "FROM python:3.11-slim"
    users = [line.split()[1] for line in DOCKERFILE if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert instruction_index("USER ") < instruction_index("ENTRYPOINT")


def test_dockerfile_installs_dependencies_before_copying_the_source():
    deps = instruction_index("COPY pyproject.toml")
    install = instruction_index("RUN python -c \"import tomllib")
    source = instruction_index("COPY signalcast")
    assert deps < install < source
    assert not any(line.startswith(("COPY . ", "ADD ")) for line in DOCKERFILE)
    text = (REPO / "Dockerfile").read_text()
    assert "['optional-dependencies']['live']" in text  # the live extra (ccxt) is installed
    assert "pip install --no-deps ." in text


def test_image_runs_signalcast_for_every_role_with_one_model_thread():
    assert DOCKERFILE[instruction_index("ENTRYPOINT")] == 'ENTRYPOINT ["signalcast"]'
    assert "OMP_NUM_THREADS=1" in (REPO / "Dockerfile").read_text()
    healthcheck = DOCKERFILE[instruction_index("HEALTHCHECK")]
    assert healthcheck.endswith("\\")  # options, then the command on the next line
    assert DOCKERFILE[instruction_index("HEALTHCHECK") + 1] == 'CMD ["signalcast", "health"]'
    resolve(["health"])


def test_dockerignore_keeps_secrets_tests_and_databases_out_of_the_build_context():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".env", ".git", "tests", "*.db", "signalcast-demo"} <= ignored
    assert "signalcast" not in ignored and "pyproject.toml" not in ignored


# -- configuration reference ----------------------------------------------------------------------


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_config_docs",
                                                  REPO / "scripts" / "gen_config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration  # needs the live extra (ccxt)
def test_committed_configuration_reference_equals_the_generated_one():
    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == load_generator().render(), \
        "docs/configuration.md is stale: run python scripts/gen_config_docs.py"


def _paths(model, prefix: str = ""):
    """Every key path of the YAML file: ``schedule.retrain_cron``, ``routing.default.shadows``,
    ``assets.symbol`` (list items under their list's name)."""
    for name, field in model.model_fields.items():
        yield f"{prefix}{name}"
        for sub in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                yield from _paths(sub, f"{prefix}{name}.")


def test_configuration_reference_names_every_setting_and_variable():
    text = load_generator().render()
    for variable in SETTINGS_VARS:
        assert f"| `{variable}` |" in text
    headings = set(re.findall(r"^#+ `([^`]+)`", text, flags=re.M))
    for path in _paths(FileConfig):
        section, _, key = path.rpartition(".")
        assert f"| `{key}` |" in text, path
        if section:
            assert section in headings or f"{section}[]" in headings, path


def test_generator_check_mode_fails_on_a_stale_file(tmp_path):
    stale = tmp_path / "configuration.md"
    stale.write_text("# old\n")
    generator = load_generator()
    assert generator.main(["--check", "--output", str(stale)]) == 1
    assert generator.main(["--output", str(stale)]) == 0
    assert generator.main(["--check", "--output", str(stale)]) == 0


# -- the package installs from a wheel ------------------------------------------------------------


@pytest.mark.slow
def test_wheel_built_from_the_image_sources_installs_and_runs(tmp_path):
    """What the Dockerfile copies (pyproject.toml, README.md, signalcast/) builds a wheel that
    installs into a fresh virtual environment (its dependencies come from this interpreter's
    site-packages, offline) and runs: help, config from the packaged YAML, migrations."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "signalcast", source / "signalcast",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("signalcast-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    installed = subprocess.run(  # the venv's python runs the system pip, installs into the venv
        [str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["SIGNALCAST_DATABASE_URL"] = f"sqlite:///{tmp_path / 'fresh.db'}"

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
        return done.stdout

    where = run(str(python), "-c", "import signalcast; print(signalcast.__file__)")
    assert where.startswith(str(env_dir)), f"imported {where}, not the wheel's copy"
    signalcast = str(env_dir / "bin" / "signalcast")
    assert "worker" in run(signalcast, "--help")
    shown = yaml.safe_load(run(signalcast, "config", "show"))
    assert shown["source"] == "(packaged default.yaml)" and shown["assets"]
    assert "database at revision" in run(signalcast, "db", "upgrade")
