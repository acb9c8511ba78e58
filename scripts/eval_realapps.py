#!/usr/bin/env python3
"""Scores apisensor on the real-application captures in fixtures/realapps/.

    python3 scripts/eval_realapps.py [--binary target/release/apisensor] [--app NAME ...]
                                     [--json OUT] [--grace SECS] [--strict]

Needs only Python 3 (standard library) and a built sensor
(`bash scripts/setup.sh && cargo build --release`). For each application
directory holding capture.pcap.xz, routes.json, campaigns.json and
requests.jsonl.xz (see fixtures/realapps/README.md):

Inventory. The first 1, 5, 10 and 20 minutes of the capture (cut by packet
time from the first packet) and the whole capture go through
`apisensor inventory --format json`. An inventory endpoint (method, template)
matches a route of routes.json when the methods are equal (a route method
"*" takes any) and the paths align segment by segment after dropping one
trailing slash: a route segment holding a `{param}` (also a mixed one such
as `{tag}.{fmt}`) matches an inventory segment that is a `{param}`, literal
segments must be equal. A last route segment `{name:path}` (Flask's and
Django's `path` converter) takes one or more segments, each of which must be
a `{param}` in a template. Routes with the same method and shape count once.
  precision = inventory endpoints matching some route / all inventory endpoints
              (the JSON marks none as scanner-only or probe, so all count)
  recall    = exercised routes matched by some inventory endpoint / exercised routes
A route is exercised in a cut when the generator's request log
(requests.jsonl) shows a request to it sent before the cut whose answer was
neither 404 nor 405 nor missing; routes never exercised are counted apart
(a route never called cannot be discovered). A request is assigned to the
most literal route that matches it.

Detection. The whole capture goes through `apisensor replay --events` with a
fixed redaction key (deterministic output). A campaign is detected when a
`detection` event names one of the campaign's source addresses as actor and
falls in [start - 1 s, end + grace]. Reported per campaign: detected, rules,
OWASP categories (and whether one of them is acceptable), delay from the
campaign's start to its first event, events and incidents in the window.
Benign actors: detection events of severity >= medium, all detection events,
and false alarms per 10,000 benign exchanges (the benign requests of
requests.jsonl).

Acceptance (issue 24): precision and recall >= 0.95 at every cut; every
campaign detected with an acceptable category and the right actor; 0 events
of severity >= medium against benign actors; <= 5 events per campaign before
incident grouping. Exit status 1 when one fails, with --strict only.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import re
import struct
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUTS_MIN = (1, 5, 10, 20)
SEVERITY = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
REDACTION_KEY = "5a" * 32


# ------------------------------------------------------------------ pcap

def read_pcap(path: str) -> tuple[bytes, list[tuple[float, bytes]]]:
    """The global header and (time, record bytes) of a classic pcap (µs or ns)."""
    with lzma.open(path) if path.endswith(".xz") else open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise SystemExit(f"{path}: not a classic pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    header = data[:24]
    records = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        end = off + 16 + incl
        if end > len(data):
            break
        records.append((sec + frac / (1e9 if nano else 1e6), data[off:end]))
        off = end
    return header, records


def write_cut(path: str, header: bytes, records, until: float | None) -> int:
    n = 0
    with open(path, "wb") as f:
        f.write(header)
        for t, rec in records:
            if until is not None and t >= until:
                break
            f.write(rec)
            n += 1
    return n


# ------------------------------------------------------------------ routes

PARAM = re.compile(r"\{[^}]+\}")
# A parameter spanning the rest of the path (`<path:name>` in Flask/Django).
REST = re.compile(r"\{[^}:]+:path\}")


def split(path: str) -> list[str]:
    path = path.split("?", 1)[0]
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path.split("/")[1:] if path != "/" else [""]


def shape(segments: list[str]) -> tuple:
    return tuple("{}" if PARAM.search(s) else s for s in segments)


class Route:
    def __init__(self, method: str, path: str):
        self.method = method.upper()
        self.path = path
        self.segments = split(path)
        self.shape = shape(self.segments)
        self.literals = sum(1 for s in self.segments if not PARAM.search(s))
        self.rest = bool(self.segments) and REST.fullmatch(self.segments[-1]) is not None
        self.regex = [re.compile("^" + "".join(
            "[^/]+" if PARAM.fullmatch(part) else re.escape(part)
            for part in re.split(r"(\{[^}]+\})", s)) + "$") for s in self.segments]

    def key(self) -> tuple:
        return (self.method, self.shape)

    def fits(self, count: int) -> bool:
        """Whether a path of `count` segments has this route's length."""
        n = len(self.segments)
        return count == n or (self.rest and count > n)

    def matches_request(self, method: str, segments: list[str]) -> bool:
        if self.method not in ("*", method) or not self.fits(len(segments)):
            return False
        tail = segments[len(self.segments) - 1:]
        return all(r.match(s) for r, s in zip(self.regex, segments[:len(self.segments) - 1])) and all(
            self.regex[-1].match(s) for s in tail)

    def matches_template(self, method: str, template: str) -> bool:
        if self.method not in ("*", method):
            return False
        segs = split(template)
        if not self.fits(len(segs)):
            return False
        if self.rest:
            n = len(self.segments) - 1
            if not all(PARAM.fullmatch(s) for s in segs[n:]):
                return False
            segs = segs[:n] + ["{rest}"]
        for mine, theirs in zip(self.segments, segs):
            if PARAM.search(mine):
                if not PARAM.fullmatch(theirs):
                    return False
            elif mine != theirs:
                return False
        return True


def load_routes(path: str) -> list[Route]:
    with open(path) as f:
        doc = json.load(f)
    seen = {}
    for r in doc["routes"]:
        route = Route(r["method"], r["path"])
        seen.setdefault(route.key(), route)
    return list(seen.values())


def route_for(routes: list[Route], method: str, raw_path: str) -> Route | None:
    segs = split(raw_path)
    best = None
    for r in routes:
        if r.matches_request(method, segs):
            if best is None or (r.literals, r.method != "*") > (best.literals, best.method != "*"):
                best = r
    return best


# ------------------------------------------------------------------ helpers

def run(cmd: list[str]) -> str:
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout


def fmt(x, nd=3):
    return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def load_requests(path: str) -> list[dict]:
    with lzma.open(path, "rt") as f:
        return [r for r in map(json.loads, f) if "status" in r]


# ------------------------------------------------------------------ scoring

def score_inventory(binary: str, config: str, header, records, routes, requests, tmp) -> list[dict]:
    t0 = records[0][0]
    rows = []
    for label, minutes in [(f"{m} min", m) for m in CUTS_MIN] + [("whole", None)]:
        until = None if minutes is None else t0 + 60 * minutes
        cut = os.path.join(tmp, f"cut-{minutes}.pcap")
        packets = write_cut(cut, header, records, until)
        inv = json.loads(run([binary, "inventory", "--format", "json", "--config", config, cut]))
        endpoints = inv["endpoints"]
        exercised = set()
        for r in requests:
            if until is not None and r["t"] >= until:
                continue
            if r["status"] in (0, 404, 405):
                continue
            route = route_for(routes, r["method"], r["path"])
            if route is not None:
                exercised.add(route.key())
        unmatched = []
        matched_routes = set()
        for e in endpoints:
            hits = [rt for rt in routes if rt.matches_template(e["method"], e["path"])]
            if hits:
                matched_routes.update(rt.key() for rt in hits)
            else:
                unmatched.append(f'{e["method"]} {e["host"]}{e["path"]}')
        found = exercised & matched_routes
        missed = sorted(f"{m} /{'/'.join(s)}" for m, s in exercised - matched_routes)
        rows.append({
            "cut": label, "packets": packets, "endpoints": len(endpoints),
            "matched_endpoints": len(endpoints) - len(unmatched),
            "precision": (len(endpoints) - len(unmatched)) / len(endpoints) if endpoints else None,
            "exercised_routes": len(exercised), "found_routes": len(found),
            "recall": len(found) / len(exercised) if exercised else None,
            "never_exercised_routes": len({r.key() for r in routes} - exercised),
            "unmatched_endpoints": unmatched, "missed_routes": missed,
        })
    return rows


def score_detection(binary: str, config: str, pcap: str, truth: dict, requests: list[dict], grace: float):
    out = run([binary, "replay", "--events", "--config", config, pcap])
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    detections = [e for e in events if e.get("kind") == "detection"]
    incidents = [e for e in events if e.get("kind") == "incident"]
    benign = {a["address"] for a in truth["benign_actors"]}
    roles = {a["address"]: a["role"] for a in truth["benign_actors"]}
    campaign_rows = []
    attributed = set()
    for c in truth["campaigns"]:
        actors = set(c["actors"])
        lo, hi = c["start"] - 1.0, c["end"] + grace
        mine = [e for e in detections if e.get("actor", {}).get("ip") in actors and lo <= e["time"] / 1000 <= hi]
        inc = [e for e in incidents if e.get("actor", {}).get("ip") in actors and lo <= e["time"] / 1000 <= hi]
        attributed.update(id(e) for e in mine)
        cats = sorted({e.get("owasp") or "none" for e in mine})
        ok_cat = any(e.get("owasp") in c["owasp_acceptable"] for e in mine)
        first = min((e["time"] / 1000 for e in mine), default=None)
        campaign_rows.append({
            "id": c["id"], "family": c["family"], "outcome": c["outcome"], "actors": c["actors"],
            "detected": bool(mine), "rules": dict(Counter(e["rule"] for e in mine)), "owasp": cats,
            "acceptable_category": ok_cat,
            "delay_s": None if first is None else max(0.0, round(first - c["start"], 1)) + 0.0,
            "events": len(mine), "incidents": len({e["id"] for e in inc}),
        })
    benign_events = [e for e in detections if e.get("actor", {}).get("ip") in benign]
    benign_incidents = [e for e in incidents if e.get("actor", {}).get("ip") in benign]
    benign_exchanges = sum(1 for r in requests if r["src"] in benign)
    other = [e for e in detections if id(e) not in attributed and e.get("actor", {}).get("ip") not in benign]
    benign_summary = {
        "exchanges": benign_exchanges,
        "events": len(benign_events),
        "events_medium_or_higher": sum(1 for e in benign_events if SEVERITY.get(e.get("severity"), 0) >= 2),
        "incidents": len({e["id"] for e in benign_incidents}),
        "false_alarms_per_10k": round(len(benign_events) / benign_exchanges * 10000, 2) if benign_exchanges else None,
        "rules": dict(Counter(f'{e["rule"]} ({e.get("severity")})' for e in benign_events)),
        "by_actor": dict(Counter(f'{e["rule"]} on {roles.get(e["actor"]["ip"], "?")} ({e["actor"]["ip"]})'
                                 for e in benign_events)),
        "actors": len({e["actor"]["ip"] for e in benign_events}),
    }
    outside = {"events": len(other), "rules": dict(Counter(e["rule"] for e in other))}
    return campaign_rows, benign_summary, outside, len(events)


def acceptance(inv_rows, camp_rows, benign) -> dict:
    cuts = [r for r in inv_rows if r["cut"] != "whole"]
    return {
        "inventory_precision_ge_0.95": all((r["precision"] or 0) >= 0.95 for r in cuts),
        "inventory_recall_ge_0.95": all((r["recall"] or 0) >= 0.95 for r in cuts),
        "every_campaign_detected_acceptable_category_right_actor": all(
            c["detected"] and c["acceptable_category"] for c in camp_rows),
        "no_medium_plus_events_on_benign": benign["events_medium_or_higher"] == 0,
        "at_most_5_events_per_campaign": all(c["events"] <= 5 for c in camp_rows),
    }


def print_app(name, source, inv_rows, camp_rows, benign, outside, accept):
    print(f"\n## {name}\n\n{source}\n")
    print("### Inventory\n")
    print("| cut | packets | endpoints | matched | precision | exercised routes | found | recall | never exercised |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in inv_rows:
        print(f"| {r['cut']} | {r['packets']} | {r['endpoints']} | {r['matched_endpoints']} | {fmt(r['precision'])} | "
              f"{r['exercised_routes']} | {r['found_routes']} | {fmt(r['recall'])} | {r['never_exercised_routes']} |")
    last = [r for r in inv_rows if r["cut"] == "20 min"][0]
    if last["missed_routes"]:
        print(f"\nRoutes exercised by 20 min but not found ({len(last['missed_routes'])}): "
              + ", ".join(f"`{m}`" for m in last["missed_routes"]))
    if last["unmatched_endpoints"]:
        shown = last["unmatched_endpoints"][:40]
        more = len(last["unmatched_endpoints"]) - len(shown)
        print(f"\nInventory endpoints at 20 min matching no route ({len(last['unmatched_endpoints'])}): "
              + ", ".join(f"`{u}`" for u in shown) + (f" … and {more} more" if more > 0 else ""))
    print("\n### Campaigns\n")
    print("| campaign | family | app's answer | detected | rules (events) | OWASP | acceptable | delay s | events | incidents |")
    print("|---|---|---|---|---|---|---|---:|---:|---:|")
    for c in camp_rows:
        rules = ", ".join(f"{k} ({v})" for k, v in sorted(c["rules"].items())) or "-"
        print(f"| {c['id']} | {c['family']} | {c['outcome']} | {'yes' if c['detected'] else 'NO'} | {rules} | "
              f"{', '.join(c['owasp']) or '-'} | {'yes' if c['acceptable_category'] else 'no'} | {fmt(c['delay_s'])} | "
              f"{c['events']} | {c['incidents']} |")
    det = sum(c["detected"] for c in camp_rows)
    print(f"\nDetected {det}/{len(camp_rows)} campaigns; with an acceptable category "
          f"{sum(c['detected'] and c['acceptable_category'] for c in camp_rows)}/{len(camp_rows)}.")
    print("\n### Benign actors\n")
    print(f"- benign exchanges: {benign['exchanges']}; detection events on benign actors: {benign['events']} "
          f"({benign['events_medium_or_higher']} of severity medium or higher) from {benign['actors']} actors; "
          f"incidents: {benign['incidents']}; false alarms per 10,000 benign exchanges: {fmt(benign['false_alarms_per_10k'], 2)}")
    if benign["rules"]:
        print("- benign events by rule: " + ", ".join(f"{k}: {v}" for k, v in sorted(benign["rules"].items())))
        print("- benign events by actor: " + ", ".join(f"{k}: {v}" for k, v in sorted(benign["by_actor"].items())))
    print(f"- attacker-address events outside every campaign window: {outside['events']}"
          + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(outside["rules"].items())) + ")" if outside["rules"] else ""))
    print("\n### Acceptance (issue 24)\n")
    for k, v in accept.items():
        print(f"- {k}: {'pass' if v else 'FAIL'}")


def print_overview(summary: dict) -> None:
    print("\n## Overview\n")
    print("| application | precision 1/5/10/20 min | recall 1/5/10/20 min | campaigns detected | acceptable category "
          "| max events per campaign | benign events (>= medium) | false alarms / 10k benign |")
    print("|---|---|---|---|---|---:|---|---:|")
    for app, s in summary.items():
        cuts = [r for r in s["inventory"] if r["cut"] != "whole"]
        camps = s["campaigns"]
        b = s["benign"]
        print(f"| {app} | {' / '.join(fmt(r['precision']) for r in cuts)} | "
              f"{' / '.join(fmt(r['recall']) for r in cuts)} | {sum(c['detected'] for c in camps)}/{len(camps)} | "
              f"{sum(c['detected'] and c['acceptable_category'] for c in camps)}/{len(camps)} | "
              f"{max((c['events'] for c in camps), default=0)} | {b['events']} ({b['events_medium_or_higher']}) | "
              f"{fmt(b['false_alarms_per_10k'], 2)} |")


def self_test() -> None:
    """The matching rules on small cases (python3 scripts/eval_realapps.py --self-test)."""
    r = Route("GET", "/api/v1/items/{id}")
    assert r.matches_template("GET", "/api/v1/items/{uuid}")
    assert r.matches_template("GET", "/api/v1/items/{uuid}/")
    assert not r.matches_template("GET", "/api/v1/items/abc")
    assert not r.matches_template("PUT", "/api/v1/items/{uuid}")
    assert not r.matches_template("GET", "/api/v1/{name}/{uuid}")
    badge = Route("GET", "/badge/{key}/{sig}/{tag}.{fmt}")
    assert badge.matches_template("GET", "/badge/{name}/{token}/{tag}")
    assert not badge.matches_template("GET", "/badge/{name}/{token}/prod.svg")
    assert badge.matches_request("GET", split("/badge/dave/Xy-1/prod.svg"))
    assert not badge.matches_request("GET", split("/badge/dave/Xy-1/prod"))
    files = Route("GET", "/files/{path:path}")
    assert files.matches_template("GET", "/files/{hex}/{name}") and files.matches_template("GET", "/files/{x}")
    assert not files.matches_template("GET", "/files/{hex}/heap_hop.zip")
    assert files.matches_request("GET", split("/files/ab12/heap_hop.zip"))
    assert not files.matches_request("GET", split("/files"))
    anym = Route("*", "/accounts/login/")
    assert anym.matches_template("POST", "/accounts/login") and anym.matches_request("GET", split("/accounts/login/"))
    routes = [Route("GET", "/{id}"), Route("GET", "/login"), Route("GET", "/api/v2/links/{id}/stats")]
    assert route_for(routes, "GET", "/login").path == "/login"
    assert route_for(routes, "GET", "/x7Yz2a?utm=1").path == "/{id}"
    assert route_for(routes, "GET", "/api/v2/links/abc/stat") is None
    assert split("/") == [""] and split("/a/b/") == ["a", "b"] and split("/a?b=/c") == ["a"]
    with tempfile.TemporaryDirectory() as tmp:
        header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
        recs = [(t, struct.pack("<IIII", t, 0, 4, 4) + b"abcd") for t in (100, 130, 170)]
        raw = os.path.join(tmp, "x.pcap")
        with open(raw, "wb") as f:
            f.write(header + b"".join(r for _, r in recs))
        h, got = read_pcap(raw)
        assert h == header and [t for t, _ in got] == [100.0, 130.0, 170.0]
        assert write_cut(os.path.join(tmp, "c.pcap"), h, got, 160.0) == 2
    print("self-test passed")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "apisensor"))
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "fixtures", "realapps"))
    ap.add_argument("--app", action="append", help="only this application (repeatable)")
    ap.add_argument("--json", default=os.path.join(ROOT, "target", "realapps-eval", "summary.json"))
    ap.add_argument("--grace", type=float, default=120.0, help="seconds after a campaign's end still credited to it")
    ap.add_argument("--strict", action="store_true", help="exit 1 when an acceptance threshold fails")
    ap.add_argument("--self-test", action="store_true", help="check the matching rules and the pcap cutter, then exit")
    args = ap.parse_args()
    if args.self_test:
        self_test()
        return 0
    if not os.access(args.binary, os.X_OK):
        print(f"{args.binary} not found: run `cargo build --release` first", file=sys.stderr)
        return 2
    apps = sorted(d for d in os.listdir(args.fixtures)
                  if os.path.isfile(os.path.join(args.fixtures, d, "routes.json")))
    if args.app:
        apps = [a for a in apps if a in args.app]
    summary = {}
    all_ok = True
    print("# apisensor on real applications (fixtures/realapps)")
    with tempfile.TemporaryDirectory(prefix="realapps-eval-") as tmp:
        config = os.path.join(tmp, "sensor.toml")
        with open(config, "w") as f:
            f.write(f'[classify]\nredaction_key_hex = "{REDACTION_KEY}"\n')
        for app in apps:
            d = os.path.join(args.fixtures, app)
            with open(os.path.join(d, "campaigns.json")) as f:
                truth = json.load(f)
            with open(os.path.join(d, "routes.json")) as f:
                source = json.load(f).get("source", "")
            routes = load_routes(os.path.join(d, "routes.json"))
            requests = load_requests(os.path.join(d, "requests.jsonl.xz"))
            header, records = read_pcap(os.path.join(d, "capture.pcap.xz"))
            full = os.path.join(tmp, f"{app}.pcap")
            write_cut(full, header, records, None)
            inv_rows = score_inventory(args.binary, config, header, records, routes, requests, tmp)
            camp_rows, benign, outside, n_events = score_detection(args.binary, config, full, truth, requests, args.grace)
            accept = acceptance(inv_rows, camp_rows, benign)
            all_ok &= all(accept.values())
            print_app(app, source, inv_rows, camp_rows, benign, outside, accept)
            summary[app] = {"inventory": inv_rows, "campaigns": camp_rows, "benign": benign,
                            "outside_campaigns": outside, "acceptance": accept,
                            "capture_seconds": round(records[-1][0] - records[0][0], 1), "packets": len(records),
                            "routes": len(routes), "events_total": n_events}
    print_overview(summary)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\nSummary written to {args.json}")
    return 1 if (args.strict and not all_ok) else 0


if __name__ == "__main__":
    sys.exit(main())
