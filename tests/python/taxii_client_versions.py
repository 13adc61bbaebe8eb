#!/usr/bin/env python3
"""Read every object version of a TAXII 2.1 collection with taxii2-client.

The OASIS reference client is the baseline the project is compared with.
This uses taxii2client.v21.Collection and as_pages() on Get Objects with
match[version]=all (taxii2-client spells that filter as the keyword
``version="all"``), and prints one JSON line per version received,
{"id": ..., "modified": ... or null}, sorted by id then modified.
Duplicates are printed as received, not merged.

Exits 1 with a one-line message on any error (connection, HTTP status,
unreadable collection, bad password file).
"""
import argparse
import json
import sys

import requests
from taxii2client.exceptions import TAXIIServiceException
from taxii2client.v21 import Collection, as_pages


def read_versions(url, user, password, page_size):
    """(id, modified or None) for every object of every page."""
    versions = []
    with Collection(url, user=user, password=password) as collection:
        for envelope in as_pages(collection.get_objects, per_request=page_size, version="all"):
            for obj in envelope.get("objects", []):
                versions.append((obj["id"], obj.get("modified")))
    return versions


def describe(error):
    """A one-line description of an error from requests or taxii2-client."""
    response = getattr(error, "response", None)
    if response is not None:
        body = " ".join(response.text.split())[:200]
        return f"HTTP {response.status_code} from {response.url}: {body}"
    return f"{type(error).__name__}: {error}"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="collection URL (.../collections/<id>/)")
    parser.add_argument("--user", required=True, help="HTTP Basic user name")
    parser.add_argument("--password-file", required=True,
                        help="file holding the password (trailing newline ignored)")
    parser.add_argument("--page-size", type=int, default=100,
                        help="objects per request (default %(default)s)")
    args = parser.parse_args()

    try:
        with open(args.password_file, encoding="utf-8") as f:
            password = f.read().rstrip("\r\n")
        versions = read_versions(args.url, args.user, password, args.page_size)
    except (OSError, requests.RequestException, TAXIIServiceException,
            ValueError, KeyError) as error:
        sys.exit(f"taxii_client_versions: {args.url}: {describe(error)}")

    versions.sort(key=lambda v: (v[0], v[1] or ""))
    for id_, modified in versions:
        print(json.dumps({"id": id_, "modified": modified}))


if __name__ == "__main__":
    main()
