"""The project's tests, and the test builder: a test's settings and groups, the API's
validation messages next to the field they name, save, and run."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import api
from dashboard.builder import (
    CODECS,
    IMPAIRMENT_DIRECTIONS,
    PLACEMENTS,
    TARGETS,
    GroupFields,
    TestFields,
    errors_at,
    field_errors,
    fields_from_definition,
)

ERRORS, EDITING, GROUPS = "b_errors", "b_test_id", "b_groups"
GROUP_FIELDS = (
    "name",
    "endpoints",
    "registrar",
    "accounts",
    "codecs",
    "media_file",
    "placement",
    "placement_value",
    "target",
    "target_value",
    "impaired",
    "loss_percent",
    "delay_ms",
    "jitter_ms",
    "impairment_direction",
)
TEST_FIELDS = (
    "name",
    "description",
    "endpoints",
    "call_duration_s",
    "buildup_s",
    "min_success_rate",
    "min_mos",
)


def load(fields: TestFields, test_id: str | None = None) -> None:
    """Put a test into the builder's widgets."""
    for name in TEST_FIELDS:
        st.session_state[f"b_{name}"] = getattr(fields, name)
    st.session_state[GROUPS] = len(fields.groups)
    for i, group in enumerate(fields.groups):
        for name in GROUP_FIELDS:
            st.session_state[f"b_g{i}_{name}"] = getattr(group, name)
    st.session_state[EDITING] = test_id
    st.session_state[ERRORS] = {}


def collected() -> TestFields:
    """The test the builder's widgets hold."""
    blank, defaults = GroupFields(), TestFields()
    groups = [
        GroupFields(
            **{
                name: st.session_state.get(f"b_g{i}_{name}", getattr(blank, name))
                for name in GROUP_FIELDS
            }
        )
        for i in range(st.session_state[GROUPS])
    ]
    values = {
        name: st.session_state.get(f"b_{name}", getattr(defaults, name)) for name in TEST_FIELDS
    }
    return TestFields(**values, groups=groups)


def problems(path: str, *, exact: bool = False) -> None:
    """The API's messages about ``path`` (and, unless ``exact``, the fields below it), right
    below its field."""
    errors = st.session_state.get(ERRORS, {})
    messages = errors.get(path, []) if exact else errors_at(errors, path)
    for message in messages:
        st.error(f"`{path}`: {message}" if path else message, icon="⚠️")


def group_editor(i: int, registrars: list[str], media: list[str]) -> None:
    key = f"b_g{i}_"
    group_path = f"groups[{i}]"
    with st.container(border=True):
        st.markdown(f"**Group {i + 1}**")
        left, right = st.columns(2)
        with left:
            st.text_input("Name", key=key + "name")
            problems(f"{group_path}.name")
            st.number_input("Endpoints", step=1, key=key + "endpoints")
            problems(f"{group_path}.endpoints")
            if st.session_state[key + "registrar"] not in registrars:
                registrars = [*registrars, st.session_state[key + "registrar"]]
            st.selectbox("Registrar", registrars, key=key + "registrar")
            problems(f"{group_path}.registrar")
            problems(f"registrars.{st.session_state[key + 'registrar']}")
            st.text_input("Accounts (usernames, comma separated; empty: any)", key=key + "accounts")
            problems(f"{group_path}.accounts")
            st.multiselect("Codecs (offered in this order)", CODECS, key=key + "codecs")
            problems(f"{group_path}.codecs")
            problems(f"{group_path}.ptime_ms")
            if st.session_state[key + "media_file"] not in media:
                media = [*media, st.session_state[key + "media_file"]]
            st.selectbox(
                "Media file",
                media,
                key=key + "media_file",
                format_func=lambda m: m or "built-in tone",
            )
            problems(f"{group_path}.media_file")
        with right:
            st.radio("Placement", PLACEMENTS, horizontal=True, key=key + "placement")
            if st.session_state[key + "placement"] != "anywhere":
                st.text_input(
                    "Region"
                    if st.session_state[key + "placement"] == "region"
                    else "Workers (comma separated)",
                    key=key + "placement_value",
                )
            problems(f"{group_path}.placement")
            st.selectbox("Target", TARGETS, key=key + "target")
            if st.session_state[key + "target"] in ("group", "uri"):
                st.text_input(
                    "Group to call"
                    if st.session_state[key + "target"] == "group"
                    else "SIP URI to call",
                    key=key + "target_value",
                )
            problems(f"{group_path}.target")
            st.checkbox("Impair the network", key=key + "impaired")
            if st.session_state[key + "impaired"]:
                st.selectbox(
                    "Impaired streams", IMPAIRMENT_DIRECTIONS, key=key + "impairment_direction"
                )
                a, b, c = st.columns(3)
                a.number_input("Loss %", key=key + "loss_percent")
                b.number_input("Delay ms", key=key + "delay_ms")
                c.number_input("Jitter ms", key=key + "jitter_ms")
            problems(f"{group_path}.impairment")


def save(project_id: str, run: bool) -> None:
    fields = collected()
    client = api.client()
    editing = st.session_state.get(EDITING)
    try:
        if editing:
            test = client.update_test(
                editing,
                name=fields.name,
                definition=fields.definition(),
                description=fields.description,
            )
        else:
            test = client.create_test(
                project_id, fields.name, fields.definition(), fields.description
            )
    except api.ApiError as error:
        st.session_state[ERRORS] = field_errors(error.message)
        st.rerun()
    st.session_state[ERRORS] = {}
    st.session_state[EDITING] = test.test_id
    if run:
        started = api.attempt(client.run_test, test.test_id)
        if started is not None:
            api.select_run(started.run_id)
            st.switch_page("pages/live.py")
    st.session_state["b_saved"] = f"Saved test {test.name!r}."
    st.rerun()


st.title("Tests")
project = api.require_project()
client = api.client()
tests = api.attempt(client.tests, project.project_id) or []

st.subheader(f"Tests of {project.name}")
if tests:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "name": t.name,
                    "endpoints": t.endpoints,
                    "description": t.description,
                    "updated": t.updated_at,
                }
                for t in tests
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    names = {t.test_id: t.name for t in tests}
    picked = st.selectbox("Test", list(names), format_func=names.__getitem__, key="t_pick")
    run_col, edit_col, _ = st.columns([1, 1, 4])
    if run_col.button("▶ Run", key="t_run", type="primary"):
        started = api.attempt(client.run_test, picked)
        if started is not None:
            api.select_run(started.run_id)
            st.switch_page("pages/live.py")
    if edit_col.button("Edit in the builder", key="t_edit"):
        chosen = next(t for t in tests if t.test_id == picked)
        load(fields_from_definition(chosen.name, chosen.definition), chosen.test_id)
        st.rerun()
else:
    st.caption("No test yet: build one below.")

st.subheader("Test builder")
if GROUPS not in st.session_state:
    load(TestFields())
if st.session_state.get("b_saved"):
    st.success(st.session_state.pop("b_saved"))
registrar_names = [
    "builtin",
    *(r.name for r in (api.attempt(client.registrars, project.project_id) or [])),
]
media_names = ["", *(m.name for m in (api.attempt(client.media_files, project.project_id) or []))]

editing = st.session_state.get(EDITING)
top = st.columns([3, 1])
top[0].caption(f"Editing {names[editing]!r}" if tests and editing in names else "A new test")
if top[1].button("New test", key="bb_new"):
    load(TestFields())
    st.rerun()
st.text_input("Test name", key="b_name")
problems("name")
st.text_input("Description", key="b_description")
a, b, c = st.columns(3)
with a:
    st.number_input("Total endpoints (0: the sum of the groups)", step=1, key="b_endpoints")
    problems("endpoints")
with b:
    st.number_input("Call duration (s)", key="b_call_duration_s")
    problems("call_duration_s")
with c:
    st.number_input("Buildup (s): endpoint starts spread over", key="b_buildup_s")
    problems("buildup_s")
d, e = st.columns(2)
with d:
    st.number_input("Pass: minimum success rate (0..1)", key="b_min_success_rate")
with e:
    st.number_input("Pass: minimum MOS (0: none)", key="b_min_mos")
problems("success")

for index in range(st.session_state[GROUPS]):
    group_editor(index, registrar_names, media_names)
problems("groups", exact=True)

add, remove, _ = st.columns([1, 1, 4])
if add.button("Add group", key="bb_add_group"):
    n = st.session_state[GROUPS]
    for name in GROUP_FIELDS:
        st.session_state[f"b_g{n}_{name}"] = getattr(GroupFields(f"group{n + 1}"), name)
    st.session_state[GROUPS] = n + 1
    st.rerun()
if remove.button("Remove last group", key="bb_remove_group", disabled=st.session_state[GROUPS] < 2):
    st.session_state[GROUPS] -= 1
    st.rerun()

other = {
    k: v
    for k, v in st.session_state.get(ERRORS, {}).items()
    if not k.startswith(("groups", "registrars")) and k not in (*TEST_FIELDS, "success")
}
for where, messages in other.items():
    for message in messages:
        st.error(f"`{where}`: {message}" if where else message, icon="⚠️")

save_col, run_col2, _ = st.columns([1, 1, 4])
if save_col.button("Save test", key="bb_save"):
    save(project.project_id, run=False)
if run_col2.button("Save and run ▶", key="bb_save_run", type="primary"):
    save(project.project_id, run=True)
