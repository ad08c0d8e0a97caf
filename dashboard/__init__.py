"""The Streamlit app (``streamlit run dashboard/app.py``), a client of ``callmeter serve``.

``app.py`` is the entry point: log-in, the organization and project switch, and
``st.navigation`` over the thin pages in ``pages/``. ``api.py`` keeps the session's
:class:`callmeter.client.Client`; ``builder.py`` turns the test builder's fields into a test
definition and the API's errors back into messages per field; ``charts.py`` draws with plotly.
Pages call the client and these helpers: no SQL, no store.
"""
