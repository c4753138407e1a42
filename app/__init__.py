"""The application shell: Streamlit resources, auth, state, components, and the CLI."""
