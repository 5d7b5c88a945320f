"""`opto explain`'s text: its records (`optodsl.explain`) as the lines the command prints."""

from __future__ import annotations

from ..explain import ALL_DEFAULTS


def setting_text(value) -> str:
    """A setting's value as a spec writes it: 1e-05, 1000000, true, "x", [a, b]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(setting_text(v) for v in value) + "]"
    return str(value)


def intervention_line(r: dict) -> str:
    """One `opto explain` line: verb, site, rows, pass, schedule, value (and what it reads, from which pass)."""
    params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
    reads = f" <- {r['reads']} ({r['reads_pass']} pass)" if r["reads"] else ""
    value = r["value"] + (f"({params})" if params else "") + reads
    pos = r["positions"] if r["positions"] == "all" else ",".join(map(str, r["positions"]))
    return f"{r['verb']:<11} {r['site']:<18} rows {pos:<6} pass {r['pass']:<10} {r['schedule']:<14} {value}"


def weight_line(w: dict) -> str:
    """One `opto explain` line of a statement on parameters: which train, from when to when, at what rate."""
    if w["rate"] is None:
        return f"{w['verb']:<11} {w['parameters']:<18} redrawn from the initialiser with seed {w['seed']} {w['schedule']} sequences, their optimiser moments zeroed"
    rate = "frozen (rate 0)" if w["rate"] == 0 else f"learning rate x {w['rate']:g}"
    when = "throughout" if w["schedule"] == "always" else f"during {w['schedule']}"
    if w["all_others"]:
        return f"{w['verb']:<11} {w['parameters']:<18} train; every other parameter is {rate} {when}"
    return f"{w['verb']:<11} {w['parameters']:<18} {rate} {when}"


def explain_lines(runs: list[dict]) -> list[str]:
    """Every run's lines: its passes and interventions counted, its settings, eval.perfected lines,
    the pass structure of a two-pass plan, and one line per intervention."""
    lines = []
    for r in runs:
        bind = ", ".join(f"${k}={v}" for k, v in r["bindings"].items())
        n = len(r["interventions"])
        lines.append(f"run {r['run']}" + (f" ({bind})" if bind else "") + f": {r['passes']} pass{'es' if r['passes'] > 1 else ''}, "
                     f"{n} intervention{'s' if n != 1 else ''}")
        for s in r["settings"]:
            default = "the default" if s["value"] == s["default"] else f"default {setting_text(s['default'])}"
            lines.append(f"  set {s['key']} = {setting_text(s['value'])}  ({default})")
        for c in r.get("schedule", []):
            span = f"from {c['start']:,} sequences" + (f" until {c['stop']:,}" if c["stop"] is not None else " on")
            lines.append(f"  {c['line']}  (the training stream's data value {span})")
        if not r["settings"] and not r.get("schedule"):
            lines.append(f"  {ALL_DEFAULTS}")
        for p in r["perfected"]:
            lines.append(f"  eval.perfected: {p['line']}  (evaluation only, {len(p['interventions'])} more "
                         f"intervention{'s' if len(p['interventions']) != 1 else ''})")
        if r["passes"] > 1 or len(r["pass_structure"]) > 1:
            lines.extend(f"  {line}" for line in r["pass_structure"])
        lines.extend("  " + intervention_line(rec) for rec in r["interventions"])
        if r.get("weights"):
            lines.append("  parameters (any not named train at the full rate throughout):")
            lines.extend("    " + weight_line(w) for w in r["weights"])
        cuts = [rec for rec in r["interventions"] if rec["verb"] == "stopgrad"]
        if cuts:
            lines.append("  gradient cuts (the forward pass is unchanged): " + ", ".join(
                f"{c['site']}{' from ' + c['params']['from'] if 'from' in c['params'] else ''} ({c['schedule']})" for c in cuts))
    return lines
