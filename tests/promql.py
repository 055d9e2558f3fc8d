"""What the alert and dashboard tests share: the metrics the operator serves (tests/metrics.txt,
checked against src/operator/metrics.rs) and the metric names a PromQL expression selects."""

import re
from pathlib import Path

OPERATOR_METRICS = {
    line.strip()
    for line in (Path(__file__).resolve().parent / "metrics.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool", "inf", "nan"}


def metric_names(expr):
    """The metric names a PromQL expression selects (not functions, keywords, labels, Grafana variables)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[m.end() :].lstrip().startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names
