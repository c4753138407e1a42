"""Altair charts and HTML report sections: no Streamlit, no SQL."""
