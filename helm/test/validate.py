#!/usr/bin/env python3
"""Validates every object of rendered manifests with kubernetes-validate in strict mode (an
unknown field fails) against the oldest supported Kubernetes and the newest schemas the
package ships. An object whose kind/apiVersion has no schema is a failure, not a warning."""
import argparse
import os
import sys

import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError


def newest_version():
    base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
    found = []
    for name in os.listdir(base):
        if name.startswith("v") and name.endswith("-local-strict"):
            found.append(tuple(int(x) for x in name[1:-len("-local-strict")].split(".")))
    return ".".join(map(str, max(found)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--oldest", required=True)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    versions = [args.oldest, newest_version()]
    print(f"kubernetes-validate {kubernetes_validate.__version__}: schemas {versions[0]} and "
          f"{versions[1]} (the newest it ships)")
    problems, checked = 0, 0
    for path in args.files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            what = f"{os.path.basename(path)}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            for version in versions:
                checked += 1
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except ValidationError as e:
                    problems += 1
                    print(f"INVALID {what} (k8s {version}): {e.message} at {list(e.path)}")
                except SchemaNotFoundError as e:
                    problems += 1
                    print(f"NO SCHEMA {what} (k8s {version}): {e}")
    print(f"{checked} object validations, {problems} problems")
    return 1 if problems or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
