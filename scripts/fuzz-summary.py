#!/usr/bin/env python3
"""Summarizes a schemathesis run against an upkeep agent, for scripts/fuzz-agent.sh.

Reads the run's JSON and NDJSON reports, the agent's /metrics text taken right
after the run, and the agent's log; prints the requests sent (as schemathesis
recorded them and as the agent counted them), failures by check with a few
concrete requests each, and panics in the agent's log. Writes every distinct
failure with its request and response to failures.txt beside the reports.
"""

import base64
import collections
import glob
import json
import os
import re
import sys

EXAMPLES_PER_CHECK = 3
TEXT_LIMIT = 300


def newest(pattern):
    paths = sorted(glob.glob(pattern))
    if not paths:
        sys.exit(f"fuzz-summary: no {pattern}")
    return paths[-1]


def decoded(body):
    if not body:
        return ""
    if isinstance(body, dict) and "$base64" in body:
        raw = base64.b64decode(body["$base64"])
    elif isinstance(body, dict) and "string" in body:
        raw = body["string"].encode()
    else:
        raw = json.dumps(body).encode()
    return raw.decode("utf-8", "backslashreplace")


def clipped(text, limit=TEXT_LIMIT):
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def first_line(text):
    return (text or "").strip().split("\n", 1)[0]


def scenarios(ndjson_path):
    with open(ndjson_path, encoding="utf-8") as events:
        for line in events:
            event = json.loads(line)
            finished = event.get("ScenarioFinished")
            if finished:
                yield finished


def metrics_counts(metrics_path):
    """Requests the agent counted, by status, from `*http_requests_total{...status="N"...} V` lines."""
    by_status = collections.Counter()
    by_route_5xx = collections.Counter()
    if not os.path.exists(metrics_path):
        return None, by_status, by_route_5xx
    pattern = re.compile(r'^\S*http_requests_total\{(.*)\}\s+([0-9.e+]+)$')
    with open(metrics_path, encoding="utf-8") as text:
        for line in text:
            match = pattern.match(line)
            if not match:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            count = int(float(match.group(2)))
            status = labels.get("status", "?")
            by_status[status] += count
            if status.startswith("5"):
                by_route_5xx[labels.get("route", "?")] += count
    return sum(by_status.values()), by_status, by_route_5xx


def main():
    report_dir, agent_log = sys.argv[1], sys.argv[2]
    run = json.load(open(newest(os.path.join(report_dir, "json-*.json")), encoding="utf-8"))
    ndjson_path = newest(os.path.join(report_dir, "ndjson-*.ndjson"))

    requests = 0
    status_codes = collections.Counter()
    failures = collections.defaultdict(dict)  # check -> {(operation, title): example}
    failing_cases = collections.Counter()
    for scenario in scenarios(ndjson_path):
        recorder = scenario.get("recorder", {})
        interactions = recorder.get("interactions", {})
        requests += len(interactions)
        for interaction in interactions.values():
            response = interaction.get("response") or {}
            status_codes[response.get("status_code", "no answer")] += 1
        for case_id, checks in recorder.get("checks", {}).items():
            for check in checks:
                if check.get("status") != "failure":
                    continue
                failing_cases[check["name"]] += 1
                failure = (check.get("failure_info") or {}).get("failure") or {}
                operation = failure.get("operation") or recorder.get("label", "?")
                title = failure.get("title", "")
                detail = first_line(failure.get("message", ""))
                key = (operation, title, detail)
                if key in failures[check["name"]]:
                    continue
                interaction = interactions.get(case_id) or {}
                request = interaction.get("request") or {}
                response = interaction.get("response") or {}
                failures[check["name"]][key] = {
                    "request": f'{request.get("method", "?")} {request.get("uri", "?")}',
                    "request_body": decoded(request.get("body")),
                    "status": response.get("status_code", "no answer"),
                    "response_body": decoded(response.get("content")),
                }

    agent_total, agent_by_status, agent_5xx = metrics_counts(os.path.join(os.path.dirname(report_dir), "metrics.txt"))
    cases = run.get("test_cases", {})
    print(
        f"schemathesis {run.get('schemathesis_version')}: {run.get('running_time', 0):.0f} s, "
        f"stop reason {run.get('stop_reason')}, operations tested {run.get('operations', {}).get('tested')}"
        f"/{run.get('operations', {}).get('total')}"
    )
    print(
        f"test cases: {cases.get('generated')} generated, {cases.get('with_failures')} with failures, "
        f"{cases.get('unique_failures')} unique failures, {cases.get('errored')} errored"
    )
    print(f"requests sent (recorded by schemathesis): {requests}")
    print("  by status: " + ", ".join(f"{code}: {count}" for code, count in sorted(status_codes.items(), key=str)))
    if agent_total is not None:
        print(
            f"requests the agent counted (/metrics http_requests_total, "
            f"with this script's /healthz and /metrics): {agent_total}"
        )
        print("  by status: " + ", ".join(f"{code}: {count}" for code, count in sorted(agent_by_status.items())))
        for route, count in sorted(agent_5xx.items()):
            print(f"  5xx on {route}: {count}")

    print("failures by kind (schemathesis' own count):")
    for failure in run.get("failures", []):
        operations = ", ".join(failure.get("operations", [])[:6])
        print(f"  {failure['code']} {failure['title']}: {failure['count']} ({operations})")
    if not run.get("failures"):
        print("  none")
    for error in run.get("errors", []):
        print(f"  error: {clipped(json.dumps(error), 200)}")

    print("failures by check (failing test cases; distinct failures; examples):")
    written = []
    for check in sorted(failures):
        distinct = failures[check]
        print(f"  {check}: {failing_cases[check]} failing case(s), {len(distinct)} distinct")
        for index, ((operation, title, detail), example) in enumerate(sorted(distinct.items())):
            line = f"{operation}: {title}: {detail}"
            written.append(
                f"[{check}] {line}\n  request: {example['request']}\n  body: {clipped(example['request_body'], 2000)}\n"
                f"  answer: {example['status']} {clipped(example['response_body'], 2000)}\n"
            )
            if index < EXAMPLES_PER_CHECK:
                print(f"    - {clipped(line, 200)}")
                print(f"      {example['request']} body {clipped(example['request_body'], 160)!s}")
                print(f"      -> {example['status']} {clipped(example['response_body'], 160)}")
    with open(os.path.join(report_dir, "failures.txt"), "w", encoding="utf-8") as out:
        out.write("\n".join(written))
    print(f"every distinct failure: {os.path.join(report_dir, 'failures.txt')}")

    panics = []
    if os.path.exists(agent_log):
        with open(agent_log, encoding="utf-8", errors="replace") as log:
            panics = [line.rstrip() for line in log if "panicked" in line]
    print(f"panics in the agent's log: {len(panics)}")
    for line in panics[:5]:
        print(f"  {clipped(line, 240)}")


if __name__ == "__main__":
    main()
