"""Parses Prometheus text exposition from stdin with the Prometheus Python
client's parser and prints the metric families as JSON: one object per family
with its type and samples (name, labels, value). Exits non-zero if the text
does not parse."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    families = {}
    for family in text_string_to_metric_families(sys.stdin.read()):
        families[family.name] = {
            "type": family.type,
            "samples": [
                {"name": s.name, "labels": dict(s.labels), "value": s.value}
                for s in family.samples
            ],
        }
    json.dump(families, sys.stdout)


if __name__ == "__main__":
    main()
