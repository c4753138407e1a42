"""The only page anyone sees before signing in: it never touches the warehouse."""

from app.shell.auth import show_sign_in

show_sign_in()
