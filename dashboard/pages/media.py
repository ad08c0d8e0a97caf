"""The project's media files: what a group's endpoints send (WAV; the built-in tone when none).
The server transcodes each upload once into every codec; the table shows which."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import api

st.title("Media files")
project = api.require_project()
client = api.client()
files = api.attempt(client.media_files, project.project_id) or []
if files:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "name": f.name,
                    "type": f.content_type,
                    "bytes": f.size_bytes,
                    "duration (s)": f.duration_s,
                    "transcoded into": ", ".join(f.codecs) or "not yet",
                    "sha256": f.sha256[:16],
                    "added": f.created_at,
                }
                for f in files
            ]
        ),
        hide_index=True,
        width="stretch",
    )
else:
    st.caption("No media file yet: groups send the built-in tone.")
with st.form("media_upload"):
    upload = st.file_uploader("Media file", key="media_file")
    name = st.text_input("Name (default: the file name)", key="media_name")
    if st.form_submit_button("Upload") and upload is not None:
        made = api.attempt(
            client.upload_media_bytes,
            project.project_id,
            upload.name,
            upload.getvalue(),
            name.strip() or None,
        )
        if made is not None:
            length = f"{made.duration_s:.1f} s, " if made.duration_s is not None else ""
            codecs = ", ".join(made.codecs) or "no codec"
            st.success(
                f"Uploaded {made.name!r} ({length}{made.size_bytes:,} bytes), "
                f"transcoded into {codecs}."
            )
if files:
    names = {f.media_file_id: f.name for f in files}
    left, right = st.columns([3, 1])
    doomed = left.selectbox(
        "Media file", list(names), format_func=names.__getitem__, key="media_pick"
    )
    if right.button("Delete", key="media_delete") and doomed:
        if api.done(client.delete_media, doomed):
            st.rerun()
