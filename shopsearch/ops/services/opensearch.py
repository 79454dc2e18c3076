"""The project's own OpenSearch node with the k-NN plugin, installed from Maven Central.

Maven Central serves the minimal ``integ-test-zip`` distribution (it carries only the
transport module) and the ``opensearch-knn`` plugin zip. OpenSearch's standard modules are
published there as plain jars (several under their transport-client names, ``reindex-client``
for ``reindex``), so the node is assembled here: each module directory gets its jar, the jars it
depends on that the server (or a plugin it extends) lacks, a ``plugin-descriptor.properties`` and,
where the module needs one, its ``plugin-security.policy`` (the text of OpenSearch's own).
:data:`MODULES` lists them; a shop's existing client finds ``_reindex``, ``_update_by_query``,
``rank_features``, ``join``, percolate queries, ingest processors, mustache templates, ... as on
a full distribution. Maven Central does not serve ``ingest-geoip``, ``cache-common``,
``search-pipeline-common``, ``opensearch-dashboards`` or ``systemd`` for 2.19.1 or 3.4.0: those stay
out. A module the zip already ships is kept as it is (3.4.0's zip adds ``transport-grpc``; 3.5.0's
ships every module). OpenSearch 3 runs on Java 21 or later (:func:`_java_home` finds one), where its
Lucene computes vector distances with SIMD.

Everything is cached outside the clone; the install directory's name carries a digest of the
module table, so an existing install picks up a changed module list on the next start after a
stop. When started as root the node runs as an unprivileged system user (OpenSearch refuses
root), in a directory that user owns.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from shopsearch.ops.services.process import (ServiceError, ensure_port_free, pid_alive, read_pid, spawn, stop_pid,
                      tail, wait_until)
from shopsearch.settings import Settings

CLUSTER_NAME = "shopsearch"



@dataclass(frozen=True)
class Module:
    """A standard OpenSearch module as Maven Central serves it."""
    artifact: str              # org.opensearch.plugin:<artifact>
    classname: str             # the 2.x name; OpenSearch 3 calls the same class <Name>ModulePlugin
    extends: str = ""          # comma-separated modules whose class loader this one extends
    policy: str | None = None  # plugin-security.policy (OpenSearch's own text)


_SOCKETS = 'grant {\n  permission java.net.SocketPermission "*", "connect";\n};\n'

# Module directory name -> module, in dependency order (an extended module comes first).
MODULES = {
    "lang-painless": Module("lang-painless", "org.opensearch.painless.PainlessPlugin", policy=(
        'grant {\n  permission java.lang.RuntimePermission "createClassLoader";\n'
        '  permission java.lang.RuntimePermission "getClassLoader";\n};\n')),
    "analysis-common": Module("analysis-common", "org.opensearch.analysis.common.CommonAnalysisPlugin", "lang-painless"),
    "aggs-matrix-stats": Module("aggs-matrix-stats-client", "org.opensearch.search.aggregations.matrix.MatrixAggregationPlugin"),
    "geo": Module("geo", "org.opensearch.geo.GeoModulePlugin"),
    "ingest-common": Module("ingest-common", "org.opensearch.ingest.common.IngestCommonPlugin", "lang-painless"),
    "ingest-user-agent": Module("ingest-user-agent", "org.opensearch.ingest.useragent.IngestUserAgentPlugin"),
    "lang-expression": Module("lang-expression", "org.opensearch.script.expression.ExpressionPlugin", policy=(
        'grant {\n  permission java.lang.RuntimePermission "createClassLoader";\n' + "".join(
            f'  permission org.opensearch.script.ClassPermission "{c}";\n' for c in (
                "java.lang.String", "org.apache.lucene.expressions.Expression", "org.apache.lucene.search.DoubleValues",
                "java.lang.Math", "org.apache.lucene.util.MathUtil", "org.apache.lucene.util.SloppyMath")) + "};\n")),
    "lang-mustache": Module("lang-mustache-client", "org.opensearch.script.mustache.MustachePlugin", policy=(
        'grant {\n  permission java.lang.RuntimePermission "accessDeclaredMembers";\n};\n')),
    "mapper-extras": Module("mapper-extras-client", "org.opensearch.index.mapper.MapperExtrasPlugin"),
    "parent-join": Module("parent-join-client", "org.opensearch.join.ParentJoinPlugin"),
    "percolator": Module("percolator-client", "org.opensearch.percolator.PercolatorPlugin"),
    "rank-eval": Module("rank-eval-client", "org.opensearch.index.rankeval.RankEvalPlugin"),
    # reindex from a remote cluster opens sockets through the REST client
    "reindex": Module("reindex-client", "org.opensearch.index.reindex.ReindexPlugin", policy=_SOCKETS + (
        'grant codeBase "${codebase.opensearch-rest-client}" {\n  permission java.net.NetPermission "getProxySelector";\n};\n'
        'grant codeBase "${codebase.httpasyncclient}" {\n  permission java.net.NetPermission "getProxySelector";\n};\n')),
    "repository-url": Module("repository-url", "org.opensearch.plugin.repository.url.URLRepositoryPlugin", policy=_SOCKETS),
}


def plugin_class(module: Module, directory: Path) -> str:
    """The module's plugin class as its jars in ``directory`` name it: ``classname``, or OpenSearch 3's
    ``...ModulePlugin`` for the same class (``PainlessPlugin`` became ``PainlessModulePlugin``)."""
    package, _, name = module.classname.rpartition(".")
    names = [module.classname, f"{package}.{name.removesuffix('Plugin')}ModulePlugin"]
    classes = set()
    for jar in directory.glob("*.jar"):
        with zipfile.ZipFile(jar) as z:
            classes.update(z.namelist())
    for candidate in names:
        if candidate.replace(".", "/") + ".class" in classes:
            return candidate
    raise ServiceError(f"module {module.artifact}: none of {', '.join(names)} is in its jars")


def modules_digest() -> str:
    """A short digest of the module table: part of the install directory's name."""
    return hashlib.sha256(repr(sorted(MODULES.items())).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Layout:
    """Where the node's files live."""
    root: Path

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    def dist(self, version: str, knn: str) -> Path:
        return self.root / f"opensearch-{version}-knn-{knn}-modules-{modules_digest()}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pidfile(self) -> Path:
        return self.root / "opensearch.pid"

    @property
    def stdout_log(self) -> Path:
        return self.logs / "stdout.log"


def layout(settings: Settings) -> Layout:
    if settings.opensearch_dir:
        return Layout(Path(os.path.expanduser(settings.opensearch_dir)))
    # root's home is not traversable by the service user, so as root the node lives in /var/lib.
    if os.geteuid() == 0:
        return Layout(Path("/var/lib/shopsearch/opensearch"))
    return Layout(settings.home_path / "opensearch")


def is_local(settings: Settings) -> bool:
    """True when opensearch_url points at this machine (a node the project manages)."""
    host = urllib.parse.urlsplit(settings.opensearch_url).hostname
    return host in ("127.0.0.1", "localhost", "::1")


def host_port(settings: Settings) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(settings.opensearch_url)
    return parts.hostname or "127.0.0.1", parts.port or 9200


# --- install -------------------------------------------------------------------------------

def _mvn(args: list[str], what: str) -> None:
    if not shutil.which("mvn"):
        raise ServiceError("Maven (mvn) is needed to fetch OpenSearch from Maven Central: apt-get install maven")
    proc = subprocess.run(["mvn", "-q", "-B", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ServiceError(f"could not fetch {what} from Maven Central:\n{(proc.stdout + proc.stderr)[-3000:]}")


def _shipped_modules(dist_zip: Path) -> set[str]:
    """The modules a distribution zip already carries (``<top>/modules/<name>/...``)."""
    with zipfile.ZipFile(dist_zip) as z:
        return {parts[2] for parts in (n.split("/") for n in z.namelist()) if len(parts) > 3 and parts[1] == "modules"}


def _fetch(settings: Settings, lay: Layout) -> dict[str, Path]:
    """Download (once) the distribution zip, the k-NN plugin zip and the module jars."""
    v, knn = settings.opensearch_version, settings.knn_plugin_version
    dl = lay.downloads / v
    dl.mkdir(parents=True, exist_ok=True)
    dist_zip, knn_zip, mods = dl / f"opensearch-{v}.zip", dl / f"opensearch-knn-{knn}.zip", dl / "modules"
    if not dist_zip.exists():
        _mvn(["dependency:copy", f"-Dartifact=org.opensearch.distribution.integ-test-zip:opensearch:{v}:zip",
              f"-DoutputDirectory={dl}"], f"OpenSearch {v}")
    if not knn_zip.exists():
        _mvn(["dependency:copy", f"-Dartifact=org.opensearch.plugin:opensearch-knn:{knn}:zip",
              f"-DoutputDirectory={dl}"], f"opensearch-knn {knn}")
    shipped = _shipped_modules(dist_zip)
    for name, module in MODULES.items():
        target = mods / name
        if target.exists() or name in shipped:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            pom = resources.files("shopsearch.ops.services").joinpath("opensearch-module.pom.xml").read_text()
            Path(tmp, "pom.xml").write_text(pom.replace("@MODULE@", module.artifact).replace("@VERSION@", v))
            _mvn(["-f", str(Path(tmp, "pom.xml")), "dependency:copy-dependencies", "-DincludeScope=runtime",
                  f"-DoutputDirectory={tmp}/jars"], f"module {name} {v}")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(Path(tmp, "jars"), target)
    return {"dist": dist_zip, "knn": knn_zip, "modules": mods}


def install(settings: Settings) -> Path:
    """Assemble the node (cached); returns its home directory."""
    lay = layout(settings)
    home = lay.dist(settings.opensearch_version, settings.knn_plugin_version)
    if (home / ".complete").exists():
        return home
    files = _fetch(settings, lay)
    work = home.with_name(home.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with zipfile.ZipFile(files["dist"]) as z:
        z.extractall(work)
    (top,) = [p for p in work.iterdir() if p.is_dir()]
    lib = {p.name for p in (top / "lib").iterdir()}
    for name, module in MODULES.items():
        mod = top / "modules" / name
        if mod.exists():  # the distribution carries it
            continue
        mod.mkdir(parents=True)
        # the server's jars are on its class path, an extended module's on the parent class loader:
        # a second copy is jar hell
        present = lib.union(*({p.name for p in (top / "modules" / e).iterdir()}
                              for e in module.extends.split(",") if e))
        for jar in (files["modules"] / name).glob("*.jar"):
            if jar.name not in present:
                shutil.copy2(jar, mod / jar.name)
        (mod / "plugin-descriptor.properties").write_text(
            f"description={name}\nversion={settings.opensearch_version}\nname={name}\n"
            f"classname={plugin_class(module, mod)}\njava.version=11\nopensearch.version={settings.opensearch_version}\n"
            f"extended.plugins={module.extends}\nhas.native.controller=false\n")
        if module.policy:
            (mod / "plugin-security.policy").write_text(module.policy)
    with zipfile.ZipFile(files["knn"]) as z:
        z.extractall(top / "plugins" / "opensearch-knn")
    for script in (top / "bin").iterdir():
        script.chmod(0o755)
    shutil.rmtree(home, ignore_errors=True)
    top.rename(home)
    shutil.rmtree(work, ignore_errors=True)
    (home / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
    return home


# --- run -----------------------------------------------------------------------------------

def _service_user(settings: Settings) -> str | None:
    """The user the node runs as: an unprivileged system user when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    name = settings.opensearch_user
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
    return name


JVM_DIR = Path("/usr/lib/jvm")


def java_needed(opensearch_version: str) -> int:
    """The oldest Java a version of OpenSearch runs on: 21 from 3.0 on, 11 before.

    >>> java_needed("3.4.0"), java_needed("2.19.1")
    (21, 11)
    """
    return 21 if int(opensearch_version.split(".")[0]) >= 3 else 11


def java_version(home: Path) -> int | None:
    """The feature release of the Java installed at ``home`` (its ``release`` file), None if unreadable."""
    try:
        for line in (home / "release").read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                return int(line.split("=", 1)[1].strip('"').split(".")[0].split("+")[0])
    except (OSError, ValueError):
        pass
    return None


def _java_home(settings: Settings) -> str:
    """The Java the node runs on: ``java_home``, else the default ``java`` when new enough, else the newest
    Java under /usr/lib/jvm that is (OpenSearch 3 needs 21; its Lucene computes vector distances with
    SIMD there, through ``jdk.incubator.vector``)."""
    if settings.java_home:
        return settings.java_home
    needed = java_needed(settings.opensearch_version)
    java = shutil.which("java")
    candidates = [Path(os.path.realpath(java)).parent.parent] if java else []
    if JVM_DIR.is_dir():
        candidates += sorted((p for p in JVM_DIR.iterdir() if (p / "bin" / "java").exists()),
                             key=lambda p: -(java_version(p) or 0))
    for home in candidates:
        if (java_version(home) or 0) >= needed:
            return str(home)
    raise ServiceError(f"OpenSearch {settings.opensearch_version} needs Java {needed} or later, and none was found "
                       f"(the default java, {JVM_DIR}/*): set java_home to one, or run OpenSearch 2.19.1 on Java 17 "
                       "(opensearch_version=2.19.1, knn_plugin_version=2.19.1.0, apt-get install openjdk-17-jre-headless)")


def request(settings: Settings, path: str, timeout: float = 5.0) -> dict:
    """GET a JSON answer from the cluster (used before any client library is set up)."""
    with urllib.request.urlopen(settings.opensearch_url.rstrip("/") + path, timeout=timeout) as r:
        return json.loads(r.read())


def _ours(settings: Settings) -> bool:
    try:
        return request(settings, "/")["cluster_name"] == CLUSTER_NAME
    except (OSError, ValueError, KeyError):
        return False


def start(settings: Settings) -> dict:
    """Start the node if it is not running; idempotent. Waits for green."""
    if not is_local(settings):
        return status(settings)  # a remote cluster is the shop's to run: only report on it
    lay = layout(settings)
    host, port = host_port(settings)
    pid = read_pid(lay.pidfile)
    if pid and _ours(settings):
        return status(settings)
    if not pid:
        ensure_port_free("opensearch", host, port)
    home = install(settings)
    user = _service_user(settings)
    for d in (lay.data, lay.logs):
        d.mkdir(parents=True, exist_ok=True)
    if user:
        subprocess.run(["chown", "-R", f"{user}:", str(lay.root)], check=True)
    env = {**os.environ,
           "OPENSEARCH_JAVA_HOME": _java_home(settings),
           "OPENSEARCH_JAVA_OPTS": f"-Xms{settings.opensearch_heap} -Xmx{settings.opensearch_heap}"}
    argv = [str(home / "bin" / "opensearch"), "-p", str(lay.pidfile),
            "-E", f"cluster.name={CLUSTER_NAME}", "-E", "node.name=shopsearch-1",
            "-E", f"path.data={lay.data}", "-E", f"path.logs={lay.logs}",
            "-E", f"network.host={host}", "-E", f"http.port={port}", "-E", f"transport.port={port + 100}",
            "-E", "discovery.type=single-node",
            # a development node on a shared disk: do not turn indices read-only at 85 % disk use
            "-E", "cluster.routing.allocation.disk.threshold_enabled=false"]
    if user:
        argv = ["runuser", "-u", user, "--", "env",
                f"OPENSEARCH_JAVA_HOME={env['OPENSEARCH_JAVA_HOME']}",
                f"OPENSEARCH_JAVA_OPTS={env['OPENSEARCH_JAVA_OPTS']}", *argv]
    lay.pidfile.unlink(missing_ok=True)
    proc = spawn(argv, lay.stdout_log, env=env, cwd=lay.root)

    def alive() -> bool:
        return proc.poll() is None

    log = lay.logs / f"{CLUSTER_NAME}.log"
    try:
        wait_until(lambda: request(settings, "/_cluster/health?wait_for_status=yellow&timeout=1s")["status"] in ("green", "yellow"),
                   settings.startup_timeout, f"OpenSearch at {settings.opensearch_url}", log=log, alive=alive)
    except ServiceError as e:
        raise ServiceError(f"{e}\n--- stdout ({lay.stdout_log}) ---\n{tail(lay.stdout_log, 15)}") from None
    return status(settings)


def stop(settings: Settings) -> bool:
    """Stop the node the project started; True if one was running."""
    if not is_local(settings):
        return False
    pid = read_pid(layout(settings).pidfile)
    if not pid:
        return False
    stop_pid(pid, timeout=60)
    return True


def status(settings: Settings) -> dict:
    """What runs at opensearch_url: health, version and plugins."""
    lay = layout(settings)
    info: dict = {"service": "opensearch", "url": settings.opensearch_url,
                  "managed": is_local(settings), "pid": read_pid(lay.pidfile) if is_local(settings) else None}
    try:
        root = request(settings, "/")
        health = request(settings, "/_cluster/health")
        plugins = request(settings, "/_cat/plugins?format=json")
        nodes = request(settings, "/_nodes/plugins?filter_path=nodes.*.modules.name")
    except (OSError, ValueError) as e:
        info.update(running=False, error=str(e))
        return info
    info.update(running=True, version=root["version"]["number"], cluster=root["cluster_name"],
                health=health["status"], plugins=sorted({p["component"] for p in plugins}),
                modules=sorted({m["name"] for n in nodes.get("nodes", {}).values() for m in n.get("modules", [])}))
    return info


def is_running(settings: Settings) -> bool:
    pid = read_pid(layout(settings).pidfile)
    return bool(pid and pid_alive(pid))
