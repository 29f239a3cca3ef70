"""Deployment files, checked as far as a machine without a Docker engine allows: the compose file
parses and every file it mounts or builds from exists, the variables it sets are options the
daemon knows, its Prometheus configuration passes promtool; the Dockerfile's build stage runs
here (scripts/build-release.sh, the very script the image runs) and its binaries work; the
runtime stage installs a package for every shared library those binaries link, runs as a
non-root user and checks /readyz. Building and running the image itself is not exercised."""
import os
import re
import shutil
import subprocess

import yaml

from conftest import BIN, ROOT

COMPOSE_DIR = os.path.join(ROOT, "compose")
DOCKERFILE = os.path.join(ROOT, "Dockerfile")


def daemon_help():
    out = subprocess.run([os.path.join(BIN, "server", "aetherisd"), "--help"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    return out.stdout


def test_compose_file_is_complete(tmp_path):
    """Invariant: the compose stack names every service the issue asks for, every host path it
    mounts or builds from exists, and every AETHERIS_* variable it sets is a daemon option."""
    with open(os.path.join(COMPOSE_DIR, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    assert {"mosquitto", "redis", "mongo", "aetherisd", "prometheus", "grafana"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith((".", "/")):
                assert os.path.exists(os.path.join(COMPOSE_DIR, src)), (name, src)
    build = services["aetherisd"]["build"]
    context = os.path.join(COMPOSE_DIR, build["context"])
    assert os.path.isfile(os.path.join(context, build["dockerfile"]))
    env = services["aetherisd"]["environment"]
    assert env["AETHERIS_MONGODB_URI"].startswith("mongodb://")
    helptext = daemon_help()
    for var in env:
        assert var in helptext, f"{var} is not an option of aetherisd"
    for p in services["aetherisd"].get("ports", []) + services["grafana"].get("ports", []):
        assert p.startswith("127.0.0.1:"), f"{p} would publish beyond loopback"
    # Prometheus's configuration, with the rules path as mounted in the container made local
    with open(os.path.join(COMPOSE_DIR, "prometheus.yml")) as f:
        prom = f.read().replace("/etc/prometheus/alerts.yml",
                                os.path.join(ROOT, "dashboards", "alerts.yml"))
    conf = tmp_path / "prometheus.yml"
    conf.write_text(prom)
    check = subprocess.run(["promtool", "check", "config", str(conf)], capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "aetherisd:8080" in prom


def stages(text):
    """The Dockerfile as [(FROM line, [instructions])], continuation lines joined."""
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            out.append((line, []))
        else:
            out[-1][1].append(line)
    return out


def test_image_build_steps_run_here(tmp_path):
    """Invariant: the image's build stage succeeds on this machine and yields working binaries;
    the runtime stage installs every library they link, runs unprivileged and checks /readyz."""
    with open(DOCKERFILE) as f:
        build, runtime = stages(f.read())
    assert build[0].startswith("FROM debian:bookworm") and runtime[0].startswith(
        "FROM debian:bookworm")
    assert any("scripts/build-release.sh" in i for i in build[1])
    prefix, bdir = tmp_path / "opt", tmp_path / "build"
    out = subprocess.run([os.path.join(ROOT, "scripts", "build-release.sh"), str(prefix),
                          str(bdir)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    daemon = prefix / "bin" / "aetherisd"
    version = subprocess.run([str(daemon), "--version"], capture_output=True, text=True,
                             timeout=10)
    assert version.returncode == 0 and version.stdout.startswith("aetherisd ")
    for tool in ("aetheris-replay", "aetheris-seed", "aetheris-keygen"):
        assert os.access(prefix / "bin" / tool, os.X_OK), tool
    assert (prefix / "share" / "aetheris" / "transactions.csv").stat().st_size > 1_000_000

    run_line = next(i for i in runtime[1] if i.startswith("RUN ") and "apt-get install" in i)
    packages = set(re.findall(r"\b(lib[a-z0-9.+-]+)\b", run_line))
    ldd = subprocess.run(["ldd", str(daemon)], capture_output=True, text=True, timeout=10)
    needed = set()
    for path in re.findall(r"=> (\S+) \(", ldd.stdout):
        owner = None
        for candidate in (path, "/usr" + path, os.path.realpath(path)):
            q = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if q.returncode == 0:
                owner = q.stdout.split(":")[0]
                break
        assert owner, f"no package owns {path}"
        needed.add(owner)
    base = {"libc6", "libgcc-s1", "zlib1g", "libcom-err2", "libkeyutils1", "libgcc1"}
    uncovered = set()
    for pkg in needed - base:
        deps = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends",
                               "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
                               "--no-enhances", *sorted(packages)],
                              capture_output=True, text=True, timeout=60).stdout
        if pkg not in packages and not re.search(r"^\s*(Depends: )?" + re.escape(pkg) + r"$",
                                                 deps, re.M):
            uncovered.add(pkg)
    assert not uncovered, f"libraries linked but not installed by the runtime stage: {uncovered}"
    user = [i for i in runtime[1] if i.startswith("USER ")]
    assert user and user[-1].split()[1] not in ("root", "0")
    health = [i for i in runtime[1] if i.startswith("HEALTHCHECK ")]
    assert health and "/readyz" in health[0]
    shutil.rmtree(bdir, ignore_errors=True)
