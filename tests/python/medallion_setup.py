#!/usr/bin/env python3
"""Write a medallion (TAXII 2.1 reference server) data file and config.

Writes DIR/data.json (memory-backend data) and DIR/config.json, then prints
one JSON object on stdout with the URLs a test needs:
{"base_url", "discovery_url", "api_root_url", "collections": {name: URL},
 "collection_ids": {name: id}, "config"}.

The server has discovery at /taxii2/ (the data file's "/discovery" entry) and
one API root, "feeds", with three collections of fixed ids:
  intel   readable, writable: every object version of --objects, each with a
          manifest entry; date_added strictly increasing with microsecond
          precision, in file order, older versions of an id added first
  locked  not readable, writable: the first few objects
  empty   readable, writable: nothing

Run the server with:  medallion --host 127.0.0.1 --port P DIR/config.json

Notes on medallion 3.0.0 that shape the data:
- an object without created/modified (an SCO) needs a hidden "_date_added"
  equal to its manifest "version", or every objects request fails with a 500;
- the password is only read from --password-file and written to config.json
  (mode 0600), never printed;
- the memory backend is quadratic in collection size: with a 600-object
  bundle from gen_stix.py (646 versions) the first page of
  ?limit=7&match[version]=all took 2.2 s, and 2.8-3.2 s at 761 versions
  (2 cores, a Rust build running); pages fetched with `next` take about
  60 ms.  Reading all 93 pages with taxii2-client took about 5 s;
- objects POSTed in one request all get the same date_added (the request
  time), unlike the strictly increasing values written here;
- 'next' tokens expire session_timeout seconds after the first page, checked
  every 10 s.
"""
import argparse
import datetime as dt
import json
import os
import sys

API_ROOT = "feeds"
COLLECTION_IDS = {
    "intel": "2f6b2c2e-7d7a-4c55-9a51-1b4b0d3f6a01",
    "locked": "8a1d4e5f-3c2b-4f6e-8d7c-2e9f0a1b3c02",
    "empty": "c4e8f2a6-9b1d-4a3c-b5e7-6d2f8a0c4e03",
}
LOCKED_COUNT = 3
TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"
STIX_MEDIA_TYPE = "application/stix+json;version=2.1"
# date_added values use their microsecond digits (start .000001, step 1.001 ms),
# so a client that rounds X-TAXII-Date-Added-* cursors to milliseconds misses
# or repeats objects.
DATE_ADDED_START = dt.datetime(2024, 6, 1, 0, 0, 0, 1, tzinfo=dt.timezone.utc)
DATE_ADDED_STEP = dt.timedelta(milliseconds=1, microseconds=1)


def format_date_added(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def order_versions(objects):
    """Objects in file order, with the versions of each id sorted by modified.

    Each id keeps the positions it has in the file; only which version sits
    at which of those positions changes, so older versions come first.
    """
    by_id = {}
    for obj in objects:
        by_id.setdefault(obj["id"], []).append(obj)
    for versions in by_id.values():
        versions.sort(key=lambda o: o.get("modified", ""))
    return [by_id[obj["id"]].pop(0) for obj in objects]


def collection(name, title, can_read, objects, first_added):
    """A memory-backend collection holding `objects` with manifest entries."""
    stored, manifest = [], []
    for i, obj in enumerate(objects):
        date_added = format_date_added(first_added + i * DATE_ADDED_STEP)
        version = obj.get("modified", obj.get("created", date_added))
        obj = dict(obj)
        if "modified" not in obj and "created" not in obj:
            obj["_date_added"] = date_added
        stored.append(obj)
        manifest.append({"id": obj["id"], "date_added": date_added,
                         "version": version, "media_type": STIX_MEDIA_TYPE})
    return {
        "id": COLLECTION_IDS[name],
        "title": title,
        "description": f"Test collection '{name}' written by medallion_setup.py",
        "can_read": can_read,
        "can_write": True,
        "media_types": [STIX_MEDIA_TYPE],
        "objects": stored,
        "manifest": manifest,
    }


def build_data(objects, base_url):
    api_root_url = f"{base_url}/{API_ROOT}/"
    locked_start = DATE_ADDED_START + len(objects) * DATE_ADDED_STEP
    return {
        "/discovery": {
            "title": "medallion test server",
            "description": "Written by medallion_setup.py",
            "default": api_root_url,
            "api_roots": [api_root_url],
        },
        API_ROOT: {
            "information": {
                "title": "Test feeds",
                "description": "Generated STIX 2.1 test data",
                "versions": [TAXII_MEDIA_TYPE],
                "max_content_length": 100 * 1024 * 1024,
            },
            "status": [],
            "collections": [
                collection("intel", "Intel", True, order_versions(objects), DATE_ADDED_START),
                collection("locked", "Locked (write only)", False,
                           objects[:LOCKED_COUNT], locked_start),
                collection("empty", "Empty", True, [], DATE_ADDED_START),
            ],
        },
    }


def read_password(path):
    with open(path, encoding="utf-8") as f:
        password = f.read().rstrip("\r\n")
    if not password:
        sys.exit(f"medallion_setup: password file {path} is empty")
    return password


def write_json(path, value, private=False):
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.chmod(path, mode)  # O_CREAT's mode only applies to new files
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", required=True,
                        help="bundle (or JSON list) of STIX objects, e.g. from gen_stix.py")
    parser.add_argument("--port", type=int, required=True, help="port medallion will listen on")
    parser.add_argument("--out-dir", required=True, help="directory for data.json and config.json")
    parser.add_argument("--user", required=True, help="HTTP Basic user name")
    parser.add_argument("--password-file", required=True,
                        help="file holding the password (trailing newline ignored)")
    parser.add_argument("--session-timeout", type=int, default=300,
                        help="seconds a 'next' token lives (default %(default)s; "
                             "medallion's own default is 30)")
    parser.add_argument("--max-page-size", type=int, default=1000,
                        help="largest page medallion serves (default %(default)s)")
    args = parser.parse_args()

    with open(args.objects, encoding="utf-8") as f:
        loaded = json.load(f)
    objects = loaded["objects"] if isinstance(loaded, dict) else loaded
    bad = [o.get("id") for o in objects if "version" in o]
    if bad:
        sys.exit(f"medallion_setup: objects with a top-level 'version' make medallion "
                 f"answer 500, remove them first: {bad[:5]}")

    out_dir = os.path.abspath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    data_path = os.path.join(out_dir, "data.json")
    config_path = os.path.join(out_dir, "config.json")
    base_url = f"http://127.0.0.1:{args.port}"

    write_json(data_path, build_data(objects, base_url))
    write_json(config_path, {
        "users": {args.user: read_password(args.password_file)},
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": data_path,
            "session_timeout": args.session_timeout,
        },
        "taxii": {"max_page_size": args.max_page_size},
    }, private=True)

    api_root_url = f"{base_url}/{API_ROOT}/"
    print(json.dumps({
        "base_url": base_url,
        "discovery_url": f"{base_url}/taxii2/",
        "api_root_url": api_root_url,
        "collections": {name: f"{api_root_url}collections/{cid}/"
                        for name, cid in COLLECTION_IDS.items()},
        "collection_ids": COLLECTION_IDS,
        "config": config_path,
    }))


if __name__ == "__main__":
    main()
