"""Report files: JSON (everything), JUnit XML (for CI test views) and a
Markdown summary. Each is written to a temporary name and renamed."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from tinylm.atomic import atomic_write_text

MAX_LISTED = 50  # failing cases listed in the Markdown summary


def write_json(data: dict, path: str) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _show(value, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def _failure_text(case: dict) -> str:
    lines = [f"source:   {case['source']}", f"check:    {case['check']}",
             f"expected: {_show(case['expected'], 2000)}", f"got:      {_show(case['output'], 2000)}"]
    if case.get("detail"):
        lines.append(f"why:      {case['detail']}")
    if case["check"] == "choice":
        lines.append(f"loglikelihoods: {case['loglikelihoods']}")
    return "\n".join(lines)


# Characters XML 1.0 cannot hold at all (not even escaped); a model's output may contain them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def _case_time(case: dict) -> float:
    """A case's share of the batch it ran in, so the times add up to the wall time."""
    return case["latency_s"] / case["batch"]


def junit_tree(data: dict) -> ET.ElementTree:
    """<testsuites> with one <testsuite> per golden file (one <testcase> per
    case, a <failure> with expected vs got when it fails) and one for the
    gates, so a CI test view shows both."""
    root = ET.Element("testsuites", name=f"tinylm eval: {data['name']}")
    files: dict[str, list] = {}
    for case in data["cases"]:
        files.setdefault(case["file"], []).append(case)
    total_tests = total_failures = 0
    total_time = 0.0
    for name, cases in files.items():
        failures = sum(not c["passed"] for c in cases)
        time = sum(_case_time(c) for c in cases)
        suite = ET.SubElement(root, "testsuite", name=name, tests=str(len(cases)), failures=str(failures),
                              errors="0", skipped="0", time=f"{time:.3f}")
        for c in cases:
            tc = ET.SubElement(suite, "testcase", classname=name, name=_xml_text(c["id"]), time=f"{_case_time(c):.3f}")
            if not c["passed"]:
                crit = "critical case: " if c["critical"] else ""
                msg = f"{crit}expected {_show(c['expected'], 120)}, got {_show(c['output'], 120)}"
                ET.SubElement(tc, "failure", message=_xml_text(msg), type=c["check"]).text = _xml_text(_failure_text(c))
        total_tests += len(cases)
        total_failures += failures
        total_time += time
    gates = data["gates"]["checks"]
    if gates:
        failures = sum(not g["passed"] for g in gates)
        suite = ET.SubElement(root, "testsuite", name="tinylm.gates", tests=str(len(gates)), failures=str(failures),
                              errors="0", skipped="0", time="0.000")
        for g in gates:
            tc = ET.SubElement(suite, "testcase", classname="tinylm.gates", name=g["gate"], time="0.000")
            if not g["passed"]:
                ET.SubElement(tc, "failure", message=g["detail"], type="gate").text = g["detail"]
        total_tests += len(gates)
        total_failures += failures
    root.set("tests", str(total_tests))
    root.set("failures", str(total_failures))
    root.set("errors", "0")
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(data: dict, path: str) -> None:
    text = ET.tostring(junit_tree(data).getroot(), encoding="unicode", xml_declaration=False)
    atomic_write_text(path, '<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _cell(value) -> str:
    return _show(value, 80).replace("|", "\\|").replace("\n", "\\n")


def markdown(data: dict) -> str:
    t = data["totals"]
    gates = data["gates"]
    verdict = "PASSED" if gates["passed"] else "FAILED"
    out = [f"# tinylm eval: {data['name']} — {verdict}", ""]
    ident = data["model"]
    who = f"model `{ident['path']}`"
    if data.get("adapter"):
        who += f", adapter `{data['adapter']['path']}`"
    if data.get("quant"):
        who += f", quant `{data['quant']}`"
    out += [f"{who}; tinylm {data['tinylm_version']}", ""]
    if t["cases"]:
        out += ["| cases | passed | failed | score | critical failed |", "|---|---|---|---|---|",
                f"| {t['cases']} | {t['passed']} | {t['failed']} | {_pct(t['score'])} | "
                f"{t['critical']['failed']} of {t['critical']['cases']} |", ""]
        if t.get("choice"):
            out += [f"Multiple choice ({t['choice']['cases']} cases): acc {_pct(t['choice']['acc'])}, "
                    f"acc_norm {_pct(t['choice']['acc_norm'])}", ""]
    if t["by_tag"]:
        out += ["| tag | cases | passed | score |", "|---|---|---|---|"]
        out += [f"| {_cell(tag)} | {v['cases']} | {v['passed']} | {_pct(v['score'])} |"
                for tag, v in sorted(t["by_tag"].items())]
        out.append("")
    if data["metrics"]:
        out += ["| corpus | tokens | perplexity | bits/byte | word perplexity |", "|---|---|---|---|---|"]
        out += [f"| {name} | {m['tokens']} | {m['perplexity']:.4f} | {m['bits_per_byte']:.4f} | "
                f"{m['word_perplexity']:.4f} |" for name, m in data["metrics"].items()]
        out.append("")
    if gates["checks"]:
        out += ["## Gates", ""]
        out += [f"- {'✅' if g['passed'] else '❌'} `{g['gate']}`: {g['detail']}" for g in gates["checks"]]
        out.append("")
    cmp = data.get("baseline")
    if cmp:
        by_id = {c["id"]: c for c in data["cases"]}
        delta = "" if cmp["score"] is None or t["score"] is None else f" ({100 * (t['score'] - cmp['score']):+.1f} points)"
        out += ["## Against the baseline", "", f"Baseline `{cmp['path']}`: score {_pct(cmp['score'])} -> "
                f"{_pct(t['score'])}{delta}.", ""]
        for title, ids in (("Newly failing", cmp["newly_failing"]), ("Newly passing", cmp["newly_passing"])):
            out.append(f"**{title}** ({len(ids)})" + (":" if ids else ""))
            out += [f"- `{i}`{' (critical)' if by_id[i]['critical'] else ''}: expected "
                    f"{_cell(by_id[i]['expected'])}, got {_cell(by_id[i]['output'])}" for i in ids[:MAX_LISTED]]
            out.append("")
    failing = [c for c in data["cases"] if not c["passed"]]
    if failing:
        out += [f"## Failing cases ({len(failing)})", "", "| id | check | expected | got |", "|---|---|---|---|"]
        out += [f"| `{_cell(c['id'])}`{' (critical)' if c['critical'] else ''} | {c['check']} | "
                f"{_cell(c['expected'])} | {_cell(c['output'])} |" for c in failing[:MAX_LISTED]]
        if len(failing) > MAX_LISTED:
            out.append(f"\n... and {len(failing) - MAX_LISTED} more (see the JSON report).")
        out.append("")
    return "\n".join(out)


def write_markdown(data: dict, path: str) -> None:
    atomic_write_text(path, markdown(data))
