#!/usr/bin/env python3
"""Read a TAXII 2.1 server the way a downstream tool would: with taxii2-client.

Starts at the discovery URL, takes the API root whose URL ends in
/--api-root/, finds the collection whose alias or title is --collection,
and prints one JSON document on stdout:

  {"api_roots": [url, ...], "collections": [{"id", "title", "alias",
   "can_read", "can_write", "media_types"}, ...], "collection_url": url,
   "result": ...}

where "result" depends on --read:

  objects   as_pages(get_objects): {"pages": [count, ...], "objects": [...]}
  manifest  as_pages(get_manifest): {"pages": [...], "objects": [records]}
  object    get_object(--object-id): the envelope
  versions  object_versions(--object-id): the versions resource

Filters (--type, --id, --version, --spec-version, --added-after) are passed
as taxii2-client's keyword arguments, which become match[...] and
added_after; --per-request is the page size asked for.

Exits 1 with a one-line message on any error.
"""
import argparse
import json
import sys

import requests
from taxii2client.exceptions import TAXIIServiceException
from taxii2client.v21 import Collection, Server, as_pages


def filters(args):
    """taxii2-client keyword arguments for the filters given."""
    chosen = {
        "type": args.type,
        "id": args.id,
        "version": args.version,
        "spec_version": args.spec_version,
        "added_after": args.added_after,
    }
    return {k: v for k, v in chosen.items() if v is not None}


def read_pages(func, per_request, kwargs, key):
    pages, items = [], []
    for envelope in as_pages(func, per_request=per_request, **kwargs):
        got = envelope.get(key, [])
        pages.append(len(got))
        items.extend(got)
    return {"pages": pages, "objects": items}


def read(args, password):
    server = Server(args.discovery, user=args.user, password=password)
    roots = server.api_roots
    root = next(r for r in roots if r.url.rstrip("/").endswith("/" + args.api_root))
    collections = root.collections
    described = [
        {"id": c.id, "title": c.title, "alias": c.alias, "can_read": c.can_read,
         "can_write": c.can_write, "media_types": c.media_types}
        for c in collections
    ]
    found = next(c for c in collections if args.collection in (c.alias, c.title))
    collection = Collection(found.url, user=args.user, password=password)
    kwargs = filters(args)
    if args.read == "objects":
        result = read_pages(collection.get_objects, args.per_request, kwargs, "objects")
    elif args.read == "manifest":
        result = read_pages(collection.get_manifest, args.per_request, kwargs, "objects")
    elif args.read == "object":
        result = collection.get_object(args.object_id, **kwargs)
    else:
        result = collection.object_versions(args.object_id, **kwargs)
    return {
        "api_roots": [r.url for r in roots],
        "collections": described,
        "collection_url": found.url,
        "result": result,
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--discovery", required=True, help="discovery URL (.../taxii2/)")
    parser.add_argument("--api-root", default="default", help="last path segment of the API root")
    parser.add_argument("--collection", required=True, help="collection alias or title")
    parser.add_argument("--user", required=True, help="HTTP Basic user name")
    parser.add_argument("--password-file", required=True,
                        help="file holding the password (trailing newline ignored)")
    parser.add_argument("--read", choices=["objects", "manifest", "object", "versions"],
                        default="objects")
    parser.add_argument("--object-id", help="the object for --read object|versions")
    parser.add_argument("--per-request", type=int, default=100, help="page size asked for")
    for name in ("type", "id", "version", "spec-version", "added-after"):
        parser.add_argument(f"--{name}")
    args = parser.parse_args()

    try:
        with open(args.password_file, encoding="utf-8") as f:
            password = f.read().rstrip("\r\n")
        printed = read(args, password)
    except (OSError, requests.RequestException, TAXIIServiceException,
            StopIteration, ValueError, KeyError) as error:
        sys.exit(f"taxii_client_read: {args.discovery}: {type(error).__name__}: {error}")
    json.dump(printed, sys.stdout)
    print()


if __name__ == "__main__":
    main()
