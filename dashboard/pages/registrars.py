"""The project's registrars (SIP servers under test) and their SIP accounts: add one by one,
bulk import from CSV, test a registration, delete."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from callmeter.server.payloads import Transport
from dashboard import api

st.title("Registrars & SIP accounts")
project = api.require_project()
client = api.client()
registrars = api.attempt(client.registrars, project.project_id) or []

st.caption(
    "Every test can also use the built-in registrar (`builtin`): ephemeral accounts, "
    "no SIP infrastructure needed."
)
if registrars:
    st.dataframe(
        pd.DataFrame([r.model_dump(exclude={"project_id"}) for r in registrars]),
        hide_index=True,
        width="stretch",
    )

with st.expander("Add a registrar", expanded=not registrars):
    with st.form("reg_add"):
        name = st.text_input("Name", key="reg_name")
        domain = st.text_input("Domain", key="reg_domain", placeholder="pbx.example.com")
        a, b = st.columns(2)
        port = a.number_input("Port (0: from the transport / DNS)", step=1, value=0, key="reg_port")
        transport = b.selectbox("Transport", [t.value for t in Transport], key="reg_transport")
        proxy = st.text_input("Outbound proxy (host:port, optional)", key="reg_proxy")
        tls_verify = st.checkbox("Verify TLS certificates", value=True, key="reg_tls")
        if st.form_submit_button("Add registrar"):
            fields = {
                "transport": transport,
                "tls_verify": tls_verify,
                "port": int(port) or None,
                "outbound_proxy": proxy.strip() or None,
            }
            made = api.attempt(
                client.create_registrar, project.project_id, name.strip(), domain.strip(), **fields
            )
            if made is not None:
                st.success(f"Added registrar {made.name!r}.")
                st.rerun()

if not registrars:
    st.stop()
names = {r.registrar_id: f"{r.name} ({r.domain}, {r.accounts} accounts)" for r in registrars}
registrar_id = st.selectbox("Registrar", list(names), format_func=names.__getitem__, key="reg_pick")
assert registrar_id is not None
accounts = api.attempt(client.accounts, registrar_id) or []
st.subheader("SIP accounts")
if accounts:
    st.dataframe(
        pd.DataFrame(
            [{"username": a.username, "realm": a.realm, "added": a.created_at} for a in accounts]
        ),
        hide_index=True,
        width="stretch",
    )
else:
    st.caption("No account yet.")
one, many = st.columns(2)
with one, st.form("acc_add"):
    st.markdown("**Add an account**")
    username = st.text_input("Username", key="acc_username")
    password = st.text_input("Password", type="password", key="acc_password")
    realm = st.text_input("Realm (optional)", key="acc_realm")
    if st.form_submit_button("Add account"):
        made_account = api.attempt(
            client.create_account, registrar_id, username.strip(), password, realm.strip() or None
        )
        if made_account is not None:
            st.rerun()
with many, st.form("acc_import"):
    st.markdown("**Bulk import** (CSV: `username,password[,realm]` with that header)")
    upload = st.file_uploader("CSV file", type=["csv", "txt"], key="acc_file")
    pasted = st.text_area("...or paste the CSV", key="acc_csv", height=120)
    if st.form_submit_button("Import"):
        text = upload.getvalue().decode("utf-8-sig") if upload is not None else pasted
        result = api.attempt(client.import_accounts, registrar_id, text)
        if result is not None:
            st.success(f"Imported {result.imported} accounts, replaced {result.replaced}.")
if accounts:
    usernames = {a.sip_account_id: a.username for a in accounts}
    c1, c2 = st.columns([3, 1])
    doomed = c1.selectbox(
        "Account", list(usernames), format_func=usernames.__getitem__, key="acc_pick"
    )
    if c2.button("Delete account", key="acc_delete") and doomed:
        if api.done(client.delete_account, doomed):
            st.rerun()
if accounts:
    st.subheader("Test a registration")
    st.caption(
        "The server registers the account with this registrar for real (REGISTER with digest "
        "authentication), then unregisters it."
    )
    left, right = st.columns([3, 1])
    tested = left.selectbox(
        "Account to register", [a.username for a in accounts], key="reg_test_user"
    )
    if right.button("Test registration", key="reg_test") and tested:
        with st.spinner(f"Registering {tested}..."):
            check = api.attempt(client.test_registration, registrar_id, tested)
        if check is not None:
            took = f" in {check.elapsed_ms:.0f} ms" if check.elapsed_ms is not None else ""
            answer = f"{check.status} {check.reason}" if check.status else check.reason
            if check.ok:
                st.success(f"{tested} registered: {answer}{took}.")
            else:
                st.error(f"{tested} did not register: {answer}{took}.")
            ladder = [
                f"{line.at_ms:9.1f} ms  {'→' if line.direction == 'out' else '←'} "
                f"{line.peer:<22} {line.line}"
                for line in check.trace
            ]
            st.code("\n".join(ladder) or "no SIP message", language=None)
if st.button("Delete this registrar", key="reg_delete"):
    if api.done(client.delete_registrar, registrar_id):
        st.rerun()
