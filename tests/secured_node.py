"""A single OpenSearch node with its security plugin on, secured by docker/'s own files.

Test support for ``tests/test_secured_cluster.py``: the project's node (``opensearch.install``)
copied to a directory of its own, the ``opensearch-security`` plugin from Maven Central, the
certificates and users made by ``docker/security/init.sh`` (with the plugin's own ``hash.sh``),
``docker/security/{config,roles,roles_mapping}.yml``, and the ``plugins.security.*`` settings of
``docker/compose.yaml``'s node environment. So what the tests find is what the compose
deployment gets.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import urllib.request
import zipfile
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path

import yaml

from shopsearch.ops.services import opensearch
from shopsearch.ops.services.process import spawn, stop_pid, wait_until

ROOT = Path(__file__).resolve().parents[1]
SECURITY = ROOT / "docker" / "security"
PLUGIN = "org.opensearch.plugin:opensearch-security:{version}.0:zip"
COLLECTIONS = "org.apache.commons:commons-collections4:4.5.0"  # what the rule-framework module lends the plugin
PASSWORDS = {"admin": "Admin-pw-0123456789", "shopsearch-public": "Public-pw-0123456789",
             "shopsearch-internal": "Internal-pw-0123456789", "shopsearch-worker": "Worker-pw-0123456789"}


@dataclass
class SecuredNode:
    url: str          # https://127.0.0.1:<port>
    ca: Path          # the deployment's CA certificate
    root: Path
    pid: int

    def url_as(self, user: str) -> str:
        return self.url.replace("https://", f"https://{user}:{PASSWORDS[user]}@")

    def request(self, method: str, path: str, user: str | None = "admin", body: bytes | None = None,
                content_type: str = "application/json") -> tuple[int, bytes]:
        headers = {"Content-Type": content_type}
        if user:
            headers["Authorization"] = "Basic " + b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        context = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(req, context=context, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


def _compose_security_settings() -> dict[str, str]:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    return {k: str(v) for k, v in compose["x-opensearch-env"].items() if k.startswith("plugins.security.")}


def _rule_framework_optional(descriptor: Path) -> bool:
    """OpenSearch 3's security plugin extends the ``rule-framework`` module (access control of rule-based
    auto-tagging, which this project does not use). Maven Central serves no jar of that module, and the
    integ-test zip does not carry it, so the dependency is made optional, as ``workload-management``
    already is, and the one jar of the module's that the plugin loads (``COLLECTIONS``) goes beside the
    plugin's. True when the descriptor named it (2.19's plugin does not). The docker image has the
    module and leaves the descriptor as it is."""
    text = descriptor.read_text()
    changed = re.sub(r"(?m)^(extended\.plugins=(?:.*,)?)rule-framework(?=,|$)", r"\1rule-framework;optional=true", text)
    descriptor.write_text(changed)
    return changed != text


def start(settings, root: Path, port: int) -> SecuredNode:
    """Assemble and start the node under ``root`` on ``port`` (transport ``port + 100``)."""
    home = opensearch.install(settings)
    node = root / "node"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(home, node, symlinks=True)
    version = settings.opensearch_version
    downloads = root / "downloads"
    subprocess.run(["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={PLUGIN.format(version=version)}",
                    f"-DoutputDirectory={downloads}"], check=True, capture_output=True)
    (plugin_zip,) = downloads.glob("opensearch-security-*.zip")
    plugin = node / "plugins" / "opensearch-security"
    with zipfile.ZipFile(plugin_zip) as z:
        z.extractall(plugin)
    for script in (plugin / "tools").glob("*.sh"):
        script.chmod(0o755)
    if _rule_framework_optional(plugin / "plugin-descriptor.properties"):  # OpenSearch 3's plugin
        subprocess.run(["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={COLLECTIONS}", f"-DoutputDirectory={plugin}"],
                       check=True, capture_output=True)
    security_config = node / "config" / "opensearch-security"
    shutil.copytree(plugin / "config", security_config)
    generated = root / "generated"
    java_home = opensearch._java_home(settings)
    env = {**os.environ, "OUT_DIR": str(generated), "HASH_TOOL": str(plugin / "tools" / "hash.sh"),
           "OPENSEARCH_JAVA_HOME": java_home, "JAVA_HOME": java_home,
           "OPENSEARCH_ADMIN_PASSWORD": PASSWORDS["admin"], "OPENSEARCH_PUBLIC_PASSWORD": PASSWORDS["shopsearch-public"],
           "OPENSEARCH_INTERNAL_PASSWORD": PASSWORDS["shopsearch-internal"],
           "OPENSEARCH_WORKER_PASSWORD": PASSWORDS["shopsearch-worker"]}
    subprocess.run(["sh", str(SECURITY / "init.sh")], env=env, check=True, capture_output=True)
    for name in ("config.yml", "roles.yml", "roles_mapping.yml"):
        shutil.copy2(SECURITY / name, security_config / name)
    shutil.copy2(generated / "internal_users.yml", security_config / "internal_users.yml")
    shutil.copytree(generated / "certs", node / "config" / "certs")
    (root / "data").mkdir()
    (root / "logs").mkdir()
    user = opensearch._service_user(settings)
    if user:
        subprocess.run(["chown", "-R", f"{user}:", str(root)], check=True)
    flags = [f"-E{key}={value}" for key, value in _compose_security_settings().items()]
    argv = [str(node / "bin" / "opensearch"), "-p", str(root / "pid"), "-Ecluster.name=shopsearch-secured",
            "-Enode.name=secured-1", f"-Epath.data={root / 'data'}", f"-Epath.logs={root / 'logs'}",
            "-Enetwork.host=127.0.0.1", f"-Ehttp.port={port}", f"-Etransport.port={port + 100}",
            "-Ediscovery.type=single-node", "-Ecluster.routing.allocation.disk.threshold_enabled=false", *flags]
    heap = "-Xms512m -Xmx512m"
    if user:
        argv = ["runuser", "-u", user, "--", "env", f"OPENSEARCH_JAVA_HOME={java_home}",
                f"OPENSEARCH_JAVA_OPTS={heap}", *argv]
    proc = spawn(argv, root / "stdout.log", env={**os.environ, "OPENSEARCH_JAVA_HOME": java_home,
                                                "OPENSEARCH_JAVA_OPTS": heap}, cwd=root)
    secured = SecuredNode(f"https://127.0.0.1:{port}", generated / "certs" / "root-ca.pem", root, proc.pid)
    wait_until(lambda: secured.request("GET", "/_cluster/health?wait_for_status=yellow&timeout=1s")[0] == 200,
               180, "the secured OpenSearch node", log=root / "logs" / "shopsearch-secured.log",
               alive=lambda: proc.poll() is None)
    return secured


def stop(node: SecuredNode) -> None:
    pid_file = node.root / "pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else node.pid
    stop_pid(pid, timeout=60)
    shutil.rmtree(node.root, ignore_errors=True)
