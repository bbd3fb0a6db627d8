#!/usr/bin/env python3
"""List a batch link's false merges and missed links, with field values, and
count them by which fields agree.

usage: failures.py RECORDS.csv TRUTH.csv ASSIGNED.csv [--fp N] [--fn N] [--seed S]
                   [--explain PATH/TO/explain_pairs]

With --explain, each listed pair also shows the matcher's own explanation (score,
decision, conflict, per-field levels) from the `explain_pairs` example.

Truth is read only here, to study failures; the matcher never sees it. A missed
link is counted once per split person (between its two largest fragments), a
false merge once per pair of people sharing a master, so large clusters do not
dominate the counts. Field agreement uses a crude normalization (case, spaces,
punctuation, digits of phones and IDs), good enough to sort failures by cause.
"""
import csv
import os
import random
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict

FIELDS = ["given_name", "family_name", "birth_date", "sex", "address_line", "city",
          "state", "postal_code", "phone", "email", "ssn"]
SHORT = {"given_name": "G", "family_name": "F", "birth_date": "D", "sex": "X",
         "address_line": "A", "city": "C", "state": "S", "postal_code": "Z",
         "phone": "P", "email": "E", "ssn": "N"}


def norm(field, v):
    v = (v or "").strip().upper()
    if field in ("phone", "ssn"):
        d = re.sub(r"\D", "", v)
        if field == "phone" and len(d) == 11 and d.startswith("1"):
            d = d[1:]
        return d
    if field == "given_name":
        return re.sub(r"[^A-Z ]", "", v).split(" ")[0] if v else ""
    if field == "postal_code":
        return v[:5]
    return re.sub(r"[^A-Z0-9]", "", v)


def agreement(a, b):
    """One letter per field: upper = equal, lower = different, '.' = missing."""
    out = []
    for f in FIELDS:
        x, y = norm(f, a[f]), norm(f, b[f])
        if not x or not y:
            out.append(".")
        elif x == y:
            out.append(SHORT[f])
        else:
            out.append(SHORT[f].lower())
    return "".join(out)


def explain(binary, records_path, pairs):
    """The matcher's explanation of each pair, by pair."""
    if not binary or not pairs:
        return {}
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as fh:
        for a, b in pairs:
            fh.write(",".join(a + b) + "\n")
        path = fh.name
    try:
        out = subprocess.run([binary, records_path, path], capture_output=True, text=True,
                             check=True).stdout
    finally:
        os.unlink(path)
    result = {}
    for line, pair in zip(out.splitlines(), pairs):
        result[pair] = line.split("\t", 1)[1] if "\t" in line else line
    return result


def show(a, b, label, why=None):
    print(f"--- {label} {agreement(a, b)}")
    for r in (a, b):
        print("   " + " | ".join(f"{r[f]}" for f in ["source"] + FIELDS))
    if why:
        print("   => " + why)


def main():
    args = sys.argv[1:]
    opts = {"--fp": 30, "--fn": 30, "--seed": 1, "--explain": ""}
    pos = []
    i = 0
    while i < len(args):
        if args[i] in opts:
            opts[args[i]] = args[i + 1] if args[i] == "--explain" else int(args[i + 1])
            i += 2
        else:
            pos.append(args[i])
            i += 1
    records_path, truth_path, assigned_path = pos
    with open(records_path, newline="") as fh:
        recs = {(r["source"], r["local_id"]): r for r in csv.DictReader(fh)}
    with open(truth_path, newline="") as fh:
        truth = {(r["source"], r["local_id"]): r["person_id"] for r in csv.DictReader(fh)}
    with open(assigned_path, newline="") as fh:
        got = {(r["source"], r["local_id"]): r["master_id"] for r in csv.DictReader(fh)}
    by_master = defaultdict(list)
    by_person = defaultdict(list)
    for k, m in got.items():
        by_master[m].append(k)
        by_person[truth[k]].append(k)
    rng = random.Random(opts["--seed"])

    fps = []
    for members in by_master.values():
        people = defaultdict(list)
        for k in members:
            people[truth[k]].append(k)
        ps = sorted(people)
        for i, p in enumerate(ps):
            for q in ps[i + 1:]:
                fps.append((people[p][0], people[q][0]))
    fns = []
    for members in by_person.values():
        frags = defaultdict(list)
        for k in members:
            frags[got[k]].append(k)
        if len(frags) < 2:
            continue
        parts = sorted(frags.values(), key=len, reverse=True)
        # the best-agreeing pair between the two largest fragments
        best = max(((a, b) for a in parts[0] for b in parts[1]),
                   key=lambda ab: sum(c.isupper() for c in agreement(recs[ab[0]], recs[ab[1]])))
        fns.append(best)

    for name, pairs, n in (("FALSE MERGE", fps, opts["--fp"]), ("MISSED", fns, opts["--fn"])):
        sig = Counter(agreement(recs[a], recs[b]) for a, b in pairs)
        print(f"==== {name}: {len(pairs)} (by agreement, GFDXACSZPEN; upper=same, lower=diff, .=missing)")
        for s, c in sig.most_common(25):
            print(f"  {c:5d} {s}")
        if opts["--explain"]:
            why = explain(opts["--explain"], records_path, pairs)
            cause = Counter()
            for pair in pairs:
                fields = why.get(pair, "").split("\t")
                if len(fields) < 3:
                    continue
                score, decision, conflict = float(fields[0]), fields[1], fields[2]
                if conflict != "None":
                    cause[f"{decision} {conflict}"] += 1
                elif score >= 8:
                    cause["Match by pair (cluster veto, ambiguity or term frequency)"] += 1
                else:
                    cause[f"{decision} score {min(7, int(score // 4 * 4)):+d}.."] += 1
            print(f"  by the matcher's pair decision:")
            for c, k in cause.most_common():
                print(f"  {k:5d} {c}")
        sample = rng.sample(pairs, min(n, len(pairs)))
        why = explain(opts["--explain"], records_path, sample)
        for a, b in sample:
            show(recs[a], recs[b], name, why.get((a, b)))


if __name__ == "__main__":
    main()
