"""The agency guide walked with a client nobody here wrote: the one openapi-python-client
generates from the served /api/v1/openapi.json (package `custodia_client`, on PYTHONPATH).

Each step is a subcommand that prints one JSON line; the Rust test
(`tests/api/openapi.rs::a_generated_python_client_walks_the_guide`) plays the citizen
between the steps.

    walk_guide.py ask BASE KEY NATIONAL_ID TIER [FIELD,...]   -> {"request_id": ...}
    walk_guide.py read BASE KEY REQUEST_ID                     -> {"grant_id", "documents", "reads"}
    walk_guide.py refused BASE KEY GRANT_ID DOCUMENT_ID        -> {"status", "detail"}
    walk_guide.py deposit BASE KEY SIGNED_JSON                 -> {"status"}
"""

import hashlib
import json
import sys
import time
from uuid import UUID

from custodia_client import AuthenticatedClient
from custodia_client.api.agency import (
    create_request,
    deposit,
    grant_documents,
    list_grants,
    read,
    read_file,
    request_status,
)
from custodia_client.models import DepositBody, NewRequest, Problem
from custodia_client.models.tier import Tier

OFFICER = "officer-py"
CASE = "CASE-PY-1"


def client(base: str, key: str) -> AuthenticatedClient:
    # As generated, over httpx, which asks for the compressed answers it can decode
    # (gzip, and br and zstd where their packages are installed).
    return AuthenticatedClient(base_url=base, token=key, raise_on_unexpected_status=True)


def fail(message: str) -> None:
    print(json.dumps({"error": message}))
    sys.exit(1)


def ask(base: str, key: str, national_id: str, tier: str, fields: str = "") -> None:
    body = NewRequest(
        national_id=national_id,
        document_types=["business_license"],
        tier=Tier(tier),
        fields=[f for f in fields.split(",") if f],
        # The catalog's purposes bound the tier: registration checks at most fields.
        purpose_code="tax_filing" if tier == "full" else "business_registration",
        purpose="纳税申报核对" if tier == "full" else "设立登记材料核验",
        duration_days=30,
        retention_days=90,
    )
    answer = create_request.sync(client=client(base, key), body=body)
    if isinstance(answer, Problem) or answer is None:
        fail(f"ask: {answer}")
    print(json.dumps({"request_id": str(answer.id), "status": answer.status}))


def read_step(base: str, key: str, request_id: str) -> None:
    c = client(base, key)
    status = None
    for _ in range(50):
        status = request_status.sync(UUID(request_id), client=c)
        if isinstance(status, Problem) or status is None:
            fail(f"status: {status}")
        if status.status != "pending":
            break
        time.sleep(0.1)
    if status.status != "approved":
        fail(f"the request is {status.status}")
    grant_id = status.grant_id
    grants = list_grants.sync(client=c)
    if isinstance(grants, Problem) or grants is None:
        fail(f"grants: {grants}")
    listed = grant_documents.sync(grant_id, client=c, x_officer_id=OFFICER, x_case_id=CASE)
    if isinstance(listed, Problem) or listed is None:
        fail(f"documents: {listed}")
    documents = listed.to_dict()["documents"]
    reads = []
    for d in documents:
        disclosure = read.sync(grant_id, UUID(d["id"]), client=c, x_officer_id=OFFICER, x_case_id=CASE)
        if isinstance(disclosure, Problem) or disclosure is None:
            fail(f"read: {disclosure}")
        got = disclosure.to_dict()
        if got.get("file"):
            answer = read_file.sync_detailed(grant_id, UUID(d["id"]), client=c, x_officer_id=OFFICER, x_case_id=CASE)
            if answer.status_code != 200:
                fail(f"file: {answer.status_code}")
            got["file_sha256"] = hashlib.sha256(answer.content).hexdigest()
        reads.append(got)
    print(json.dumps({"grant_id": str(grant_id), "grants": len(grants.to_dict()["grants"]), "documents": documents, "reads": reads}, ensure_ascii=False))


def refused(base: str, key: str, grant_id: str, document_id: str) -> None:
    answer = read.sync_detailed(UUID(grant_id), UUID(document_id), client=client(base, key), x_officer_id=OFFICER, x_case_id=CASE)
    parsed = answer.parsed
    detail = parsed.detail if isinstance(parsed, Problem) else None
    print(json.dumps({"status": answer.status_code, "detail": detail}))


def deposit_step(base: str, key: str, signed: str) -> None:
    body = DepositBody.from_dict(json.loads(signed))
    answer = deposit.sync(client=client(base, key), body=body)
    if isinstance(answer, Problem) or answer is None:
        fail(f"deposit: {answer}")
    print(json.dumps({"status": answer.status}))


if __name__ == "__main__":
    steps = {"ask": ask, "read": read_step, "refused": refused, "deposit": deposit_step}
    if len(sys.argv) < 2 or sys.argv[1] not in steps:
        fail(__doc__)
    steps[sys.argv[1]](*sys.argv[2:])
