"""The Streamlit shell: the only package that imports streamlit (sign-in, resources,
caches, page components)."""
