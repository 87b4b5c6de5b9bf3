"""fercore dashboard: entry point and router (``streamlit run app/main.py``)."""

import streamlit as st

st.set_page_config(page_title="fercore", layout="wide")
st.title("fercore")
st.write("What did your facial-expression network learn? The dashboard views are being built.")
