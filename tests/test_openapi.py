"""The OpenAPI document of the HTTP APIs, and schemathesis against a real daphne
(issue 11): no 5xx, and every answer conforms to the document (status code, content
type, body schema).

The schemathesis run is bounded (``--max-examples`` per operation, ``--max-time``) and
prints its summary line, once with a personal token and once with a service key.
"""

import os
import shutil
import subprocess
import sys

import pytest
import requests

from .conftest import need

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_the_document_lists_every_operation_with_its_errors(daphne_factory):
    server = daphne_factory()
    answer = requests.get(f"{server.url}/notify/api/openapi.json", timeout=10)
    assert answer.status_code == 200
    document = answer.json()
    assert document["openapi"].startswith("3.")
    expected = {
        ("/notify/api/notifications/", "get"), ("/notify/api/notifications/unread-count/", "get"),
        ("/notify/api/notifications/read/", "post"), ("/notify/api/send/", "post"),
        ("/notify/api/announce/", "post"), ("/notify/api/notifications/ack/", "post"),
        ("/notify/api/push-subscriptions/", "get"), ("/notify/api/push-subscriptions/", "post"),
        ("/notify/api/push-subscriptions/", "delete"), ("/notify/api/preferences/", "get"),
        ("/notify/api/preferences/", "put"),
    }
    listed = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert listed == expected
    for path, method in expected:
        responses = document["paths"][path][method]["responses"]
        assert {"400", "401", "403", "429"} <= set(responses), (path, responses)
    send = document["paths"]["/notify/api/send/"]["post"]
    assert send["requestBody"]["content"]["application/json"]["schema"]


def schemathesis(url: str, token: str, *, max_examples: int = 25) -> subprocess.CompletedProcess:
    binary = shutil.which("schemathesis", path=os.path.dirname(sys.executable)) or shutil.which("schemathesis")
    need(binary is not None, "schemathesis is not installed (requirements-dev.txt)")
    return subprocess.run(
        [binary, "run", f"{url}/notify/api/openapi.json", "--checks", CHECKS,
         "--header", f"Authorization: Bearer {token}", "--max-examples", str(max_examples),
         "--max-time", "60", "--workers", "1", "--phases", "examples,coverage,fuzzing",
         "--suppress-health-check", "all", "--no-color"],
        capture_output=True, text=True, timeout=240,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )


@pytest.mark.parametrize("credential", ["token", "service_key"])
def test_schemathesis_finds_no_server_error_and_no_nonconforming_answer(daphne_factory, credential, request):
    secret = request.getfixturevalue(credential)
    server = daphne_factory(DJANGO_SETTINGS_MODULE="tests.unlimited_settings")
    result = schemathesis(server.url, secret)
    summary = [line for line in result.stdout.splitlines() if "passed" in line or "failed" in line]
    print(f"schemathesis ({credential}):", summary[-1] if summary else result.stdout[-500:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Server error" not in server.logs()
