#!/usr/bin/env python3
"""Checks the chart's Grafana dashboard and Prometheus rules against what hsmbridge exports.

    python3 scripts/check-monitoring.py --exposition SIDECAR.txt --exposition OPERATOR.txt
    python3 scripts/check-monitoring.py            # structure only (no metric names checked)
    python3 scripts/check-monitoring.py --list     # print the metric names the files use

SIDECAR.txt / OPERATOR.txt: the text of a /metrics scrape (`curl -s POD-IP:17340/metrics`, the
operator's :8080/metrics), OpenMetrics (the sidecar's prometheus-client) or the Prometheus text
format (the operator). Every metric name the dashboard and the rules use must be one these
expositions can produce, from a sample line or from a `# TYPE` line alone (a labelled family with
no child yet, e.g. calls_total before the first call, shows only its TYPE and HELP).

Checked, exit 1 on the first kind of failure with a line naming what is wrong:
  charts/hsmbridge/files/grafana-dashboard.json: valid JSON; uid, title, schemaVersion; the
    template variables datasource (type datasource, query prometheus), namespace, partition, pod;
    unique panel ids; every panel but rows has a gridPos, the ${datasource} variable as its
    datasource and at least one target; every target has a refId (unique in its panel) and an expr.
  charts/hsmbridge/files/prometheus-rules.yaml: groups with unique names; every rule an alert
    (unique name, labels.severity, annotations.summary) or a record, with an expr.
  In every expr (and every query variable): balanced brackets, and each metric name, i.e. each
    identifier starting with hsmbridge_sidecar_ or hsm_operator_, among the exposed ones. A name
    used with _bucket/_sum/_count must belong to a histogram (or _sum/_count to a summary).
Needs python3-yaml (scripts/install-deps.sh installs it).
"""

import argparse
import json
import os
import re
import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("check-monitoring: needs PyYAML (Debian: python3-yaml; scripts/install-deps.sh installs it)")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARD = os.path.join(REPO, "charts/hsmbridge/files/grafana-dashboard.json")
RULES = os.path.join(REPO, "charts/hsmbridge/files/prometheus-rules.yaml")

# Identifiers only: a preceding word character (e.g. `foo_hsm_operator_x`) is not a match.
METRIC_RE = re.compile(r"(?<![A-Za-z0-9_:])(?:hsmbridge_sidecar_|hsm_operator_)[A-Za-z0-9_:]*")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
DATASOURCE_VAR = ("${datasource}", "$datasource")

# The sample names a metric family of each type can produce (OpenMetrics and Prometheus text).
FAMILY_SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


class CheckError(Exception):
    pass


def parse_exposition(text):
    """Returns {sample name: where} of every sample name the exposition can produce."""
    families = {}
    names = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                families[parts[2]] = parts[3].strip()
            elif len(parts) >= 3 and parts[1] in ("HELP", "UNIT"):
                families.setdefault(parts[2], "unknown")
            continue
        m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
        if m:
            names[m.group(0)] = "sample"
    for family, kind in families.items():
        if kind == "counter":
            # OpenMetrics: TYPE names the family without _total; Prometheus text: with it.
            produced = (family,) if family.endswith("_total") else (family + "_total", family + "_created")
        else:
            produced = tuple(family + s for s in FAMILY_SUFFIXES.get(kind, ("",)))
        for name in produced:
            names.setdefault(name, kind)
    return names


def family_of(name):
    """The family name a dashboard/rule name refers to (histogram suffixes stripped)."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_brackets(expr, where):
    """Balanced (), {} and [] outside of string literals."""
    pairs = {")": "(", "}": "{", "]": "["}
    stack = []
    quote = None
    escaped = False
    for ch in expr:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in "({[":
            stack.append(ch)
        elif ch in ")}]":
            if not stack or stack.pop() != pairs[ch]:
                raise CheckError(f"{where}: unbalanced '{ch}' in expr: {expr!r}")
    if quote or stack:
        raise CheckError(f"{where}: unclosed {quote or stack[-1]!r} in expr: {expr!r}")


def is_datasource_var(ds):
    if isinstance(ds, str):
        return ds in DATASOURCE_VAR
    return isinstance(ds, dict) and ds.get("uid") in DATASOURCE_VAR and ds.get("type", "prometheus") == "prometheus"


def dashboard_exprs(path):
    """Checks the dashboard's structure; returns [(where, expr)]."""
    try:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckError(f"{path}: not valid JSON: {e}")
    name = os.path.basename(path)
    for key in ("uid", "title", "schemaVersion", "panels", "templating"):
        if key not in dash:
            raise CheckError(f"{name}: no '{key}'")
    exprs = []

    variables = {v.get("name"): v for v in dash["templating"].get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        raise CheckError(f"{name}: no template variable 'datasource' of type datasource, query prometheus")
    for var in ("namespace", "partition", "pod"):
        if var not in variables:
            raise CheckError(f"{name}: no template variable '{var}'")
    for var in variables.values():
        if var.get("type") != "query":
            continue
        where = f"{name}: variable '{var.get('name')}'"
        if not is_datasource_var(var.get("datasource")):
            raise CheckError(f"{where}: datasource is {var.get('datasource')!r}, not the ${{datasource}} variable")
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if not isinstance(query, str) or not query.strip():
            raise CheckError(f"{where}: no query")
        exprs.append((where, query))

    panels = []

    def collect(items):
        for p in items:
            panels.append(p)
            collect(p.get("panels", []))  # a collapsed row holds its panels

    collect(dash["panels"])
    ids = {}
    for p in panels:
        title = p.get("title", "")
        pid = p.get("id")
        if not isinstance(pid, int):
            raise CheckError(f"{name}: panel '{title}' has no integer id")
        if pid in ids:
            raise CheckError(f"{name}: panel id {pid} used twice ('{ids[pid]}' and '{title}')")
        ids[pid] = title
        where = f"{name}: panel {pid} '{title}'"
        gp = p.get("gridPos")
        if not isinstance(gp, dict) or any(not isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")):
            raise CheckError(f"{where}: no gridPos with h, w, x, y")
        if gp["x"] < 0 or gp["w"] <= 0 or gp["x"] + gp["w"] > 24:
            raise CheckError(f"{where}: gridPos beyond the 24 columns: {gp}")
        if p.get("type") == "row":
            if p.get("targets"):
                raise CheckError(f"{where}: a row with targets")
            continue
        if not is_datasource_var(p.get("datasource")):
            raise CheckError(f"{where}: datasource is {p.get('datasource')!r}, not the ${{datasource}} variable")
        targets = p.get("targets")
        if not targets:
            raise CheckError(f"{where}: no targets")
        refs = set()
        for t in targets:
            ref = t.get("refId")
            if not ref:
                raise CheckError(f"{where}: a target without refId")
            if ref in refs:
                raise CheckError(f"{where}: refId {ref} used twice")
            refs.add(ref)
            if "datasource" in t and not is_datasource_var(t["datasource"]):
                raise CheckError(f"{where} target {ref}: datasource is {t['datasource']!r}, not ${{datasource}}")
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                raise CheckError(f"{where} target {ref}: no expr")
            exprs.append((f"{where} target {ref}", expr))
    return exprs


def rules_exprs(path):
    """Checks the rule file's structure; returns [(where, expr)]."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise CheckError(f"{path}: not valid YAML: {e}")
    name = os.path.basename(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list) or not doc["groups"]:
        raise CheckError(f"{name}: no list 'groups'")
    exprs = []
    groups = set()
    alerts = set()
    for g in doc["groups"]:
        gname = g.get("name")
        if not gname or gname in groups:
            raise CheckError(f"{name}: a group without a name, or a name used twice ({gname!r})")
        groups.add(gname)
        for r in g.get("rules") or []:
            rname = r.get("alert") or r.get("record")
            where = f"{name}: {gname}/{rname}"
            if not rname:
                raise CheckError(f"{name}: group {gname}: a rule with neither alert nor record")
            if "alert" in r:
                if rname in alerts:
                    raise CheckError(f"{where}: alert name used twice")
                alerts.add(rname)
                if not (r.get("labels") or {}).get("severity"):
                    raise CheckError(f"{where}: no labels.severity")
                if not (r.get("annotations") or {}).get("summary"):
                    raise CheckError(f"{where}: no annotations.summary")
                if "for" in r and not re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", str(r["for"])):
                    raise CheckError(f"{where}: 'for: {r['for']}' is not a Prometheus duration")
            expr = r.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                raise CheckError(f"{where}: no expr")
            exprs.append((where, expr))
    return exprs


def used_names(exprs):
    """{metric name as written: [where...]}, sorted by name."""
    used = {}
    for where, expr in exprs:
        check_brackets(expr, where)
        for name in METRIC_RE.findall(expr):
            used.setdefault(name, []).append(where)
    return dict(sorted(used.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exposition", action="append", default=[], metavar="FILE",
                    help="a /metrics scrape (sidecar, operator); repeat for each")
    ap.add_argument("--dashboard", default=DASHBOARD, help="default: %(default)s")
    ap.add_argument("--rules", default=RULES, help="default: %(default)s")
    ap.add_argument("--list", action="store_true", help="print the metric names used (histogram suffixes stripped)")
    args = ap.parse_args()

    try:
        exprs = dashboard_exprs(args.dashboard) + rules_exprs(args.rules)
        used = used_names(exprs)
        if not used:
            raise CheckError("no hsmbridge_sidecar_/hsm_operator_ metric name in any expr")
        if args.list:
            for family in sorted({family_of(n) for n in used}):
                print(family)

        if not args.exposition:
            print(f"check-monitoring: structure ok ({len(exprs)} exprs, {len(used)} metric names); "
                  "no --exposition, so the names were not checked", file=sys.stderr)
            return 0
        exposed = {}
        for path in args.exposition:
            try:
                with open(path, encoding="utf-8") as f:
                    exposed.update(parse_exposition(f.read()))
            except OSError as e:
                raise CheckError(f"cannot read exposition {path}: {e}")
        missing = []
        for name, wheres in used.items():
            if name in exposed:
                continue
            family = family_of(name)
            if family != name and family in exposed:
                hint = f" ({family} is exposed as a {exposed[family]}, not a histogram)"
            elif name + "_total" in exposed:
                hint = f" ({name}_total is exposed)"
            else:
                hint = ""
            missing.append(f"check-monitoring: FAIL: metric {name} is not exposed{hint}; used by {wheres[0]}"
                           + (f" and {len(wheres) - 1} more" if len(wheres) > 1 else ""))
        if missing:
            print("\n".join(missing), file=sys.stderr)
            return 1
        print(f"check-monitoring: ok: the {len(used)} metric names of {len(exprs)} exprs are all exposed by "
              + ", ".join(args.exposition), file=sys.stderr)
        return 0
    except CheckError as e:
        print(f"check-monitoring: FAIL: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
