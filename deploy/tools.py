"""Command-line tools the test suite checks the deployment with, built from source with the Go toolchain
and kept in the git-ignored ``.tools/bin`` (reused while their version matches).

Only tools that are Go modules are built here (``go install <module>@<version>``): the Go module proxy
serves them, and Go's own caches make a rebuild on the same machine fast.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".tools" / "bin"


@dataclass(frozen=True)
class Tool:
    name: str
    module: str
    version: str
    tags: tuple[str, ...] = ()
    """Go build tags, e.g. to leave out parts the tests never use (and their long build)."""

    @property
    def spec(self) -> str:
        return f"{self.module}@{self.version}"

    @property
    def build(self) -> str:
        """What the stamp records: the module version and the build tags."""
        return self.spec + (f" -tags {','.join(self.tags)}" if self.tags else "")


TOOLS = {
    "helm": Tool("helm", "helm.sh/helm/v3/cmd/helm", "v3.22.0"),
    # Without Prometheus' service-discovery plugins (AWS, Azure, Kubernetes, ... SDKs): checking and
    # unit-testing rules needs none of them, and they are most of the build's time.
    "promtool": Tool("promtool", "github.com/prometheus/prometheus/cmd/promtool", "v0.316.0", ("remove_all_sd",)),
}


class ToolUnavailable(RuntimeError):
    pass


def _stamp(path: Path) -> Path:
    """Which module version built the binary (``go install`` leaves the tools' own version strings unset)."""
    return path.with_name(path.name + ".built-from")


def _installed_version_matches(tool: Tool, path: Path) -> bool:
    stamp = _stamp(path)
    return path.exists() and stamp.exists() and stamp.read_text().strip() == tool.build


def ensure(name: str, timeout: float = 1800) -> Path:
    """The tool's path, building it first when it is missing or of another version."""
    tool = TOOLS[name]
    path = BIN / tool.name
    if _installed_version_matches(tool, path):
        return path
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise ToolUnavailable(f"building {tool.name} needs the Go toolchain (go), which is not installed")
    BIN.mkdir(parents=True, exist_ok=True)
    print(f"[tools] building {tool.build} into {BIN} (once; reused afterwards)", file=sys.stderr)
    env = {**os.environ, "GOBIN": str(BIN), "GOFLAGS": "-mod=mod"}
    tags = ["-tags", ",".join(tool.tags)] if tool.tags else []
    result = subprocess.run([go, "install", *tags, tool.spec], env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0 or not path.exists():
        raise ToolUnavailable(f"go install {tool.spec} failed:\n{result.stderr[-3000:]}")
    _stamp(path).write_text(tool.build + "\n")
    return path


def main() -> int:
    for name in sys.argv[1:] or list(TOOLS):
        print(ensure(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
