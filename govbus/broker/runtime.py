"""Java and the Kafka jars: found or fetched from Maven Central, with errors that say what to do.

The Kafka version is pinned in ``pom.xml`` beside this file and nowhere else; the jars are
copied once into ``<home>/kafka-<version>/libs`` and reused by every later start.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from govbus.errors import GovbusError

POM_PATH = Path(__file__).with_name("pom.xml")
MINIMUM_JAVA = 17
_POM_NAMESPACE = {"maven": "http://maven.apache.org/POM/4.0.0"}


class BrokerError(GovbusError):
    """A problem a user can fix; the message says what went wrong and what to do."""


def kafka_version() -> str:
    """The Kafka version pinned in pom.xml."""
    root = ElementTree.parse(POM_PATH).getroot()
    version = root.find("maven:properties/maven:kafka.version", _POM_NAMESPACE)
    if version is None or not (version.text or "").strip():
        raise BrokerError(f"{POM_PATH} has no <kafka.version> property")
    return version.text.strip()


@dataclass(frozen=True)
class Java:
    executable: str
    major: int


def find_java() -> Java:
    """The java that will run the broker: $JAVA_HOME/bin/java, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not candidate or not Path(candidate).exists():
        raise BrokerError(
            f"Java {MINIMUM_JAVA} or newer is needed to run Kafka, and none was found "
            "(no java on PATH, JAVA_HOME unset or wrong). Install it, e.g. "
            "`apt-get install openjdk-17-jre-headless`, or set JAVA_HOME."
        )
    major = java_major_version(candidate)
    if major < MINIMUM_JAVA:
        raise BrokerError(
            f"{candidate} is Java {major}; Kafka {kafka_version()} needs Java {MINIMUM_JAVA} "
            "or newer. Install a newer JDK and point JAVA_HOME at it."
        )
    return Java(candidate, major)


def java_major_version(executable: str) -> int:
    """Parse `java -version` ("1.8.0_392" is 8, "17.0.15" is 17)."""
    try:
        completed = subprocess.run(
            [executable, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as error:
        raise BrokerError(f"Could not run {executable}: {error}") from error
    return parse_java_version(completed.stderr + completed.stdout)


def parse_java_version(output: str) -> int:
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    if not match:
        raise BrokerError(f"Could not read the Java version from: {output.strip()[:200]!r}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def jar_directory(home: Path, version: str | None = None) -> Path:
    return home / f"kafka-{version or kafka_version()}" / "libs"


def ensure_jars(home: Path) -> Path:
    """The directory of Kafka's jars, resolved through Maven on first use and then reused."""
    libs = jar_directory(home)
    marker = libs / ".complete"
    if marker.exists():
        return libs
    maven = shutil.which("mvn")
    if not maven:
        raise BrokerError(
            "Maven is needed once to fetch Kafka's jars from Maven Central, and `mvn` is not "
            "on PATH. Install it (`apt-get install maven`) and try again."
        )
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        maven, "-B", "-q", "-f", str(POM_PATH), "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
        raise BrokerError(
            f"Maven could not resolve Kafka {kafka_version()} from Maven Central "
            f"(exit {completed.returncode}). Is Maven Central reachable from this machine, "
            f"directly or through the mirror in ~/.m2/settings.xml?\n{tail}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    marker.write_text(kafka_version() + "\n")
    return libs
