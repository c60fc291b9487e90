"""Enrollment's rules without any I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from contracts.policy import Form, Role, default_policy, policy_problems
from services.enrollment.domain.model import (
    Conflict,
    DomainError,
    EnrolmentPatch,
    EnrolmentRequest,
    NotFound,
    OrgIndex,
    OrgPerson,
    Program,
    ProgramPatch,
    ProgramSpec,
    check_enrolment,
    manager_chain,
    resolve_policy,
    validate_org_chart,
)
from services.enrollment.domain.uploads import parse_rows, parse_upload


def _p(eid: str, mgr: str | None, dept: str = "Finance", level: int = 3) -> OrgPerson:
    return OrgPerson(employee_id=eid, manager_id=mgr, department=dept, level=level, languages=["en"])


def _program(form: Form = Form.ONE_TO_ONE, status: str = "open") -> Program:
    return Program("prg-1", "P", form, 14, date(2026, 1, 1), None, default_policy(form), status, datetime.now(UTC))


def test_a_valid_chart_has_no_errors() -> None:
    assert validate_org_chart([_p("A", None), _p("B", "A"), _p("C", "B")], {}) == []


def test_unknown_manager_duplicate_and_cycle_are_reported_with_their_rows() -> None:
    rows = [_p("A", None), _p("B", "Z"), _p("A", None), _p("C", "D"), _p("D", "C")]
    errors = validate_org_chart(rows, {})
    assert [(e.row, e.field) for e in errors] == [(2, "manager_id"), (3, "employee_id"), (4, "manager_id")]
    assert "unknown manager_id Z" in errors[0].message
    assert "duplicate employee_id A (first on row 1)" in errors[1].message
    assert "cycle in the manager chain: C -> D -> C" in errors[2].message


def test_managers_imported_earlier_count_and_a_cycle_through_them_is_caught() -> None:
    assert validate_org_chart([_p("B", "A")], {"A": None}) == []
    errors = validate_org_chart([_p("A", "B")], {"B": "A"})
    assert any("cycle" in e.message for e in errors)


def test_manager_chain_goes_up_to_the_top() -> None:
    managers = {"A": None, "B": "A", "C": "B", "D": "C"}
    assert manager_chain("D", managers) == ["C", "B", "A"]
    assert manager_chain("A", managers) == []


def test_profile_comes_from_the_chart_and_the_declaration() -> None:
    index = OrgIndex.of({"A": _p("A", None, level=8), "B": _p("B", "A", "Legal", 2)})
    request = EnrolmentRequest(participant_id="B", role=Role.MENTEE, skills_sought=["Negotiation"])
    profile = index.profile(request)
    assert (profile.department, profile.level, profile.manager_chain) == ("Legal", 2, ["A"])
    assert profile.skills_sought == ["negotiation"]
    with pytest.raises(NotFound):
        index.profile(EnrolmentRequest(participant_id="X", role=Role.MENTEE))


@pytest.mark.parametrize(
    ("form", "request_", "field"),
    [
        (Form.ONE_TO_ONE, EnrolmentRequest(participant_id="A", role=Role.MENTOR), "capacity"),
        (Form.ONE_TO_ONE, EnrolmentRequest(participant_id="A", role=Role.MENTEE, capacity=2), "capacity"),
        (Form.ONE_TO_ONE, EnrolmentRequest(participant_id="A", role=Role.PEER), "role"),
        (Form.PEER_GROUP, EnrolmentRequest(participant_id="A", role=Role.MENTEE), "role"),
        (Form.TEAM, EnrolmentRequest(participant_id="A", role=Role.MENTEE), "team_id"),
        (
            Form.ONE_TO_ONE,
            EnrolmentRequest(participant_id="A", role=Role.MENTEE, conflicts_with=["A"]),
            "conflicts_with",
        ),
    ],
)
def test_bad_enrolments_name_the_field(form: Form, request_: EnrolmentRequest, field: str) -> None:
    with pytest.raises(DomainError) as caught:
        check_enrolment(_program(form), request_)
    assert caught.value.field == field


def test_a_closed_program_takes_no_enrolment() -> None:
    with pytest.raises(Conflict):
        check_enrolment(_program(status="closed"), EnrolmentRequest(participant_id="A", role=Role.MENTEE))


def test_csv_rows_parse_with_lists_and_bad_rows_are_all_reported() -> None:
    csv = (
        b"participant_id,role,skills_sought,capacity\n"
        b"E1,mentee,negotiation;sql,\n"
        b"E2,wizard,,\n"
        b"E3,mentor,,lots\n"
        b"E4,mentor,,3,extra\n"
    )
    rows, errors = parse_rows(csv, "text/csv", EnrolmentRequest)
    assert [r.participant_id for r in rows] == ["E1"]
    assert rows[0].skills_sought == ["negotiation", "sql"]
    assert [(e.row, e.field) for e in errors] == [(3, "role"), (4, "capacity"), (5, None)], "file lines"


def test_unknown_csv_columns_and_non_list_json_are_rejected() -> None:
    _, errors = parse_rows(b"participant_id,rol\nE1,mentee\n", "text/csv", EnrolmentRequest)
    assert "unknown CSV columns: rol" in errors[0].message
    _, errors = parse_rows(b'{"participant_id": "E1"}', "application/json", EnrolmentRequest)
    assert "list of rows" in errors[0].message
    _, errors = parse_rows(b"[" * 100_000, "application/json", EnrolmentRequest)
    assert "nested too deeply" in errors[0].message


@pytest.mark.parametrize("form", list(Form))
def test_every_forms_defaults_fit_the_form(form: Form) -> None:
    assert policy_problems(form, default_policy(form)) == []


def test_a_partial_policy_merges_over_the_base_and_is_checked_against_the_form() -> None:
    policy = resolve_policy(Form.PEER_GROUP, default_policy(Form.PEER_GROUP), {"weights": {"goal": 4}})
    assert (policy.mentors_per_group, policy.weights.goal, policy.weights.skill) == (0, 4, 3)
    with pytest.raises(DomainError) as caught:
        resolve_policy(Form.TEAM, default_policy(Form.TEAM), {"group_members_min": 0})
    assert caught.value.loc == ["body", "policy", "group_members_min"]
    with pytest.raises(DomainError) as caught:
        resolve_policy(Form.ONE_TO_ONE, default_policy(Form.ONE_TO_ONE), {"mentors_per_group": 2})
    assert caught.value.loc == ["body", "policy", "mentors_per_group"]
    with pytest.raises(DomainError) as caught:  # a typo in a weight is not dropped silently
        resolve_policy(Form.ONE_TO_ONE, default_policy(Form.ONE_TO_ONE), {"weights": {"skil": 5}})
    assert caught.value.loc[-1] == "skil" and "weights.skil" in str(caught.value)


def test_patches_may_leave_fields_out_but_not_null_them() -> None:
    assert ProgramPatch.model_validate({"ends_on": None}).model_fields_set == {"ends_on"}
    assert EnrolmentPatch.model_validate({"capacity": None, "team_id": None}).capacity is None
    for model, name in ((ProgramPatch, "name"), (ProgramPatch, "policy"), (EnrolmentPatch, "goals")):
        with pytest.raises(ValidationError) as caught:
            model.model_validate({name: None})
        assert caught.value.errors()[0]["loc"] == (name,)


def test_team_ids_only_for_mentees_of_team_programs() -> None:
    with pytest.raises(DomainError) as caught:
        check_enrolment(_program(Form.ONE_TO_ONE), EnrolmentRequest(participant_id="A", role=Role.MENTEE, team_id="t"))
    assert caught.value.field == "team_id"
    with pytest.raises(DomainError):
        check_enrolment(
            _program(Form.TEAM), EnrolmentRequest(participant_id="A", role=Role.MENTOR, capacity=2, team_id="t")
        )
    check_enrolment(_program(Form.TEAM), EnrolmentRequest(participant_id="A", role=Role.MENTEE, team_id="t"))


def test_csv_rows_are_numbered_by_the_line_they_start_on() -> None:
    csv = b'participant_id,role,goals\n\nE1,mentee,"a;\nb"\nE2,wizard,\n\n\nE3,wizard,\n'
    upload = parse_upload(csv, "text/csv", EnrolmentRequest)
    assert upload.numbers == [3], "blank line 2 skipped; E1 starts on line 3"
    assert [e.row for e in upload.errors] == [5, 8]


def test_cross_field_errors_name_their_field() -> None:
    with pytest.raises(DomainError) as caught:
        resolve_policy(Form.TEAM, default_policy(Form.TEAM), {"group_members_min": 40})
    assert caught.value.loc == ["body", "policy", "group_members_min"]
    with pytest.raises(ValidationError) as invalid:
        ProgramSpec.model_validate({"name": "x", "form": "team", "starts_on": "2026-02-01", "ends_on": "2026-01-01"})
    assert invalid.value.errors()[0]["loc"] == ("ends_on",)
