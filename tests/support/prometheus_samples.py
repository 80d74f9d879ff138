"""Parses a Prometheus text exposition (stdin) with prometheus_client, an implementation
independent of the module, and prints one line per sample: `name{label="value",...} value`,
labels sorted; exits non-zero when the text does not parse or a family has no TYPE."""

import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
try:
    for family in text_string_to_metric_families(text):
        if family.type == "unknown":
            raise ValueError(f"family {family.name} without TYPE")
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            value = int(sample.value) if sample.value == int(sample.value) else sample.value
            print(f"{sample.name}{{{labels}}} {value}")
except Exception as error:  # noqa: BLE001 -- any parse failure fails the test
    print(f"parse error: {error}", file=sys.stderr)
    sys.exit(1)
