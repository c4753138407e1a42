"""One UI-free service per user job (a case, a model comparison, the pattern review): typed
results, no Streamlit."""
