#!/usr/bin/env python3
"""Benchmark peer: read a TAXII 2.1 collection with taxii2-client.

Usage: taxii2_client_pages.py COLLECTION_URL PER_REQUEST

Fetches every page with as_pages(collection.get_objects) (taxii2-client
parses each response body with requests' JSON decoder), keeps nothing but
counts, and prints {"objects": N, "pages": P} on stdout.
"""
import json
import sys

from taxii2client.v21 import Collection, as_pages


def main():
    url, per_request = sys.argv[1], int(sys.argv[2])
    collection = Collection(url)
    objects = pages = 0
    for envelope in as_pages(collection.get_objects, per_request=per_request):
        objects += len(envelope.get("objects", []))
        pages += 1
    json.dump({"objects": objects, "pages": pages}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
