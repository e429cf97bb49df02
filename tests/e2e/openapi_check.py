"""Checks the engine's OpenAPI document and real exchanges with the engine against it, with
validators someone else wrote (openapi-spec-validator, openapi-core; pinned in a venv by
scripts/bootstrap.sh).

Usage: openapi_check.py SPEC.json < exchanges.jsonl
Each input line: {"method", "path" (with query), "headers" {name: value}, "request_body"
(string or null), "status", "content_type", "body" (string)}. Every answer must be one the
document describes (status, content type, body schema); a request answered 2xx must also be
one it accepts (parameters, body, security). Prints one line per problem; exit status 1 if
there is any."""
import json
import sys
from urllib.parse import parse_qsl, urlsplit

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

spec_dict, _ = read_from_filename(sys.argv[1])
validate(spec_dict)
api = OpenAPI.from_dict(spec_dict)
problems = []
checked = 0
for line in sys.stdin:
    if not line.strip():
        continue
    x = json.loads(line)
    url = urlsplit(x["path"])
    # The document's server is /api/v1; openapi-core matches the full path against it.
    headers = {k: v for k, v in x.get("headers", {}).items()}
    cookies = {}
    for part in headers.pop("Cookie", "").split(";"):
        if "=" in part:
            name, value = part.strip().split("=", 1)
            cookies[name] = value
    body = x.get("request_body")
    request = MockRequest(
        "http://127.0.0.1",
        x["method"].lower(),
        url.path,
        args=dict(parse_qsl(url.query)),
        headers=headers,
        cookies=cookies,
        data=body.encode() if body is not None else None,
        content_type=headers.get("Content-Type", "application/json"),
    )
    response = MockResponse(
        x["body"].encode(),
        status_code=x["status"],
        content_type=x["content_type"],
    )
    what = f'{x["method"]} {x["path"]} -> {x["status"]}'
    try:
        api.validate_response(request, response)
    except Exception as error:
        cause = getattr(error, "__cause__", None)
        problems.append(f"{what}: answer not as documented: {error!r} {cause!r}")
    if 200 <= x["status"] < 300:
        try:
            api.validate_request(request)
        except Exception as error:
            cause = getattr(error, "__cause__", None)
            problems.append(f"{what}: request accepted but not as documented: {error!r} {cause!r}")
    checked += 1
for problem in problems:
    print(problem)
print(f"{checked} exchanges checked, {len(problems)} problems", file=sys.stderr)
sys.exit(1 if problems or checked == 0 else 0)
