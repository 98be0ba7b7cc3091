"""Calling an endpoint's ``/invocations``: through the local router in local mode, else the ALB."""

from __future__ import annotations

import urllib.error
import urllib.request

from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.teams import TeamContext


def endpoint_url(ctx: TeamContext, name: str) -> str:
    if name not in ctx.runtime.endpoints:
        raise UserInputError([f"endpoint {name!r}: team {ctx.runtime.team} has no such endpoint "
                              f"(choose from: {', '.join(ctx.runtime.endpoints) or 'none'})"])
    if ctx.local:
        from gpufleet.local.cloud import router_urls

        url = router_urls(ctx.root).get(f"{ctx.router_team}/{name}")
        if url is None:
            raise RuntimeFailure(f"invoke {name}", "the local router is not up yet",
                                 "check `gpufleet local status` and retry in a few seconds")
        return url
    return f"http://{ctx.runtime.endpoints[name].alb_dns}"


def invoke_once(url: str, body: bytes, content_type: str, accept: str, timeout: float = 30.0) -> tuple[int, bytes]:
    req = urllib.request.Request(f"{url}/invocations", data=body, method="POST",
                                 headers={"Content-Type": content_type, "Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
