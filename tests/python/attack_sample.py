#!/usr/bin/env python3
"""Write the committed ATT&CK fixture: a few real STIX 2.0 objects per type.

Reads MITRE ATT&CK Enterprise as STIX 2.0 (enterprise-attack-2.0.json in
$TAXII_SHARED_DATA, else in ../shared/data beside the repository, or --source) and writes a bundle holding, for each object type, the first objects
by id: --per-type of each (more of malware and tool, whose conversion to STIX 2.1
changes more than spec_version). Deterministic: the same source gives the same file.

Usage: attack_sample.py [--source FILE] [--out FILE] [--per-type N] [--changed N]
"""
import argparse
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = os.environ.get("TAXII_SHARED_DATA") or os.path.join(os.path.dirname(ROOT), "shared", "data")
DEFAULT_SOURCE = os.path.join(SHARED, "enterprise-attack-2.0.json")
DEFAULT_OUT = os.path.join(ROOT, "tests", "fixtures", "attack-enterprise-2.0-sample.json")
# Types whose conversion to 2.1 moves labels or adds required properties.
CHANGED = {"malware", "tool", "indicator", "report", "threat-actor", "observed-data"}


def sample(objects, per_type, changed):
    by_type = {}
    for obj in sorted(objects, key=lambda o: o["id"]):
        by_type.setdefault(obj["type"], []).append(obj)
    picked = []
    for kind in sorted(by_type):
        count = changed if kind in CHANGED else per_type
        picked.extend(by_type[kind][:count])
    return picked


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=DEFAULT_SOURCE)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--per-type", type=int, default=3)
    parser.add_argument("--changed", type=int, default=8)
    args = parser.parse_args()
    with open(args.source, encoding="utf-8") as f:
        bundle = json.load(f)
    objects = sample(bundle["objects"], args.per_type, args.changed)
    out = {"type": "bundle", "id": bundle["id"], "spec_version": bundle.get("spec_version", "2.0"),
           "objects": objects}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{args.out}: {len(objects)} objects")


if __name__ == "__main__":
    main()
