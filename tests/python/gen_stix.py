#!/usr/bin/env python3
"""Generate a bundle of valid, partly multi-versioned STIX 2.1 objects.

Objects come from stix2-generator's Python API, called in small graphs (its
command-line tool is too slow past a few hundred objects), and are kept only
when stix2-validator (STIX 2.1) reports no error.  Dropped as well: objects
with a top-level ``version`` property (medallion answers 500 on a collection
holding one) and anything that is not a plain object (bundles).  SCOs get
``spec_version: "2.1"`` so that every object carries it.

About 10% of the SDOs get one or two further versions (same id, a later
``modified``, changed ``labels``); those new versions are later than every
timestamp of the original objects.  The output holds every version:
``{"type": "bundle", "id": "bundle--...", "objects": [...]}``.

Determinism: ``random`` and faker are seeded, the generator's UUIDs and its
idea of "now" are patched, and the script re-executes itself with
PYTHONHASHSEED=0 (the generator iterates over sets of strings), so one seed
gives the same file every time.

Timestamps: every ``created``/``modified`` is at or after --start-time (and
within about four years of it), except the generator's fixed TLP marking
definitions (created 2017-01-20).  For a second batch that serves as "new
objects", pass a different --seed and ``--after FIRST.json``: it starts after
FIRST's latest timestamp and leaves out ids FIRST already has (the TLP
markings).  The summary line on stderr prints the latest timestamp too.
"""
import os
import sys

if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    # Before the slow imports: the generator's output depends on set order.
    os.execve(sys.executable, [sys.executable, *sys.argv],
              {**os.environ, "PYTHONHASHSEED": "0"})

import argparse  # noqa: E402 (after the re-exec above)
import datetime as dt
import json
import random
import time
import types
import uuid

import faker
import stix2.utils
import stix2generator
from stix2generator.generation import object_generator, pattern_generator
from stix2generator.generation import reference_graph_generator, semantics
from stix2generator.generation import stix_generator
from stix2validator import ValidationOptions, validate_instance

DEFAULT_START = "2020-01-01T00:00:00Z"
MIN_TYPES = 8
VERSIONED_SHARE = 0.10


def parse_ts(text):
    """Parse a STIX/RFC 3339 UTC timestamp ('...Z') into an aware datetime."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def format_ts(moment):
    """Format as STIX timestamp with millisecond precision."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def latest_timestamp(objects):
    """Latest `created`/`modified` of the given objects, or None."""
    stamps = [parse_ts(o[k]) for o in objects for k in ("created", "modified") if k in o]
    return max(stamps, default=None)


def patch_generator(seed, id_seed, now):
    """Make stix2-generator deterministic: seeded UUIDs and a fixed clock.

    The first UUID group is derived from id_seed, so a batch's ids are
    recognisable; the rest comes from a Random seeded with id_seed.
    """
    random.seed(seed)
    faker.Faker.seed(seed)
    id_rng = random.Random(id_seed)
    prefix = random.Random(f"prefix-{id_seed}").getrandbits(32)

    def uuid4():
        bits = (prefix << 96) | id_rng.getrandbits(96)
        return uuid.UUID(int=bits, version=4)

    class FixedClock(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return now if tz else now.replace(tzinfo=None)

        @classmethod
        def utcnow(cls):
            return now.replace(tzinfo=None)

    clock = types.SimpleNamespace(datetime=FixedClock, timedelta=dt.timedelta)
    semantics.uuid = types.SimpleNamespace(uuid4=uuid4)
    semantics.datetime = clock
    pattern_generator.datetime = clock


def make_generator():
    """A STIX generator producing small graphs of plain dicts."""
    return stix2generator.create_stix_generator(
        object_generator.Config(minimize_ref_properties=False),
        reference_graph_generator.Config(max_depth=0, parse=False),
        stix_generator.Config(
            min_relationships=1, max_relationships=5,
            probability_sighting=0.1, parse=False,
        ),
    )


def is_valid(obj, options):
    """True when stix2-validator reports no error for obj."""
    return validate_instance(obj, options).is_valid


def generate_base(count, options, stats, known):
    """Generate at least `count` valid objects covering MIN_TYPES types,
    leaving out ids in `known`."""
    gen = make_generator()
    kept, seen = [], set(known)
    while len(kept) < count or len({o["type"] for o in kept}) < MIN_TYPES:
        for obj in gen.generate().values():
            if obj["id"] in seen:
                continue
            seen.add(obj["id"])
            if obj.get("type") == "bundle" or "version" in obj:
                stats["dropped_version_or_bundle"] += 1
                continue
            obj.setdefault("spec_version", "2.1")
            if obj["spec_version"] != "2.1" or not is_valid(obj, options):
                stats["dropped_invalid"] += 1
                continue
            kept.append(obj)
    return kept


def add_versions(objects, options, after):
    """New versions for about VERSIONED_SHARE of the SDOs, all later than `after`."""
    sdos = [o for o in objects
            if stix2.utils.is_sdo(o["type"], "2.1") and not o.get("revoked")]
    chosen = random.sample(sdos, max(1, round(len(sdos) * VERSIONED_SHARE)))
    step = dt.timedelta(seconds=1)
    stamp = after
    extra = []
    for obj in chosen:
        current = obj
        for revision in range(1, random.randint(1, 2) + 1):
            stamp += step
            new = dict(current)
            new["modified"] = format_ts(stamp)
            new["labels"] = sorted(set(current.get("labels", [])) | {f"revision-{revision}"})
            if is_valid(new, options):
                extra.append(new)
                current = new
    return extra


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, required=True,
                        help="minimum number of objects (versions not counted)")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument("--out", required=True, help="output bundle file")
    parser.add_argument("--id-prefix-seed", type=int,
                        help="seed for the object UUIDs (default: --seed); the first "
                             "UUID group is the same for every id of one such seed")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--start-time", default=DEFAULT_START,
                       help="earliest timestamp to generate, RFC 3339 UTC "
                            "(default %(default)s)")
    group.add_argument("--after", metavar="BUNDLE",
                       help="start one second after the latest created/modified "
                            "in BUNDLE (for a batch of newer objects)")
    args = parser.parse_args()

    known = set()
    if args.after:
        with open(args.after, encoding="utf-8") as f:
            previous = json.load(f)["objects"]
        start = latest_timestamp(previous) + dt.timedelta(seconds=1)
        known = {o["id"] for o in previous}
    else:
        start = parse_ts(args.start_time)
    id_seed = args.seed if args.id_prefix_seed is None else args.id_prefix_seed

    began = time.monotonic()
    # Unconstrained timestamps are "now" +- 1 year, constrained ones (created
    # <= modified) up to a year further: put "now" two years after start.
    patch_generator(args.seed, id_seed, start + dt.timedelta(days=2 * 366))
    options = ValidationOptions(version="2.1", silent=True)
    stats = {"dropped_invalid": 0, "dropped_version_or_bundle": 0}
    objects = generate_base(args.count, options, stats, known)
    objects += add_versions(objects, options, latest_timestamp(objects))

    bundle_id = f"bundle--{uuid.UUID(int=random.getrandbits(128), version=4)}"
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"type": "bundle", "id": bundle_id, "objects": objects}, f, indent=1)

    ids = {o["id"] for o in objects}
    types_ = {}
    for o in objects:
        types_[o["type"]] = types_.get(o["type"], 0) + 1
    type_text = ",".join(f"{t}={n}" for t, n in sorted(types_.items()))
    print(f"gen_stix: {len(ids)} objects, {len(objects)} versions, "
          f"{len(objects) - len(ids)} extra versions, {len(types_)} types, "
          f"dropped {stats['dropped_invalid']} invalid + "
          f"{stats['dropped_version_or_bundle']} with 'version', "
          f"latest {format_ts(latest_timestamp(objects))}, "
          f"{time.monotonic() - began:.1f}s; types: {type_text}", file=sys.stderr)


if __name__ == "__main__":
    main()
