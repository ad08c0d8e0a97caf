"""Log in with a platform account."""

from __future__ import annotations

import httpx
import streamlit as st

from dashboard import api

st.title("📞 callmeter")
st.caption(f"SIP stress testing and VoIP quality · server {api.server_url()}")
with st.form("login"):
    email = st.text_input("Email", key="login_email")
    password = st.text_input("Password", type="password", key="login_password")
    submitted = st.form_submit_button("Log in")
if submitted:
    try:
        api.login(email.strip(), password)
    except api.ApiError as error:
        st.error(error.message)
    except httpx.TransportError as error:
        st.error(f"cannot reach the server at {api.server_url()}: {error}")
    else:
        st.rerun()
