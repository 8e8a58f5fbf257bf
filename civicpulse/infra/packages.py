"""What the launcher installs or fetches on first use: Debian packages and Kafka's jars."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from civicpulse.infra.processes import run, sayer
from civicpulse.infra.state import (
    DEFAULT_KAFKA_VERSION,
    KAFKA_DEPLOY_DIR,
    InfraError,
    Say,
    cache_dir,
)


def which_or_install(tool: str, apt_package: str, say: Say) -> str:
    found = shutil.which(tool)
    if found:
        return found
    apt_install(apt_package, say)
    found = shutil.which(tool)
    if not found:
        raise InfraError(f"`{tool}` still not found after installing {apt_package}")
    return found


def apt_install(package: str, say: Say) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise InfraError(f"{package} is missing; install it (e.g. `apt-get install -y {package}`)")
    say(f"{package} not found: installing it with apt-get (first run only)…")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", package]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise InfraError(f"{shlex.join(argv)} failed:\n{done.stderr.strip()[-3000:]}")


def kafka_version() -> str:
    return os.environ.get("CIVICPULSE_KAFKA_VERSION", DEFAULT_KAFKA_VERSION)


def kafka_lib_dir(version: str | None = None, *, quiet: bool = False) -> Path:
    """The folder of Kafka jars (broker + kafka-tools), fetched on first use."""
    return ensure_kafka_jars(version or kafka_version(), sayer(quiet))


def kafka_classpath(version: str | None = None) -> str:
    """A `java -cp` value with every Kafka jar, e.g. for ProducerPerformance."""
    return str(kafka_lib_dir(version, quiet=True) / "*")


def ensure_kafka_jars(version: str, say: Say) -> Path:
    lib = cache_dir() / f"kafka-{version}" / "lib"
    if not (lib / f"kafka_2.13-{version}.jar").exists():
        _fetch_kafka_jars(version, lib, say)
    return lib


def _fetch_kafka_jars(version: str, lib: Path, say: Say) -> None:
    mvn = which_or_install("mvn", "maven", say)
    say(f"fetching Apache Kafka {version} from Maven Central (first run only)…")
    lib.parent.mkdir(parents=True, exist_ok=True)
    # Download beside the final folder and rename, so an interrupted fetch
    # never looks complete.
    staging = Path(tempfile.mkdtemp(prefix="lib.", dir=lib.parent))
    try:
        run(
            [
                mvn,
                "-q",
                "-B",
                "-Dstyle.color=never",  # plain text in error messages
                "-f",
                str(KAFKA_DEPLOY_DIR / "pom.xml"),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
                f"-Dkafka.version={version}",
            ],
            what=f"fetching Kafka {version} jars",
        )
        try:
            staging.rename(lib)
        except OSError:
            if not lib.exists():  # another process won the race: theirs is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"Kafka {version} jars cached in {lib}")


def find_pg_bin_dir() -> Path | None:
    """The folder of initdb/pg_ctl: via PATH, else the highest /usr/lib/postgresql/N/bin."""
    initdb = shutil.which("initdb")
    if initdb:
        # Debian puts only wrappers/symlinks in PATH; the real folder has every tool.
        return Path(initdb).resolve().parent
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    candidates.sort(key=lambda p: _version_key(p.parent.name))
    return candidates[-1] if candidates else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def pg_bin_dir(say: Say) -> Path:
    found = find_pg_bin_dir()
    if found is None:
        apt_install("postgresql", say)
        found = find_pg_bin_dir()
    if found is None:
        raise InfraError("PostgreSQL installed but initdb not found under /usr/lib/postgresql")
    return found
