"""Parses an OpenMetrics exposition (stdin) with the Prometheus project's own Python parser
(Debian python3-prometheus-client), which refuses anything the format does not allow, and
prints every sample as one JSON line: {"name", "labels", "value"}. Exit status 1 with the
parser's message when the text is not valid OpenMetrics."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

try:
    for family in text_string_to_metric_families(sys.stdin.read()):
        for sample in family.samples:
            print(json.dumps({"name": sample.name, "labels": sample.labels, "value": sample.value}))
except Exception as error:  # the parser raises ValueError and friends on bad text
    print(f"not valid OpenMetrics: {error}", file=sys.stderr)
    sys.exit(1)
