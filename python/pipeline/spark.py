"""Local Spark with Iceberg, without Maven: jars from PyPI wheels, plus one relocation shim.

The Iceberg runtime jar comes from the `snowpark-connect-deps-iceberg` wheel. That build of
it lacks the Jackson classes Iceberg relocates to `org.apache.iceberg.shaded.com.fasterxml.
jackson` (every Iceberg write fails with NoClassDefFoundError in SchemaParser.toJson). PySpark
ships the same Jackson (2.15); relocating its classes into Iceberg's namespace, which means
rewriting the names in each class file's constant pool and the META-INF/services entries,
gives Iceberg what it expects. A production cluster brings its own complete Iceberg runtime:
this shim only exists because these machines cannot reach Maven.
"""

from __future__ import annotations

import hashlib
import struct
import zipfile
from importlib import resources
from pathlib import Path

import pyspark

ICEBERG_JAR_GLOB = "iceberg-spark-runtime-3.5_2.12-*.jar"
JACKSON_JARS = (
    "jackson-annotations-2.*.jar",
    "jackson-core-2.*.jar",
    "jackson-databind-2.*.jar",
    "jackson-datatype-jsr310-2.*.jar",
)  # 2.x: not jackson-core-asl 1.9
OLD_SLASH, NEW_SLASH = (
    b"com/fasterxml/jackson/",
    b"org/apache/iceberg/shaded/com/fasterxml/jackson/",
)
OLD_DOT, NEW_DOT = b"com.fasterxml.jackson.", b"org.apache.iceberg.shaded.com.fasterxml.jackson."

# Constant-pool entry sizes after the tag byte (JVM spec §4.4), for every tag but Utf8 (1).
_FIXED_SIZES = {
    3: 4,
    4: 4,
    5: 8,
    6: 8,
    7: 2,
    8: 2,
    9: 4,
    10: 4,
    11: 4,
    12: 4,
    15: 3,
    16: 2,
    17: 4,
    18: 4,
    19: 2,
    20: 2,
}


def iceberg_runtime_jar() -> Path:
    """The Iceberg Spark runtime (Spark 3.5, Scala 2.12) inside the installed wheel."""
    folder = Path(str(resources.files("snowpark_connect_deps_iceberg"))) / "jars"
    matches = sorted(folder.glob(ICEBERG_JAR_GLOB))
    if not matches:
        raise FileNotFoundError(
            f"no {ICEBERG_JAR_GLOB} in {folder}: is snowpark-connect-deps-iceberg installed?"
        )
    return matches[-1]


def _jackson_sources() -> list[Path]:
    folder = Path(pyspark.__file__).parent / "jars"
    found = []
    for pattern in JACKSON_JARS:
        matches = sorted(folder.glob(pattern))
        if not matches:
            raise FileNotFoundError(
                f"no {pattern} in {folder}: pyspark's bundled Jackson is missing"
            )
        found.append(matches[-1])
    return found


def _relocate(value: bytes) -> bytes:
    return value.replace(OLD_SLASH, NEW_SLASH).replace(OLD_DOT, NEW_DOT)


def relocate_class(data: bytes) -> bytes:
    """Rewrite every Utf8 constant of a class file; indices stay, so the rest is copied as is."""
    if data[:4] != b"\xca\xfe\xba\xbe":
        raise ValueError("not a class file")
    count = struct.unpack_from(">H", data, 8)[0]
    out = bytearray(data[:10])
    pos, index = 10, 1
    while index < count:
        tag = data[pos]
        if tag == 1:
            length = struct.unpack_from(">H", data, pos + 1)[0]
            text = _relocate(data[pos + 3 : pos + 3 + length])
            out += bytes([1]) + struct.pack(">H", len(text)) + text
            pos += 3 + length
        else:
            size = _FIXED_SIZES[tag]
            out += data[pos : pos + 1 + size]
            pos += 1 + size
        index += 2 if tag in (5, 6) else 1  # long and double take two slots
    out += data[pos:]
    return bytes(out)


def build_jackson_shim(path: Path) -> Path:
    """Write the relocated Jackson jar to `path` (once per set of inputs; cached by hash)."""
    sources = _jackson_sources()
    digest = hashlib.sha256(
        "|".join(f"{s.name}:{s.stat().st_size}" for s in sources).encode()
    ).hexdigest()[:12]
    target = path.with_name(f"{path.stem}-{digest}{path.suffix}")
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as shim:
        shim.writestr(
            "META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: commerce pipeline.spark\n\n"
        )
        for source in sources:
            with zipfile.ZipFile(source) as jar:
                for name in jar.namelist():
                    if name.endswith("module-info.class") or name.startswith("META-INF/versions/"):
                        continue
                    if name.startswith("com/fasterxml/jackson/") and name.endswith(".class"):
                        shim.writestr(
                            _relocate(name.encode()).decode(), relocate_class(jar.read(name))
                        )
                    elif name.startswith("META-INF/services/com.fasterxml.jackson."):
                        shim.writestr(_relocate(name.encode()).decode(), _relocate(jar.read(name)))
    partial.replace(target)
    return target


def spark_jars(build_dir: Path) -> str:
    """Comma-separated `spark.jars` for the spark_local target."""
    shim = build_jackson_shim(build_dir / "iceberg-jackson-shim.jar")
    return ",".join(str(jar) for jar in (iceberg_runtime_jar(), shim))
