"""docker/Dockerfile.spark: the runtime image plus Java 17 and the locked pyspark, built after
the runtime image by docker/build.sh, passing hadolint; run as the same non-root user."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from grmodel.k8s import images

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile.spark"


def test_spark_image_passes_hadolint():
    hadolint = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hadolint"
    command = [str(hadolint) if hadolint.exists() else "hadolint", "--config",
               str(ROOT / "docker" / ".hadolint.yaml"), str(DOCKERFILE)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_spark_image_adds_java_and_the_locked_pyspark_to_the_runtime_image():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM \$\{RUNTIME_IMAGE\}$", text, re.M)
    assert "openjdk-17-jre-headless" in text
    assert "grep -E '^(pyspark|py4j)==' /tmp/dev.lock" in text and "--no-deps" in text
    assert "pip check" in text
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users[-1] == "10001:10001"
    lock = (ROOT / "requirements" / "dev.lock").read_text()
    assert re.search(r"^pyspark==", lock, re.M) and re.search(r"^py4j==", lock, re.M)
    assert "!docker/spark-entrypoint.sh" in (ROOT / ".dockerignore").read_text()


def test_build_script_builds_the_spark_image_from_the_runtime_image_of_the_same_version():
    done = subprocess.run(["bash", str(ROOT / "docker" / "build.sh"), "--dry-run", "--only",
                           "spark"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if " build " in line]
    assert f"--tag {images.spark_image()}" in line
    assert f"RUNTIME_IMAGE={images.runtime_image()}" in line
    assert "docker/Dockerfile.spark" in line


def test_the_image_carries_the_s3_connector_at_pysparks_hadoop_version():
    """s3a:// sources need hadoop-aws at exactly the Hadoop version of pyspark's own jars: the
    build reads that version off the jar's name; the pom's default says the same for readers."""
    import pyspark

    text = DOCKERFILE.read_text()
    assert "hadoop-client-api-" in text and "dependency:copy-dependencies" in text
    assert "COPY --from=s3 /s3-jars/ /opt/venv/lib/python3.11/site-packages/pyspark/jars/" in text
    assert "!docker/spark-s3/pom.xml" in (ROOT / ".dockerignore").read_text()
    (jar,) = (Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar")
    version = jar.name.removeprefix("hadoop-client-api-").removesuffix(".jar")
    pom = (ROOT / "docker" / "spark-s3" / "pom.xml").read_text()
    assert f"<hadoop.version>{version}</hadoop.version>" in pom
    assert "<artifactId>hadoop-aws</artifactId>" in pom
