"""JSON schemas of the custom resources deploy/ and `analyze recommend` write, derived from the upstream CRDs.

Kubernetes' own kinds are validated with the schemas kubernetes-validate ships; the custom ones (KEDA's
ScaledObject, Agent Sandbox's SandboxWarmPool, the Prometheus Operator's ServiceMonitor and PrometheusRule)
with the `openAPIV3Schema` of their upstream CustomResourceDefinition, turned into JSON Schema and committed
in deploy/crd-schemas/ (each file names its source repository, path and commit). The turning follows the
API server's structural-schema rules (k8s.io/apiextensions-apiserver, "Specifying a structural schema"):

- unknown fields are errors (kubectl applies with strict field validation): an object with `properties`
  gets `additionalProperties: false`, unless it has `x-kubernetes-preserve-unknown-fields` or its own
  `additionalProperties`;
- `nullable` allows null, `x-kubernetes-int-or-string` an integer or a string;
- `metadata` is an ObjectMeta (name, namespace, labels, annotations as the API server checks them);
- CEL rules (`x-kubernetes-validations`) cannot run here: they are listed in the schema's `$comment` and the
  tests check the ones deploy/ relies on by hand.

Regenerate a schema from a CRD file (not committed) with
`python tests/crd_schemas.py CRD.yaml VERSION "owner/repo@commit:path" > deploy/crd-schemas/NAME.json`.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "deploy" / "crd-schemas"
# the keywords JSON Schema shares with the OpenAPI v3 subset CRDs use
_KEPT = (
    "type", "enum", "format", "pattern", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems",
    "minProperties", "maxProperties", "uniqueItems", "required",
)  # fmt: skip
DNS_SUBDOMAIN = {"type": "string", "maxLength": 253, "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}
DNS_LABEL = {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": DNS_SUBDOMAIN,
        "namespace": DNS_LABEL,
        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}


def _convert(node: dict[str, Any], rules: list[str], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {key: node[key] for key in _KEPT if key in node}
    if node.get("exclusiveMinimum") is True:  # OpenAPI 3.0 booleans -> JSON Schema numbers
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("exclusiveMaximum") is True:
        out["exclusiveMaximum"] = out.pop("maximum")
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    for rule in node.get("x-kubernetes-validations", []):
        rules.append(f"{path or '.'}: {rule['rule']} ({rule.get('message', '')})".strip())
    if "properties" in node:
        out["properties"] = {k: _convert(v, rules, f"{path}.{k}") for k, v in node["properties"].items()}
    if "items" in node:
        out["items"] = _convert(node["items"], rules, f"{path}[]")
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            out[key] = [_convert(sub, rules, path) for sub in node[key]]
    if "not" in node:
        out["not"] = _convert(node["not"], rules, path)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = _convert(extra, rules, f"{path}.*")
    elif isinstance(extra, bool):
        out["additionalProperties"] = extra
    elif "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def derive(crd: dict[str, Any], version: str, source: str) -> dict[str, Any]:
    """The JSON Schema of one served version of a CustomResourceDefinition."""
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    rules: list[str] = []
    schema = _convert(served["schema"]["openAPIV3Schema"], rules, "")
    schema["properties"]["apiVersion"] = {"const": f"{group}/{version}"}
    schema["properties"]["kind"] = {"const": kind}
    schema["properties"]["metadata"] = OBJECT_META
    schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
    comment = f"Derived by tests/crd_schemas.py from {source} ({kind} {group}/{version})."
    if rules:
        comment += " CEL rules not checked by this schema: " + "; ".join(rules)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$comment": comment, **schema}


@cache
def schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> schema, for every committed schema."""
    found = {}
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text())
        found[(schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"])] = schema
    return found


def validate_custom_resource(doc: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless `doc` is valid for its upstream CRD."""
    schema = schemas().get((doc.get("apiVersion"), doc.get("kind")))
    if schema is None:
        raise LookupError(f"no CRD schema for {doc.get('apiVersion')} {doc.get('kind')} in {SCHEMA_DIR}")
    jsonschema.Draft202012Validator(schema).validate(doc)


if __name__ == "__main__":
    crd_file, version, source = sys.argv[1:4]
    (crd,) = [d for d in yaml.safe_load_all(Path(crd_file).read_text()) if d]
    json.dump(derive(crd, version, source), sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")
