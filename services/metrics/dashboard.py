"""The dashboard: server-rendered HTML per program and for the organisation, admins only.

A browser cannot send a bearer header by itself, so ``/dashboard/login`` checks an admin token and
trades it for an HttpOnly, SameSite=Strict cookie scoped to ``/dashboard`` that expires with the token,
then redirects to the page without the token in its address. The token comes either from the sign-in
form (``GET /dashboard/login`` shows it; it posts the token, which then stays out of the browser's
history) or as ``?token=`` in a link, handy from a terminal (that address does enter the history: use
a short-lived token). Scripts and tools may send ``Authorization: Bearer <token>`` instead. No token:
401; a token without the admin role: 403.
No participant id is ever rendered; every figure from fewer than five people reads "< 5".
"""

from __future__ import annotations

import time
from html import escape
from typing import Annotated

import jwt
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse

from runtime.auth import ALGORITHM, ApiRole, JwtConfig, Principal, decode_token
from runtime.errors import error_responses
from runtime.service import ServiceContext, context
from services.metrics import charts, handlers
from services.metrics.domain.fairness import MEASURES
from services.metrics.domain.report import FORMULAS
from services.metrics.domain.suppression import Figure

router = APIRouter(prefix="/dashboard", include_in_schema=True, tags=["dashboard"])
COOKIE = "metrics_dashboard"
Ctx = Annotated[ServiceContext, Depends(context)]


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def admin(request: Request) -> Principal:
    token = _token(request)
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in first: /dashboard/login")
    principal = decode_token(request.app.state.jwt, token)
    if not principal.has(ApiRole.ADMIN):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "needs role: admin")
    return principal


Admin = Annotated[Principal, Depends(admin)]


NextPath = Annotated[str, Query(pattern=r"^/dashboard(/[A-Za-z0-9_\-/]*)?$")]

NO_ICON = '<link rel="icon" href="data:,">'
"""No icon, said in the page: without it a browser asks for ``/favicon.ico`` after the page loaded, a 404
in its console (which the browser test found now and then, as the request raced its check)."""

SIGN_IN = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Mentoring metrics: sign in</title>'
    + NO_ICON
    + """</head><body><h1>Mentoring metrics</h1><form method="post" action="/dashboard/login?next={next}">
<label>Admin token <input type="password" name="token" autocomplete="off" required></label>
<button type="submit">Sign in</button></form></body></html>"""
)


def _signed_in(request: Request, token: str, next_path: str) -> RedirectResponse:
    config: JwtConfig = request.app.state.jwt
    principal = decode_token(config, token)
    if not principal.has(ApiRole.ADMIN):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "needs role: admin")
    expires = jwt.decode(token, config.secret, algorithms=[ALGORITHM], audience=config.audience)["exp"]
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=max(1, int(expires - time.time())),
        path="/dashboard",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


_SIGNED_IN: dict[int | str, dict[str, object]] = {
    303: {"description": "signed in: the cookie is set, go to ``next``"},
    **error_responses(401, 403),
}
_PAGE: dict[int | str, dict[str, object]] = {
    200: {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}},
    **error_responses(401, 403),
}


@router.get(
    "/login",
    response_class=HTMLResponse,
    responses={200: {"description": "the sign-in form (without ``token``)"}, **_SIGNED_IN},
)
async def login(request: Request, token: str | None = None, next: NextPath = "/dashboard") -> Response:
    """With ``token`` (an admin JWT): sign in and go to ``next``; without: the sign-in form."""
    if token:
        return _signed_in(request, token, next)
    return HTMLResponse(SIGN_IN.format(next=escape(next)))


@router.post("/login", response_class=RedirectResponse, status_code=303, responses=_SIGNED_IN)
async def login_form(
    request: Request, token: Annotated[str, Form(min_length=1)], next: NextPath = "/dashboard"
) -> RedirectResponse:
    """The sign-in form's post: the token travels in the body, not the address."""
    return _signed_in(request, token, next)


@router.get("", response_class=HTMLResponse, responses=_PAGE)
async def organisation(ctx: Ctx, request: Request, _: Admin) -> HTMLResponse:
    """The organisation's dashboard (HTML)."""
    data = await handlers.dashboard(ctx.pool, handlers.Scope(), request.app.state.clock())
    return HTMLResponse(render(data, "Organisation"))


@router.get("/programs/{program_id}", response_class=HTMLResponse, responses={**_PAGE, **error_responses(404)})
async def program(program_id: str, ctx: Ctx, request: Request, _: Admin) -> HTMLResponse:
    """One program's dashboard (HTML)."""
    data = await handlers.dashboard(ctx.pool, handlers.Scope(program_id=program_id), request.app.state.clock())
    name = next((n for pid, n in data.programs if pid == program_id), program_id)
    return HTMLResponse(render(data, f"Program: {name}"))


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2733;background:#fafbfc}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}.suppressed{color:#8a6d00;background:#fff8e1}
.grid{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0;background:#fff;border:1px solid #d0d7de;padding:.5rem}
figcaption{font-weight:600;font-size:.9rem}svg .bar{fill:#3b7dd8}svg .axis{stroke:#888;font-size:10px;fill:#555}
svg .label,svg .value{font-size:10px;fill:#333}svg .line{fill:none;stroke-width:2}svg .s0{stroke:#3b7dd8;fill:#3b7dd8}
svg .s1{stroke:#d8743b;fill:#d8743b}svg polyline.s0,svg polyline.s1{fill:none}svg .legend{font-size:11px;stroke:none}
.note{color:#555;font-size:.85rem}
"""


def _cell(f: Figure | None) -> str:
    if f is None:
        return "<td>not measurable</td>"
    css = ' class="suppressed"' if f.suppressed else ""
    return f"<td{css}>{escape(f.display)}</td>"


def render(data: handlers.DashboardData, title: str) -> str:
    r = data.report
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="note">As of {escape(r.window.end.isoformat(timespec="minutes"))}. '
        'Figures from fewer than 5 people read "&lt; 5"; no participant is named.</p>',
    ]
    if data.report.scope.program_id is None:
        links = "".join(
            f'<li><a href="/dashboard/programs/{escape(pid)}">{escape(name)}</a></li>' for pid, name in data.programs
        )
        body.append(f"<h2>Programs</h2><ul>{links}</ul>")
    weeks = [p.week_start.strftime("%d %b") for p in data.weeks]
    body.append('<h2>Enrolment, matching and meeting</h2><div class="grid">')
    body.append(charts.bar_chart("Funnel (program to date)", data.funnel))
    body.append(charts.bar_chart("Mentors by number of open relationships", data.loads))
    body.append('</div><h2>Engagement and satisfaction, week by week</h2><div class="grid">')
    body.append(
        charts.line_chart(
            "Sessions held / expected by cadence",
            weeks,
            {"held / expected": [p.sessions_vs_cadence for p in data.weeks]},
            lo=0,
            hi=2,
        )
    )
    body.append(
        charts.line_chart(
            "Mean session rating (1-5)", weeks, {"rating": [p.mean_rating for p in data.weeks]}, lo=1, hi=5
        )
    )
    body.append(charts.line_chart("NPS (-100..100)", weeks, {"NPS": [p.nps for p in data.weeks]}, lo=-100, hi=100))
    body.append("</div>")
    body.append(_kpi_tables(r))
    body.append(_fairness(r))
    body.append(_scorecard(r))
    body.append(_alerts(data))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Mentoring metrics: '
        f"{escape(title)}</title>{NO_ICON}<style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def _kpi_tables(r: handlers.Report) -> str:
    out = []
    for s in r.sections:
        rows = "".join(
            f'<tr><th title="{escape(FORMULAS[k.key].formula)}">{escape(FORMULAS[k.key].label)}</th>'
            f"{_cell(k.figure if k.measurable else None)}</tr>"
            for k in s.kpis
        )
        for b in s.breakdowns:
            rows += "".join(
                f"<tr><th>{escape(FORMULAS[b.key].label)}: {escape(cell)}</th>{_cell(f)}</tr>"
                for cell, f in b.cells.items()
            )
        out.append(f"<h2>{escape(s.name.capitalize())} (program to date)</h2><table>{rows}</table>")
    return "".join(out)


def _fairness(r: handlers.Report) -> str:
    out = ["<h2>Fairness audit</h2>"]
    head = "".join(f"<th>{escape(FORMULAS[m].label)}</th>" for m in MEASURES)
    for d in r.fairness:
        rows = "".join(
            f"<tr><td>{escape(cell)}</td>{_cell(c.people)}{''.join(_cell(c.measures[m]) for m in MEASURES)}</tr>"
            for cell, c in d.cells.items()
        )
        gaps = f"<tr><td><b>gap best-worst</b></td><td></td>{''.join(_cell(d.gaps[m]) for m in MEASURES)}</tr>"
        out.append(
            f'<table class="fairness"><tr><th>{escape(d.dimension)}</th><th>people</th>{head}</tr>{rows}{gaps}</table>'
        )
    return "".join(out)


def _scorecard(r: handlers.Report) -> str:
    rows = "".join(
        f"<tr><th>{escape(h.hallmark.replace('_', ' '))}</th>{_cell(h.figure)}<td>{escape(h.indicator)}</td>"
        f'<td class="note">{escape(h.statement)}</td></tr>'
        for h in r.scorecard
    )
    return f"<h2>Mentoring-culture scorecard</h2><table>{rows}</table>"


def _alerts(data: handlers.DashboardData) -> str:
    if not data.alerts:
        return "<h2>Open alerts</h2><p>None.</p>"
    rows = []
    for a, risk in data.alerts:
        parts = ", ".join(f"{k} {v:g}" for k, v in risk.parts.items()) if risk else ""
        subject = (
            escape(a.group_id) if a.group_id else ("a mentor" if a.kind == "mentor_over_capacity" else "the program")
        )
        rows.append(
            f"<tr><td>{escape(a.kind)}</td><td>{escape(a.severity)}</td><td>{subject}</td>"
            f"<td>{escape(a.detail)}</td><td>{risk.score if risk else ''}</td><td>{escape(parts)}</td>"
            f"<td>{escape(a.raised_at.isoformat(timespec='minutes'))}</td></tr>"
        )
    columns = ("kind", "severity", "relationship", "detail", "risk", "risk parts", "raised")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    return f'<h2>Open alerts</h2><table class="alerts">{head}{"".join(rows)}</table>'
