"""What ``bakeoff status`` shows, as a :class:`Report` of lines and tables, rendered plain or with rich."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def _age(ts: str | None, now: datetime | None = None) -> str:
    if not ts:
        return "-"
    try:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    s = max(0, int(((now or datetime.now(UTC)) - t).total_seconds()))
    if s < 120:
        return f"{s}s"
    if s < 2 * 3600:
        return f"{s // 60}m"
    if s < 2 * 86400:
        return f"{s // 3600}h{(s % 3600) // 60}m" if s < 10 * 3600 else f"{s // 3600}h"
    return f"{s // 86400}d"


def _num(x: Any, spec: str = ".4g", signed: bool = False) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "-"
    return format(x, ("+" if signed else "") + spec)


def _share(x: Any) -> str:
    return f"{x:.1%}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    title: str | None = None


@dataclass
class Report:
    """What ``status`` shows: text lines and tables, in order; rendered plain or with rich."""

    parts: list[Any] = field(default_factory=list)

    def line(self, text: str = "") -> None:
        self.parts.append(text)

    def table(self, headers: list[str], rows: list[list[str]], title: str | None = None) -> None:
        self.parts.append(Table(headers, rows, title))


def _mainline_name(b: dict[str, Any]) -> str:
    st = b.get("status") or {}
    return st.get("mainline") or ((b.get("spec") or {}).get("mainline") or {}).get("name") or "mainline"


def list_report(namespace: str, bakeoffs: list[dict[str, Any]], variants: list[dict[str, Any]]) -> Report:
    r = Report()
    if not bakeoffs:
        r.line(f"no bakeoffs in namespace {namespace}")
        return r
    count: dict[str, int] = {}
    for v in variants:
        of = str((v.get("spec") or {}).get("bakeoff"))
        count[of] = count.get(of, 0) + 1
    rows = []
    for b in bakeoffs:
        st = b.get("status") or {}
        name = b["metadata"]["name"]
        rows.append(
            [
                name,
                st.get("phase") or "-",
                _mainline_name(b),
                st.get("winner") or "-",
                str(count.get(name, 0)),
                _age(b["metadata"].get("creationTimestamp")),
            ]
        )
    r.table(["NAME", "PHASE", "MAINLINE", "WINNER", "CANDIDATES", "AGE"], rows, title=f"bakeoffs in {namespace}")
    return r


def _requests_of(v: dict[str, Any], b: dict[str, Any]) -> Any:
    st = v.get("status") or {}
    if isinstance(st.get("requests"), int):
        return st["requests"]
    verdicts = (b.get("status") or {}).get("verdicts")
    if isinstance(verdicts, dict):
        vv = (verdicts.get("variants") or {}).get(v["metadata"]["name"])
        if isinstance(vv, dict) and isinstance(vv.get("requests"), int):
            return vv["requests"]
    return None


def _conditions(kind: str, name: str, obj: dict[str, Any]) -> list[list[str]]:
    rows = []
    for c in (obj.get("status") or {}).get("conditions") or []:
        if not isinstance(c, dict):
            continue
        if c.get("status") == "False" or c.get("message"):
            rows.append(
                [
                    f"{kind}/{name}",
                    str(c.get("type", "?")),
                    str(c.get("status", "?")),
                    str(c.get("reason") or "-"),
                    str(c.get("message") or ""),
                ]
            )
    return rows


def bakeoff_report(namespace: str, b: dict[str, Any], variants: list[dict[str, Any]]) -> Report:
    r = Report()
    spec, st = b.get("spec") or {}, b.get("status") or {}
    name = b["metadata"]["name"]
    mainline = _mainline_name(b)
    where = (spec.get("mainline") or {}).get("deployment")
    r.line(f"bakeoff {name} (namespace {namespace})")
    r.line(f"  phase:     {st.get('phase') or '- (not reconciled yet)'}")
    r.line(f"  mainline:  {mainline}" + (f" (deployment {where})" if where else ""))
    objective = (spec.get("judge") or {}).get("objective") or {}
    if objective.get("metric"):
        r.line(
            f"  objective: {objective['metric']}"
            + (f" ({objective['direction']} is better)" if objective.get("direction") else "")
        )
    d: dict[str, Any] = st["decision"] if isinstance(st.get("decision"), dict) else {}
    winner = st.get("winner") or d.get("winner")
    if winner:
        r.line(f"  winner:    {winner}")
    if d:
        what = d.get("action") or "?"
        if d.get("winner"):
            what += f" {d['winner']}"
        if d.get("rollback"):
            what += f" (roll back {', '.join(map(str, d['rollback']))})"
        r.line(f"  decision:  {what}" + (f" — {d['reason']}" if d.get("reason") else ""))
    routing: dict[str, Any] = st["routing"] if isinstance(st.get("routing"), dict) else {}
    shares: dict[str, Any] = {}
    if routing.get("variants"):
        shares = {str(x.get("name")): x.get("weight") for x in routing["variants"] if isinstance(x, dict)}
        r.line(
            f"  routing (version {routing.get('version', '-')}): "
            + ", ".join(
                f"{x.get('name')} {_share(x.get('weight'))} -> {x.get('service')}:{x.get('port')}"
                for x in routing["variants"]
                if isinstance(x, dict)
            )
        )
    elif isinstance(st.get("shares"), dict) and st["shares"]:
        shares = dict(st["shares"])
        r.line("  shares:    " + ", ".join(f"{k} {_share(v)}" for k, v in st["shares"].items()))
    else:
        r.line("  routing:   - (none yet)")
    if isinstance(st.get("shares"), dict):
        for k, v in st["shares"].items():
            shares.setdefault(k, v)

    if not variants:
        r.line()
        r.line(f"no variants; enter one with: bakeoff submit --bakeoff {name} --image IMAGE -n {namespace}")
    else:
        rows = []
        for v in variants:
            vn = v["metadata"]["name"]
            vst = v.get("status") or {}
            share = vst.get("share") if isinstance(vst.get("share"), (int, float)) else shares.get(vn)
            req = _requests_of(v, b)
            commit = ((v.get("spec") or {}).get("change") or {}).get("commit") or "-"
            rows.append(
                [
                    vn,
                    vst.get("phase") or "-",
                    _share(share),
                    "-" if req is None else str(req),
                    str(commit)[:12],
                    vst.get("verdict") or "-",
                ]
            )
        r.line()
        r.table(["VARIANT", "PHASE", "SHARE", "REQUESTS", "COMMIT", "VERDICT"], rows, title="variants")
        mrows = []
        for v in variants:
            for m in (v.get("status") or {}).get("verdicts") or []:
                if not isinstance(m, dict):
                    continue
                ci = m.get("ci")
                ci_s = (
                    f"[{_num(ci[0], '.4g', True)}, {_num(ci[1], '.4g', True)}]"
                    if isinstance(ci, list) and len(ci) == 2
                    else "-"
                )
                mrows.append(
                    [
                        v["metadata"]["name"],
                        str(m.get("metric", "?")),
                        str(m.get("state", "?")),
                        _num(m.get("estimate"), ".4g", True),
                        ci_s,
                        _num(m.get("control")),
                        _num(m.get("candidate")),
                    ]
                )
        if mrows:
            r.line()
            r.table(["VARIANT", "METRIC", "STATE", "ESTIMATE", "CI", "CONTROL", "CANDIDATE"], mrows, title="verdicts")
    crows = _conditions("bakeoff", name, b)
    for v in variants:
        crows += _conditions("variant", v["metadata"]["name"], v)
    if crows:
        r.line()
        r.table(["OBJECT", "CONDITION", "STATUS", "REASON", "MESSAGE"], crows, title="conditions")
    return r


def render_plain(report: Report) -> str:
    out: list[str] = []
    for p in report.parts:
        if isinstance(p, Table):
            widths = [len(h) for h in p.headers]
            for row in p.rows:
                for i, cell in enumerate(row):
                    widths[i] = max(widths[i], len(cell))
            for row in [p.headers] + p.rows:
                out.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        else:
            out.append(p)
    return "\n".join(out) + "\n"


def render_rich(report: Report, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table as RichTable

    for p in report.parts:
        if isinstance(p, Table):
            t = RichTable(title=p.title, title_justify="left", expand=False)
            for h in p.headers:
                t.add_column(h, overflow="fold", no_wrap=h not in ("MESSAGE", "VERDICT"))
            for row in p.rows:
                t.add_row(*[escape(c) for c in row])
            console.print(t)
        else:
            console.print(escape(p), highlight=False)
