"""The published OpenAPI documents are the ones the code serves."""

from __future__ import annotations

from services.openapi import OUT, documents, render


def test_openapi_documents_are_up_to_date() -> None:
    docs = documents()
    assert "enrollment" in docs
    for name, doc in docs.items():
        path = OUT / f"{name}.json"
        assert path.exists() and path.read_text() == render(doc), f"{path} is stale: run python -m services.openapi"


def test_enrollment_api_documents_its_errors_and_uploads() -> None:
    doc = documents()["enrollment"]
    bulk = doc["paths"]["/programs/{program_id}/enrolments/bulk"]["post"]
    assert set(bulk["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert "422" in doc["paths"]["/programs"]["post"]["responses"]
