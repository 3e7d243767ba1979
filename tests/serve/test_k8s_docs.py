"""The Kubernetes deployment in docs/serving.md stays true to the server it deploys."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def _manifests() -> list[dict]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]


def test_probes_scaling_metric_and_flags_exist(cli):
    from onnxforge.serve.metrics import PREFIX

    docs = {d.get("kind", "adapter-rules"): d for d in _manifests()}
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert any(e["name"] == "ONNXFORGE_API_KEY" for e in container["env"])
    metric = docs["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert metric == f"{PREFIX}_queue_texts"
    assert docs["adapter-rules"]["rules"][0]["name"]["as"] == metric
    # every flag the container passes is one `onnxforge serve` knows
    _, help_text, _ = cli("serve", "--help")
    flags = [a for a in container["args"] if str(a).startswith("--")]
    assert flags and all(f in help_text for f in flags), flags
